//! What the `sparta` binary promises when runs collide, diverge or are stopped, and when
//! its inputs are wrong: one run per output folder, no diverged checkpoint, a checkpoint
//! on SIGTERM, flags and files checked before work starts, checkpoints that name their
//! data set and refuse non-finite or inconsistent contents.

mod cli_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;

/// Waits until `path` exists (a run's first checkpoint), failing after two minutes.
fn wait_for(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before writing {}", path.display());
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no {} after 2 minutes",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Data loss 2 of the issue: a `--fresh` run in the folder of a running one deleted the
/// first run's checkpoints, and both exited 0. Now the second run, and any other
/// command writing there, refuses at once, naming the folder and the holder; SIGTERM
/// then checkpoints the first run as Ctrl-C does.
#[test]
fn a_second_run_in_the_folder_refuses_and_sigterm_checkpoints() {
    let data = data_dir("busy");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let mut first = Command::new(BIN)
        .args(train_args(d, r, "50"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = run.join("checkpoint").join("state.json");
    wait_for(&state, &mut first);

    let mut fresh = train_args(d, r, "1");
    fresh.push("--fresh");
    let started = Instant::now();
    let out = sparta(&fresh);
    let stderr = assert_refused(&out, "is in use by another sparta run");
    assert!(
        stderr.contains(r) && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "refused late");
    assert!(state.exists(), "the first run's checkpoint was deleted");

    let mut eval = vec!["eval"];
    eval.extend(common("fashion-mnist", d, r));
    eval.extend(["--checkpoint", "elsewhere.safetensors"]);
    assert_refused(&sparta(&eval), "is in use by another sparta run");

    signal(&first, "TERM");
    let out = first.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let saved = json(&state);
    assert!(saved["global_step"].as_u64().unwrap() >= 1, "{saved}");
    assert_eq!(json(&run.join("train.json"))["finished"], false);
}

/// Data loss 3 of the issue: `--lr 1000 --checkpoint-every 1` wrote non-finite weights
/// as the last checkpoint. Now the run stops with the step it diverged at, and the
/// checkpoint in the folder, if there is one, is finite and evaluates.
#[test]
fn a_diverging_run_stops_and_leaves_a_finite_checkpoint() {
    let data = data_dir("diverge");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let mut args = train_args(d, r, "3");
    let lr = args.iter().position(|a| *a == "0.05").unwrap();
    args[lr] = "1000";
    args.push("--standard");
    let out = sparta(&args);
    let stderr = assert_refused(&out, "training diverged at epoch");
    let state = run.join("checkpoint").join("state.json");
    if state.exists() {
        let model = run
            .join("checkpoint")
            .join(json(&state)["model_file"].as_str().unwrap());
        assert!(stderr.contains(model.to_str().unwrap()), "{stderr}");
        let eval_dir = data.join("eval");
        let mut eval = vec!["eval"];
        eval.extend(common("fashion-mnist", d, eval_dir.to_str().unwrap()));
        eval.extend(["--checkpoint", model.to_str().unwrap(), "--iterations", "1"]);
        assert_ok(&sparta(&eval), "eval of the last good checkpoint");
    } else {
        assert!(
            stderr.contains("no checkpoint had been written"),
            "{stderr}"
        );
    }
    assert!(!run.join("model.safetensors").exists());
}

/// Flags outside what any run can use are errors before any work, never a panic,
/// an allocation abort or a hang.
#[test]
fn flags_no_run_can_use_are_refused() {
    let data = data_dir("flags");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let train_with = |flag: &'static str, value: &'static str| {
        let mut args = train_args(d, r, "1");
        match args.iter().position(|a| *a == flag) {
            Some(i) => args[i + 1] = value,
            None => args.extend([flag, value]),
        }
        args
    };
    for (flag, value, want) in [
        ("--lr", "-1", "learning rate -1"),
        ("--lr", "0", "learning rate 0"),
        ("--epsilon", "300", "--epsilon 300"),
        ("--step", "-1", "--step -1"),
        ("--batch-size", "0", "batch size 0"),
        ("--restarts", "0", "restarts"),
        ("--train-pgd", "1000000000000", "iterations"),
    ] {
        let started = Instant::now();
        assert_refused(&sparta(&train_with(flag, value)), want);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{flag} {value}"
        );
    }
    let model = data.join("none.safetensors");
    for iterations in ["1000000000000", "18446744073709551615"] {
        let mut eval = vec!["eval"];
        eval.extend(common("fashion-mnist", d, r));
        eval.extend(["--checkpoint", model.to_str().unwrap()]);
        eval.extend(["--iterations", iterations]);
        let started = Instant::now();
        assert_refused(&sparta(&eval), "iterations");
        assert!(started.elapsed() < Duration::from_secs(30), "{iterations}");
    }
}

/// Images of a size the named data set does not have, images with a zero side, and a
/// folder or FIFO where a file should be: errors naming the file, before training. A
/// broken test split is found before training too.
#[test]
fn data_files_are_checked_before_training() {
    type Damage = Box<dyn Fn(&Path)>;
    let cases: [(&str, Damage, &str); 5] = [
        (
            "zero-height",
            Box::new(|dir: &Path| {
                write_idx(&dir.join("train-images-idx3-ubyte"), &[40, 0, 28], &[]);
            }),
            "images are 0×28",
        ),
        (
            "wrong-size",
            Box::new(|dir: &Path| {
                let (images, _) = banded_images(40, 1, 32, 1);
                write_idx(&dir.join("train-images-idx3-ubyte"), &[40, 32, 32], &images);
            }),
            "should hold 1×28×28 images of 10 classes, found 40 images of 1×32×32",
        ),
        (
            "directory",
            Box::new(|dir: &Path| {
                let path = dir.join("train-images-idx3-ubyte");
                std::fs::remove_file(&path).unwrap();
                std::fs::create_dir(&path).unwrap();
            }),
            "train-images-idx3-ubyte: is a directory",
        ),
        (
            "fifo",
            Box::new(|dir: &Path| {
                let path = dir.join("train-labels-idx1-ubyte");
                std::fs::remove_file(&path).unwrap();
                assert!(Command::new("mkfifo")
                    .arg(&path)
                    .status()
                    .unwrap()
                    .success());
            }),
            "train-labels-idx1-ubyte: is a FIFO",
        ),
        (
            "broken-test",
            Box::new(|dir: &Path| {
                let path = dir.join("t10k-labels-idx1-ubyte");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
            }),
            "t10k-labels-idx1-ubyte: truncated",
        ),
    ];
    for (name, damage, want) in cases {
        let data = data_dir(name);
        damage(&data);
        let run = data.join("run");
        let args = train_args(data.to_str().unwrap(), run.to_str().unwrap(), "1");
        let started = Instant::now();
        let stderr = assert_refused(&sparta(&args), want);
        assert!(started.elapsed() < Duration::from_secs(30), "{name}");
        assert!(
            !stderr.contains("epoch 1/1"),
            "{name}: trained first\n{stderr}"
        );
        assert!(!run.join("checkpoint").exists(), "{name}");
    }
}

/// Rewrites the JSON header of the safetensors file at `path` with `edit`.
fn edit_header(path: &Path, edit: impl Fn(&str) -> String) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = edit(std::str::from_utf8(&bytes[8..8 + n]).unwrap());
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// The data offset of tensor `name` in the safetensors file at `path`.
fn tensor_offset(path: &Path, name: &str) -> usize {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    8 + n + header[name]["data_offsets"][0].as_u64().unwrap() as usize
}

/// A checkpoint records the data set it was trained on: another one is refused unless
/// `--cross-dataset` says the transfer is intended. A checkpoint with a NaN, a negative
/// running variance or a config that does not match its tensors (an absurd width) is
/// refused, naming what is wrong, before the model is allocated.
#[test]
fn checkpoints_name_their_data_set_and_are_checked_on_load() {
    let cifar = cifar_dir("transfer-cifar", 4, 10);
    let svhn = svhn_dir("transfer-svhn", 10, 10);
    let run = cifar.join("run");
    let (c, r) = (cifar.to_str().unwrap(), run.to_str().unwrap());
    let mut train = vec!["train"];
    train.extend(common("cifar10", c, r));
    train.extend([
        "--model",
        "small",
        "--act",
        "relu",
        "--epochs",
        "1",
        "--standard",
        "--lr",
        "0.05",
    ]);
    assert_ok(&sparta(&train), "train on CIFAR-10");
    let model = run.join("model.safetensors");
    let m = model.to_str().unwrap();
    assert_eq!(
        json(&run.join("train.json"))["model"]["dataset"]["name"],
        "cifar10"
    );

    let other = svhn.join("eval");
    let eval = |checkpoint: &str, extra: &[&str]| {
        let mut args = vec!["eval"];
        args.extend(common(
            "svhn",
            svhn.to_str().unwrap(),
            other.to_str().unwrap(),
        ));
        args.extend(["--checkpoint", checkpoint, "--iterations", "1"]);
        args.extend(extra);
        sparta(&args)
    };
    assert_refused(
        &eval(m, &[]),
        "was trained on cifar10 (3×32×32 images, 10 classes), not on svhn",
    );
    assert_ok(&eval(m, &["--cross-dataset"]), "eval --cross-dataset");
    assert_eq!(json(&other.join("eval.json"))["dataset"], "svhn/test");

    let damaged = cifar.join("damaged.safetensors");
    let d = damaged.to_str().unwrap();
    let damage = |edit: &dyn Fn(&Path)| {
        std::fs::copy(&model, &damaged).unwrap();
        edit(&damaged);
    };
    damage(&|p| {
        let at = tensor_offset(p, "layer2.0.conv1.weight") + 4 * 5;
        let mut bytes = std::fs::read(p).unwrap();
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(p, bytes).unwrap();
    });
    assert_refused(
        &eval(d, &["--cross-dataset"]),
        "tensor layer2.0.conv1.weight holds NaN at index 5",
    );
    damage(&|p| {
        let at = tensor_offset(p, "bn1.running_var") + 4 * 2;
        let mut bytes = std::fs::read(p).unwrap();
        bytes[at..at + 4].copy_from_slice(&(-0.5f32).to_le_bytes());
        std::fs::write(p, bytes).unwrap();
    });
    assert_refused(
        &eval(d, &["--cross-dataset"]),
        "bn1.running_var holds the negative variance -0.5 at index 2",
    );
    damage(&|p| edit_header(p, |h| h.replace("[16,32,64,128]", "[16,32,64,1000000000]")));
    assert_refused(
        &eval(d, &["--cross-dataset"]),
        "its config describes a model of",
    );
}

//! The `sparta` binary end to end on a tiny Fashion-MNIST-format data set written here:
//! info, train (adversarial, resumed after more epochs are asked for and after a Ctrl-C),
//! eval and attack, their JSON / markdown / CSV / PNG outputs, and the errors a user sees
//! for a missing or truncated file.

mod cli_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;

#[test]
fn info_prints_the_layer_table_and_parameter_count() {
    let out = sparta(&[
        "info",
        "--model",
        "small",
        "--act",
        "sparta",
        "--dataset",
        "fashion-mnist",
    ]);
    assert_ok(&out, "info");
    let stdout = text(&out.stdout);
    let digits: String = stdout.chars().filter(|c| c.is_ascii_digit()).collect();
    assert!(digits.contains("396782"), "{stdout}");
    assert!(stdout.to_lowercase().contains("sparta"), "{stdout}");
    let frozen = sparta(&[
        "info",
        "--model",
        "small",
        "--act",
        "sparta frozen",
        "--dataset",
        "fashion-mnist",
    ]);
    assert_ok(&frozen, "info frozen");
    let stdout = text(&frozen.stdout);
    assert!(
        stdout.contains("trained (frozen SPARTA excluded): 308538"),
        "{stdout}"
    );
}

#[test]
fn train_resume_eval_and_attack_write_their_results() {
    let data = data_dir("flow");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());

    let first = sparta(&train_args(d, r, "1"));
    assert_ok(&first, "train 1 epoch");
    let report = json(&run.join("train.json"));
    assert_eq!(report["history"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["finished"], true);
    assert_eq!(report["test_images"], 20);
    let err = report["clean_test_error"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&err), "{report}");
    assert!(std::fs::read_to_string(run.join("train.md"))
        .unwrap()
        .contains("clean test error"));

    // Asking for a second epoch carries on from the checkpoint instead of starting over.
    let second = sparta(&train_args(d, r, "2"));
    assert_ok(&second, "train to 2 epochs");
    assert!(
        text(&second.stderr).contains("resuming from"),
        "{}",
        text(&second.stderr)
    );
    let report = json(&run.join("train.json"));
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{report}");
    assert!(history
        .iter()
        .all(|h| h["loss"].as_f64().unwrap().is_finite()));

    let model = run.join("model.safetensors");
    let m = model.to_str().unwrap();
    let mut eval = vec!["eval"];
    eval.extend(common("fashion-mnist", d, r));
    eval.extend(["--checkpoint", m, "--iterations", "1,3"]);
    let out = sparta(&eval);
    assert_ok(&out, "eval");
    let report = json(&run.join("eval.json"));
    let attacks = report["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 2, "{report}");
    let errors: Vec<f64> = attacks
        .iter()
        .map(|a| a["adversarial_error"].as_f64().unwrap())
        .collect();
    assert!(errors.iter().all(|e| (0.0..=1.0).contains(e)), "{errors:?}");
    assert_eq!(attacks[1]["loss_mean"].as_array().unwrap().len(), 4);
    assert!(std::fs::read_to_string(run.join("eval.md"))
        .unwrap()
        .contains("PGD-3"));

    let fig = data.join("fig");
    let mut attack = vec!["attack"];
    attack.extend(common("fashion-mnist", d, fig.to_str().unwrap()));
    attack.extend([
        "--checkpoint",
        m,
        "--label",
        "first",
        "--checkpoint",
        m,
        "--label",
        "again",
        "--iterations",
        "2",
    ]);
    let out = sparta(&attack);
    assert_ok(&out, "attack");
    let csv = std::fs::read_to_string(fig.join("attack_loss.csv")).unwrap();
    assert!(csv.lines().count() >= 3, "{csv}");
    assert!(csv.contains("first") && csv.contains("again"), "{csv}");
    let png = std::fs::read(fig.join("attack_loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(json(&fig.join("attack.json")).as_array().unwrap().len(), 2);

    // Feature maps of the same model twice: identical rows, one per block of the small
    // preset, and the figure (image 13: in the second batch); an image index past the
    // test images is an error.
    let maps = data.join("maps");
    let mut features = vec!["features"];
    features.extend(common("fashion-mnist", d, maps.to_str().unwrap()));
    features.extend([
        "--checkpoint",
        m,
        "--checkpoint",
        m,
        "--iterations",
        "2",
        "--image",
        "13",
    ]);
    let out = sparta(&features);
    assert_ok(&out, "features");
    let report = json(&maps.join("features.json"));
    let rows = report.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    assert_eq!(
        rows[0]["label"], "G1-4.Blast",
        "no --label: the activation spec"
    );
    assert_eq!(rows[0]["shifts"], rows[1]["shifts"]);
    let shifts = rows[0]["shifts"].as_array().unwrap();
    let blocks: Vec<&str> = shifts
        .iter()
        .map(|s| s["block"].as_str().unwrap())
        .collect();
    assert_eq!(blocks, ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]);
    for s in shifts {
        assert_eq!(s["sparta"], true, "{s}");
        for key in ["input", "output"] {
            let v = s[key].as_f64().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{s}");
        }
    }
    let md = std::fs::read_to_string(maps.join("features.md")).unwrap();
    assert!(md.contains("| G1-4.Blast | layer4.0 | SPARTA |"), "{md}");
    let png = std::fs::read(maps.join("feature_maps.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let image = features.iter().position(|a| *a == "13").unwrap();
    features[image] = "20";
    let out = sparta(&features);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("image 20"),
        "{}",
        text(&out.stderr)
    );

    // Transferred SPARTA: this model's SPARTA weights start a new model and stay fixed.
    let frozen = data.join("frozen");
    let mut args = train_args(d, frozen.to_str().unwrap(), "1");
    let act = args.iter().position(|a| *a == "sparta").unwrap();
    args[act] = "sparta frozen";
    args.extend(["--standard", "--sparta-from", m]);
    let out = sparta(&args);
    assert_ok(&out, "train with --sparta-from");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("SPARTA weights: 32 tensors"), "{stderr}");
}

#[test]
fn ctrl_c_writes_a_checkpoint_and_the_same_command_resumes() {
    let data = data_dir("ctrlc");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let args = train_args(d, r, "50");
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The periodic checkpoint after the first step says training is under way.
    let state = run.join("checkpoint").join("state.json");
    let start = Instant::now();
    while !state.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let saved = json(&state);
    let done = saved["global_step"].as_u64().unwrap();
    assert!(done >= 1, "{saved}");
    assert_eq!(json(&run.join("train.json"))["finished"], false);

    // Rerunning the command with fewer epochs finishes from where it stopped.
    let epochs = (done / 4 + 1).to_string();
    let resumed = sparta(&train_args(d, r, &epochs));
    assert_ok(&resumed, "resume");
    assert!(text(&resumed.stderr).contains("resuming from"));
    let report = json(&run.join("train.json"));
    assert_eq!(report["finished"], true);
    assert_eq!(
        report["history"].as_array().unwrap().len(),
        done as usize / 4 + 1
    );
}

#[test]
fn missing_and_truncated_files_are_errors_that_name_the_file() {
    let empty = temp_dir("missing");
    let out = sparta(&train_args(
        empty.to_str().unwrap(),
        empty.join("run").to_str().unwrap(),
        "1",
    ));
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("train-images-idx3-ubyte"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    let data = data_dir("truncated");
    let images = data.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    let out = sparta(&train_args(
        data.to_str().unwrap(),
        data.join("run").to_str().unwrap(),
        "1",
    ));
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(images.to_str().unwrap()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `--device cuda` trains on the GPU when there is one; without one it is an error that
/// says so (never a panic), and `--device auto` falls back to the CPU with a notice.
#[test]
fn device_flag_uses_the_gpu_or_says_why_not() {
    let data = data_dir("device");
    let run = data.join("run");
    let (data_s, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let with_device = |device: &'static str| {
        let mut args = train_args(data_s, run_s, "1");
        let at = args
            .iter()
            .position(|a| *a == "cpu")
            .expect("common() sets --device cpu");
        args[at] = device;
        args.push("--fresh");
        sparta(&args)
    };
    let gpu = sparta::Gpu::new(0).is_ok();
    let out = with_device("cuda");
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    if gpu {
        assert_ok(&out, "train --device cuda");
        assert!(stderr.contains("cuda:0"), "{stderr}");
    } else {
        assert!(
            !out.status.success(),
            "--device cuda without a GPU must fail"
        );
        assert!(stderr.contains("CUDA"), "{stderr}");
        let out = with_device("auto");
        assert_ok(&out, "train --device auto");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("using the CPU"), "{stderr}");
    }
}

//! The `sparta` binary end to end on small data sets written here, in the published
//! formats of all four data sets: info, train (adversarial, resumed after more epochs
//! are asked for and after a Ctrl-C), eval, attack and features, their JSON / markdown
//! / CSV / PNG outputs, what each flag changes, and the errors a user sees for a
//! missing or truncated file. Values are checked, not only ranges: resumed weights
//! against an uninterrupted run, eval's clean error against the model, the attack's
//! units and goal against its report.

mod cli_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cli_support::*;
use sparta::classifier::Classifier;
use sparta::data::{DatasetKind, Split};

fn info(args: &[&str]) -> String {
    let mut all = vec!["info"];
    all.extend(args);
    let out = sparta(&all);
    assert_ok(&out, "info");
    text(&out.stdout)
}

/// `info` builds the model and counts: the paper's ResNet-18/34 totals with and without
/// SPARTA, the small preset, frozen SPARTA excluded from the trained count, `--tensors`.
#[test]
fn info_counts_the_parameters_of_the_built_models() {
    let total = |args: &[&str]| {
        let stdout = info(args);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("total parameters:"))
            .unwrap_or_else(|| panic!("{stdout}"))
            .to_string();
        line.trim_start_matches("total parameters: ")
            .parse::<usize>()
            .unwrap()
    };
    let cifar = ["--dataset", "cifar10"];
    assert_eq!(
        total(&[&["--model", "18", "--act", "relu"][..], &cifar].concat()),
        11_173_962
    );
    assert_eq!(
        total(&[&["--model", "18", "--act", "sparta"][..], &cifar].concat()),
        11_980_558
    );
    assert_eq!(
        total(&[&["--model", "34", "--act", "relu"][..], &cifar].concat()),
        21_282_122
    );
    assert_eq!(
        total(&[&["--model", "34"][..], &cifar].concat()),
        22_088_718
    );
    let fashion = [
        "--model",
        "small",
        "--act",
        "sparta",
        "--dataset",
        "fashion-mnist",
    ];
    assert_eq!(total(&fashion), 396_782);
    let stdout = info(&[
        "--model",
        "small",
        "--act",
        "sparta frozen",
        "--dataset",
        "fashion-mnist",
    ]);
    assert!(
        stdout.contains("trained (frozen SPARTA excluded): 308538"),
        "{stdout}"
    );
    let stdout = info(&[&fashion[..], &["--tensors"]].concat());
    assert!(
        stdout.contains("| layer4.0.sparta.conv4.weight | [129, 128, 1, 1] | 16512 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| bn1.running_var | [16] | 0 |"),
        "{stdout}"
    );
}

/// The error of `model` on the test split in `data` (Fashion-MNIST files), computed
/// here through the library in batches of 10 as the tests' flags ask: what `eval` must
/// report as its clean error.
fn clean_error(model: &Path, data: &Path) -> f64 {
    let mut model = load_model(model);
    let test = DatasetKind::FashionMnist.load(data, Split::Test).unwrap();
    let (mut x, mut wrong) = (Vec::new(), 0);
    let indices: Vec<usize> = (0..test.len()).collect();
    for batch in indices.chunks(10) {
        let labels = test.batch(batch, &mut x);
        let logits = model.logits(&x, [batch.len(), 1, 28, 28]).unwrap();
        wrong += logits
            .chunks(10)
            .zip(&labels)
            .filter(|(row, &l)| {
                let best = (0..10).fold(0, |b, j| if row[j] > row[b] { j } else { b });
                best != l
            })
            .count();
    }
    wrong as f64 / test.len() as f64
}

/// Train one epoch, then ask for two: the second call resumes (4 of its steps, not 8)
/// and ends with the weights of an uninterrupted two-epoch run, bit for bit. A resume
/// that started over would take 8 steps; one that did not load the weights would end
/// elsewhere. Then eval, attack and features on the result, with their values checked.
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
    assert_eq!(
        (&report["steps"], &report["resumed_at_step"]),
        (&4.into(), &serde_json::Value::Null)
    );
    assert_eq!(report["test_images"], 20);
    let model = run.join("model.safetensors");
    let err = report["clean_test_error"].as_f64().unwrap();
    assert_eq!(err, clean_error(&model, &data), "train.json's clean error");
    let epoch_one = report["history"][0].clone();

    let second = sparta(&train_args(d, r, "2"));
    assert_ok(&second, "train to 2 epochs");
    assert!(text(&second.stderr).contains("resuming from"));
    let report = json(&run.join("train.json"));
    assert_eq!(
        (&report["steps"], &report["resumed_at_step"]),
        (&4.into(), &4.into())
    );
    let history = report["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{report}");
    assert_eq!(history[0], epoch_one);

    let straight = data.join("straight");
    assert_ok(
        &sparta(&train_args(d, straight.to_str().unwrap(), "2")),
        "uninterrupted 2 epochs",
    );
    assert_eq!(json(&straight.join("train.json"))["steps"], 8);
    assert!(model_bits(&model) == model_bits(&straight.join("model.safetensors")));

    // eval: the attack's units and goal as reported, the clean error the model's own.
    let m = model.to_str().unwrap();
    let mut eval = vec!["eval"];
    eval.extend(common("fashion-mnist", d, r));
    eval.extend(["--checkpoint", m, "--iterations", "1,3"]);
    assert_ok(&sparta(&eval), "eval");
    let report = json(&run.join("eval.json"));
    assert_eq!(
        report["clean_error"].as_f64().unwrap(),
        clean_error(&model, &data)
    );
    assert_eq!(report["attack"]["epsilon"], 16.0);
    let attacks = report["attacks"].as_array().unwrap();
    assert_eq!(attacks.len(), 2, "{report}");
    for (a, k) in attacks.iter().zip([1, 3]) {
        assert_eq!(a["attack"]["iterations"], k);
        assert_eq!(
            a["attack"]["epsilon"].as_f64().unwrap() as f32,
            16.0f32 / 255.0
        );
        assert_eq!(a["attack"]["step"].as_f64().unwrap() as f32, 1.0f32 / 255.0);
        assert_eq!(a["attack"]["goal"], "targeted");
        assert_eq!(a["loss_mean"].as_array().unwrap().len(), k + 1);
        let (error, success) = (
            a["adversarial_error"].as_f64().unwrap(),
            a["attack_success"].as_f64().unwrap(),
        );
        assert!(success <= error, "a targeted success is an error: {a}");
    }
    assert!(std::fs::read_to_string(run.join("eval.md"))
        .unwrap()
        .contains("targeted PGD-3"));

    // attack: two labelled series, the chart, and per-model rows.
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
    assert_ok(&sparta(&attack), "attack");
    let csv = std::fs::read_to_string(fig.join("attack_loss.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    assert!(
        csv.contains("first,0,") && csv.contains("again,2,"),
        "{csv}"
    );
    let png = std::fs::read(fig.join("attack_loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let rows = json(&fig.join("attack.json"));
    assert_eq!(rows[0]["report"], rows[1]["report"], "the same model twice");
    let mismatched = [&attack[..attack.len() - 4], &["--iterations", "2"]].concat();
    assert_refused(&sparta(&mismatched), "1 --label for 2 --checkpoint");

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
    assert_ok(&sparta(&features), "features");
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
        assert_eq!(s["activation"], "sparta", "{s}");
        for key in ["input", "output"] {
            let v = s[key].as_f64().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{s}");
        }
    }
    let md = std::fs::read_to_string(maps.join("features.md")).unwrap();
    assert!(md.contains("| G1-4.Blast | layer4.0 | sparta |"), "{md}");
    let png = std::fs::read(maps.join("feature_maps.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let image = features.iter().position(|a| *a == "13").unwrap();
    features[image] = "20";
    assert_refused(&sparta(&features), "image 20");

    // Transferred SPARTA: this model's SPARTA weights start a new model and stay fixed.
    let frozen = data.join("frozen");
    let mut args = train_args(d, frozen.to_str().unwrap(), "1");
    let act = args.iter().position(|a| *a == "sparta").unwrap();
    args[act] = "sparta frozen";
    args.extend(["--standard", "--sparta-from", m]);
    let out = sparta(&args);
    assert_ok(&out, "train with --sparta-from");
    assert!(text(&out.stderr).contains("SPARTA weights: 32 tensors"));
    let (source, transferred) = (
        load_model(&model),
        load_model(&frozen.join("model.safetensors")),
    );
    let sparta_of = |m: &sparta::nn::resnet::ResNet<f32>| -> Vec<Vec<f32>> {
        m.params()
            .filter(|(p, _)| p.name.contains(".sparta."))
            .map(|(_, v)| v.to_vec())
            .collect()
    };
    assert_eq!(
        sparta_of(&source),
        sparta_of(&transferred),
        "frozen weights moved"
    );
}

/// Each attack flag changes what it says, seen in eval's numbers: ε = 0 and step 0
/// leave the clean error; a larger untargeted attack raises it, and its success is its
/// error; without a random start the seed no longer matters; restarts and the goal are
/// reported as asked.
#[test]
fn attack_flags_change_the_attack() {
    let data = data_dir("attack-flags");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    let mut train = train_args(d, r, "3");
    train.push("--standard");
    assert_ok(&sparta(&train), "train");
    let model = run.join("model.safetensors");
    let eval = |extra: &[&str], seed: &str| {
        let out_dir = data.join(format!("eval-{}-{seed}", extra.join("_").replace('-', "")));
        let mut args = vec!["eval"];
        args.extend(common("fashion-mnist", d, out_dir.to_str().unwrap()));
        let at = args.iter().position(|a| *a == "3").unwrap();
        args[at] = seed;
        args.extend(["--checkpoint", model.to_str().unwrap(), "--iterations", "4"]);
        args.extend(extra);
        assert_ok(&sparta(&args), &format!("eval {extra:?}"));
        json(&out_dir.join("eval.json"))
    };
    let clean = clean_error(&model, &data);
    let still = eval(&["--epsilon", "0", "--goal", "untargeted"], "3");
    assert_eq!(
        still["attacks"][0]["adversarial_error"].as_f64().unwrap(),
        clean
    );
    let no_step = eval(&["--step", "0", "--no-random-start"], "3");
    assert_eq!(
        no_step["attacks"][0]["adversarial_error"].as_f64().unwrap(),
        clean
    );
    assert_eq!(no_step["attacks"][0]["attack"]["random_start"], false);

    let strong = ["--goal", "untargeted", "--epsilon", "64", "--step", "16"];
    let report = eval(&strong, "3");
    let a = &report["attacks"][0];
    assert_eq!(a["attack"]["goal"], "untargeted");
    assert_eq!(
        a["attack"]["epsilon"].as_f64().unwrap() as f32,
        64.0f32 / 255.0
    );
    let error = a["adversarial_error"].as_f64().unwrap();
    assert!(
        error > clean,
        "untargeted ε = 64/255 raised no error: {clean} → {error}"
    );
    assert_eq!(a["attack_success"].as_f64().unwrap(), error);

    let fixed = [&strong[..], &["--no-random-start"]].concat();
    assert_eq!(eval(&fixed, "3")["attacks"], eval(&fixed, "4")["attacks"]);
    assert_ne!(
        eval(&strong, "4")["attacks"][0]["loss_mean"],
        a["loss_mean"]
    );

    let restarts = eval(&["--restarts", "2"], "3");
    assert_eq!(restarts["attacks"][0]["attack"]["restarts"], 2);
    assert_eq!(restarts["attack"]["restarts"], 2);
}

/// The robustness suites, transfer files and the sanity block through the command line:
/// `eval --suite quick` with Square added reports each attack, the worst case (at least
/// every attack's error) and four checks; `attack --save-adversarial` writes APGD-CE's
/// images with their origin, and `eval --adversarial` on the same model finds the same
/// error; bad suites, budgets, files and combinations are refused with a message.
/// Fails when `eval` leaves the transfer rows out (checked).
#[test]
fn suites_transfer_files_and_the_sanity_block() {
    let data = data_dir("suites");
    let run = data.join("run");
    let (d, r) = (data.to_str().unwrap(), run.to_str().unwrap());
    assert_ok(&sparta(&train_args(d, r, "1")), "train");
    let model = run.join("model.safetensors");
    let m = model.to_str().unwrap();
    let eval = |out: &str, extra: &[&str]| {
        let mut args = vec!["eval"];
        args.extend(common("fashion-mnist", d, out));
        args.extend(["--checkpoint", m]);
        args.extend(extra);
        sparta(&args)
    };
    let quick = data.join("quick");
    let q = quick.to_str().unwrap();
    let flags = [
        "--suite",
        "quick",
        "--apgd-iterations",
        "4",
        "--square-queries",
        "20",
    ];
    assert_ok(&eval(q, &flags), "eval --suite quick");
    let report = json(&quick.join("eval.json"));
    assert_eq!(report["suites"], serde_json::json!(["quick"]));
    let rows = report["attacks"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["APGD-CE-1", "APGD-CE-4", "APGD-T-4", "Square-20"]);
    assert_eq!(rows[2]["attack"]["goal"], "targeted");
    assert_eq!(rows[2]["attack"]["loss"], "dlr");
    assert!(rows[3]["queries_mean"].as_f64().unwrap() <= 20.0);
    let worst = report["worst_case_error"].as_f64().unwrap();
    let clean = report["clean_error"].as_f64().unwrap();
    assert_eq!(clean, clean_error(&model, &data));
    for a in rows {
        assert!(a["adversarial_error"].as_f64().unwrap() <= worst, "{a}");
    }
    let checks = report["sanity"]["checks"].as_array().unwrap();
    let ids: Vec<&str> = checks.iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["a", "b", "c", "d"]);
    assert_eq!(report["unbounded"]["attack"]["epsilon"], 1.0);
    let flagged = report["sanity"]["possible_gradient_masking"]
        .as_bool()
        .unwrap();
    assert_eq!(flagged, checks.iter().any(|c| c["status"] == "failed"));
    let md = std::fs::read_to_string(quick.join("eval.md")).unwrap();
    assert!(
        md.contains("| clean | worst case |") && md.contains("**Sanity: "),
        "{md}"
    );

    // APGD-CE's images of this model, written and read back.
    let file = data.join("adv.safetensors");
    let f = file.to_str().unwrap();
    let fig = data.join("fig");
    let mut attack = vec!["attack"];
    attack.extend(common("fashion-mnist", d, fig.to_str().unwrap()));
    attack.extend([
        "--checkpoint",
        m,
        "--attack",
        "apgd-ce",
        "--iterations",
        "4",
    ]);
    attack.extend(["--save-adversarial", f]);
    assert_ok(&sparta(&attack), "attack --save-adversarial");
    let saved = sparta::attack::transfer::load(&file).unwrap();
    assert_eq!(saved.source.checkpoint, m);
    assert_eq!(saved.source.attack.name(), "APGD-CE-4");
    assert_eq!(saved.shape, [20, 1, 28, 28]);
    let error = json(&fig.join("attack.json"))[0]["report"]["adversarial_error"]
        .as_f64()
        .unwrap();
    let transfer = data.join("transfer");
    let t = transfer.to_str().unwrap();
    assert_ok(
        &eval(t, &["--iterations", "2", "--adversarial", f]),
        "eval --adversarial",
    );
    let report = json(&transfer.join("eval.json"));
    let row = &report["attacks"][1];
    assert!(
        row["name"]
            .as_str()
            .unwrap()
            .starts_with("transfer: APGD-CE-4 from "),
        "{row}"
    );
    assert_eq!(
        row["adversarial_error"].as_f64().unwrap(),
        error,
        "the same model"
    );
    assert_eq!(row["transfer"]["file"], f);

    // Refusals, each with what was wrong.
    // A flag value clap cannot parse exits with its usage status, 2.
    let out = eval(q, &["--suite", "fast"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("paper, standard or quick"));
    assert_refused(
        &eval(q, &["--suite", "standard", "--square-queries", "0"]),
        "queries",
    );
    assert_refused(
        &eval(q, &["--suite", "quick", "--apgd-iterations", "0"]),
        "iterations",
    );
    assert_refused(
        &eval(t, &["--epsilon", "4", "--adversarial", f]),
        "more than ε",
    );
    let mut two = attack.clone();
    two.extend(["--checkpoint", m]);
    assert_refused(&sparta(&two), "one --checkpoint");
    std::fs::write(&file, b"not a safetensors file").unwrap();
    assert_refused(&eval(t, &["--adversarial", f]), f);
}

/// Each training flag changes what it says: the schedules' learning rates per epoch,
/// augmentation off, no test error, another device name.
#[test]
fn training_flags_change_the_run() {
    let data = data_dir("train-flags");
    let d = data.to_str().unwrap();
    let train = |name: &str, extra: &[&str]| {
        let run = data.join(name);
        let mut args = train_args(d, run.to_str().unwrap(), "2");
        args.extend(["--standard"]);
        args.extend(extra);
        let out = sparta(&args);
        assert_ok(&out, name);
        json(&run.join("train.json"))
    };
    let lrs = |report: &serde_json::Value, want: [f64; 2]| {
        let got: Vec<f64> = report["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["lr"].as_f64().unwrap())
            .collect();
        let close = got.iter().zip(want).all(|(g, w)| (g - w).abs() <= 1e-6 * w);
        assert!(
            close && got.len() == 2,
            "learning rates {got:?}, expected {want:?}"
        );
    };
    let step = train("step", &["--schedule", "step", "--milestones", "1"]);
    lrs(&step, [0.05, 0.005]);
    // 4 steps an epoch: the second epoch starts halfway down the linear ramp.
    let linear = train("linear", &["--schedule", "linear"]);
    lrs(&linear, [0.05, 0.025]);
    assert_eq!(step["config"]["augment"], true);
    let plain = train(
        "plain",
        &["--schedule", "step", "--milestones", "1", "--no-augment"],
    );
    assert_eq!(plain["config"]["augment"], false);
    assert_ne!(
        plain["history"], step["history"],
        "--no-augment changed nothing"
    );

    // --no-test needs no test split: without one, training alone succeeds.
    for file in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        std::fs::remove_file(data.join(file)).unwrap();
    }
    let untested = train("untested", &["--no-test"]);
    assert_eq!(untested["clean_test_error"], serde_json::Value::Null);
    assert_eq!(untested["test_images"], 0);
    let run = data.join("tested");
    assert_refused(
        &sparta(&train_args(d, run.to_str().unwrap(), "1")),
        "t10k-images-idx3-ubyte",
    );

    for (device, want) in [("cuda:7", "CUDA"), ("cuda:x", "unknown device \"cuda:x\"")] {
        let run = data.join("device");
        let mut args = train_args(d, run.to_str().unwrap(), "1");
        let at = args.iter().position(|a| *a == "cpu").unwrap();
        args[at] = device;
        if sparta::Gpu::new(7).is_err() || device != "cuda:7" {
            assert_refused(&sparta(&args), want);
        }
    }
}

/// Every data set but Fashion-MNIST (which the other tests use) through the command
/// line, in its published format: CIFAR-10 binary batches, SVHN MAT-files, the
/// Tiny-ImageNet folder. Each trains, and evaluates on its test split.
#[test]
fn every_data_set_trains_and_evaluates() {
    let sets = [
        ("cifar10", cifar_dir("set-cifar", 4, 10), 20, 10),
        ("svhn", svhn_dir("set-svhn", 20, 10), 20, 10),
        (
            "tiny-imagenet",
            tiny_imagenet_dir("set-tiny", 20, 10),
            20,
            10,
        ),
    ];
    for (name, dir, train_images, test_images) in sets {
        let run = dir.join("run");
        let (d, r) = (dir.to_str().unwrap(), run.to_str().unwrap());
        let mut train = vec!["train"];
        train.extend(common(name, d, r));
        train.extend([
            "--model",
            "small",
            "--act",
            "sparta",
            "--epochs",
            "1",
            "--standard",
        ]);
        train.extend(["--lr", "0.05", "--checkpoint-every", "0"]);
        assert_ok(&sparta(&train), &format!("train on {name}"));
        let report = json(&run.join("train.json"));
        assert_eq!(report["train_images"], train_images, "{name}");
        assert_eq!(report["test_images"], test_images, "{name}");
        assert_eq!(report["model"]["dataset"]["name"], name);
        let mut eval = vec!["eval"];
        eval.extend(common(name, d, r));
        let m = run.join("model.safetensors");
        eval.extend(["--checkpoint", m.to_str().unwrap(), "--iterations", "1"]);
        assert_ok(&sparta(&eval), &format!("eval on {name}"));
        let report = json(&run.join("eval.json"));
        assert_eq!(report["images"], test_images, "{name}");
        assert!(report["dataset"].as_str().unwrap().starts_with(name));
    }
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
    let done = saved["global_step"].as_u64().unwrap() as usize;
    assert!(done >= 1, "{saved}");
    assert_eq!(json(&run.join("train.json"))["finished"], false);

    // Rerunning the command with fewer epochs finishes from where it stopped, with the
    // weights of a run that was never stopped.
    let epochs = (done / 4 + 1).to_string();
    let resumed = sparta(&train_args(d, r, &epochs));
    assert_ok(&resumed, "resume");
    assert!(text(&resumed.stderr).contains("resuming from"));
    let report = json(&run.join("train.json"));
    assert_eq!(report["finished"], true);
    assert_eq!(report["resumed_at_step"], done);
    assert_eq!(report["steps"], (done / 4 + 1) * 4 - done);
    assert_eq!(report["history"].as_array().unwrap().len(), done / 4 + 1);
    let straight = data.join("straight");
    assert_ok(
        &sparta(&train_args(d, straight.to_str().unwrap(), &epochs)),
        "uninterrupted",
    );
    assert!(
        model_bits(&run.join("model.safetensors"))
            == model_bits(&straight.join("model.safetensors"))
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
    assert_refused(&out, "train-images-idx3-ubyte");

    let data = data_dir("truncated");
    let images = data.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 100]).unwrap();
    let out = sparta(&train_args(
        data.to_str().unwrap(),
        data.join("run").to_str().unwrap(),
        "1",
    ));
    assert_refused(&out, images.to_str().unwrap());
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
        assert_refused(&out, "CUDA");
        let out = with_device("auto");
        assert_ok(&out, "train --device auto");
        let stderr = text(&out.stderr);
        assert!(stderr.contains("using the CPU"), "{stderr}");
    }
}

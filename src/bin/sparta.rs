//! `sparta`: train, evaluate and attack CIFAR-style ResNets with ReLU or SPARTA.
//!
//! ```text
//! sparta train  --dataset fashion-mnist --model small --act sparta --epochs 2 --out runs/a
//! sparta eval   --checkpoint runs/a/model.safetensors --out runs/a
//! sparta attack --checkpoint runs/relu/model.safetensors --label ReLU \
//!               --checkpoint runs/sparta/model.safetensors --label SPARTA --out runs/fig3
//! sparta info   --model 18 --act G1-4.B2
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use sparta::attack::features::channel_mean;
use sparta::attack::{
    compare_features, evaluate, FeatureReport, FeatureShift, Goal, PgdConfig, RobustnessReport,
};
use sparta::classifier::{InspectActivations, Trainable};
use sparta::data::{Dataset, DatasetKind, Split};
use sparta::nn::device_resnet::DeviceResNet;
use sparta::nn::resnet::{Depth, ResNet, ResNetConfig};
use sparta::optim::LrSchedule;
use sparta::plot::{heatmaps_png, loss_curves_png, CurveSeries, Heatmap};
use sparta::train::checkpoint::write_atomically;
use sparta::train::{train, EpochStats, TrainConfig};
use sparta::{Device, Error, Result};

#[derive(Parser)]
#[command(
    name = "sparta",
    version,
    about = "SPARTA activation: adversarial training and PGD evaluation of CIFAR-style ResNets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a ResNet, standard or adversarial (PGD examples); resumable.
    Train(TrainArgs),
    /// Clean and PGD-10/30/50 error of a trained model.
    Eval(EvalArgs),
    /// PGD loss per iteration (mean ± std) of one or more models: CSV and PNG.
    Attack(CompareArgs),
    /// Feature maps before and after each block's activation, clean vs PGD images: how
    /// much of the attack each activation passes on (JSON, markdown and a PNG).
    Features(FeaturesArgs),
    /// Layer table and parameter count of a model configuration.
    Info(InfoArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DatasetArg {
    Cifar10,
    Svhn,
    TinyImagenet,
    FashionMnist,
}

impl DatasetArg {
    fn kind(self) -> DatasetKind {
        match self {
            DatasetArg::Cifar10 => DatasetKind::Cifar10,
            DatasetArg::Svhn => DatasetKind::Svhn,
            DatasetArg::TinyImagenet => DatasetKind::TinyImagenet,
            DatasetArg::FashionMnist => DatasetKind::FashionMnist,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum GoalArg {
    Targeted,
    Untargeted,
}

/// Flags every subcommand shares.
#[derive(Args, Clone, Debug)]
struct Common {
    /// Data set.
    #[arg(long, value_enum, default_value = "cifar10")]
    dataset: DatasetArg,
    /// Folder of the data set's files (default: where its package or download puts them).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Compute device: `cpu` (the CPU autograd tape), `cuda` (GPU 0: the whole step on
    /// the device), or `auto` (CUDA when a GPU is found, else the CPU with a notice).
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// Seed of weights, shuffles, crops and attack targets/starts.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder for results (JSON + markdown) and checkpoints.
    #[arg(long, default_value = "runs/latest")]
    out: PathBuf,
    /// Use only the first N test images (0: all).
    #[arg(long, default_value_t = 0)]
    test_limit: usize,
    /// Images per batch (SGD steps and attacks).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
}

/// Model architecture flags.
#[derive(Args, Clone, Debug)]
struct ModelArgs {
    /// ResNet depth: 18, 34 or small (1 block per group, widths 16/32/64/128).
    #[arg(long, default_value = "18")]
    model: String,
    /// Activation: `relu`, `sparta` (the paper's placement: last block of every group),
    /// or a placement spec such as `G1-4.B2`, `G4.B2`, `all`; options follow after
    /// spaces: `nodpnet`, `block=B`, `frozen`, `base=NAME` (e.g. `sparta frozen`,
    /// `G4.B2 nodpnet`). The paper's smooth baselines in place of every ReLU: `elu`,
    /// `gelu`, `silu` (`swish`), `softplus`; beside SPARTA with `sparta base=gelu`.
    #[arg(long, default_value = "sparta")]
    act: String,
}

/// Attack flags (the paper's targeted L∞ PGD by default).
#[derive(Args, Clone, Debug)]
struct AttackFlags {
    /// L∞ radius in 1/255 units.
    #[arg(long, default_value_t = 16.0)]
    epsilon: f32,
    /// Step size in 1/255 units.
    #[arg(long, default_value_t = 1.0)]
    step: f32,
    /// Random restarts per sample (the most successful is kept).
    #[arg(long, default_value_t = 1)]
    restarts: usize,
    /// Targeted (target uniform among wrong classes) or untargeted.
    #[arg(long, value_enum, default_value = "targeted")]
    goal: GoalArg,
    /// Start at the clean image instead of a random point of the ε-ball.
    #[arg(long)]
    no_random_start: bool,
}

impl AttackFlags {
    fn config(&self, iterations: usize) -> PgdConfig {
        PgdConfig {
            epsilon: self.epsilon / 255.0,
            step: self.step / 255.0,
            iterations,
            restarts: self.restarts,
            random_start: !self.no_random_start,
            goal: match self.goal {
                GoalArg::Targeted => Goal::Targeted,
                GoalArg::Untargeted => Goal::Untargeted,
            },
        }
    }
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    attack: AttackFlags,
    /// Epochs (the paper's schedule: lr ×0.1 at 30 and 60, over 90 epochs).
    #[arg(long, default_value_t = 90)]
    epochs: usize,
    /// Standard training on clean images instead of adversarial training.
    #[arg(long)]
    standard: bool,
    /// Start the SPARTA layers from another model's checkpoint (its `*.sparta.*`
    /// tensors): the paper's transferred SPARTA, with `frozen` in --act to keep them fixed.
    #[arg(long)]
    sparta_from: Option<PathBuf>,
    /// PGD iterations of the training examples.
    #[arg(long, default_value_t = 10)]
    train_pgd: usize,
    /// Initial learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f32,
    /// Epochs at which the learning rate is multiplied by 0.1 (step schedule).
    #[arg(long, value_delimiter = ',', default_value = "30,60")]
    milestones: Vec<usize>,
    /// Learning-rate schedule: `step` (the paper's: ×0.1 at each of --milestones) or
    /// `linear` (from --lr down to zero over the run, for short runs).
    #[arg(long, value_enum, default_value_t = ScheduleKind::Step)]
    schedule: ScheduleKind,
    /// Use only the first N training images (0: all).
    #[arg(long, default_value_t = 0)]
    train_limit: usize,
    /// Checkpoint every N steps as well as at each epoch end (0: epoch ends only).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Start over even if --out holds a checkpoint of this run.
    #[arg(long)]
    fresh: bool,
    /// No random crop and flip.
    #[arg(long)]
    no_augment: bool,
    /// Skip the clean test error at the end.
    #[arg(long)]
    no_test: bool,
}

/// `--schedule` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ScheduleKind {
    Step,
    Linear,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    attack: AttackFlags,
    /// Model file written by `sparta train` (`<out>/model.safetensors`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// PGD iteration counts to evaluate.
    #[arg(long, value_delimiter = ',', default_value = "10,30,50")]
    iterations: Vec<usize>,
}

/// Models attacked side by side (`attack`, `features`).
#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    attack: AttackFlags,
    /// Model files to attack (repeat); each gets its series on the chart (`attack`) or
    /// its clean and adversarial rows (`features`).
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// Label of each checkpoint, in order (default: its activation spec).
    #[arg(long)]
    label: Vec<String>,
    /// PGD iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
}

impl CompareArgs {
    /// `--label` is given once per `--checkpoint` or not at all.
    fn check_labels(&self) -> Result<()> {
        if self.label.is_empty() || self.label.len() == self.checkpoint.len() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "{} --label for {} --checkpoint",
                self.label.len(),
                self.checkpoint.len()
            )))
        }
    }

    /// Checkpoint `i`'s label: its `--label`, else the model's activation spec.
    fn label(&self, i: usize, model: &ResNet<f32>) -> String {
        self.label
            .get(i)
            .cloned()
            .unwrap_or_else(|| model.config().activation.clone())
    }
}

#[derive(Args)]
struct FeaturesArgs {
    #[command(flatten)]
    compare: CompareArgs,
    /// The test image the figure shows (an index within --test-limit).
    #[arg(long, default_value_t = 0)]
    image: usize,
}

#[derive(Args)]
struct InfoArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Data set (sets input channels and classes).
    #[arg(long, value_enum, default_value = "cifar10")]
    dataset: DatasetArg,
    /// Print every tensor, not only the per-layer totals.
    #[arg(long)]
    tensors: bool,
}

/// Set by Ctrl-C; the training loop checkpoints and returns.
static STOP: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A training or attack run frees and reallocates activation-sized buffers every
    // step; keeping them in the heap spares the page faults (sparta::host_memory).
    sparta::host_memory::keep_freed_host_memory();
    let result = match cli.command {
        Command::Train(a) => run_train(a),
        Command::Eval(a) => run_eval(a),
        Command::Attack(a) => run_attack(a),
        Command::Features(a) => run_features(a),
        Command::Info(a) => run_info(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The model on the device asked for, and the device's name: the host model itself
/// on the CPU, a [`DeviceResNet`] (parameters, activations and optimizer state on the
/// GPU) on CUDA.
/// The device `--device` names.
fn device_of(device: DeviceArg) -> Result<Device> {
    Ok(match device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Auto => Device::detect(),
        DeviceArg::Cuda => Device::from_name("cuda")?,
    })
}

fn on_device(device: DeviceArg, model: ResNet<f32>) -> Result<(Box<dyn Trainable>, String)> {
    let device = device_of(device)?;
    let name = device.to_string();
    Ok(match device {
        Device::Cpu => (Box::new(model), name),
        Device::Cuda(gpu) => (Box::new(DeviceResNet::new(gpu, model)?), name),
    })
}

/// [`on_device`] for `features`, which reads the activations too.
fn inspector_on_device(
    device: DeviceArg,
    model: ResNet<f32>,
) -> Result<Box<dyn InspectActivations>> {
    Ok(match device_of(device)? {
        Device::Cpu => Box::new(model),
        Device::Cuda(gpu) => Box::new(DeviceResNet::new(gpu, model)?),
    })
}

/// `relu`, `sparta` or a spec, to the spec string of [`ResNetConfig`]: a leading
/// `sparta` is the paper's placement (the last block of every group), and options may
/// follow it (`sparta nodpnet`, `sparta frozen`).
fn activation_spec(act: &str) -> String {
    match act.split_once(' ') {
        _ if act == "sparta" => "G1-4.Blast".into(),
        Some(("sparta", options)) => format!("G1-4.Blast {options}"),
        _ => act.into(),
    }
}

fn model_config(args: &ModelArgs, kind: DatasetKind) -> Result<ResNetConfig> {
    let ([channels, _, _], classes) = kind.shape_and_classes();
    let config = match args.model.parse::<Depth>()? {
        Depth::R18 => ResNetConfig::resnet18(channels, classes),
        Depth::R34 => ResNetConfig::resnet34(channels, classes),
        Depth::Small => ResNetConfig::small(channels, classes),
    };
    Ok(config.with_activation(&activation_spec(&args.act)))
}

fn load_split(common: &Common, split: Split, limit: usize) -> Result<Dataset> {
    let kind = common.dataset.kind();
    let dir = common
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(kind.default_dir()));
    let data = kind.load(&dir, split)?;
    Ok(if limit > 0 { data.take(limit) } else { data })
}

fn bar(len: usize, prefix: String) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix} [{elapsed_precise} < {eta_precise}] {wide_bar} {human_pos}/{human_len} img, {per_sec} {msg}",
        )
        .expect("the template is valid")
        .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|e| Error::format(path, e.to_string()))?;
    write_atomically(path, &json)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, text.as_bytes())
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[derive(Serialize)]
struct TrainReport<'a> {
    dataset: &'a str,
    train_images: usize,
    model: &'a ResNetConfig,
    parameters: usize,
    config: &'a TrainConfig,
    history: &'a [EpochStats],
    seconds: f64,
    finished: bool,
    clean_test_error: Option<f64>,
    test_images: usize,
    checkpoint: String,
}

fn run_train(a: TrainArgs) -> Result<ExitCode> {
    let kind = a.common.dataset.kind();
    let data = load_split(&a.common, Split::Train, a.train_limit)?;
    let mconfig = model_config(&a.model, kind)?;
    let mut model = ResNet::<f32>::new(mconfig.clone(), a.common.seed)?;
    if let Some(from) = &a.sparta_from {
        let copied = model.load_sparta_from(from)?;
        eprintln!("SPARTA weights: {copied} tensors from {}", from.display());
    }
    let parameters = model.param_count();
    let (mut model, device) = on_device(a.common.device, model)?;
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.common.batch_size,
        schedule: match a.schedule {
            ScheduleKind::Step => LrSchedule::Step {
                base: a.lr,
                gamma: 0.1,
                milestones: a.milestones.clone(),
            },
            ScheduleKind::Linear => LrSchedule::Linear { base: a.lr },
        },
        adversarial: (!a.standard).then(|| a.attack.config(a.train_pgd)),
        augment: !a.no_augment,
        seed: a.common.seed,
        checkpoint_every: a.checkpoint_every,
    };
    let out = &a.common.out;
    create_dir(out)?;
    let ckpt_dir = out.join("checkpoint");
    if a.fresh && ckpt_dir.exists() {
        std::fs::remove_dir_all(&ckpt_dir).map_err(|e| Error::io(&ckpt_dir, e))?;
    }
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\ninterrupted: finishing this step, writing a checkpoint (Ctrl-C again to quit now)"
        );
    })
    .map_err(|e| Error::Config(format!("cannot install the Ctrl-C handler: {e}")))?;

    let mode = if config.adversarial.is_some() {
        format!("adversarial PGD-{}", a.train_pgd)
    } else {
        "standard".into()
    };
    eprintln!(
        "train: {} ({} images), ResNet-{} act {:?} ({parameters} parameters), {mode}, {} epochs, seed {}, {device}",
        data.name,
        data.len(),
        a.model.model,
        mconfig.activation,
        config.epochs,
        config.seed
    );
    if let Ok(state) = sparta::train::checkpoint::load_state(&ckpt_dir) {
        eprintln!(
            "resuming from {} at epoch {} step {} (--fresh starts over)",
            ckpt_dir.display(),
            state.epoch + 1,
            state.step
        );
    }
    let start = Instant::now();
    let mut current: Option<(usize, ProgressBar)> = None;
    let outcome = train(
        model.as_mut(),
        &data,
        &config,
        Some(&ckpt_dir),
        true,
        &STOP,
        |p| {
            if current.as_ref().map(|(e, _)| *e) != Some(p.epoch) {
                if let Some((_, b)) = current.take() {
                    b.finish();
                }
                let b = bar(data.len(), format!("epoch {}/{}", p.epoch + 1, p.epochs));
                b.set_position((p.running.images - p.batch_images) as u64);
                b.reset_eta();
                current = Some((p.epoch, b));
            }
            if let Some((_, b)) = &current {
                b.inc(p.batch_images as u64);
                b.set_message(format!(
                    "loss {:.4} acc {:.1}% lr {}",
                    p.running.loss(),
                    100.0 * p.running.accuracy(),
                    p.lr
                ));
            }
        },
    )?;
    if let Some((_, b)) = current.take() {
        b.finish();
    }
    let seconds = start.elapsed().as_secs_f64();
    let model_file = out.join("model.safetensors");
    if outcome.interrupted {
        eprintln!(
            "stopped at epoch {} step {}; checkpoint in {} (rerun the same command to resume)",
            outcome.state.epoch + 1,
            outcome.state.step,
            ckpt_dir.display()
        );
    } else {
        model.save(&model_file)?;
    }
    let test = if outcome.interrupted || a.no_test {
        None
    } else {
        let test = load_split(&a.common, Split::Test, a.common.test_limit)?;
        let clean = PgdConfig {
            iterations: 0,
            random_start: false,
            ..PgdConfig::paper(0)
        };
        let b = bar(test.len(), "clean test".into());
        let r = evaluate(
            model.as_mut(),
            &test,
            a.common.batch_size,
            &clean,
            &[0],
            a.common.seed,
            |n| b.inc(n as u64),
        )?;
        b.finish();
        Some((r[0].clean_error, test.len()))
    };
    let report = TrainReport {
        dataset: &data.name,
        train_images: data.len(),
        model: &mconfig,
        parameters,
        config: &config,
        history: &outcome.state.history,
        seconds,
        finished: !outcome.interrupted,
        clean_test_error: test.map(|t| t.0),
        test_images: test.map_or(0, |t| t.1),
        checkpoint: model_file.display().to_string(),
    };
    write_json(&out.join("train.json"), &report)?;
    let mut md = String::from("| epoch | lr | train loss | train acc |\n|---:|---:|---:|---:|\n");
    for h in &outcome.state.history {
        md += &format!(
            "| {} | {} | {:.4} | {:.2}% |\n",
            h.epoch + 1,
            h.lr,
            h.loss,
            100.0 * h.accuracy
        );
    }
    if let Some((err, n)) = test {
        md += &format!("\nclean test error: {:.2}% ({n} images)\n", 100.0 * err);
    }
    write_text(&out.join("train.md"), &md)?;
    print!("{md}");
    eprintln!(
        "wrote {}/train.json, train.md ({seconds:.0} s)",
        out.display()
    );
    Ok(if outcome.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

fn load_model(path: &Path) -> Result<ResNet<f32>> {
    let config = ResNet::<f32>::read_config(path)?;
    let mut model = ResNet::<f32>::new(config, 0)?;
    sparta::classifier::Trainable::load(&mut model, path)?;
    Ok(model)
}

#[derive(Serialize)]
struct EvalReport<'a> {
    checkpoint: String,
    dataset: &'a str,
    model: &'a ResNetConfig,
    seed: u64,
    clean_error: f64,
    attacks: Vec<RobustnessReport>,
}

fn attack_name(c: &PgdConfig) -> String {
    let goal = match c.goal {
        Goal::Targeted => "targeted",
        Goal::Untargeted => "untargeted",
    };
    format!("{goal} PGD-{}", c.iterations)
}

fn run_eval(a: EvalArgs) -> Result<ExitCode> {
    let model = load_model(&a.checkpoint)?;
    let config = model.config().clone();
    let (mut model, _) = on_device(a.common.device, model)?;
    let test = load_split(&a.common, Split::Test, a.common.test_limit)?;
    let mut iterations = a.iterations.clone();
    iterations.insert(0, 0);
    let name = format!(
        "clean + {}",
        a.iterations
            .iter()
            .map(|&k| attack_name(&a.attack.config(k)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let b = bar(test.len(), name);
    let mut reports = evaluate(
        model.as_mut(),
        &test,
        a.common.batch_size,
        &a.attack.config(0),
        &iterations,
        a.common.seed,
        |n| b.inc(n as u64),
    )?;
    b.finish();
    let clean_error = reports[0].clean_error;
    let attacks = reports.split_off(1);
    let out = &a.common.out;
    create_dir(out)?;
    let report = EvalReport {
        checkpoint: a.checkpoint.display().to_string(),
        dataset: &test.name,
        model: &config,
        seed: a.common.seed,
        clean_error,
        attacks,
    };
    write_json(&out.join("eval.json"), &report)?;
    let mut md = format!(
        "{} on {} ({} images), ε = {}/255, step {}/255, seed {}\n\n| attack | error | attack success |\n|---|---:|---:|\n| clean | {:.2}% | |\n",
        report.model.activation,
        test.name,
        test.len(),
        a.attack.epsilon,
        a.attack.step,
        a.common.seed,
        100.0 * clean_error
    );
    for r in &report.attacks {
        md += &format!(
            "| {} | {:.2}% | {:.2}% |\n",
            attack_name(&r.attack),
            100.0 * r.adversarial_error,
            100.0 * r.attack_success
        );
    }
    write_text(&out.join("eval.md"), &md)?;
    print!("{md}");
    Ok(ExitCode::SUCCESS)
}

fn run_attack(a: CompareArgs) -> Result<ExitCode> {
    a.check_labels()?;
    let test = load_split(&a.common, Split::Test, a.common.test_limit)?;
    let config = a.attack.config(a.iterations);
    let mut series = Vec::new();
    let mut reports = Vec::new();
    for (i, path) in a.checkpoint.iter().enumerate() {
        let model = load_model(path)?;
        let label = a.label(i, &model);
        let (mut model, _) = on_device(a.common.device, model)?;
        let b = bar(test.len(), format!("{label}: {}", attack_name(&config)));
        let r = evaluate(
            model.as_mut(),
            &test,
            a.common.batch_size,
            &config,
            &[a.iterations],
            a.common.seed,
            |n| b.inc(n as u64),
        )?
        .remove(0);
        b.finish();
        series.push(CurveSeries {
            label: label.clone(),
            mean: r.loss_mean.clone(),
            std: r.loss_std.clone(),
        });
        reports.push((label, path.display().to_string(), r));
    }
    let out = &a.common.out;
    create_dir(out)?;
    let mut csv = String::from("series,iteration,loss_mean,loss_std\n");
    for s in &series {
        for (k, (m, d)) in s.mean.iter().zip(&s.std).enumerate() {
            csv += &format!("{},{k},{m},{d}\n", s.label);
        }
    }
    write_text(&out.join("attack_loss.csv"), &csv)?;
    let y = match config.goal {
        Goal::Targeted => "cross-entropy to the target",
        Goal::Untargeted => "cross-entropy to the true class",
    };
    let title = format!(
        "{} on {} ({} images): loss mean ± std",
        attack_name(&config),
        test.name,
        test.len()
    );
    loss_curves_png(&out.join("attack_loss.png"), &title, y, &series)?;
    #[derive(Serialize)]
    struct Row<'a> {
        label: &'a str,
        checkpoint: &'a str,
        report: &'a RobustnessReport,
    }
    let rows: Vec<Row> = reports
        .iter()
        .map(|(l, c, r)| Row {
            label: l,
            checkpoint: c,
            report: r,
        })
        .collect();
    write_json(&out.join("attack.json"), &rows)?;
    let mut md = format!(
        "| model | clean error | {} error | loss at 0 | loss at {} |\n|---|---:|---:|---:|---:|\n",
        attack_name(&config),
        a.iterations
    );
    for (l, _, r) in &reports {
        let last = r.loss_mean.len() - 1;
        md += &format!(
            "| {l} | {:.2}% | {:.2}% | {:.3} ± {:.3} | {:.3} ± {:.3} |\n",
            100.0 * r.clean_error,
            100.0 * r.adversarial_error,
            r.loss_mean[0],
            r.loss_std[0],
            r.loss_mean[last],
            r.loss_std[last]
        );
    }
    write_text(&out.join("attack.md"), &md)?;
    print!("{md}");
    eprintln!(
        "wrote {}/attack_loss.csv, attack_loss.png, attack.json, attack.md",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_features(FeaturesArgs { compare: a, image }: FeaturesArgs) -> Result<ExitCode> {
    a.check_labels()?;
    let test = load_split(&a.common, Split::Test, a.common.test_limit)?;
    let config = a.attack.config(a.iterations);
    let attack = attack_name(&config);
    let mut reports = Vec::new();
    for (i, path) in a.checkpoint.iter().enumerate() {
        let model = load_model(path)?;
        let label = a.label(i, &model);
        let mut model = inspector_on_device(a.common.device, model)?;
        let b = bar(test.len(), format!("{label}: {attack}, feature maps"));
        let report = compare_features(
            model.as_mut(),
            &test,
            a.common.batch_size,
            &config,
            a.common.seed,
            image,
            |n| b.inc(n as u64),
        )?;
        b.finish();
        reports.push((label, path.display().to_string(), report));
    }
    let out = &a.common.out;
    create_dir(out)?;
    #[derive(Serialize)]
    struct Row<'a> {
        label: &'a str,
        checkpoint: &'a str,
        attack: &'a str,
        images: usize,
        shifts: &'a [FeatureShift],
    }
    let rows: Vec<Row> = reports
        .iter()
        .map(|(label, checkpoint, r)| Row {
            label,
            checkpoint,
            attack: &attack,
            images: test.len(),
            shifts: &r.shifts,
        })
        .collect();
    write_json(&out.join("features.json"), &rows)?;
    let mut md = format!(
        "{attack} on {} ({} images): relative change of each block's activation input X and output Y\n\n\
         | model | block | activation | ‖ΔX‖/‖X‖ | ‖ΔY‖/‖Y‖ | ratio |\n|---|---|---|---:|---:|---:|\n",
        test.name,
        test.len()
    );
    for (label, _, r) in &reports {
        for s in &r.shifts {
            md += &format!(
                "| {label} | {} | {} | {:.3} | {:.3} | {:.2} |\n",
                s.block,
                if s.sparta { "SPARTA" } else { "base" },
                s.input,
                s.output,
                s.output / s.input
            );
        }
    }
    write_text(&out.join("features.md"), &md)?;
    print!("{md}");
    let title = format!(
        "{} image {}: channel mean of each group's last activation, input X and output Y",
        test.name, image
    );
    let grid = feature_map_rows(&reports, &attack);
    heatmaps_png(&out.join("feature_maps.png"), &title, &grid)?;
    eprintln!(
        "wrote {}/features.json, features.md, feature_maps.png",
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The feature-map figure's rows: per model a clean and an adversarial row; per
/// group-end block the channel mean of X and of Y, each pair of rows on one colour scale.
fn feature_map_rows(
    reports: &[(String, String, FeatureReport)],
    attack: &str,
) -> Vec<(String, Vec<Heatmap>)> {
    let mut grid = Vec::new();
    for (label, _, r) in reports {
        let (mut clean, mut adv) = (Vec::new(), Vec::new());
        for (c, d) in r.clean.iter().zip(&r.adversarial) {
            if !c.last_in_group {
                continue;
            }
            for (name, before, after) in [("X", &c.input, &d.input), ("Y", &c.output, &d.output)] {
                let clean_mean = channel_mean(before, c.shape);
                let adv_mean = channel_mean(after, d.shape);
                let both = || clean_mean.iter().chain(&adv_mean);
                let lo = both().fold(f32::INFINITY, |m, &v| m.min(v));
                let hi = both().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let map = |values: Vec<f32>| Heatmap {
                    title: format!("{} {name} [{lo:.2}, {hi:.2}]", c.block),
                    height: c.shape[2],
                    width: c.shape[3],
                    values,
                    range: (lo, hi),
                };
                clean.push(map(clean_mean));
                adv.push(map(adv_mean));
            }
        }
        grid.push((format!("{label}\nclean"), clean));
        grid.push((format!("{label}\n{attack}"), adv));
    }
    grid
}

fn run_info(a: InfoArgs) -> Result<ExitCode> {
    let config = model_config(&a.model, a.dataset.kind())?;
    let model = ResNet::<f32>::new(config.clone(), 0)?;
    println!(
        "ResNet ({:?}, widths {:?}), {} input channels, {} classes, activation {:?}",
        config.depth, config.widths, config.in_channels, config.classes, config.activation
    );
    let rows = model.summary();
    if a.tensors {
        println!("| tensor | shape | parameters |\n|---|---|---:|");
        for r in &rows {
            println!("| {} | {:?} | {} |", r.name, r.shape, r.params);
        }
    } else {
        // Group tensors by layer: the name without its last component.
        let mut layers: Vec<(String, usize, usize)> = Vec::new();
        for r in &rows {
            let layer = r.name.rsplit_once('.').map_or(r.name.as_str(), |(l, _)| l);
            match layers.iter_mut().find(|(name, _, _)| name == layer) {
                Some((_, params, tensors)) => {
                    *params += r.params;
                    *tensors += 1;
                }
                None => layers.push((layer.to_string(), r.params, 1)),
            }
        }
        println!("| layer | tensors | parameters |\n|---|---:|---:|");
        for (name, params, tensors) in &layers {
            println!("| {name} | {tensors} | {params} |");
        }
    }
    println!("\ntotal parameters: {}", model.param_count());
    if model.trainable_count() != model.param_count() {
        println!(
            "trained (frozen SPARTA excluded): {}",
            model.trainable_count()
        );
    }
    Ok(ExitCode::SUCCESS)
}

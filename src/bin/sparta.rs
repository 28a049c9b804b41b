//! `sparta`: train, evaluate and attack CIFAR-style ResNets with ReLU or SPARTA.
//!
//! The flags are parsed here and handed to [`sparta::experiment`] as jobs; progress
//! bars and notices go to stderr, the markdown reports to stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use sparta::attack::Suite;
use sparta::data::DatasetKind;
use sparta::experiment::attack::{AttackJob, CompareJob};
use sparta::experiment::eval::EvalJob;
use sparta::experiment::features::FeaturesJob;
use sparta::experiment::flags::{AttackFlags, SetupFlags};
use sparta::experiment::train::TrainJob;
use sparta::experiment::{self, model_config, AttackKind, ProgressBars};
use sparta::optim::LrSchedule;
use sparta::train::TrainConfig;
use sparta::Result;

#[derive(Parser)]
#[command(
    name = "sparta",
    version,
    about = "SPARTA activation: adversarial training and robustness evaluation of CIFAR-style ResNets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a ResNet, standard or adversarial (PGD examples); resumable.
    Train(TrainArgs),
    /// Clean error, each attack's error, the worst case over attacks and the
    /// gradient-masking checks of a trained model.
    Eval(EvalArgs),
    /// An attack's loss per iteration (mean ± std) of one or more models: CSV and PNG;
    /// optionally the adversarial images, for transfer attacks.
    Attack(AttackArgs),
    /// Feature maps before and after each block's activation, clean vs PGD images: how
    /// much of the attack each activation passes on (JSON, markdown and a PNG).
    Features(FeaturesArgs),
    /// Layer table and parameter count of a model configuration.
    Info(InfoArgs),
}

/// Model architecture flags.
#[derive(Args, Clone, Debug)]
struct ModelArgs {
    /// ResNet depth: 18, 34 or small (1 block per group, widths 16/32/64/128).
    #[arg(long, default_value = "18")]
    model: String,
    /// Activation: `relu`, `sparta` (the paper's placement: last block of every group),
    /// or a placement spec such as `G1-4.B2`, `G4.B2`, `all`; options follow after
    /// spaces: `nodpnet`, `block=B`, `frozen`, `base=NAME`, `act=NAME` (e.g. `sparta
    /// frozen`, `G4.B2 nodpnet`, `G4.B2 act=gelu`). The smooth baselines in place of
    /// every ReLU: `elu`, `gelu`, `silu` (`swish`), `softplus`; beside SPARTA with
    /// `sparta base=gelu`.
    #[arg(long, default_value = "sparta")]
    act: String,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    common: SetupFlags,
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
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    lr: f32,
    /// Epochs at which the learning rate is multiplied by 0.1 (step schedule).
    #[arg(long, value_delimiter = ',', default_value = "30,60")]
    milestones: Vec<usize>,
    /// `step` (the paper's: ×0.1 at each of --milestones) or `linear` (from --lr down to
    /// zero over the run, for short runs).
    #[arg(long, default_value = "step")]
    schedule: String,
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

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    common: SetupFlags,
    #[command(flatten)]
    attack: AttackFlags,
    /// Model file written by `sparta train` (`<out>/model.safetensors`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// PGD iteration counts of the paper suite.
    #[arg(long, value_delimiter = ',', default_value = "10,30,50")]
    iterations: Vec<usize>,
    /// Suites, comma-separated: `paper` (targeted PGD at --iterations), `quick` (APGD-CE
    /// and APGD-T), `standard` (quick and Square with 5,000 queries).
    #[arg(long, value_delimiter = ',', default_value = "paper")]
    suite: Vec<Suite>,
    /// APGD's iterations in the quick and standard suites.
    #[arg(long, default_value_t = 100)]
    apgd_iterations: usize,
    /// The Square attack's query budget per image: standard's (default 5,000), or
    /// Square added to the other suites.
    #[arg(long)]
    square_queries: Option<usize>,
    /// A file of adversarial images (`sparta attack --save-adversarial`) to evaluate
    /// this model on, as a transfer attack (repeat for several).
    #[arg(long)]
    adversarial: Vec<PathBuf>,
}

#[derive(Args)]
struct AttackArgs {
    #[command(flatten)]
    compare: CompareArgs,
    /// The attack: `pgd` (with the attack flags' goal), `apgd-ce`, `apgd-t` or `square`.
    #[arg(long, default_value = "pgd")]
    attack: AttackKind,
    /// The Square attack's query budget per image.
    #[arg(long, default_value_t = 5000)]
    square_queries: usize,
    /// Write the adversarial images (safetensors, with the checkpoint and the attack in
    /// its metadata) here, for `sparta eval --adversarial`; one --checkpoint only.
    #[arg(long)]
    save_adversarial: Option<PathBuf>,
}

/// Models attacked side by side (`attack`, `features`).
#[derive(Args)]
struct CompareArgs {
    #[command(flatten)]
    common: SetupFlags,
    #[command(flatten)]
    attack: AttackFlags,
    /// Model files to attack (repeat).
    #[arg(long, required = true)]
    checkpoint: Vec<PathBuf>,
    /// Label of each checkpoint, in order (default: its activation spec).
    #[arg(long)]
    label: Vec<String>,
    /// The attack's iterations.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
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
    #[arg(long, default_value = "cifar10")]
    dataset: DatasetKind,
    /// Print every tensor, not only the per-layer totals.
    #[arg(long)]
    tensors: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A training or attack run frees and reallocates activation-sized buffers every
    // step; keeping them in the heap spares the page faults (sparta::host_memory).
    sparta::host_memory::keep_freed_host_memory();
    // The training and attack loops below start the kernels' parallel loops from this
    // thread: as one of the pool's threads it runs a share of each (sparta::threads).
    sparta::threads::join_global_pool();
    match run(cli.command, &mut ProgressBars::default()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a subcommand and prints its markdown report.
fn run(command: Command, bars: &mut ProgressBars) -> Result<ExitCode> {
    let markdown = match command {
        Command::Train(a) => return run_train(a, bars),
        Command::Eval(a) => {
            let job = EvalJob {
                setup: a.common.setup()?,
                checkpoint: a.checkpoint,
                attack: a.attack.spec(),
                iterations: a.iterations,
                suites: a.suite,
                apgd_iterations: a.apgd_iterations,
                square_queries: a.square_queries,
                adversarial: a.adversarial,
            };
            experiment::eval::run(&job, bars)?.markdown()
        }
        Command::Attack(a) => {
            let job = AttackJob {
                compare: compare_job(a.compare)?,
                kind: a.attack,
                square_queries: a.square_queries,
                save_adversarial: a.save_adversarial,
            };
            experiment::attack::run(&job, bars)?.markdown()
        }
        Command::Features(a) => {
            let job = FeaturesJob {
                compare: compare_job(a.compare)?,
                image: a.image,
            };
            experiment::features::run(&job, bars)?.markdown()
        }
        Command::Info(a) => {
            let config = model_config(&a.model.model, &a.model.act, a.dataset)?;
            experiment::info::summary(&config, a.tensors)?
        }
    };
    print!("{markdown}");
    Ok(ExitCode::SUCCESS)
}

fn run_train(a: TrainArgs, bars: &mut ProgressBars) -> Result<ExitCode> {
    let config = TrainConfig {
        epochs: a.epochs,
        batch_size: a.common.batch_size,
        schedule: LrSchedule::named(&a.schedule, a.lr, a.milestones)?,
        adversarial: match a.standard {
            true => None,
            false => Some(a.attack.spec().config(a.train_pgd)?),
        },
        augment: !a.no_augment,
        seed: a.common.seed,
        checkpoint_every: a.checkpoint_every,
    };
    let job = TrainJob {
        model: model_config(&a.model.model, &a.model.act, a.common.dataset)?,
        setup: a.common.setup()?,
        train_limit: a.train_limit,
        test: !a.no_test,
        sparta_from: a.sparta_from,
        config,
        fresh: a.fresh,
    };
    let stop = experiment::train::stop_on_signals()?;
    let report = experiment::train::run(&job, stop, bars)?;
    print!("{}", report.markdown());
    eprintln!("wrote {}/train.json, train.md", job.setup.out.display());
    Ok(if report.finished {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(130)
    })
}

fn compare_job(a: CompareArgs) -> Result<CompareJob> {
    Ok(CompareJob {
        setup: a.common.setup()?,
        checkpoints: a.checkpoint,
        labels: a.label,
        attack: a.attack.spec(),
        iterations: a.iterations,
    })
}

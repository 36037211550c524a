//! `dcx train`: train one network with a progress bar, or reuse its cached checkpoint.

use std::path::Path;

use clap::Args;

use super::progress::BarObserver;
use crate::model::ModelKind;
use crate::model::cache;
use crate::model::optim::OptimizerKind;
use crate::model::train::{Schedule, TrainConfig};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// lenet-300-100, lenet-5 or course-cnn.
    #[arg(long, default_value = "lenet-5")]
    pub model: ModelKind,
    /// Train this experiment's network with its [train] recipe instead (a network the file
    /// defines, say); the same cached checkpoint `dcx compress` uses.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "epochs", "lr", "batch_size", "seed", "optimizer", "constant_lr", "limit", "shift"])]
    pub experiment: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long = "batch", default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// adam or sgd (with momentum 0.9).
    #[arg(long, default_value = "adam")]
    pub optimizer: OptimizerKind,
    /// Keep the learning rate constant instead of cosine decay.
    #[arg(long)]
    pub constant_lr: bool,
    /// Train on only the first N training images.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Train again even if a checkpoint of this recipe is cached.
    #[arg(long)]
    pub retrain: bool,
    /// L1 penalty on the weights: lambda · Σ|w| joins the loss (a recipe of its own in the cache).
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l1: f64,
    /// L2 penalty on the weights: lambda · Σw² joins the loss.
    #[arg(long, default_value_t = 0.0, value_name = "LAMBDA")]
    pub l2: f64,
    /// Data augmentation: move each training image by a random offset of up to this many
    /// pixels left or right and up or down, anew each epoch (0 to 4; a recipe of its own in
    /// the cache).
    #[arg(long, default_value_t = 0, value_name = "PIXELS")]
    pub shift: usize,
}

impl TrainArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optimizer: self.optimizer,
            schedule: if self.constant_lr {
                Schedule::Constant
            } else {
                Schedule::Cosine
            },
            seed: self.seed,
            train_limit: self.limit,
            l1: self.l1,
            l2: self.l2,
            shift: self.shift,
            ..TrainConfig::default()
        }
    }
}

pub fn run(data_dir: Option<&Path>, args: &TrainArgs) -> anyhow::Result<()> {
    let exp = match &args.experiment {
        Some(path) => Some(crate::experiment::Experiment::load(path)?),
        None => None,
    };
    let (arch, cfg) = match &exp {
        Some(exp) => (exp.arch(), exp.train.clone()),
        None => (args.model.arch(), args.config()),
    };
    let model = arch.name.clone();
    // Checked before the data is read, so a typo costs nothing.
    if let Err(e) = cfg.validate() {
        anyhow::bail!(
            "invalid training option (--epochs, --batch, --lr, --limit, --l1, --l2, --shift): {e}"
        );
    }
    let data = super::data::load(data_dir)?;
    let mut observer = BarObserver::new(&model);
    let started = std::time::Instant::now();
    let got = match &exp {
        // The experiment's baseline, a student of its [distill] teacher where it has one.
        Some(exp) => crate::pipeline::baseline::obtain(
            exp,
            &data,
            args.retrain,
            &cache::cache_dir(),
            &mut observer,
        )?,
        None => cache::obtain(
            &arch,
            &cfg,
            &data,
            args.retrain,
            &cache::cache_dir(),
            &mut observer,
        )?,
    };
    observer.finish();
    let accuracy = got.meta.test_accuracy().unwrap_or(0.0) * 100.0;
    if got.reused {
        println!(
            "{}: reused cached checkpoint (test accuracy {accuracy:.2}%; --retrain to train again)",
            model
        );
    } else if !got.meta.complete {
        return Err(super::Interrupted(format!(
            "{}: stopped after {} of {} epochs; the partial weights are in {} (never reused as a finished checkpoint, and removed once this recipe trains to the end)",
            model,
            got.meta.history.len(),
            cfg.epochs,
            got.path.display()
        ))
        .into());
    } else {
        println!(
            "{}: trained {} epochs in {:.1} s, test accuracy {accuracy:.2}%",
            model,
            cfg.epochs,
            started.elapsed().as_secs_f64()
        );
    }
    println!("checkpoint: {}", got.path.display());
    Ok(())
}

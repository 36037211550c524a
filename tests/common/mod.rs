//! Shared test helpers: where the data is.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use std::time::Duration;

use dcx::data::Mnist;
use dcx::experiment::Experiment;
use dcx::model::train::Observer;
use dcx::pipeline::PipelineObserver;
use dcx::tui::controller::Controller;
use dcx::tui::view::Accuracy;

/// The committed fixture: the first 600 training and 200 test images of MNIST.
pub fn fixture() -> Mnist {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
    Mnist::load(&dir).expect("fixture loads")
}

/// Full MNIST from `DCX_DATA`, or `None` after saying why the test is skipped.
pub fn full_mnist(test: &str) -> Option<Mnist> {
    match std::env::var_os("DCX_DATA") {
        Some(dir) => Some(Mnist::load(&PathBuf::from(dir)).expect("DCX_DATA holds MNIST")),
        None => {
            eprintln!("skipping {test}: set DCX_DATA=<folder with the MNIST IDX files> to run it");
            None
        }
    }
}

/// A pipeline observer that reports nothing and never stops.
pub struct Quiet;
impl Observer for Quiet {}
impl PipelineObserver for Quiet {}

/// Pumps the explorer until `done`, failing the test with the status line after ten minutes
/// (a guard against a hang: the fixture's jobs take seconds).
pub fn pump_until(ctl: &mut Controller, what: &str, done: impl Fn(&Controller) -> bool) {
    if let Err(e) = ctl.pump_until(what, Duration::from_secs(600), &|| false, done) {
        panic!("{e:#}; status: {:?}", ctl.app.message());
    }
}

/// Whether the explorer shows the plan's exact test accuracy, measured by its session.
pub fn exact(ctl: &Controller) -> bool {
    matches!(ctl.app.view.accuracy, Accuracy::Exact(_))
        && ctl.session().is_some_and(|s| s.evaluation().is_some())
}

/// A recipe of seconds on the fixture for the plan search (`dcx tune` and the explorer's `a`):
/// two epochs of training, two rounds of pruning with an epoch of masked retraining each, an
/// epoch of fine-tuning.
pub fn tune_recipe() -> Experiment {
    Experiment::parse(
        r#"
name = "tiny"
model = "lenet-300-100"
[train]
epochs = 2
batch_size = 32
lr = 0.002
optimizer = "adam"
schedule = "cosine"
seed = 1
[defaults]
bits = 5
index_bits = 5
[retrain]
rounds = 2
epochs = 1
lr = 0.001
[finetune]
epochs = 1
lr = 0.00001
"#,
        "the test recipe",
    )
    .unwrap()
}

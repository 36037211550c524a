//! Shared test helpers: where the data is.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use dcx::data::Mnist;
use dcx::model::train::Observer;
use dcx::pipeline::PipelineObserver;

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

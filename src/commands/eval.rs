//! `dcx eval FILE.dcz`: test accuracy computed from the compressed file alone.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::format::dcz;
use crate::model::int8::{Calibration, Int8Net};
use crate::model::train;

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub file: PathBuf,
    /// Also run the network in int8 (weights per channel, activations calibrated on training
    /// images) and print its accuracy.
    #[arg(long)]
    pub int8: bool,
    /// With --int8: `minmax`, or a percentile such as `99.99`.
    #[arg(long, default_value = "minmax", requires = "int8")]
    pub calibration: Calibration,
    /// With --int8: training images the activation ranges are calibrated on (the first N).
    #[arg(long, default_value_t = 500, requires = "int8")]
    pub calibration_images: usize,
}

pub fn run(data_dir: Option<&Path>, args: &EvalArgs) -> anyhow::Result<()> {
    if args.int8 && args.calibration_images == 0 {
        anyhow::bail!("--calibration-images must be at least 1");
    }
    let file = dcz::load(&args.file)?;
    let data = super::data::load(data_dir)?;
    let net = file.model.to_net()?;
    let e = train::evaluate(&net, &data.test)?;
    println!(
        "{}: {} from {} bytes: test accuracy {:.2}% ({} / {}), error {:.2}%, loss {:.4}",
        args.file.display(),
        file.model.model,
        file.layout.total(),
        e.accuracy * 100.0,
        e.correct,
        e.total,
        (1.0 - e.accuracy) * 100.0,
        e.loss
    );
    if args.int8 {
        let calib = args.calibration_images.min(data.train.len);
        let int8 = Int8Net::calibrate(
            &net,
            &data.train.images[..calib * 784],
            calib,
            args.calibration,
        )?;
        let correct = int8.correct(&data.test, 1000);
        let accuracy = correct as f64 / e.total.max(1) as f64;
        println!(
            "int8 ({} kernel, activations by {} on {calib} training images): test accuracy \
             {:.2}% ({correct} / {}), {:+.2} points from f32",
            int8.kernel().name(),
            args.calibration.name(),
            accuracy * 100.0,
            e.total,
            (accuracy - e.accuracy) * 100.0
        );
    }
    Ok(())
}

//! `dcx eval FILE.dcz`: test accuracy computed from the compressed file alone.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::format::dcz;
use crate::model::int8::{Calibration, Int8Net, QuantParams};
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
        file.model.arch,
        file.layout.total(),
        e.accuracy * 100.0,
        e.correct,
        e.total,
        (1.0 - e.accuracy) * 100.0,
        e.loss
    );
    if let Some(a) = &file.model.activations {
        println!(
            "  with every layer's input quantized to the file's grids: {}",
            a.describe()
        );
    }
    if args.int8 {
        // A file's own 8-bit grids are the activation quantization it was measured with.
        let stored: Option<Vec<QuantParams>> = file
            .model
            .activations
            .as_ref()
            .and_then(|a| a.grids.iter().map(QuantParams::of_grid).collect());
        let (int8, how) = match stored {
            Some(inputs) => (
                Int8Net::with_inputs(&net, &inputs)?,
                "the file's 8-bit activation grids".to_string(),
            ),
            None => {
                let calib = args.calibration_images.min(data.train.len);
                let int8 = Int8Net::calibrate(
                    &net,
                    &data.train.images[..calib * 784],
                    calib,
                    args.calibration,
                )?;
                let how = format!(
                    "activations by {} on {calib} training images",
                    args.calibration.name()
                );
                (int8, how)
            }
        };
        // The engine codes weights symmetric per output channel (max|w| / 127): a file of
        // symmetric 8-bit per-channel layers is run on its own codes, any other is re-coded.
        let own_codes = file.model.layers.iter().all(|l| {
            l.quantizer == crate::experiment::Quantizer::Symmetric
                && l.bits == 8
                && (l.groups() == l.shape[0] || l.shape[0] == 1)
        });
        let weights = if own_codes {
            "weights: the file's symmetric 8-bit per-channel codes"
        } else {
            "weights re-coded symmetric 8-bit per output channel from the file's values"
        };
        let correct = int8.correct(&data.test, 1000);
        let accuracy = correct as f64 / e.total.max(1) as f64;
        let from = if file.model.activations.is_some() {
            "the file's network"
        } else {
            "f32"
        };
        println!(
            "int8 ({} kernel, {weights}, {how}): test accuracy {:.2}% ({correct} / {}), \
             {:+.2} points from {from}",
            int8.kernel().name(),
            accuracy * 100.0,
            e.total,
            (accuracy - e.accuracy) * 100.0
        );
    }
    Ok(())
}

//! `dcx inspect FILE.dcz`: what is in a compressed file, layer by layer.

use std::path::PathBuf;

use clap::Args;

use crate::compress::encode;
use crate::experiment::Experiment;
use crate::format::dcz;
use crate::model::latency::LatencyReport;
use crate::pipeline::cost::CostReport;
use crate::pipeline::{report, size};

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub file: PathBuf,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let file = dcz::load(&args.file)?;
    // Re-encoding the decoded layers with the file's own code-length limit (from the
    // experiment it embeds) gives the streams it holds, for their statistics; the sizes
    // themselves come from the file's layout.
    let max_code_len = Experiment::parse(&file.model.experiment, "the file's experiment")
        .map_or(24, |e| e.max_code_len);
    let encoded = file
        .model
        .layers
        .iter()
        .map(|l| encode::encode_layer(l, max_code_len))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes = size::size_report(&file.model, &encoded, &file.layout);
    println!(
        "{}: {}, {} bytes, {:.1}x smaller than dense f32 ({} bytes)\n",
        args.file.display(),
        file.model.arch,
        sizes.file_bytes,
        sizes.ratio(),
        sizes.dense_bytes
    );
    print!("{}", report::layer_table(&sizes, None));
    println!(
        "\nInference cost per image (MACs are multiply-adds; `dcx bench infer` times them):\n"
    );
    let cost = CostReport::of(&file.model);
    print!("{}", report::cost_table(&cost));
    // Timing needs no dataset: latency does not depend on what the images show.
    let images = synthetic_images(SPEED_IMAGES);
    let thinned = file.model.thinned_net()?;
    let latency = LatencyReport::measure(file.model.to_net()?, thinned, &images, &[1, 256], 3)?;
    println!(
        "\nInference speed, timed on {SPEED_IMAGES} synthetic images (`dcx bench infer` times the test set and int8 too):\n"
    );
    print!("{}", report::latency_table(&latency));
    Ok(())
}

/// Images `dcx inspect` times each path on.
const SPEED_IMAGES: usize = 512;

/// `n` images of normalised pixel noise, the same every run.
fn synthetic_images(n: usize) -> Vec<f32> {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(1);
    (0..n * 784)
        .map(|_| rng.random_range(-0.5f32..2.8))
        .collect()
}

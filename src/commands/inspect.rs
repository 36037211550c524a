//! `dcx inspect FILE.dcz`: what is in a compressed file, layer by layer.

use std::path::PathBuf;

use clap::Args;

use crate::compress::encode;
use crate::format::dcz;
use crate::pipeline::{report, size};

#[derive(Debug, Args)]
pub struct InspectArgs {
    pub file: PathBuf,
}

pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let file = dcz::load(&args.file)?;
    // Re-encoding the decoded layers gives the stream statistics; the sizes themselves come
    // from the file's own layout.
    let encoded = file
        .model
        .layers
        .iter()
        .map(|l| encode::encode_layer(l, 24))
        .collect::<Result<Vec<_>, _>>()?;
    let sizes = size::size_report(&file.model, &encoded, &file.layout);
    println!(
        "{}: {}, {} bytes, {:.1}x smaller than dense f32 ({} bytes)\n",
        args.file.display(),
        file.model.model,
        sizes.file_bytes,
        sizes.ratio(),
        sizes.dense_bytes
    );
    print!("{}", report::layer_table(&sizes, None));
    Ok(())
}

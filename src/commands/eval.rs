//! `dcx eval FILE.dcz`: test accuracy computed from the compressed file alone.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::format::dcz;
use crate::model::train;

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub file: PathBuf,
}

pub fn run(data_dir: Option<&Path>, args: &EvalArgs) -> anyhow::Result<()> {
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
    Ok(())
}

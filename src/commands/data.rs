//! `dcx data`: where MNIST is, and downloading it.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::data::{self, DataError, FetchOptions, Mnist};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Download the four MNIST files (trying each mirror in turn) and verify their checksums.
    Fetch {
        /// Destination folder (default: --data, else dcx's data folder).
        #[arg(long, value_name = "DIR")]
        dest: Option<PathBuf>,
        /// Base URL of a mirror to try first (repeatable).
        #[arg(long, value_name = "URL")]
        mirror: Vec<String>,
    },
    /// Print which MNIST folder dcx would use, and check it.
    Where,
}

pub fn run(explicit: Option<&Path>, cmd: &DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Fetch { dest, mirror } => {
            let dest = dest
                .clone()
                .or_else(|| explicit.map(Path::to_path_buf))
                .or_else(data::default_data_dir)
                .ok_or_else(|| {
                    anyhow::anyhow!("no data folder on this platform: pass --dest DIR")
                })?;
            let mut opts = FetchOptions::new(dest);
            let mut mirrors = mirror.clone();
            mirrors.append(&mut opts.mirrors);
            opts.mirrors = mirrors;
            print!("{}", data::fetch(&opts)?);
            Ok(())
        }
        DataCommand::Where => {
            let dir = data::locate(explicit)?;
            let m = Mnist::load(&dir)?;
            println!(
                "{}: {} training and {} test images, checksums verified",
                dir.display(),
                m.train.len,
                m.test.len
            );
            Ok(())
        }
    }
}

/// Loads MNIST for a command. When it is nowhere to be found (and no folder was named
/// explicitly) it is downloaded into dcx's data folder first, so a fresh machine needs no
/// separate step; if that fails too, the error says how to use local files.
pub fn load(explicit: Option<&Path>) -> anyhow::Result<Mnist> {
    let dir = match data::locate(explicit) {
        Ok(dir) => dir,
        Err(DataError::NotFound(why)) if explicit.is_none() => {
            let Some(dest) = data::default_data_dir() else {
                anyhow::bail!(why);
            };
            eprintln!("MNIST not found; downloading it to {}", dest.display());
            if let Err(e) = data::fetch(&FetchOptions::new(&dest)) {
                anyhow::bail!("{e}\n\n{why}");
            }
            dest
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Mnist::load(&dir)?)
}

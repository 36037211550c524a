use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = dcx::commands::Cli::parse();
    match dcx::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

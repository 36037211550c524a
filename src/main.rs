use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // glibc otherwise returns big freed blocks to the kernel every step and faults them back in.
    dcx::model::kernels::tune_glibc_malloc();
    let cli = dcx::commands::Cli::parse();
    match dcx::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // glibc otherwise returns big freed blocks to the kernel every step and faults them back in.
    dcx::model::kernels::tune_glibc_malloc();
    // SAFETY: first thing in main, before any thread or Candle op exists. Candle's spin-waiting
    // pool for its own element-wise ops otherwise halves training speed on a busy machine.
    unsafe { dcx::model::kernels::candle_elementwise_on_caller() };
    // Like other Unix tools, end quietly when the reader of our output goes away
    // (`dcx inspect x.dcz | head`) instead of panicking in println!.
    dcx::commands::default_sigpipe();
    // A full disk or `> /dev/full` is an error, not a panic in println!.
    dcx::commands::quiet_stdout_failures();
    let cli = dcx::commands::Cli::parse();
    let ran = match std::panic::catch_unwind(|| dcx::commands::run(cli)) {
        Ok(ran) => ran,
        Err(panic) => match dcx::commands::stdout_failure(panic.as_ref()) {
            Some(why) => {
                let _ = writeln!(std::io::stderr(), "error: {why}");
                return ExitCode::FAILURE;
            }
            None => std::panic::resume_unwind(panic),
        },
    };
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(t) = err.downcast_ref::<dcx::tui::Terminated>() {
                // Not eprintln!: after a hang-up stderr is the closed terminal, and a failed
                // write there must not turn a clean exit into a panic.
                let _ = writeln!(std::io::stderr(), "dcx: {t}");
                return ExitCode::from(t.exit_status());
            }
            eprintln!("error: {}", dcx::commands::error_text(&err));
            ExitCode::from(dcx::commands::exit_status(&err))
        }
    }
}

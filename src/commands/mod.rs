//! The command line: argument types (clap derive) and one module per subcommand.

pub(crate) mod bench;
pub(crate) mod bench_infer;
pub(crate) mod bench_tui;
pub mod compress;
pub mod data;
pub mod eval;
pub(crate) mod inspect;
pub mod lesson;
pub mod plot;
pub mod progress;
pub mod screenshot;
pub mod study;
pub mod train;
pub mod tui;
pub mod tune;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dcx",
    version,
    about = "Deep Compression Explorer: prune, weight-share and Huffman-code MNIST networks"
)]
pub struct Cli {
    /// Folder holding the four MNIST IDX files (default: $DCX_DATA, then the dcx data folder).
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Without a subcommand dcx opens the explorer; these choose what it opens.
    #[command(flatten)]
    pub explore: tui::TuiArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the explorer (what plain `dcx` does).
    Explore(tui::TuiArgs),
    /// Train a network (or reuse the cached checkpoint of the same recipe).
    Train(train::TrainArgs),
    /// Find, download and verify MNIST.
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Run an experiment's whole compression pipeline and write model.dcz and reports.
    Compress(compress::CompressArgs),
    /// Test accuracy computed from a .dcz file alone.
    Eval(eval::EvalArgs),
    /// Per-layer table of what is in a .dcz file.
    Inspect(inspect::InspectArgs),
    /// Search the per-layer plan (keep share, sharing bits, gap width) that makes the smallest
    /// .dcz within an error budget, measured on held-out training images; write it as an
    /// experiment and run it with `dcx compress` (the test set is read only then).
    Tune(tune::TuneArgs),
    /// Figures of an experiment (PNG / SVG) for a report.
    Plot(plot::PlotArgs),
    /// Compare a training-time method with its control over several seeds: lottery-ticket,
    /// prune-schedule, l1, dsd or distill (a table, study.json and, for two, a figure).
    Study(study::StudyArgs),
    /// The explorer's screen as a PNG, without a terminal (for slides and the README).
    Screenshot(screenshot::ScreenshotArgs),
    /// A lesson (lessons/*.toml) beside the live explorer, stepped with keys (n, b, x); with
    /// --check a table of each step's accuracy, size and checks, with --slides one PNG per
    /// step and slides.md (both without a terminal).
    Lesson(lesson::LessonArgs),
    /// Measure speed and print a table.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Train(args)) => train::run(cli.data.as_deref(), &args),
        Some(Command::Data(cmd)) => data::run(cli.data.as_deref(), &cmd),
        Some(Command::Compress(args)) => compress::run(cli.data.as_deref(), &args),
        Some(Command::Eval(args)) => eval::run(cli.data.as_deref(), &args),
        Some(Command::Inspect(args)) => inspect::run(&args),
        Some(Command::Plot(args)) => plot::run(cli.data.as_deref(), &args),
        Some(Command::Tune(args)) => tune::run(cli.data.as_deref(), &args),
        Some(Command::Study(args)) => study::run(cli.data.as_deref(), &args),
        Some(Command::Screenshot(args)) => screenshot::run(cli.data.as_deref(), &args),
        Some(Command::Lesson(args)) => lesson::run(cli.data.as_deref(), &args),
        Some(Command::Bench(cmd)) => bench::run(cli.data.as_deref(), &cmd),
        Some(Command::Explore(args)) => tui::run(cli.data.as_deref(), &args),
        None => tui::run(cli.data.as_deref(), &cli.explore),
    }
}

/// Restores the default action of SIGPIPE (end the process), which Rust's runtime sets to
/// "ignore" so that writes fail instead; dcx's output is for reading, and a reader that went
/// away is no error.
pub fn default_sigpipe() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: std::ffi::c_int, handler: usize) -> usize;
        }
        const SIGPIPE: std::ffi::c_int = 13;
        const SIG_DFL: usize = 0;
        // SAFETY: called first thing in main; SIG_DFL installs no handler code.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

/// The start of the panic message of `println!` when standard output cannot be written.
const STDOUT_FAILED: &str = "failed printing to stdout: ";

/// Makes a failed write to standard output (a full disk, `> /dev/full`) an error instead of a
/// panic: `println!` panics then, so the panic hook stays quiet about that one panic, and
/// [`stdout_failure`] turns it, caught in `main`, into the error message. The unwinding on the
/// way runs every destructor, so temporary output is removed as on any other error.
pub fn quiet_stdout_failures() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if panic_text(info.payload()).is_none_or(|m| !m.starts_with(STDOUT_FAILED)) {
            previous(info);
        }
    }));
}

/// The error a caught panic stands for when it was a failed write to standard output.
pub fn stdout_failure(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    let text = panic_text(payload)?;
    let reason = text.strip_prefix(STDOUT_FAILED)?;
    Some(format!("cannot write the output: {reason}"))
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// An error and its causes on one line, leaving out a cause whose text the message before it
/// already carries (an I/O error wrapped with its path would otherwise print twice).
pub fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// A run stopped by Ctrl-C: nothing final was written, and the process exits with 130 (128 +
/// SIGINT), as shells expect of an interrupted program.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "interrupted: {}", self.0)
    }
}

impl std::error::Error for Interrupted {}

/// The exit status for an error: 130 for an interrupted run, 1 otherwise.
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<Interrupted>().is_some() {
        130
    } else {
        1
    }
}

//! Training progress on the terminal: an indicatif bar fed by the training loop's callbacks,
//! with Ctrl-C turned into a clean stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

use crate::model::train::{EpochStats, Observer, Progress};

pub(crate) struct BarObserver {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    label: String,
}

impl BarObserver {
    /// `label` prefixes the bar (e.g. the model name). Ctrl-C sets the stop flag once; the
    /// handler can be installed only once per process, so later observers share the flag.
    pub fn new(label: &str) -> Self {
        let stop = interrupt_flag();
        stop.store(false, Ordering::SeqCst);
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix} epoch {msg} [{bar:30}] {pos}/{len} batches {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        BarObserver {
            bar,
            stop,
            label: label.to_string(),
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Prints a line above the bar.
    pub(crate) fn println(&self, line: &str) {
        // A hidden bar (output not a terminal) drops println; logs still want the line.
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Observer for BarObserver {
    fn progress(&mut self, p: &Progress) {
        if self.bar.length() != Some(p.batches as u64) {
            self.bar.set_length(p.batches as u64);
        }
        self.bar.set_position(p.batch as u64);
        self.bar.set_message(format!(
            "{}/{} loss {:.4} {:.0} img/s",
            p.epoch + 1,
            p.epochs,
            p.loss,
            p.images_per_sec
        ));
    }

    fn epoch_done(&mut self, s: &EpochStats) {
        self.println(&format!(
            "{} epoch {:>2}: train loss {:.4}  test loss {:.4}  test accuracy {:.2}%  {:.0} img/s  {:.1} s",
            self.label,
            s.epoch,
            s.train_loss,
            s.test_loss,
            s.test_accuracy * 100.0,
            s.images_per_sec,
            s.seconds
        ));
        self.bar.set_position(0);
    }

    fn should_stop(&self) -> bool {
        self.interrupted()
    }
}

fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let handler_flag = flag.clone();
        // If a handler cannot be installed (another one exists), Ctrl-C simply kills the process.
        // The first Ctrl-C asks for a clean stop (after this batch, or at the next stage); a
        // second one stops at once. Outputs are written to temporary names and renamed at the
        // end, so stopping at once leaves no half-written file.
        let _ = ctrlc::set_handler(move || {
            if handler_flag.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: stopping now, nothing written");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: stopping after this step (Ctrl-C again to stop at once)...");
        });
        flag
    })
    .clone()
}

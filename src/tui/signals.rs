//! The signals that would end the explorer with the terminal still in its modes. A thread of
//! its own receives them (a handler itself may do next to nothing) and hands them to the draw
//! loop, which looks between frames and shuts down in order: terminal, then background work,
//! then exit with 128 + the signal's number, as a shell reports a process the signal ended.
//!
//! - SIGTERM, SIGHUP (the terminal was closed), SIGQUIT: what a supervisor, a closing
//!   terminal window and `kill` send.
//! - SIGINT: in raw mode Ctrl-C is a key (`q`'s confirmation applies); a SIGINT can only come
//!   from another process, which cannot answer a confirmation, so it ends the explorer too.
//! - SIGUSR1, SIGUSR2: dcx gives them no meaning, and their default action ends the process.
//!   Ignoring them would turn a `kill -USR1` that would end any other program into nothing
//!   happening; ending as the default would, but cleanly, keeps what the sender asked for.
//!
//! Job control is not an end: SIGTSTP (Ctrl-Z, which in raw mode is a key that sends it, or
//! `kill -TSTP`) gives the terminal back and stops dcx, and SIGCONT (`fg`) takes the terminal
//! again and redraws all of it, whatever stopped dcx (SIGSTOP cannot be caught, so after it
//! the screen and modes are simply put back on SIGCONT).
//!
//! SIGKILL and SIGSTOP cannot be caught; what they leave is bounded by every write going
//! through a temporary name and a rename.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGUSR1, SIGUSR2};

/// The signals the explorer ends on, cleanly.
pub(crate) const ENDING: [i32; 6] = [SIGTERM, SIGHUP, SIGQUIT, SIGINT, SIGUSR1, SIGUSR2];

/// The explorer was ended by a signal, after restoring the terminal and stopping its work.
/// `main` turns it into the exit status 128 + `signal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub signal: i32,
}

impl Terminated {
    /// The shell's convention for a process a signal ended (143 for SIGTERM).
    pub fn exit_status(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

impl fmt::Display for Terminated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = signal_hook::low_level::signal_name(self.signal).unwrap_or("a signal");
        write!(f, "stopped by {name}")
    }
}

impl std::error::Error for Terminated {}

/// The handlers and the thread that watches them, for the life of the process: unregistering
/// would not bring back the default action (the signal would then be ignored), and the
/// explorer is the last thing dcx does.
pub(crate) struct Signals {
    shared: Arc<Shared>,
}

/// What the signal thread hands the draw loop.
#[derive(Default)]
struct Shared {
    /// The ending signal the draw loop has not taken yet, 0 for none.
    received: AtomicUsize,
    /// A SIGTSTP came: give the terminal back and stop.
    suspend: AtomicBool,
    /// A SIGCONT came: take the terminal again and redraw it all.
    continued: AtomicBool,
}

/// How long the draw loop may take to notice a signal: it looks every frame (33 ms), but an
/// export or a screenshot in progress finishes first.
const NOTICE: Duration = Duration::from_secs(2);

impl Signals {
    pub(crate) fn install() -> io::Result<Signals> {
        let shared = Arc::new(Shared::default());
        let mut incoming =
            signal_hook::iterator::Signals::new(ENDING.iter().chain(&[SIGTSTP, SIGCONT]))?;
        let seen = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("dcx-signals".into())
            .spawn(move || watch(&mut incoming, &seen))?;
        Ok(Signals { shared })
    }

    /// The ending signal that came since the last call, if any.
    pub(crate) fn take(&self) -> Option<Terminated> {
        match self.shared.received.swap(0, Ordering::SeqCst) {
            0 => None,
            signal => Some(Terminated {
                signal: signal as i32,
            }),
        }
    }

    /// Whether a SIGTSTP came since the last call.
    pub(crate) fn take_suspend(&self) -> bool {
        self.shared.suspend.swap(false, Ordering::SeqCst)
    }

    /// Whether a SIGCONT came since the last call.
    pub(crate) fn take_continued(&self) -> bool {
        self.shared.continued.swap(false, Ordering::SeqCst)
    }
}

/// Ctrl-Z in raw mode is a key, not the terminal's SIGTSTP: send it as the terminal would, to
/// the whole process group, so a wrapper that started dcx (`cargo run`, a script) stops with it
/// and the shell sees the job stopped. dcx's own handler then gives the terminal back first.
pub(crate) fn suspend_process_group() -> io::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(0),
        nix::sys::signal::Signal::SIGTSTP,
    )
    .map_err(io::Error::from)
}

/// Hands the first signal to the draw loop, then makes sure dcx ends even if that loop never
/// gets to it: crossterm's input wait can spin for ever on a terminal that closed under it,
/// and a terminal whose output is stopped blocks every draw. A second signal means "now".
/// Ending from here skips waiting for the background work; its writes are temporary files
/// and renames, so at worst a hidden temporary is left.
fn watch(incoming: &mut signal_hook::iterator::Signals, shared: &Shared) {
    let received = &shared.received;
    let first = loop {
        match incoming.forever().next() {
            None => return,
            Some(SIGTSTP) => shared.suspend.store(true, Ordering::SeqCst),
            Some(SIGCONT) => shared.continued.store(true, Ordering::SeqCst),
            Some(ending) => break ending,
        }
    };
    received.store(first as usize, Ordering::SeqCst);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let noticed = received.load(Ordering::SeqCst) == 0;
        let limit = if noticed {
            // The draw loop's own limit for stopping the work, and a margin.
            NOTICE + super::STOP_WAIT + Duration::from_secs(2)
        } else {
            NOTICE
        };
        let again = incoming.pending().any(|s| ENDING.contains(&s));
        if again || start.elapsed() > limit {
            let t = Terminated { signal: first };
            super::terminal::restore();
            let _ = writeln!(
                io::stderr(),
                "dcx: {t} (without waiting for the background work)"
            );
            std::process::exit(t.exit_status().into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_is_the_shells_for_a_signal() {
        assert_eq!(Terminated { signal: SIGTERM }.exit_status(), 143);
        assert_eq!(Terminated { signal: SIGHUP }.exit_status(), 129);
        assert_eq!(Terminated { signal: SIGINT }.exit_status(), 130);
        assert_eq!(
            Terminated { signal: SIGTERM }.to_string(),
            "stopped by SIGTERM"
        );
    }
}

//! Entering and leaving the full-screen terminal. Every way out goes through [`restore`]:
//! normal return (the guard's Drop), panic (a hook that restores before the message prints),
//! and Ctrl-C (a key event in raw mode, handled by the app).

use std::io::{self, Stdout};
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

pub(crate) type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal may be in the explorer's modes. The panic hook outlives the guard (it
/// cannot be unset without losing the one before it): without this, it would print escape
/// codes over a terminal already given back, into the message of a later panic.
static CHANGED: AtomicBool = AtomicBool::new(false);

/// Restores the terminal.
pub(crate) struct TerminalGuard {
    /// Never dropped: ratatui's drop shows the cursor again and `eprintln!`s if it cannot,
    /// which panics when stderr is a terminal that was closed, turning an orderly exit into
    /// exit status 101. [`restore`] shows the cursor instead.
    pub terminal: ManuallyDrop<Term>,
}

/// Gives the terminal back as the shell expects it: cooked mode with echo, no mouse
/// reporting, main screen, visible cursor. Safe to call from any way out, any number of times.
/// Errors are ignored: after a hang-up there is no terminal to write to, and the rest of the
/// shutdown must go on regardless.
pub(crate) fn restore() {
    if !CHANGED.swap(false, Ordering::SeqCst) {
        return;
    }
    let _ = disable_raw_mode();
    // One write each, so a terminal that rejects one sequence still gets the others.
    let _ = execute!(io::stdout(), DisableMouseCapture);
    let _ = execute!(io::stdout(), LeaveAlternateScreen);
    let _ = execute!(io::stdout(), Show);
}

impl TerminalGuard {
    pub(crate) fn enter() -> io::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        // Only a panic of the thread that draws ends the explorer. The worker turns a panicking
        // job into a failure on the screen and goes on; restoring for it would leave the
        // explorer drawing over the shell in cooked mode.
        let owner = std::thread::current().id();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().id() == owner {
                restore();
            }
            previous(info);
        }));
        // Set before the first change, so a failure halfway still undoes what was done.
        CHANGED.store(true, Ordering::SeqCst);
        let entered = enable_raw_mode()
            .and_then(|()| execute!(io::stdout(), EnterAlternateScreen, EnableMouseCapture))
            .and_then(|()| Terminal::new(CrosstermBackend::new(io::stdout())));
        match entered {
            Ok(terminal) => Ok(TerminalGuard {
                terminal: ManuallyDrop::new(terminal),
            }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

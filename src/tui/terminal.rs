//! Entering and leaving the full-screen terminal. Every way out goes through [`restore`]:
//! normal return (the guard's Drop), panic (a hook that restores before the message prints),
//! and the terminating signals (`super::signals`: the draw loop between frames, or the signal
//! thread when that loop does not get to it). Ctrl-C is a key in raw mode, handled by the app.

use std::io::{self, IsTerminal, Stdout};
use std::mem::ManuallyDrop;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::Show;
use ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};

pub(crate) type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal may be in the explorer's modes. The panic hook outlives the guard (it
/// cannot be unset without losing the one before it), and a signal's exit restores before the
/// guard drops: without this, either would print escape codes over a terminal already given
/// back, e.g. into the error message of a later panic.
static CHANGED: AtomicBool = AtomicBool::new(false);

/// Whether stdin is the terminal, as it was on entering: crossterm then reads it (else it
/// opens /dev/tty, which only it can poll). Not asked later, since a closed terminal is no
/// longer a terminal to isatty(3).
static STDIN_IS_TERMINAL: AtomicBool = AtomicBool::new(false);

/// Restores the terminal.
pub(crate) struct TerminalGuard {
    /// Never dropped: ratatui's drop shows the cursor again and `eprintln!`s if it cannot,
    /// which panics when stderr is a terminal that was closed (after a SIGHUP), turning a
    /// clean exit into exit status 101. [`restore`] shows the cursor instead.
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

/// Ctrl-Z: gives the terminal back as the shell expects it, stops dcx as SIGTSTP's default
/// action does, and once continued (`fg`) takes the terminal again; the next draw is a whole
/// screen. In a process group without job control (no shell could continue it) the kernel
/// drops the stop, and dcx simply goes on.
pub(crate) fn suspend(guard: &mut TerminalGuard) -> io::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, raise, sigaction};
    restore();
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: the default action is no handler at all, and the handler saved is put back as it
    // was, before anything else can rely on it.
    let saved = unsafe { sigaction(Signal::SIGTSTP, &default) }.map_err(io::Error::from)?;
    // Stops here until SIGCONT.
    let stopped = raise(Signal::SIGTSTP).map_err(io::Error::from);
    // SAFETY: as above.
    unsafe { sigaction(Signal::SIGTSTP, &saved) }.map_err(io::Error::from)?;
    stopped?;
    resume(guard)
}

/// Takes the terminal again after a stop (raw mode, alternate screen, mouse reporting) and
/// forgets what the screen showed, so the next draw writes all of it: the shell has written
/// over it meanwhile, or a stop dcx could not see (SIGSTOP) left the modes to whoever changed
/// them.
pub(crate) fn resume(guard: &mut TerminalGuard) -> io::Result<()> {
    CHANGED.store(true, Ordering::SeqCst);
    enable_raw_mode()?;
    execute!(
        io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        Clear(ClearType::All)
    )?;
    // The last frame is forgotten, so the next draw writes every cell. (ratatui's `clear`
    // would first ask the terminal where its cursor is, and fail if no answer comes.)
    guard.terminal.swap_buffers();
    Ok(())
}

/// What waiting for input found.
pub(crate) enum Input {
    Ready,
    Nothing,
    /// The terminal was closed (a hang-up): there will never be input, nor a screen.
    HungUp,
}

/// Waits up to `timeout` for an input event. poll(2) on the terminal comes first because
/// crossterm's own wait retries a read that fails or returns nothing, for ever: a terminal
/// closed while it waits would keep dcx spinning, deaf to the SIGHUP that came with it.
pub(crate) fn wait_input(timeout: Duration) -> io::Result<Input> {
    let stdin = io::stdin();
    if STDIN_IS_TERMINAL.load(Ordering::SeqCst) {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        let wait = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, wait) {
            // A signal: the caller looks at it before waiting again.
            Err(Errno::EINTR) => return Ok(Input::Nothing),
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        if fds[0].revents().is_some_and(closed) {
            return Ok(Input::HungUp);
        }
        // Even on a timeout: a resize arrives as a signal crossterm turns into an event.
        return Ok(if event::poll(Duration::ZERO)? {
            Input::Ready
        } else {
            Input::Nothing
        });
    }
    Ok(if event::poll(timeout)? {
        Input::Ready
    } else {
        Input::Nothing
    })
}

/// Whether the terminal was closed, for telling a hang-up from another failure to draw.
pub(crate) fn hung_up() -> bool {
    let stdin = io::stdin();
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::empty())];
    STDIN_IS_TERMINAL.load(Ordering::SeqCst)
        && poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(closed)
}

fn closed(revents: PollFlags) -> bool {
    revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
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
        STDIN_IS_TERMINAL.store(io::stdin().is_terminal(), Ordering::SeqCst);
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

//! The explorer TUI: state (`app`), key map (`keys`), what is shown (`view`, built from the
//! explore session by `present`), drawing (`ui`), colours (`theme`), the terminal (`terminal`)
//! and the `controller` that connects them to the background worker and to the plan search
//! (`search`). Events and worker messages go through `App::update`; `ui::draw` only reads the
//! state.

pub mod app;
pub(crate) mod background;
pub mod controller;
pub mod figures;
pub(crate) mod glossary;
pub mod keys;
pub(crate) mod present;
pub mod search;
pub(crate) mod signals;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod view;

use std::time::{Duration, Instant};

use ratatui::crossterm::event;

use controller::{Controller, Setup};
use signal_hook::consts::SIGHUP;
use signals::Signals;
pub use signals::Terminated;
use terminal::{Input, TerminalGuard};
use theme::Colors;

/// Time between polls for input: the screen redraws at up to this rate (30 frames/s).
const FRAME: Duration = Duration::from_millis(33);
/// Redraw at least this often even when nothing reported (elapsed times, ETA).
const IDLE_REDRAW: Duration = Duration::from_millis(250);
/// How long a signal's exit waits for the background work to stop. Jobs stop between batches
/// and figures between files, well within this; past it dcx exits anyway, since whoever sent
/// the signal may follow it with SIGKILL, and every write is a temporary file and a rename,
/// so what is left is at worst a hidden temporary, never a half file under its real name.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(10);

/// Runs the explorer until the user quits, or a terminating signal comes: then it fails with
/// [`Terminated`] once the terminal is restored and the background work stopped. `colors` is
/// decided by the caller, once, so that drawing never consults the environment.
pub fn run(setup: Setup, colors: Colors) -> anyhow::Result<()> {
    // Before the terminal changes, so that no signal finds it changed with nobody to restore.
    let signals = Signals::install()?;
    let mut ctl = Controller::start(setup)?;
    ctl.app.colors = colors;
    let ended = match TerminalGuard::enter() {
        // The guard drops at the end of this arm: the terminal is restored before anything
        // else, so it is back even if whoever signalled follows up with SIGKILL.
        Ok(mut guard) => frames(&mut ctl, &mut guard, &signals),
        Err(e) => Err(e),
    };
    // A hang-up often shows first as a failed draw on the closed terminal: the signal decides,
    // not the error.
    match (ended, signals.take()) {
        (Ok(Some(t)), _) | (_, Some(t)) => {
            stop_within(ctl, STOP_WAIT);
            Err(t.into())
        }
        (Ok(None), None) => {
            drop(ctl);
            // One that came while the work stopped still decides the exit status.
            signals.take().map_or(Ok(()), |t| Err(t.into()))
        }
        // Closed without a SIGHUP reaching dcx (it was not the terminal's controlling
        // process): the same end as a hang-up.
        (Err(_), None) if terminal::hung_up() => {
            stop_within(ctl, STOP_WAIT);
            Err(Terminated { signal: SIGHUP }.into())
        }
        (Err(e), None) => Err(e.into()),
    }
}

/// Draws and handles input until the user quits (`None`) or a signal comes.
fn frames(
    ctl: &mut Controller,
    guard: &mut TerminalGuard,
    signals: &Signals,
) -> std::io::Result<Option<Terminated>> {
    let mut last_draw: Option<Instant> = None;
    loop {
        if let Some(t) = signals.take() {
            return Ok(Some(t));
        }
        if signals.take_suspend() {
            terminal::suspend(guard)?;
            last_draw = None;
        }
        if signals.take_continued() {
            terminal::resume(guard)?;
            last_draw = None;
        }
        ctl.pump();
        if ctl.app.should_quit {
            return Ok(None);
        }
        let stale = last_draw.is_none_or(|t| t.elapsed() >= IDLE_REDRAW);
        if ctl.take_dirty() || stale {
            ctl.draw(&mut guard.terminal)?;
            last_draw = Some(Instant::now());
        }
        match terminal::wait_input(FRAME)? {
            Input::Nothing => {}
            Input::HungUp => return Ok(Some(Terminated { signal: SIGHUP })),
            Input::Ready => {
                // Take every event already waiting (key repeat while scrubbing) before drawing.
                loop {
                    ctl.on_terminal(event::read()?);
                    if ctl.app.should_quit || !event::poll(Duration::ZERO)? {
                        break;
                    }
                }
            }
        }
    }
}

/// Stops the background work (the controller's drop cancels every job and joins the worker,
/// the figure thread and the plan search), waiting at most `limit`.
fn stop_within(ctl: Controller, limit: Duration) {
    let (done, stopped) = std::sync::mpsc::channel();
    let stopper = std::thread::Builder::new()
        .name("dcx-stop".into())
        .spawn(move || {
            drop(ctl);
            let _ = done.send(());
        });
    if stopper.is_ok() {
        let _ = stopped.recv_timeout(limit);
    }
}

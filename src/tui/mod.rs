//! The explorer TUI: state (`app`), key map (`keys`), what is shown (`view`, built from the
//! explore session by `present`), drawing (`ui`), colours (`theme`), the terminal (`terminal`)
//! and the `controller` that connects them to the background worker. Events and worker
//! messages go through `App::update`; `ui::draw` only reads the state.

pub mod app;
pub mod controller;
pub mod figures;
pub mod keys;
pub(crate) mod present;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ratatui::crossterm::event;

use controller::{Controller, Setup};
use keys::Action;
use terminal::TerminalGuard;
use theme::Colors;

/// Time between polls for input: the screen redraws at up to this rate (30 frames/s).
const FRAME: Duration = Duration::from_millis(33);
/// Redraw at least this often even when nothing reported (elapsed times, ETA).
const IDLE_REDRAW: Duration = Duration::from_millis(250);

/// Runs the explorer until the user quits. `interrupted` is set by a Ctrl-C signal that did
/// not arrive as a key (e.g. `kill -INT`); it is handled like the Ctrl-C key. `colors` is
/// decided by the caller, once, so that drawing never consults the environment.
pub fn run(setup: Setup, colors: Colors, interrupted: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut ctl = Controller::start(setup)?;
    ctl.app.colors = colors;
    let mut guard = TerminalGuard::enter()?;
    let mut last_draw: Option<Instant> = None;
    loop {
        ctl.pump();
        if interrupted.swap(false, Ordering::SeqCst) {
            ctl.act(Action::Interrupt);
        }
        if ctl.app.should_quit {
            break;
        }
        let stale = last_draw.is_none_or(|t| t.elapsed() >= IDLE_REDRAW);
        if ctl.take_dirty() || stale {
            ctl.draw(&mut guard.terminal)?;
            last_draw = Some(Instant::now());
        }
        if event::poll(FRAME)? {
            // Take every event already waiting (key repeat while scrubbing) before drawing.
            loop {
                ctl.on_terminal(event::read()?);
                if ctl.app.should_quit || !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
    }
    Ok(())
}

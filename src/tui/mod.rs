//! The explorer TUI: state (`app`), key map (`keys`), what is shown (`view`), drawing (`ui`),
//! colours (`theme`). Events and worker messages go through `App::update`; `ui::draw` only
//! reads the state.

pub mod app;
pub mod keys;
pub mod terminal;
pub mod theme;
pub mod ui;
pub mod view;

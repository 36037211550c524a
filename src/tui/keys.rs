//! The key map: terminal events to actions, in one table so `?` can show exactly what works.

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    /// Scrub the threshold: -1 / +1 steps; `coarse` takes big steps.
    Scrub {
        dir: i8,
        coarse: bool,
    },
    /// Start typing an exact threshold.
    EditThreshold,
    Bits(i8),
    IndexBits(i8),
    CycleInit,
    ToggleApplyAll,
    Retrain,
    Finetune,
    Sweep,
    Undo,
    Redo,
    ResetLayer,
    Export,
    Screenshot,
    ToggleLog,
    ToggleLecture,
    NextCurve,
    FocusNext,
    Help,
    /// Esc / q: leave the current mode, or ask to quit.
    Back,
    /// Ctrl-C: quit now (still asks if work is running).
    Interrupt,
    Char(char),
    Backspace,
    Submit,
    SelectRow(u16),
}

/// One line of the help overlay: keys and what they do.
pub const HELP: &[(&str, &str)] = &[
    ("↑/↓  k/j", "select layer"),
    ("←/→  h/l", "scrub threshold (Shift: big steps)"),
    ("t", "type an exact threshold"),
    ("+/-", "weight-sharing bits"),
    ("[ / ]", "relative-index bits"),
    ("i", "cycle centroid init"),
    ("g", "apply changes to all layers"),
    ("p", "masked retraining (background)"),
    ("f", "centroid fine-tuning (background)"),
    ("s", "sensitivity sweep"),
    ("u / Ctrl-r", "undo / redo"),
    ("r", "reset layer"),
    ("e", "export experiment, model.dcz, report"),
    ("c", "next curve: sensitivity, history, training"),
    ("L", "histogram: linear / log counts"),
    ("z", "lecture mode"),
    ("Tab", "move focus"),
    ("mouse", "click a row; wheel scrubs"),
    ("?", "this help"),
    ("q / Esc", "quit (asks if work is running)"),
];

/// Maps a key in normal mode.
pub fn normal_key(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Action::Interrupt,
        KeyCode::Char('r') if ctrl => Action::Redo,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Left => Action::Scrub {
            dir: -1,
            coarse: shift,
        },
        KeyCode::Right => Action::Scrub {
            dir: 1,
            coarse: shift,
        },
        KeyCode::Char('h') => Action::Scrub {
            dir: -1,
            coarse: false,
        },
        KeyCode::Char('l') => Action::Scrub {
            dir: 1,
            coarse: false,
        },
        KeyCode::Char('H') => Action::Scrub {
            dir: -1,
            coarse: true,
        },
        KeyCode::Char('L') => Action::ToggleLog,
        KeyCode::Char('t') => Action::EditThreshold,
        KeyCode::Char('+') | KeyCode::Char('=') => Action::Bits(1),
        KeyCode::Char('-') | KeyCode::Char('_') => Action::Bits(-1),
        KeyCode::Char(']') => Action::IndexBits(1),
        KeyCode::Char('[') => Action::IndexBits(-1),
        KeyCode::Char('i') => Action::CycleInit,
        KeyCode::Char('g') => Action::ToggleApplyAll,
        KeyCode::Char('p') => Action::Retrain,
        KeyCode::Char('f') => Action::Finetune,
        KeyCode::Char('s') => Action::Sweep,
        KeyCode::Char('u') => Action::Undo,
        KeyCode::Char('r') => Action::ResetLayer,
        KeyCode::Char('e') => Action::Export,
        KeyCode::Char('P') => Action::Screenshot,
        KeyCode::Char('c') => Action::NextCurve,
        KeyCode::Char('z') => Action::ToggleLecture,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::Char('?') => Action::Help,
        KeyCode::Char('q') | KeyCode::Esc => Action::Back,
        _ => return None,
    })
}

/// Maps a key while typing a value: characters, editing, Enter, Esc.
pub fn input_key(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            Some(Action::Interrupt)
        }
        KeyCode::Char(c) => Some(Action::Char(c)),
        KeyCode::Backspace => Some(Action::Backspace),
        KeyCode::Enter => Some(Action::Submit),
        KeyCode::Esc => Some(Action::Back),
        _ => None,
    }
}

/// Wheel scrubs the threshold; a click selects the row under the pointer.
pub fn mouse(event: MouseEvent) -> Option<Action> {
    match event.kind {
        MouseEventKind::ScrollUp => Some(Action::Scrub {
            dir: 1,
            coarse: false,
        }),
        MouseEventKind::ScrollDown => Some(Action::Scrub {
            dir: -1,
            coarse: false,
        }),
        MouseEventKind::Down(_) => Some(Action::SelectRow(event.row)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn arrows_and_vim_keys_agree() {
        let n = |c| normal_key(key(c, KeyModifiers::NONE));
        assert_eq!(n(KeyCode::Up), n(KeyCode::Char('k')));
        assert_eq!(n(KeyCode::Down), n(KeyCode::Char('j')));
        assert_eq!(n(KeyCode::Left), n(KeyCode::Char('h')));
        assert_eq!(n(KeyCode::Right), n(KeyCode::Char('l')));
    }

    #[test]
    fn shift_makes_scrubbing_coarse() {
        assert_eq!(
            normal_key(key(KeyCode::Right, KeyModifiers::SHIFT)),
            Some(Action::Scrub {
                dir: 1,
                coarse: true
            })
        );
        assert_eq!(
            normal_key(key(KeyCode::Left, KeyModifiers::NONE)),
            Some(Action::Scrub {
                dir: -1,
                coarse: false
            })
        );
    }

    #[test]
    fn control_keys() {
        assert_eq!(
            normal_key(key(KeyCode::Char('r'), KeyModifiers::CONTROL)),
            Some(Action::Redo)
        );
        assert_eq!(
            normal_key(key(KeyCode::Char('r'), KeyModifiers::NONE)),
            Some(Action::ResetLayer)
        );
        assert_eq!(
            normal_key(key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Interrupt)
        );
        assert_eq!(
            input_key(key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Interrupt)
        );
    }

    #[test]
    fn typing_mode_takes_characters_literally() {
        assert_eq!(
            input_key(key(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Char('q'))
        );
        assert_eq!(
            input_key(key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Action::Back)
        );
        assert_eq!(
            input_key(key(KeyCode::Enter, KeyModifiers::NONE)),
            Some(Action::Submit)
        );
    }

    #[test]
    fn every_help_line_names_a_mapped_key() {
        assert!(HELP.len() >= 18);
        assert!(normal_key(key(KeyCode::Char('?'), KeyModifiers::NONE)) == Some(Action::Help));
    }
}

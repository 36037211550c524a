//! The key map as data: [`BINDINGS`] is the one table of what each key does where. The key
//! handlers ([`normal_key`], [`input_key`], [`mouse`]), the help overlay and the hint bar are
//! all read from it, so the help cannot promise a key that does nothing or leave one out.

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Up,
    Down,
    /// A page up / down (the help, when it is taller than the screen).
    PageUp,
    PageDown,
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
    CycleQuantizer,
    TogglePerChannel,
    /// Structured pruning: keep ±10% of the layer's output units.
    Units(i8),
    CycleUnitRank,
    /// Magnitude pruning <-> random pruning of the same share of weights.
    TogglePruneMethod,
    ToggleApplyAll,
    Retrain,
    Finetune,
    /// Search the per-layer plan automatically (`dcx tune`'s search) in the background.
    Search,
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
    /// Open (or close) the log of every message the status bar showed.
    Messages,
    /// The list of lessons to open one beside the explorer.
    Lessons,
    /// The open lesson's next (+1) or previous (-1) step.
    LessonStep(i8),
    /// The open lesson's step as it was prepared, undoing what was touched since.
    LessonReset,
    /// Esc / q: leave the current mode, or ask to quit.
    Back,
    /// Ctrl-C: quit now (still asks if work is running).
    Interrupt,
    /// Ctrl-Z: stop as a shell job until `fg`.
    Suspend,
    Char(char),
    Backspace,
    Submit,
    SelectRow(u16),
}

/// Where a binding applies. The help shows one section per context, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    /// The main screen (and the training screen shown before it).
    Main,
    /// The help overlay and the message log (they scroll and close alike).
    Help,
    /// The list of lessons (`o`).
    Picker,
    /// Typing an exact threshold.
    Prompt,
    /// "Quit and discard the running work?"
    QuitQuestion,
}

impl Context {
    pub const ALL: [Context; 5] = [
        Context::Main,
        Context::Help,
        Context::Picker,
        Context::Prompt,
        Context::QuitQuestion,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Context::Main => "main screen",
            Context::Help => "this help and the message log",
            Context::Picker => "list of lessons",
            Context::Prompt => "threshold prompt",
            Context::QuitQuestion => "quit question",
        }
    }

    /// The prompt and the quit question read keys as text ([`input_key`]); the main screen and
    /// the help read them as commands ([`normal_key`]). Contexts that share a handler must not
    /// bind one key to two actions.
    pub(crate) fn takes_text(self) -> bool {
        matches!(self, Context::Prompt | Context::QuitQuestion)
    }
}

/// What sets a binding off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// A key pressed with at least these modifiers. Extra modifiers are ignored (a terminal may
    /// add Shift to `?` or `H`), and where two bindings match, the one naming more modifiers
    /// wins, so Ctrl-r is redo while r resets the layer.
    Key(KeyCode, KeyModifiers),
    /// Any digit; the action ([`Action::Char`]) receives it.
    Digit,
    WheelUp,
    WheelDown,
    /// A mouse button; the action ([`Action::SelectRow`]) receives the screen row.
    Click,
}

/// One line of the help: the keys, the action each sets off, and what to say about them.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    pub context: Context,
    pub triggers: &'static [(Trigger, Action)],
    pub help: &'static str,
}

const fn key(c: char) -> Trigger {
    Trigger::Key(KeyCode::Char(c), KeyModifiers::NONE)
}
const fn code(k: KeyCode) -> Trigger {
    Trigger::Key(k, KeyModifiers::NONE)
}
const fn ctrl(c: char) -> Trigger {
    Trigger::Key(KeyCode::Char(c), KeyModifiers::CONTROL)
}
const fn shift(k: KeyCode) -> Trigger {
    Trigger::Key(k, KeyModifiers::SHIFT)
}

const SCRUB_DOWN: Action = Action::Scrub {
    dir: -1,
    coarse: false,
};
const SCRUB_UP: Action = Action::Scrub {
    dir: 1,
    coarse: false,
};
const SCRUB_DOWN_BIG: Action = Action::Scrub {
    dir: -1,
    coarse: true,
};
const SCRUB_UP_BIG: Action = Action::Scrub {
    dir: 1,
    coarse: true,
};

/// Every binding, in the order the help lists them. The curve names are the chart titles
/// ([`crate::tui::app::CurveTab::title`]); a test holds them to that.
pub const BINDINGS: &[Binding] = &[
    Binding {
        context: Context::Main,
        triggers: &[
            (code(KeyCode::Up), Action::Up),
            (code(KeyCode::Down), Action::Down),
            (key('k'), Action::Up),
            (key('j'), Action::Down),
        ],
        help: "select the layer above / below",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (code(KeyCode::Left), SCRUB_DOWN),
            (code(KeyCode::Right), SCRUB_UP),
            (key('h'), SCRUB_DOWN),
            (key('l'), SCRUB_UP),
        ],
        help: "lower / raise the pruning threshold",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (shift(KeyCode::Left), SCRUB_DOWN_BIG),
            (shift(KeyCode::Right), SCRUB_UP_BIG),
            (key('H'), SCRUB_DOWN_BIG),
        ],
        help: "lower / raise it by 10 steps (H lowers)",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('t'), Action::EditThreshold)],
        help: "type a threshold, a kept % (8%) or a pruned % (92% pruned)",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (key('+'), Action::Bits(1)),
            (key('-'), Action::Bits(-1)),
            (key('='), Action::Bits(1)),
            (key('_'), Action::Bits(-1)),
        ],
        help: "weight-sharing bits up / down",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (key(']'), Action::IndexBits(1)),
            (key('['), Action::IndexBits(-1)),
        ],
        help: "relative-index bits up / down",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('i'), Action::CycleInit)],
        help: "next k-means init (km lin, dens, forgy, ++, opt)",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('Q'), Action::CycleQuantizer)],
        help: "next quantizer: k-means, uniform, symmetric, binary, ternary",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('C'), Action::TogglePerChannel)],
        help: "uniform/binary/ternary grid: per layer / per output channel",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('>'), Action::Units(1)), (key('<'), Action::Units(-1))],
        help: "structured pruning: keep 10% more / fewer filters or neurons",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('U'), Action::CycleUnitRank)],
        help: "units cut first: L1, L2, random, largest, APoZ, mean, BN γ",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('R'), Action::TogglePruneMethod)],
        help: "pruning: by magnitude / at random, same share kept",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('g'), Action::ToggleApplyAll)],
        help: "toggle: changes apply to all layers",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('p'), Action::Retrain), (key('f'), Action::Finetune)],
        help: "masked retraining / centroid fine-tuning (background)",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('a'), Action::Search)],
        help: "search the plan (dcx tune): asks a budget; Esc stops it",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('s'), Action::Sweep)],
        help: "sensitivity sweep",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('u'), Action::Undo), (ctrl('r'), Action::Redo)],
        help: "undo / redo",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('r'), Action::ResetLayer)],
        help: "reset layer",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('e'), Action::Export)],
        help: "export experiment, model.dcz, report",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('P'), Action::Screenshot)],
        help: "save the screen as a PNG (for slides)",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('c'), Action::NextCurve)],
        help: "next chart: sensitivity, accuracy vs compression, training",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('L'), Action::ToggleLog)],
        help: "histogram: linear / log counts",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('z'), Action::ToggleLecture)],
        help: "lecture mode",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('o'), Action::Lessons)],
        help: "open a lesson (lessons/*.toml) beside the explorer",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (key('n'), Action::LessonStep(1)),
            (key('b'), Action::LessonStep(-1)),
            (key('x'), Action::LessonReset),
        ],
        help: "lesson: next / previous step / step as prepared",
    },
    Binding {
        context: Context::Main,
        triggers: &[(code(KeyCode::Tab), Action::FocusNext)],
        help: "move focus",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (Trigger::WheelUp, SCRUB_UP),
            (Trigger::WheelDown, SCRUB_DOWN),
        ],
        help: "raise / lower the threshold",
    },
    Binding {
        context: Context::Main,
        triggers: &[(Trigger::Click, Action::SelectRow(0))],
        help: "select the layer clicked on",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('?'), Action::Help)],
        help: "this help",
    },
    Binding {
        context: Context::Main,
        triggers: &[(key('m'), Action::Messages)],
        help: "message log: every status message, newest last",
    },
    Binding {
        context: Context::Main,
        triggers: &[
            (key('q'), Action::Back),
            (code(KeyCode::Esc), Action::Back),
            (ctrl('c'), Action::Interrupt),
        ],
        help: "quit (asks if work is running); Esc / q stop a search first",
    },
    Binding {
        context: Context::Main,
        triggers: &[(ctrl('z'), Action::Suspend)],
        help: "suspend to the shell (fg comes back)",
    },
    Binding {
        context: Context::Help,
        triggers: &[
            (code(KeyCode::Up), Action::Up),
            (code(KeyCode::Down), Action::Down),
            (key('k'), Action::Up),
            (key('j'), Action::Down),
        ],
        help: "scroll a line",
    },
    Binding {
        context: Context::Help,
        triggers: &[
            (code(KeyCode::PageUp), Action::PageUp),
            (code(KeyCode::PageDown), Action::PageDown),
        ],
        help: "scroll a page",
    },
    Binding {
        context: Context::Help,
        triggers: &[
            (code(KeyCode::Esc), Action::Back),
            (key('q'), Action::Back),
            (key('?'), Action::Help),
            (key('m'), Action::Messages),
        ],
        help: "close the help / the log",
    },
    Binding {
        context: Context::Help,
        triggers: &[(code(KeyCode::Tab), Action::FocusNext)],
        help: "help: keys / glossary of the screen's words and numbers",
    },
    Binding {
        context: Context::Help,
        triggers: &[(ctrl('c'), Action::Interrupt)],
        help: "quit (asks if work is running)",
    },
    Binding {
        context: Context::Picker,
        triggers: &[
            (code(KeyCode::Up), Action::Up),
            (code(KeyCode::Down), Action::Down),
            (key('k'), Action::Up),
            (key('j'), Action::Down),
        ],
        help: "choose a lesson",
    },
    Binding {
        context: Context::Picker,
        triggers: &[(code(KeyCode::Enter), Action::Submit)],
        help: "open it at its first step, its text beside the explorer",
    },
    Binding {
        context: Context::Picker,
        triggers: &[
            (code(KeyCode::Esc), Action::Back),
            (key('q'), Action::Back),
            (key('o'), Action::Lessons),
        ],
        help: "close the list",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[
            (Trigger::Digit, Action::Char('0')),
            (key('.'), Action::Char('.')),
            (key('e'), Action::Char('e')),
            (key('-'), Action::Char('-')),
        ],
        help: "type the threshold (|w| below it is pruned)",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[(code(KeyCode::Backspace), Action::Backspace)],
        help: "delete the last character",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[(code(KeyCode::Enter), Action::Submit)],
        help: "apply",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[(code(KeyCode::Esc), Action::Back)],
        help: "cancel",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[(ctrl('c'), Action::Interrupt)],
        help: "quit (asks if work is running)",
    },
    Binding {
        context: Context::Prompt,
        triggers: &[(ctrl('z'), Action::Suspend)],
        help: "suspend to the shell (fg comes back, the typing kept)",
    },
    Binding {
        context: Context::QuitQuestion,
        triggers: &[
            (key('y'), Action::Char('y')),
            (key('Y'), Action::Char('Y')),
            (ctrl('c'), Action::Interrupt),
        ],
        help: "quit, discarding the running work",
    },
    Binding {
        context: Context::QuitQuestion,
        triggers: &[
            (key('n'), Action::Char('n')),
            (code(KeyCode::Esc), Action::Back),
        ],
        help: "keep working (so does any other key)",
    },
    Binding {
        context: Context::QuitQuestion,
        triggers: &[(ctrl('z'), Action::Suspend)],
        help: "suspend to the shell (fg comes back to this question)",
    },
];

/// The bottom line of the main screen: the most used keys, each with one word.
pub(crate) const HINTS: &[(&[Trigger], &str)] = &[
    (&[key('?')], "help"),
    (&[code(KeyCode::Left), code(KeyCode::Right)], "threshold"),
    (&[key('+'), key('-')], "bits"),
    (&[key('Q')], "quant"),
    (&[key('p')], "retrain"),
    (&[key('f')], "tune"),
    (&[key('e')], "export"),
    // Before quit, so the first to give way on a narrow screen (export stays at 80 columns).
    (&[key('a')], "search"),
    (&[key('q')], "quit"),
];

/// The keys a lesson's panel names, at its foot.
pub(crate) const LESSON_HINTS: &[(&[Trigger], &str)] = &[
    (&[key('n')], "next step"),
    (&[key('b')], "back"),
    (&[key('x')], "step as prepared"),
];

/// Keys the help's frame names, so they can be found without scrolling to them.
pub(crate) const HELP_CLOSE: Trigger = code(KeyCode::Esc);
pub(crate) const HELP_SCROLL: [Trigger; 4] = [
    code(KeyCode::Up),
    code(KeyCode::Down),
    code(KeyCode::PageUp),
    code(KeyCode::PageDown),
];

impl Trigger {
    /// The key as the help writes it.
    pub fn name(self) -> String {
        match self {
            Trigger::Key(code, mods) => format!("{}{}", prefix(mods), code_name(code)),
            Trigger::Digit => "0-9".into(),
            Trigger::WheelUp => "wheel↑".into(),
            Trigger::WheelDown => "wheel↓".into(),
            Trigger::Click => "click".into(),
        }
    }

    fn modifiers(self) -> KeyModifiers {
        match self {
            Trigger::Key(_, m) => m,
            _ => KeyModifiers::NONE,
        }
    }

    fn base_name(self) -> String {
        match self {
            Trigger::Key(code, _) => code_name(code),
            t => t.name(),
        }
    }
}

fn prefix(mods: KeyModifiers) -> String {
    let mut s = String::new();
    for (m, name) in [
        (KeyModifiers::CONTROL, "Ctrl-"),
        (KeyModifiers::ALT, "Alt-"),
        (KeyModifiers::SHIFT, "Shift-"),
    ] {
        if mods.contains(m) {
            s.push_str(name);
        }
    }
    s
}

fn code_name(code: KeyCode) -> String {
    match code {
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::Char(c) => c.to_string(),
        other => other.to_string(),
    }
}

fn is_arrow(name: &str) -> bool {
    matches!(name, "↑" | "↓" | "←" | "→")
}

impl Binding {
    /// The keys as the help's key column shows them: plain keys apart (`q Esc`), keys that
    /// share modifiers under one prefix (`Shift-←/→`), and each key once.
    pub fn label(&self) -> String {
        let mut groups: Vec<(KeyModifiers, Vec<String>)> = Vec::new();
        for &(t, _) in self.triggers {
            let mods = t.modifiers();
            let name = t.base_name();
            match groups.last_mut() {
                Some((m, names)) if *m == mods && mods != KeyModifiers::NONE => {
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
                _ => groups.push((mods, vec![name])),
            }
        }
        let mut words: Vec<String> = Vec::new();
        for (mods, names) in groups {
            let word = format!("{}{}", prefix(mods), names.join("/"));
            if !words.contains(&word) {
                words.push(word);
            }
        }
        words.join(" ")
    }
}

/// Keys of one hint as the hint bar writes them: `←→` for a pair of arrows, `+/-` otherwise.
pub(crate) fn hint_label(keys: &[Trigger]) -> String {
    let names: Vec<String> = keys.iter().map(|t| t.name()).collect();
    let sep = if names.iter().all(|n| is_arrow(n)) {
        ""
    } else {
        "/"
    };
    names.join(sep)
}

/// The hint bar's text in at most `width` columns: hints that do not fit go whole, from the
/// middle of the list, so help (first) and quit (last) stay, and no word is cut.
pub(crate) fn hint_line(width: usize) -> String {
    let mut items: Vec<String> = HINTS
        .iter()
        .map(|(keys, word)| format!("{} {word}", hint_label(keys)))
        .collect();
    let line = |items: &[String]| format!(" {}", items.join("  "));
    while items.len() > 2 && line(&items).chars().count() > width {
        items.remove(items.len() - 2);
    }
    line(&items)
}

/// The foot of a lesson's panel.
pub(crate) fn lesson_hint_line() -> String {
    LESSON_HINTS
        .iter()
        .map(|(keys, word)| format!("{} {word}", hint_label(keys)))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The binding a key sets off among the contexts that share a handler (see
/// [`Context::takes_text`]): the matching key trigger with the most modifiers, else a digit.
fn lookup(takes_text: bool, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let mut best: Option<(u32, Action)> = None;
    let candidates = BINDINGS
        .iter()
        .filter(|b| b.context.takes_text() == takes_text)
        .flat_map(|b| b.triggers);
    for &(trigger, action) in candidates {
        let hit = match trigger {
            Trigger::Key(code, mods) if code == key.code && key.modifiers.contains(mods) => {
                Some((1 + mods.bits().count_ones(), action))
            }
            Trigger::Digit => match key.code {
                KeyCode::Char(c) if c.is_ascii_digit() => Some((0, Action::Char(c))),
                _ => None,
            },
            _ => None,
        };
        if let Some(hit) = hit
            && best.is_none_or(|b| hit.0 > b.0)
        {
            best = Some(hit);
        }
    }
    best.map(|(_, a)| a)
}

/// Maps a key on the main screen and in the help.
pub(crate) fn normal_key(key: KeyEvent) -> Option<Action> {
    lookup(false, key)
}

/// Maps a key while typing a value or answering the quit question. A character that no
/// binding names still arrives as itself: the prompt ignores it, the quit question takes
/// it as "no".
pub(crate) fn input_key(key: KeyEvent) -> Option<Action> {
    lookup(true, key).or(match key.code {
        KeyCode::Char(c) if key.kind != KeyEventKind::Release => Some(Action::Char(c)),
        _ => None,
    })
}

/// The wheel and clicks, the same in every mode.
pub(crate) fn mouse(event: MouseEvent) -> Option<Action> {
    let trigger = match event.kind {
        MouseEventKind::ScrollUp => Trigger::WheelUp,
        MouseEventKind::ScrollDown => Trigger::WheelDown,
        MouseEventKind::Down(_) => Trigger::Click,
        _ => return None,
    };
    BINDINGS
        .iter()
        .flat_map(|b| b.triggers)
        .find(|(t, _)| *t == trigger)
        .map(|&(_, a)| match a {
            Action::SelectRow(_) => Action::SelectRow(event.row),
            a => a,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::CurveTab;
    use ratatui::crossterm::event::{MouseButton, MouseEvent};

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    /// One of each action a user can set off. `all_actions_listed` fails to compile when a
    /// variant is added, as a reminder to add it here.
    const REACHABLE: &[Action] = &[
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        SCRUB_DOWN,
        SCRUB_UP,
        SCRUB_DOWN_BIG,
        SCRUB_UP_BIG,
        Action::EditThreshold,
        Action::Bits(1),
        Action::Bits(-1),
        Action::IndexBits(1),
        Action::IndexBits(-1),
        Action::CycleInit,
        Action::CycleQuantizer,
        Action::TogglePerChannel,
        Action::Units(1),
        Action::Units(-1),
        Action::CycleUnitRank,
        Action::TogglePruneMethod,
        Action::ToggleApplyAll,
        Action::Retrain,
        Action::Finetune,
        Action::Search,
        Action::Sweep,
        Action::Undo,
        Action::Redo,
        Action::ResetLayer,
        Action::Export,
        Action::Screenshot,
        Action::ToggleLog,
        Action::ToggleLecture,
        Action::NextCurve,
        Action::FocusNext,
        Action::Help,
        Action::Messages,
        Action::Lessons,
        Action::LessonStep(1),
        Action::LessonStep(-1),
        Action::LessonReset,
        Action::Back,
        Action::Interrupt,
        Action::Suspend,
        Action::Char('y'),
        Action::Backspace,
        Action::Submit,
        Action::SelectRow(0),
    ];

    #[test]
    fn ctrl_z_suspends_while_typing_and_at_the_quit_question_instead_of_typing_z() {
        let ctrl_z = key(KeyCode::Char('z'), KeyModifiers::CONTROL);
        assert_eq!(input_key(ctrl_z), Some(Action::Suspend));
        assert_eq!(normal_key(ctrl_z), Some(Action::Suspend));
        assert_eq!(
            input_key(key(KeyCode::Char('z'), KeyModifiers::NONE)),
            Some(Action::Char('z'))
        );
    }

    #[test]
    fn all_actions_listed() {
        for a in REACHABLE {
            match a {
                Action::Up
                | Action::Down
                | Action::PageUp
                | Action::PageDown
                | Action::Scrub { .. }
                | Action::EditThreshold
                | Action::Bits(_)
                | Action::IndexBits(_)
                | Action::CycleInit
                | Action::CycleQuantizer
                | Action::TogglePerChannel
                | Action::Units(_)
                | Action::CycleUnitRank
                | Action::TogglePruneMethod
                | Action::ToggleApplyAll
                | Action::Retrain
                | Action::Finetune
                | Action::Search
                | Action::Sweep
                | Action::Undo
                | Action::Redo
                | Action::ResetLayer
                | Action::Export
                | Action::Screenshot
                | Action::ToggleLog
                | Action::ToggleLecture
                | Action::NextCurve
                | Action::FocusNext
                | Action::Help
                | Action::Messages
                | Action::Lessons
                | Action::LessonStep(_)
                | Action::LessonReset
                | Action::Back
                | Action::Interrupt
                | Action::Suspend
                | Action::Char(_)
                | Action::Backspace
                | Action::Submit
                | Action::SelectRow(_) => {}
            }
        }
    }

    /// Actions with a payload the event supplies compare by kind.
    fn same(a: Action, b: Action) -> bool {
        match (a, b) {
            (Action::Char(_), Action::Char(_)) | (Action::SelectRow(_), Action::SelectRow(_)) => {
                true
            }
            _ => a == b,
        }
    }

    #[test]
    fn every_action_has_a_binding() {
        for &a in REACHABLE {
            let bound = BINDINGS
                .iter()
                .flat_map(|b| b.triggers)
                .any(|&(_, b)| same(a, b));
            assert!(bound, "{a:?} has no key");
        }
    }

    /// An event that sets `trigger` off, and the action it should then give.
    fn fire(trigger: Trigger, action: Action, takes_text: bool) -> Option<Action> {
        match trigger {
            Trigger::Key(code, mods) => {
                let k = key(code, mods);
                if takes_text {
                    input_key(k)
                } else {
                    normal_key(k)
                }
            }
            Trigger::Digit => {
                assert_eq!(action, Action::Char('0'));
                assert!(takes_text, "digits are text");
                for d in '0'..='9' {
                    assert_eq!(
                        input_key(key(KeyCode::Char(d), KeyModifiers::NONE)),
                        Some(Action::Char(d))
                    );
                }
                Some(action)
            }
            Trigger::WheelUp | Trigger::WheelDown | Trigger::Click => {
                let kind = match trigger {
                    Trigger::WheelUp => MouseEventKind::ScrollUp,
                    Trigger::WheelDown => MouseEventKind::ScrollDown,
                    _ => MouseEventKind::Down(MouseButton::Left),
                };
                let got = mouse(MouseEvent {
                    kind,
                    column: 3,
                    row: 0,
                    modifiers: KeyModifiers::NONE,
                });
                if let Some(Action::SelectRow(_)) = got {
                    let at_7 = mouse(MouseEvent {
                        kind,
                        column: 3,
                        row: 7,
                        modifiers: KeyModifiers::NONE,
                    });
                    assert_eq!(at_7, Some(Action::SelectRow(7)));
                }
                got
            }
        }
    }

    #[test]
    fn the_handlers_do_what_the_table_says() {
        for b in BINDINGS {
            for &(trigger, action) in b.triggers {
                let got = fire(trigger, action, b.context.takes_text());
                assert_eq!(got, Some(action), "{} in {:?}", trigger.name(), b.context);
            }
        }
    }

    #[test]
    fn no_key_means_two_things_where_one_handler_reads_it() {
        let all: Vec<(Context, Trigger, Action)> = BINDINGS
            .iter()
            .flat_map(|b| b.triggers.iter().map(|&(t, a)| (b.context, t, a)))
            .collect();
        for &(c1, t1, a1) in &all {
            for &(c2, t2, a2) in &all {
                if t1 == t2 && c1.takes_text() == c2.takes_text() {
                    assert_eq!(
                        a1,
                        a2,
                        "{} is {a1:?} in {c1:?}, {a2:?} in {c2:?}",
                        t1.name()
                    );
                }
            }
        }
    }

    #[test]
    fn every_context_has_help_and_every_binding_a_text() {
        for c in Context::ALL {
            assert!(BINDINGS.iter().any(|b| b.context == c), "{c:?}");
        }
        for b in BINDINGS {
            assert!(!b.triggers.is_empty() && !b.help.is_empty(), "{b:?}");
        }
    }

    #[test]
    fn the_curve_key_names_the_charts_as_their_titles_do() {
        let c = BINDINGS
            .iter()
            .find(|b| b.triggers.iter().any(|&(_, a)| a == Action::NextCurve))
            .unwrap();
        for tab in [CurveTab::Sensitivity, CurveTab::History, CurveTab::Training] {
            assert!(
                c.help.contains(tab.title()),
                "{} lacks {}",
                c.help,
                tab.title()
            );
        }
    }

    #[test]
    fn hints_name_keys_the_main_screen_binds() {
        for (keys, word) in HINTS {
            for &t in *keys {
                let bound = BINDINGS
                    .iter()
                    .filter(|b| b.context == Context::Main)
                    .any(|b| b.triggers.iter().any(|&(bt, _)| bt == t));
                assert!(bound, "hint '{word}': {} is not bound", t.name());
            }
        }
        assert!(hint_line(200).starts_with(" ? help  ←→ threshold  +/- bits"));
        assert!(hint_line(200).ends_with("e export  a search  q quit"));
        assert!(
            hint_line(80).ends_with("e export  q quit"),
            "{}",
            hint_line(80)
        );
        let narrow = hint_line(60);
        assert!(narrow.chars().count() <= 60, "{narrow}");
        assert!(
            narrow.starts_with(" ? help") && narrow.ends_with("q quit"),
            "{narrow}"
        );
    }

    #[test]
    fn the_help_frame_names_keys_the_help_binds() {
        let in_help = |t: Trigger| {
            BINDINGS
                .iter()
                .filter(|b| b.context == Context::Help)
                .flat_map(|b| b.triggers)
                .find(|&&(bt, _)| bt == t)
                .map(|&(_, a)| a)
        };
        assert_eq!(in_help(HELP_CLOSE), Some(Action::Back));
        for t in HELP_SCROLL {
            assert!(in_help(t).is_some(), "{}", t.name());
        }
    }

    #[test]
    fn labels() {
        let label = |a: Action| {
            BINDINGS
                .iter()
                .find(|b| b.context == Context::Main && b.triggers.iter().any(|&(_, x)| x == a))
                .unwrap()
                .label()
        };
        assert_eq!(label(Action::Up), "↑ ↓ k j");
        assert_eq!(label(SCRUB_UP_BIG), "Shift-←/→ H");
        assert_eq!(label(Action::Redo), "u Ctrl-r");
        assert_eq!(label(Action::Interrupt), "q Esc Ctrl-c");
        assert_eq!(label(Action::Finetune), "p f");
        assert_eq!(label(Action::SelectRow(0)), "click");
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
            Some(SCRUB_UP_BIG)
        );
        assert_eq!(
            normal_key(key(KeyCode::Left, KeyModifiers::NONE)),
            Some(SCRUB_DOWN)
        );
        // Terminals differ in whether they report Shift with an upper-case letter.
        assert_eq!(
            normal_key(key(KeyCode::Char('H'), KeyModifiers::SHIFT)),
            Some(SCRUB_DOWN_BIG)
        );
        assert_eq!(
            normal_key(key(KeyCode::Char('H'), KeyModifiers::NONE)),
            Some(SCRUB_DOWN_BIG)
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
        // Ctrl-z suspends; z alone is lecture mode.
        assert_eq!(
            normal_key(key(KeyCode::Char('z'), KeyModifiers::CONTROL)),
            Some(Action::Suspend)
        );
        assert_eq!(
            normal_key(key(KeyCode::Char('z'), KeyModifiers::NONE)),
            Some(Action::ToggleLecture)
        );
        // Modifiers no binding names do not stop a key (as before the table).
        assert_eq!(
            normal_key(key(KeyCode::Char('u'), KeyModifiers::CONTROL)),
            Some(Action::Undo)
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
        assert_eq!(input_key(key(KeyCode::Tab, KeyModifiers::NONE)), None);
    }

    #[test]
    fn releases_do_nothing() {
        let mut k = key(KeyCode::Char('q'), KeyModifiers::NONE);
        k.kind = KeyEventKind::Release;
        assert_eq!(normal_key(k), None);
        assert_eq!(input_key(k), None);
    }
}

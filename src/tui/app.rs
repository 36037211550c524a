//! UI state and its update function. `App::update` turns an action into state changes and a
//! list of effects for the controller (which owns the explore session and the worker); it
//! never computes results itself, so it is cheap, synchronous and unit-testable.

use super::keys::Action;
use super::theme::Colors;
use super::view::{LessonChoice, LessonPanel, TrainingView, ViewModel};
use crate::analysis::tune::Budget;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a message stays in the status bar (the log, `m`, keeps every one).
pub const MESSAGE_SHOWN: Duration = Duration::from_secs(12);
/// Messages the log keeps (the oldest go first).
const MESSAGE_LOG_LEN: usize = 500;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Layers,
    Histogram,
    Curves,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveTab {
    Sensitivity,
    History,
    Training,
}

impl CurveTab {
    fn next(self) -> Self {
        match self {
            CurveTab::Sensitivity => CurveTab::History,
            CurveTab::History => CurveTab::Training,
            CurveTab::Training => CurveTab::Sensitivity,
        }
    }
    pub(crate) fn title(self) -> &'static str {
        match self {
            CurveTab::Sensitivity => "sensitivity",
            CurveTab::History => "accuracy vs compression",
            CurveTab::Training => "training",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Help,
    /// The message log.
    Messages,
    /// Typing an exact threshold for the selected layer.
    EditThreshold(String),
    /// Typing the plan search's budget before it starts.
    EditBudget(String),
    /// Background work is running; quitting would discard it.
    ConfirmQuit,
    /// The list of lessons (`App::lesson_choices`), this one highlighted.
    Lessons(usize),
}

/// What the controller must do after an update.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Move the selected layer's threshold by `steps` scrub steps.
    ScrubThreshold {
        layer: usize,
        steps: i32,
    },
    /// Keep this fraction of the layer's weights (the largest by magnitude).
    SetKeep {
        layer: usize,
        keep: f32,
    },
    SetThreshold {
        layer: usize,
        value: f32,
    },
    Bits {
        layer: usize,
        delta: i8,
    },
    IndexBits {
        layer: usize,
        delta: i8,
    },
    CycleInit {
        layer: usize,
    },
    CycleQuantizer {
        layer: usize,
    },
    TogglePerChannel {
        layer: usize,
    },
    Units {
        layer: usize,
        delta: i8,
    },
    CycleUnitRank {
        layer: usize,
    },
    TogglePruneMethod {
        layer: usize,
    },
    ResetLayer {
        layer: usize,
    },
    Undo,
    Redo,
    Retrain,
    Finetune,
    /// Start the plan search (`dcx tune`'s) from the current plan and recipe, within this
    /// budget (`None`: the last one, at first 0.15 points below the baseline).
    Search(Option<Budget>),
    /// Stop the running plan search; it writes nothing.
    StopSearch,
    Sweep,
    Export,
    Screenshot,
    /// Find the lessons to offer (`App::lesson_choices`).
    ListLessons,
    /// Open this one of `App::lesson_choices`.
    OpenLesson(usize),
    LessonStep(i8),
    LessonReset,
    /// Ctrl-Z: stop as a shell job, the terminal given back until `fg`.
    Suspend,
    Quit,
}

pub struct App {
    pub view: ViewModel,
    /// Set while the baseline trains (first start): the training screen replaces the explorer.
    pub training: Option<TrainingView>,
    pub selected: usize,
    pub focus: Focus,
    pub mode: Mode,
    pub curve_tab: CurveTab,
    pub log_counts: bool,
    pub lecture: bool,
    /// Colour or none, chosen once by whoever opens the screen (NO_COLOR); drawing reads it
    /// from here rather than from the environment.
    pub colors: Colors,
    /// Changes apply to every layer, not just the selected one.
    pub apply_all: bool,
    /// Every one-line message for the status bar (export path, errors) and when it came,
    /// newest last: the bar shows the newest for [`MESSAGE_SHOWN`], the log (`m`) all.
    pub message_log: VecDeque<(Instant, String)>,
    /// The exact accuracy and file bytes before the last change that moved them (projector
    /// mode shows what they were).
    pub before_change: Option<(f64, u64)>,
    /// Screen row of the first layer-table data row (for mouse clicks), set by drawing.
    pub table_top: std::cell::Cell<u16>,
    /// The layers the table shows when it scrolls: (first, how many), set by drawing.
    pub table_window: std::cell::Cell<(usize, usize)>,
    /// First help line shown when the help is taller than the screen.
    pub help_scroll: u16,
    /// The help shows its glossary page rather than the keys.
    pub help_glossary: bool,
    /// Help lines that fit on the screen and the largest useful `help_scroll`, set by drawing:
    /// only drawing knows the screen, and scrolling must stop where the text ends.
    pub help_page: std::cell::Cell<(u16, u16)>,
    /// The open lesson's panel, shown beside the explorer.
    pub lesson: Option<LessonPanel>,
    /// The lessons the list (`o`) offers.
    pub lesson_choices: Vec<LessonChoice>,
    pub should_quit: bool,
}

impl App {
    pub fn new(view: ViewModel) -> App {
        App {
            view,
            training: None,
            selected: 0,
            focus: Focus::Layers,
            mode: Mode::Normal,
            curve_tab: CurveTab::Sensitivity,
            log_counts: false,
            lecture: false,
            colors: Colors::default(),
            apply_all: false,
            message_log: VecDeque::new(),
            before_change: None,
            table_top: std::cell::Cell::new(0),
            table_window: std::cell::Cell::new((0, usize::MAX)),
            help_scroll: 0,
            help_glossary: false,
            help_page: std::cell::Cell::new((0, 0)),
            lesson: None,
            lesson_choices: Vec::new(),
            should_quit: false,
        }
    }

    /// Shows `text` in the status bar and keeps it in the message log.
    pub fn say(&mut self, text: String) {
        let now = Instant::now();
        if self.message_log.len() == MESSAGE_LOG_LEN {
            self.message_log.pop_front();
        }
        self.message_log.push_back((now, text));
    }

    /// The latest message, however old.
    pub fn message(&self) -> Option<&str> {
        self.message_log.back().map(|(_, m)| m.as_str())
    }

    /// The message the status bar shows at `now`: the latest, until it is
    /// [`MESSAGE_SHOWN`] old.
    pub fn current_message(&self, now: Instant) -> Option<&str> {
        self.message_log
            .back()
            .filter(|(at, _)| now.saturating_duration_since(*at) < MESSAGE_SHOWN)
            .map(|(_, m)| m.as_str())
    }

    fn layers(&self) -> Vec<usize> {
        if self.apply_all {
            (0..self.view.layers.len()).collect()
        } else {
            vec![self.selected]
        }
    }

    pub fn busy(&self) -> bool {
        self.view.job.is_some() || self.training.is_some()
    }

    pub fn update(&mut self, action: Action) -> Vec<Effect> {
        match self.mode.clone() {
            Mode::Help | Mode::Messages => {
                let (page, max) = self.help_page.get();
                let page = page.max(1);
                let scroll = self.help_scroll.min(max);
                match action {
                    Action::Back | Action::Help | Action::Messages | Action::Submit => {
                        self.mode = Mode::Normal
                    }
                    Action::Interrupt => return self.request_quit(),
                    Action::Suspend => return vec![Effect::Suspend],
                    Action::Up => self.help_scroll = scroll.saturating_sub(1),
                    Action::Down => self.help_scroll = scroll.saturating_add(1).min(max),
                    Action::PageUp => self.help_scroll = scroll.saturating_sub(page),
                    Action::PageDown => self.help_scroll = scroll.saturating_add(page).min(max),
                    Action::FocusNext if self.mode == Mode::Help => {
                        self.help_glossary = !self.help_glossary;
                        self.help_scroll = 0;
                    }
                    _ => {}
                }
                Vec::new()
            }
            Mode::Lessons(at) => {
                let n = self.lesson_choices.len().max(1);
                match action {
                    Action::Up => self.mode = Mode::Lessons((at + n - 1) % n),
                    Action::Down => self.mode = Mode::Lessons((at + 1) % n),
                    Action::Submit if at < self.lesson_choices.len() => {
                        self.mode = Mode::Normal;
                        return vec![Effect::OpenLesson(at)];
                    }
                    Action::Back | Action::Lessons | Action::Submit => self.mode = Mode::Normal,
                    Action::Interrupt => return self.request_quit(),
                    Action::Suspend => return vec![Effect::Suspend],
                    _ => {}
                }
                Vec::new()
            }
            Mode::ConfirmQuit => match action {
                Action::Char('y') | Action::Char('Y') | Action::Interrupt => self.quit(),
                // Ctrl-Z leaves the question open for when the shell gives the screen back.
                Action::Suspend => vec![Effect::Suspend],
                _ => {
                    self.mode = Mode::Normal;
                    self.say("quit cancelled".into());
                    Vec::new()
                }
            },
            Mode::EditThreshold(text) => {
                self.prompt(text, action, Mode::EditThreshold, App::submit_threshold)
            }
            Mode::EditBudget(text) => {
                self.prompt(text, action, Mode::EditBudget, App::submit_budget)
            }
            Mode::Normal => self.normal(action),
        }
    }

    /// A text prompt (the threshold's, the search budget's): `mode` rebuilds it with the
    /// text typed so far; Enter hands the text to `submit`.
    fn prompt(
        &mut self,
        mut text: String,
        action: Action,
        mode: fn(String) -> Mode,
        submit: fn(&mut App, &str) -> Vec<Effect>,
    ) -> Vec<Effect> {
        match action {
            Action::Suspend => vec![Effect::Suspend],
            Action::Char(c) if !c.is_control() && text.chars().count() < MAX_PROMPT => {
                text.push(c);
                self.mode = mode(text);
                Vec::new()
            }
            Action::Backspace => {
                text.pop();
                self.mode = mode(text);
                Vec::new()
            }
            Action::Submit => {
                self.mode = Mode::Normal;
                submit(self, &text)
            }
            Action::Back => {
                self.mode = Mode::Normal;
                Vec::new()
            }
            Action::Interrupt => self.request_quit(),
            _ => Vec::new(),
        }
    }

    fn submit_threshold(&mut self, text: &str) -> Vec<Effect> {
        match parse_prune_input(text) {
            Some(PruneInput::Threshold(value)) => self
                .layers()
                .into_iter()
                .map(|layer| Effect::SetThreshold { layer, value })
                .collect(),
            Some(PruneInput::Keep(keep)) => self
                .layers()
                .into_iter()
                .map(|layer| Effect::SetKeep { layer, keep })
                .collect(),
            None => {
                self.say(format!(
                    "'{text}' is not a threshold (0.05), a kept % (8%) or a pruned % (92% pruned)"
                ));
                Vec::new()
            }
        }
    }

    fn submit_budget(&mut self, text: &str) -> Vec<Effect> {
        if text.trim().is_empty() {
            return vec![Effect::Search(None)];
        }
        match parse_budget(text) {
            Some(budget) => vec![Effect::Search(Some(budget))],
            None => {
                self.say(format!(
                    "'{text}' is not a budget: points below the baseline's held-out accuracy (0.15), or a held-out error (0.8%)"
                ));
                Vec::new()
            }
        }
    }

    fn normal(&mut self, action: Action) -> Vec<Effect> {
        let n = self.view.layers.len().max(1);
        let each = |app: &App, f: &dyn Fn(usize) -> Effect| -> Vec<Effect> {
            app.layers().into_iter().map(f).collect()
        };
        match action {
            Action::Up => self.selected = (self.selected + n - 1) % n,
            Action::Down => self.selected = (self.selected + 1) % n,
            Action::Scrub { dir, coarse } => {
                let steps = dir as i32 * if coarse { 10 } else { 1 };
                return each(self, &|layer| Effect::ScrubThreshold { layer, steps });
            }
            Action::EditThreshold => self.mode = Mode::EditThreshold(String::new()),
            Action::Bits(d) => return each(self, &|layer| Effect::Bits { layer, delta: d }),
            Action::IndexBits(d) => {
                return each(self, &|layer| Effect::IndexBits { layer, delta: d });
            }
            Action::CycleInit => return each(self, &|layer| Effect::CycleInit { layer }),
            Action::CycleQuantizer => {
                return each(self, &|layer| Effect::CycleQuantizer { layer });
            }
            Action::TogglePerChannel => {
                return each(self, &|layer| Effect::TogglePerChannel { layer });
            }
            Action::Units(d) => return each(self, &|layer| Effect::Units { layer, delta: d }),
            Action::CycleUnitRank => {
                return each(self, &|layer| Effect::CycleUnitRank { layer });
            }
            Action::TogglePruneMethod => {
                return each(self, &|layer| Effect::TogglePruneMethod { layer });
            }
            Action::ResetLayer => return each(self, &|layer| Effect::ResetLayer { layer }),
            Action::ToggleApplyAll => {
                self.apply_all = !self.apply_all;
                self.say(if self.apply_all {
                    "changes now apply to ALL layers (g to undo)".into()
                } else {
                    "changes apply to the selected layer".into()
                });
            }
            Action::Retrain => return vec![Effect::Retrain],
            Action::Finetune => return vec![Effect::Finetune],
            // While one runs, `a` only hears that it runs.
            Action::Search if self.view.searching => return vec![Effect::Search(None)],
            Action::Search => self.mode = Mode::EditBudget(String::new()),
            Action::Sweep => return vec![Effect::Sweep],
            Action::Undo => return vec![Effect::Undo],
            Action::Redo => return vec![Effect::Redo],
            Action::Export => return vec![Effect::Export],
            Action::Screenshot => return vec![Effect::Screenshot],
            Action::ToggleLog => self.log_counts = !self.log_counts,
            Action::ToggleLecture => self.lecture = !self.lecture,
            Action::NextCurve => self.curve_tab = self.curve_tab.next(),
            Action::FocusNext => {
                self.focus = match self.focus {
                    Focus::Layers => Focus::Histogram,
                    Focus::Histogram => Focus::Curves,
                    Focus::Curves => Focus::Layers,
                }
            }
            Action::Help => {
                self.mode = Mode::Help;
                self.help_scroll = 0;
                self.help_glossary = false;
            }
            Action::Messages => {
                self.mode = Mode::Messages;
                // Opens at the newest: drawing clamps the scroll to the end of the log.
                self.help_scroll = u16::MAX;
            }
            Action::Lessons => return vec![Effect::ListLessons],
            Action::LessonStep(d) => return vec![Effect::LessonStep(d)],
            Action::LessonReset => return vec![Effect::LessonReset],
            // The search is the long job: Esc stops it without leaving (Ctrl-C still asks).
            Action::Back if self.view.searching => return vec![Effect::StopSearch],
            Action::Back | Action::Interrupt => return self.request_quit(),
            Action::Suspend => return vec![Effect::Suspend],
            Action::SelectRow(row) => {
                let top = self.table_top.get();
                let (first, shown) = self.table_window.get();
                let at = first + row.saturating_sub(top) as usize;
                if row >= top && ((row - top) as usize) < shown && at < self.view.layers.len() {
                    self.selected = at;
                    self.focus = Focus::Layers;
                }
            }
            // Scrolling is for the help; typing for the prompt.
            Action::PageUp
            | Action::PageDown
            | Action::Char(_)
            | Action::Backspace
            | Action::Submit => {}
        }
        Vec::new()
    }

    fn request_quit(&mut self) -> Vec<Effect> {
        if self.busy() {
            self.mode = Mode::ConfirmQuit;
            Vec::new()
        } else {
            self.quit()
        }
    }

    fn quit(&mut self) -> Vec<Effect> {
        self.should_quit = true;
        vec![Effect::Quit]
    }
}

/// Longest text the threshold prompt takes.
const MAX_PROMPT: usize = 24;

/// What the threshold prompt's text asks for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum PruneInput {
    /// Prune `|w|` below this.
    Threshold(f32),
    /// Keep this fraction, 0 < keep <= 1.
    Keep(f32),
}

/// Reads the threshold prompt: `0.05` is a threshold; `8%`, `8% kept` or `keep 8%` keeps 8%
/// of the weights; `92% pruned` or `prune 92%` keeps 8%. `None` for anything else (a
/// percentage outside 0..100 included), so a typo is refused rather than read as a number.
pub(crate) fn parse_prune_input(text: &str) -> Option<PruneInput> {
    let t = text.trim().to_ascii_lowercase();
    let number = |s: &str| s.trim().parse::<f32>().ok().filter(|v| v.is_finite());
    let percent = |s: &str| s.trim().strip_suffix('%').and_then(number);
    let words = |s: &str, word: &str| -> Option<f32> {
        s.strip_prefix(word)
            .and_then(percent)
            .or_else(|| s.strip_suffix(word).and_then(percent))
    };
    let kept = percent(&t)
        .or_else(|| words(&t, "keep"))
        .or_else(|| words(&t, "kept"));
    if let Some(p) = kept {
        return (p > 0.0 && p <= 100.0).then_some(PruneInput::Keep(p / 100.0));
    }
    if let Some(p) = words(&t, "prune").or_else(|| words(&t, "pruned")) {
        return (0.0..100.0)
            .contains(&p)
            .then_some(PruneInput::Keep(1.0 - p / 100.0));
    }
    number(&t).filter(|&v| v >= 0.0).map(PruneInput::Threshold)
}

/// Reads the search budget prompt: `0.15` (or `0.15 points`) is a held-out accuracy at most
/// 0.15 points below the baseline's; `0.8%` is a held-out error of at most 0.8%. `None` for
/// anything else, a drop of 100 points or more and an error outside (0, 100) included.
pub(crate) fn parse_budget(text: &str) -> Option<Budget> {
    let t = text.trim().to_ascii_lowercase();
    let number = |s: &str| s.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    if let Some(e) = t.strip_suffix('%').and_then(number) {
        return (e > 0.0 && e < 100.0).then_some(Budget::MaxError(e / 100.0));
    }
    let points = t
        .strip_suffix("points")
        .or_else(|| t.strip_suffix("point"))
        .or_else(|| t.strip_suffix("pt"))
        .unwrap_or(&t);
    number(points)
        .filter(|d| (0.0..100.0).contains(d))
        .map(|d| Budget::MaxDrop(d / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::view::{JobView, LayerRow};

    fn app(layers: usize) -> App {
        App::new(ViewModel {
            layers: (0..layers)
                .map(|i| LayerRow {
                    name: format!("l{i}"),
                    ..LayerRow::default()
                })
                .collect(),
            ..ViewModel::default()
        })
    }

    #[test]
    fn selection_wraps() {
        let mut a = app(3);
        a.update(Action::Up);
        assert_eq!(a.selected, 2);
        a.update(Action::Down);
        assert_eq!(a.selected, 0);
    }

    #[test]
    fn scrubbing_targets_the_selected_layer_or_all() {
        let mut a = app(3);
        a.update(Action::Down);
        assert_eq!(
            a.update(Action::Scrub {
                dir: -1,
                coarse: true
            }),
            vec![Effect::ScrubThreshold {
                layer: 1,
                steps: -10
            }]
        );
        a.update(Action::ToggleApplyAll);
        assert_eq!(a.update(Action::Bits(1)).len(), 3);
    }

    #[test]
    fn typing_a_threshold() {
        let mut a = app(2);
        a.update(Action::EditThreshold);
        for c in "0.05".chars() {
            a.update(Action::Char(c));
        }
        a.update(Action::Backspace);
        a.update(Action::Char('7'));
        assert_eq!(a.mode, Mode::EditThreshold("0.07".into()));
        assert_eq!(
            a.update(Action::Submit),
            vec![Effect::SetThreshold {
                layer: 0,
                value: 0.07
            }]
        );
        a.update(Action::EditThreshold);
        a.update(Action::Char('.'));
        a.update(Action::Char('.'));
        assert!(a.update(Action::Submit).is_empty());
        assert!(a.message().unwrap().contains("not a threshold"));
        // A percentage keeps that share, never becomes the threshold 8.0.
        a.update(Action::EditThreshold);
        for c in "8%".chars() {
            a.update(Action::Char(c));
        }
        assert_eq!(
            a.update(Action::Submit),
            vec![Effect::SetKeep {
                layer: 0,
                keep: 0.08
            }]
        );
    }

    #[test]
    fn the_prompt_reads_thresholds_and_kept_or_pruned_percentages() {
        use PruneInput::*;
        for (text, want) in [
            ("0.05", Some(Threshold(0.05))),
            (" 1e-2 ", Some(Threshold(0.01))),
            ("8%", Some(Keep(0.08))),
            ("8% kept", Some(Keep(0.08))),
            ("keep 8%", Some(Keep(0.08))),
            ("100%", Some(Keep(1.0))),
            ("92% pruned", Some(Keep(1.0 - 0.92))),
            ("Prune 92 %", Some(Keep(1.0 - 0.92))),
            ("0% pruned", Some(Keep(1.0))),
            ("0%", None),
            ("150%", None),
            ("100% pruned", None),
            ("-0.1", None),
            ("8 %%", None),
            ("eight", None),
            ("", None),
            ("nan", None),
            ("inf", None),
        ] {
            assert_eq!(parse_prune_input(text), want, "{text:?}");
        }
    }

    #[test]
    fn quitting_asks_only_when_work_is_running() {
        let mut a = app(1);
        assert_eq!(a.update(Action::Back), vec![Effect::Quit]);
        let mut b = app(1);
        b.view.job = Some(JobView {
            label: "retrain".into(),
            fraction: 0.5,
            detail: String::new(),
            then: Vec::new(),
        });
        assert!(b.update(Action::Back).is_empty());
        assert_eq!(b.mode, Mode::ConfirmQuit);
        assert!(b.update(Action::Char('n')).is_empty());
        assert_eq!(b.mode, Mode::Normal);
        b.update(Action::Interrupt);
        assert_eq!(b.update(Action::Char('y')), vec![Effect::Quit]);
        assert!(b.should_quit);
    }

    #[test]
    fn the_budget_prompt_reads_points_or_an_error_and_refuses_the_rest() {
        assert_eq!(parse_budget("0.15"), Some(Budget::MaxDrop(0.0015)));
        assert_eq!(parse_budget(" 0.5 points"), Some(Budget::MaxDrop(0.005)));
        assert_eq!(parse_budget("0pt"), Some(Budget::MaxDrop(0.0)));
        assert_eq!(parse_budget("0.8%"), Some(Budget::MaxError(0.008)));
        for bad in ["", "abc", "-1", "100", "0%", "100%", "nan", "inf%", "1e400"] {
            assert_eq!(parse_budget(bad), None, "{bad}");
        }
        let mut a = app(1);
        a.update(Action::Search);
        for c in "0.8%".chars() {
            a.update(Action::Char(c));
        }
        assert_eq!(
            a.update(Action::Submit),
            vec![Effect::Search(Some(Budget::MaxError(0.008)))]
        );
        a.update(Action::Search);
        a.update(Action::Char('x'));
        assert!(a.update(Action::Submit).is_empty());
        assert!(a.message().unwrap().contains("'x' is not a budget"));
        a.update(Action::Search);
        assert!(a.update(Action::Back).is_empty());
        assert_eq!(a.mode, Mode::Normal);
    }

    #[test]
    fn escape_stops_a_search_before_it_asks_to_quit() {
        let mut a = app(1);
        assert!(a.update(Action::Search).is_empty());
        assert_eq!(a.mode, Mode::EditBudget(String::new()));
        assert_eq!(a.update(Action::Submit), vec![Effect::Search(None)]);
        a.view.searching = true;
        // While it runs, `a` asks nothing: the controller says it runs.
        assert_eq!(a.update(Action::Search), vec![Effect::Search(None)]);
        assert_eq!(a.mode, Mode::Normal);
        a.view.job = Some(JobView {
            label: "plan search".into(),
            fraction: 0.5,
            detail: String::new(),
            then: Vec::new(),
        });
        assert_eq!(a.update(Action::Back), vec![Effect::StopSearch]);
        assert_eq!(a.mode, Mode::Normal);
        assert!(!a.should_quit);
        // Ctrl-C still asks, as with any running work.
        assert!(a.update(Action::Interrupt).is_empty());
        assert_eq!(a.mode, Mode::ConfirmQuit);
    }

    #[test]
    fn help_closes_with_escape_and_does_not_quit() {
        let mut a = app(1);
        a.update(Action::Help);
        assert_eq!(a.mode, Mode::Help);
        assert!(a.update(Action::Back).is_empty());
        assert_eq!(a.mode, Mode::Normal);
        assert!(!a.should_quit);
    }

    #[test]
    fn help_scrolls_within_its_text_and_reopens_at_the_top() {
        let mut a = app(1);
        a.update(Action::Help);
        // As drawn on a short screen: 10 lines fit, 25 more below.
        a.help_page.set((10, 25));
        a.update(Action::Up);
        assert_eq!(a.help_scroll, 0);
        a.update(Action::Down);
        a.update(Action::PageDown);
        assert_eq!(a.help_scroll, 11);
        for _ in 0..5 {
            a.update(Action::PageDown);
        }
        assert_eq!(a.help_scroll, 25);
        a.update(Action::PageUp);
        assert_eq!(a.help_scroll, 15);
        assert_eq!(a.selected, 0, "scrolling the help moves no selection");
        a.update(Action::Back);
        a.update(Action::Help);
        assert_eq!(a.help_scroll, 0);
    }

    #[test]
    fn clicks_select_rows_inside_the_table_only() {
        let mut a = app(4);
        a.table_top.set(5);
        a.update(Action::SelectRow(7));
        assert_eq!(a.selected, 2);
        a.update(Action::SelectRow(20));
        assert_eq!(a.selected, 2);
        // A scrolled table shows layers 2 and 3 on its two rows: the second row is layer 3,
        // and the row below them (the total) selects nothing.
        a.table_window.set((2, 2));
        a.update(Action::SelectRow(6));
        assert_eq!(a.selected, 3);
        a.update(Action::SelectRow(7));
        assert_eq!(a.selected, 3);
    }
}

//! Screens as text (ratatui TestBackend + insta), key handling end to end, and a property test
//! that drawing never panics at any size.

use dcx::tui::app::{App, CurveTab, Effect, Mode};
use dcx::tui::keys::{Action, BINDINGS};
use dcx::tui::theme::Colors;
use dcx::tui::ui;
use dcx::tui::view::{
    Accuracy, Curve, CurvesView, HistogramView, JobView, LayerRow, LessonChoice, LessonPanel,
    PanelCheck, SpeedView, Totals, TrainingView, ViewModel,
};
use proptest::prelude::*;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::Color;

/// A LeNet-5 session as the explorer would show it after the paper's settings.
fn lenet5_view() -> ViewModel {
    let row =
        |name: &str, shape: &str, params: usize, t: f32, kept: f64, bits: u8, huff: u64| LayerRow {
            name: name.into(),
            shape: shape.into(),
            params,
            threshold: t,
            random: false,
            kept,
            units: {
                let outputs = shape.split('x').next().unwrap().parse().unwrap();
                (outputs, outputs)
            },
            bits,
            init: "km lin".into(),
            index_bits: 5,
            dense_bytes: params as u64 * 4,
            pruned_bytes: (params as f64 * kept * 4.6) as u64,
            shared_bytes: (params as f64 * kept * (bits as f64 + 5.0) / 8.0) as u64,
            file_bytes: huff,
            solo_drop: Some(-0.0004),
            solo_estimated: false,
            weight_bits_h: bits as f64 - 0.7,
            index_bits_h: 4.4,
            weight_entropy: bits as f64 - 0.75,
            index_entropy: 4.35,
            empty_clusters: 0,
            grid: false,
            fillers: 120,
            finetuned: false,
        };
    let layers = vec![
        row("conv1", "20x1x5x5", 500, 0.1121, 0.66, 8, 710),
        row("conv2", "50x20x5x5", 25000, 0.0954, 0.12, 8, 3320),
        row("fc1", "500x800", 400000, 0.0612, 0.08, 5, 31400),
        row("fc2", "10x500", 5000, 0.1633, 0.19, 5, 1100),
    ];
    // conv1 before retraining: a bell of weights, the middle 99% drawn.
    let bins = 1024;
    let counts: Vec<u64> = (0..bins)
        .map(|i| {
            let x = (i as f64 + 0.5) / bins as f64 * 0.6 - 0.3;
            (40.0 * (-x * x / 0.02).exp()) as u64
        })
        .collect();
    let drawn: u64 = counts.iter().sum();
    ViewModel {
        model: "lenet-5".into(),
        totals: Totals {
            params: 430_500,
            kept: 0.083,
            dense_bytes: 1_724_320,
            pruned_bytes: 165_000,
            shared_bytes: 48_000,
            file_bytes: 37_300,
        },
        layers,
        histogram: HistogramView {
            layer: "conv1".into(),
            min: -0.3,
            max: 0.3,
            counts,
            below: 61,
            above: 58,
            zeros: 0,
            total: drawn + 119,
            threshold: 0.0612,
            random: false,
            centroids: (0..32).map(|i| -0.45 + i as f32 * 0.03).collect(),
            markers: "32 centroids".into(),
            sse: 0.00375,
        },
        curves: CurvesView {
            training: vec![Curve {
                label: "retrain".into(),
                points: vec![(1.0, 98.9), (2.0, 99.1), (3.0, 99.2)],
            }],
            sensitivity: Some(Curve {
                label: "conv1 weights".into(),
                points: (1..=10)
                    .map(|k| (k as f64 * 10.0, 99.3 - 30.0 / (k * k) as f64))
                    .collect(),
            }),
            sensitivity_units: Some(Curve {
                label: "filters".into(),
                points: (1..=10)
                    .map(|k| (k as f64 * 10.0, 99.3 - 60.0 / (k * k) as f64))
                    .collect(),
            }),
            sensitivity_marker: Some((66.0, 99.2)),
            history: vec![(10.0, 99.3), (25.0, 99.2), (46.0, 99.25)],
            pareto: vec![(10.0, 99.3), (46.0, 99.25)],
            paper: Some((39.0, 99.26)),
            runs: Vec::new(),
            run_training: Vec::new(),
            tune: Vec::new(),
            tune_chosen: None,
        },
        baseline: 0.9929,
        accuracy: Accuracy::Exact(0.9925),
        job: None,
        activation_bits: None,
        speed: Some(SpeedView {
            dense_ms: 0.151,
            paths: vec![("sparse".into(), 1.6)],
            fresh: true,
        }),
        searching: false,
    }
}

fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::draw(app, f)).unwrap();
    t
}

/// The app as the explorer opens it under NO_COLOR. Snapshots compare text only, but the
/// styling stays the same whatever the caller's environment says, because drawing never
/// reads it.
fn app_without_color(view: ViewModel) -> App {
    let mut app = App::new(view);
    app.colors = Colors::Off;
    app
}

#[test]
fn main_screen_80x24() {
    let app = app_without_color(lenet5_view());
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

/// conv2 pruned to 12% and retrained, shared with 8 bits: the pruned weights are exact zeros,
/// the survivors two lobes outside the cut, a few far out, 256 centroids.
fn retrained_conv2() -> HistogramView {
    let (lo, hi, threshold) = (-0.24f32, 0.25f32, 0.0954f32);
    let bins = 1024;
    let counts: Vec<u64> = (0..bins)
        .map(|i| {
            let x = lo + (i as f32 + 0.5) / bins as f32 * (hi - lo);
            let lobe = (x.abs() - threshold).max(0.0) / 0.05;
            if x.abs() < threshold {
                // Retraining moved a few survivors back into the band.
                u64::from(i % 7 == 0)
            } else {
                (12.0 * (-lobe * lobe / 2.0).exp()) as u64
            }
        })
        .collect();
    // 12% of 25,000 survive, 31 of them beyond the range: the rest are in the counts.
    let mut counts = counts;
    let short = 3000 - 31 - counts.iter().sum::<u64>();
    for c in counts.iter_mut().filter(|c| **c > 5).take(short as usize) {
        *c += 1;
    }
    HistogramView {
        layer: "conv2".into(),
        min: lo,
        max: hi,
        counts,
        below: 14,
        above: 17,
        zeros: 22_000,
        total: 25_000,
        threshold,
        random: false,
        centroids: (0..256).map(|i| -0.3 + i as f32 * 0.6 / 255.0).collect(),
        markers: "256 centroids".into(),
        sse: 0.0412,
    }
}

/// The histogram leaves the pruned zeros and the outliers out and says so, and marks only
/// as many of 256 centroids as the width can tell apart, at every size.
#[test]
fn a_retrained_layer_histogram_states_what_it_leaves_out() {
    let mut view = lenet5_view();
    view.histogram = retrained_conv2();
    let mut app = app_without_color(view);
    app.selected = 1;
    for (w, h) in [(60, 20), (80, 24), (200, 60)] {
        let t = render(&app, w, h);
        let text = screen_text(&t);
        assert!(
            text.contains("zeros 88%") || text.contains("zeros: 88%"),
            "{w}x{h}: the zeros\n{text}"
        );
        assert!(text.contains("beyond"), "{w}x{h}: the outliers\n{text}");
        assert!(
            text.contains("▲ every") || text.contains("▲ 1 in"),
            "{w}x{h}: the thinned markers\n{text}"
        );
        let markers = text.lines().find(|l| l.contains("▲ ▲")).unwrap_or_default();
        assert!(!markers.contains("▲▲"), "{w}x{h}: markers apart: {markers}");
        insta::assert_snapshot!(format!("retrained_histogram_{w}x{h}"), t.backend());
    }
    app.log_counts = true;
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("count (log)"), "{text}");
}

/// At 200 columns the table keeps its natural width and the sizes sit beside it, the
/// histogram and chart below split at the table's edge.
#[test]
fn wide_terminals_put_the_sizes_beside_the_table_200x60() {
    let app = app_without_color(lenet5_view());
    let t = render(&app, 200, 60);
    let text = screen_text(&t);
    let table_top = text.lines().nth(1).unwrap();
    assert!(
        table_top.contains("Layers") && table_top.contains("Size"),
        "{table_top}"
    );
    insta::assert_snapshot!(t.backend());
    // Below that width the sizes stay under the chart.
    let narrower = screen_text(&render(&app, 180, 60));
    assert!(!narrower.lines().nth(1).unwrap().contains("Size"));
}

#[test]
fn structured_pruning_shows_the_units_kept_80x24() {
    let mut view = lenet5_view();
    view.layers[0].units = (10, 20);
    view.layers[1].units = (20, 50);
    let app = app_without_color(view);
    let screen = format!("{:?}", render(&app, 80, 24).backend());
    assert!(screen.contains("units") && screen.contains("20/50") && screen.contains("all"));
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn main_screen_160x48() {
    let app = app_without_color(lenet5_view());
    insta::assert_snapshot!(render(&app, 160, 48).backend());
}

#[test]
fn history_and_training_tabs_160x48() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::NextCurve);
    assert_eq!(app.curve_tab, CurveTab::History);
    insta::assert_snapshot!("history", render(&app, 160, 48).backend());
    app.update(Action::NextCurve);
    insta::assert_snapshot!("training", render(&app, 160, 48).backend());
}

/// Finished runs on disk (`dcx compress` folders) stand beside the session's plans under
/// their names, and their training curves beside the session's.
#[test]
fn finished_runs_appear_with_their_labels_160x48() {
    let mut view = lenet5_view();
    view.curves.runs = vec![
        ("lottery-lenet-5".into(), (52.0, 99.1)),
        ("student-lenet-5".into(), (30.0, 98.9)),
    ];
    view.curves.run_training = vec![Curve {
        label: "run student-lenet-5".into(),
        points: vec![(1.0, 98.2), (2.0, 98.7), (3.0, 98.9), (4.0, 98.95)],
    }];
    let mut app = app_without_color(view);
    app.update(Action::NextCurve);
    let history = render(&app, 160, 48);
    let text = format!("{:?}", history.backend());
    assert!(
        text.contains("█ lottery-lenet-5") && text.contains("█ student-lenet-5"),
        "the title names each run in its colour"
    );
    insta::assert_snapshot!("runs_history", history.backend());
    app.update(Action::NextCurve);
    insta::assert_snapshot!("runs_training", render(&app, 160, 48).backend());
}

#[test]
fn lecture_mode_120x40() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::ToggleLecture);
    insta::assert_snapshot!(render(&app, 120, 40).backend());
}

#[test]
fn help_overlay_80x24() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::Help);
    insta::assert_snapshot!(render(&app, 80, 24).backend());
}

#[test]
fn too_small_says_how_large_it_needs_to_be() {
    let app = app_without_color(lenet5_view());
    let t = render(&app, 40, 12);
    insta::assert_snapshot!(t.backend());
    let text: String = t
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(text.contains("60x18"), "{text}");
}

#[test]
fn the_table_says_its_accuracy_uses_f32_activations_when_the_plan_quantizes_them() {
    let text = |view: ViewModel| -> String {
        let t = render(&app_without_color(view), 160, 48);
        t.backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect()
    };
    assert!(!text(lenet5_view()).contains("activations"));
    let mut view = lenet5_view();
    view.activation_bits = Some(4);
    let shown = text(view);
    assert!(
        shown.contains("accuracy with f32 activations (the plan's 4-bit ones: dcx compress)"),
        "{shown}"
    );
}

#[test]
fn job_progress_and_quit_question() {
    let mut view = lenet5_view();
    view.job = Some(JobView {
        label: "retrain".into(),
        fraction: 0.4,
        detail: "epoch 1/3".into(),
        then: Vec::new(),
    });
    view.accuracy = Accuracy::Estimate(0.991, 0.003);
    let mut app = app_without_color(view);
    assert!(app.update(Action::Back).is_empty());
    assert_eq!(app.mode, Mode::ConfirmQuit);
    insta::assert_snapshot!(render(&app, 80, 24).backend());
    assert_eq!(app.update(Action::Char('y')), vec![Effect::Quit]);
}

/// The status names the running job, its progress and the steps queued behind it at every
/// width (on a narrow screen in the hint line's place); the epoch detail gives way first.
#[test]
fn the_status_shows_the_queue_behind_a_job_at_every_width() {
    let mut view = lenet5_view();
    view.job = Some(JobView {
        label: "retrain".into(),
        fraction: 0.28,
        detail: "epoch 1/1 2359 img/s".into(),
        then: vec!["retrain".into(), "fine-tune".into()],
    });
    let app = app_without_color(view);
    for (w, h, detail) in [
        (60, 20, false),
        (80, 24, true),
        (120, 40, false),
        (200, 60, true),
    ] {
        // The status line, or on a narrow screen the hint line in its place.
        let screen = screen_text(&render(&app, w, h));
        let line = screen
            .lines()
            .find(|l| l.contains("28%"))
            .unwrap_or_default()
            .to_string();
        assert!(
            line.contains("retrain 28%") || line.contains("retrain █"),
            "{w}x{h}: {screen}"
        );
        assert!(line.contains("then retrain, fine-tune"), "{w}x{h}: {line}");
        assert!(line.contains("███░░░░░░░"), "{w}x{h}: {line}");
        assert_eq!(line.contains("epoch 1/1"), detail, "{w}x{h}: {line}");
    }
}

#[test]
fn ctrl_z_suspends_from_the_prompt_and_the_quit_question_and_both_wait_for_fg() {
    // (That Ctrl-Z maps to `Suspend` in these modes is checked in `tui::keys`.)
    let mut app = app_without_color(lenet5_view());
    app.update(Action::EditThreshold);
    app.update(Action::Char('8'));
    assert_eq!(app.update(Action::Suspend), vec![Effect::Suspend]);
    assert_eq!(
        app.mode,
        Mode::EditThreshold("8".into()),
        "the typing is kept"
    );
    app.update(Action::Back);
    app.view.job = Some(JobView {
        label: "retrain".into(),
        fraction: 0.4,
        detail: "epoch 1/3".into(),
        then: Vec::new(),
    });
    app.update(Action::Back);
    assert_eq!(app.mode, Mode::ConfirmQuit);
    assert_eq!(app.update(Action::Suspend), vec![Effect::Suspend]);
    assert_eq!(app.mode, Mode::ConfirmQuit, "the question is still open");
}

/// Projector mode keeps the selected layer's chart, so the next-chart key turns it there too
/// (the chart's title shows the change; nothing needs saying).
#[test]
fn the_next_chart_key_turns_the_chart_in_lecture_mode_too() {
    let mut app = app_without_color(lenet5_view());
    app.lecture = true;
    app.update(Action::NextCurve);
    assert_eq!(app.message(), None, "the chart itself shows the change");
    let text = screen_text(&render(&app, 100, 30));
    assert!(text.contains("⠶ tried ━ Pareto"), "{text}");
}

/// On a short screen projector mode keeps its digits whole (their words give way and the
/// table scrolls).
#[test]
fn lecture_digits_stay_whole_on_short_screens() {
    let mut app = app_without_color(lenet5_view());
    app.lecture = true;
    for (w, h) in [(60, 20), (80, 24)] {
        let text = screen_text(&render(&app, w, h));
        let rows: Vec<&str> = text.lines().collect();
        // The bottom row of "99.25%" (rows 2 to 6 are the digits).
        assert!(
            rows[6].contains("███ ███ █ ███ ███ █ █"),
            "{w}x{h}:\n{text}"
        );
    }
}

/// Projector mode: the accuracy and the ratio in digits five rows tall at 100x30, each with
/// what it was before the last change.
#[test]
fn lecture_mode_shows_the_two_numbers_in_large_digits_100x30() {
    let mut app = app_without_color(lenet5_view());
    app.lecture = true;
    app.before_change = Some((0.9939, 48_300));
    let text = screen_text(&render(&app, 100, 30));
    // 99.25% and 46.2x in blocks: the first rows of "99" and "46".
    assert!(text.contains("███ ███   ███ ███"), "{text}");
    assert!(text.contains("█ █ ███   ███"), "{text}");
    assert!(text.contains("was 99.39% (-0.14 points)"), "{text}");
    assert!(text.contains("was 48.3 KB (-11000 B)"), "{text}");
    insta::assert_snapshot!("lecture_100x30", render(&app, 100, 30).backend());
}

#[test]
fn training_screen_80x24_and_200x60() {
    let mut app = app_without_color(ViewModel::default());
    app.training = Some(TrainingView {
        model: "lenet-5".into(),
        epoch: 2,
        epochs: 10,
        batch: 400,
        batches: 938,
        loss: (0..40)
            .map(|i| (i as f64 / 16.0, 1.0 / (1.0 + i as f64)))
            .collect(),
        accuracy: vec![(1.0, 97.9), (2.0, 98.9)],
        images_per_sec: 2710.0,
        eta_secs: 190.0,
    });
    insta::assert_snapshot!("training_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("training_200x60", render(&app, 200, 60).backend());
    assert!(app.busy());
    assert!(app.update(Action::Back).is_empty());
    assert_eq!(app.mode, Mode::ConfirmQuit);
}

#[test]
fn clicking_a_row_selects_that_layer() {
    let mut app = app_without_color(lenet5_view());
    render(&app, 100, 30);
    let top = app.table_top.get();
    app.update(Action::SelectRow(top + 2));
    assert_eq!(app.selected, 2);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn drawing_never_panics(
        w in 1u16..220,
        h in 1u16..70,
        layers in 0usize..6,
        selected in 0usize..6,
        tab in 0usize..3,
        lecture in any::<bool>(),
        log in any::<bool>(),
        help in any::<bool>(),
        empty_hist in any::<bool>(),
        lesson in any::<bool>(),
    ) {
        let mut view = lenet5_view();
        view.layers.truncate(layers);
        if empty_hist {
            view.histogram = HistogramView::default();
            view.curves = CurvesView::default();
        }
        let mut app = app_without_color(view);
        app.selected = selected;
        for _ in 0..tab {
            app.update(Action::NextCurve);
        }
        app.lecture = lecture;
        app.log_counts = log;
        if help {
            app.mode = Mode::Help;
        }
        if lesson {
            app.lesson = Some(lesson_panel());
        }
        render(&app, w, h);
    }
}

#[test]
fn the_quit_question_shows_over_the_training_screen() {
    let mut app = app_without_color(ViewModel::default());
    app.training = Some(TrainingView {
        model: "lenet-5".into(),
        epochs: 10,
        batches: 938,
        ..TrainingView::default()
    });
    assert!(app.update(Action::Back).is_empty());
    assert_eq!(app.mode, Mode::ConfirmQuit);
    let text: String = render(&app, 80, 24)
        .backend()
        .buffer()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(text.contains("Quit and discard"), "{text}");
}

#[test]
fn colour_is_the_apps_choice_not_the_environments() {
    let has_rgb = |app: &App| {
        render(app, 80, 24)
            .backend()
            .buffer()
            .content()
            .iter()
            .any(|c| matches!(c.fg, Color::Rgb(..)) || matches!(c.bg, Color::Rgb(..)))
    };
    let mut app = App::new(lenet5_view());
    assert_eq!(app.colors, Colors::On);
    assert!(has_rgb(&app));
    app.colors = Colors::Off;
    assert!(!has_rgb(&app));
}

fn screen_text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let w = buf.area.width as usize;
    let cells: Vec<&str> = buf.content().iter().map(|c| c.symbol()).collect();
    cells
        .chunks(w)
        .map(|row| row.concat())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_binding_is_in_the_help() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::Help);
    let text = screen_text(&render(&app, 200, 60));
    assert!(!text.contains("PgDn scroll"), "fits at 200x60:\n{text}");
    for b in BINDINGS {
        let row = format!("{}  ", b.label());
        assert!(text.contains(&row), "{row:?} missing:\n{text}");
        assert!(text.contains(b.help), "{:?} missing:\n{text}", b.help);
    }
}

/// Tab in the help turns to the glossary: every term the screen shows, with its meaning
/// (every table column among them: the unit test over the columns holds them there).
#[test]
fn the_help_has_a_glossary_page() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::Help);
    app.update(Action::FocusNext);
    assert_eq!(app.mode, Mode::Help);
    let mut seen = String::new();
    loop {
        seen.push_str(&screen_text(&render(&app, 100, 40)));
        let before = app.help_scroll;
        app.update(Action::PageDown);
        if app.help_scroll == before {
            break;
        }
    }
    assert!(seen.contains("glossary · Tab: keys"), "{seen}");
    for term in [
        "thresh",
        "Δacc pt",
        "huffman",
        "SSE",
        "fillers",
        "percentage points",
    ] {
        assert!(seen.contains(term), "{term} missing:\n{seen}");
    }
    app.update(Action::FocusNext);
    let keys = screen_text(&render(&app, 100, 40));
    assert!(keys.contains("keys · Tab: glossary"), "{keys}");
}

#[test]
fn help_taller_than_the_screen_scrolls_to_its_end() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::Help);
    let first = screen_text(&render(&app, 60, 20));
    assert!(first.contains("PgUp PgDn scroll"), "{first}");
    assert!(first.contains("Esc closes"), "{first}");
    let mut seen = first.clone();
    loop {
        let before = app.help_scroll;
        app.update(Action::PageDown);
        if app.help_scroll == before {
            break;
        }
        seen.push_str(&screen_text(&render(&app, 60, 20)));
    }
    for b in BINDINGS {
        assert!(seen.contains(&b.label()), "{} never shown", b.label());
    }
    let last = screen_text(&render(&app, 60, 20));
    let (_, total) = app.help_page.get();
    assert!(total > 0);
    assert!(last.contains(" of "), "{last}");
    assert!(
        last.contains("any other key"),
        "the last line shows:\n{last}"
    );
    assert_eq!(app.mode, Mode::Help);
}

#[test]
fn help_at_60x20() {
    let mut app = app_without_color(lenet5_view());
    app.update(Action::Help);
    insta::assert_snapshot!(render(&app, 60, 20).backend());
}

/// A message shows in the status bar, cut with a pointer to the log when it is too long, and
/// goes from the bar after a while; `m` opens the log with every message, newest last, and
/// `m` (or Esc) closes it.
#[test]
fn messages_expire_from_the_status_bar_and_stay_in_the_log() {
    let mut app = app_without_color(lenet5_view());
    app.say(
        "loading the lenet-5 checkpoint from a long path/that/goes/on/and/on/x.safetensors…".into(),
    );
    app.say(
        "fine-tune done: the trained weights are in use (u returns to the checkpoint's weights)"
            .into(),
    );
    let screen = format!("{:?}", render(&app, 120, 30).backend());
    let top = screen
        .lines()
        .find(|l| l.contains(" dcx "))
        .unwrap_or_default()
        .to_string();
    assert!(
        top.contains("fine-tune done") && top.contains("(m: all)"),
        "{top}"
    );
    assert!(!top.contains("loading"), "{top}");

    let later = app.message_log.back().unwrap().0 + dcx::tui::app::MESSAGE_SHOWN;
    assert_eq!(app.current_message(later), None);
    assert!(
        app.current_message(app.message_log.back().unwrap().0)
            .is_some()
    );

    app.update(Action::Messages);
    assert_eq!(app.mode, Mode::Messages);
    let screen = render(&app, 80, 24);
    let text = format!("{:?}", screen.backend());
    assert!(text.contains("messages, newest last"), "{text}");
    let loading = text
        .find("loading the lenet-5")
        .expect("the first message is kept");
    let done = text
        .find("fine-tune done")
        .expect("the second message is kept");
    assert!(loading < done, "newest last");
    assert!(text.contains("checkpoint's weights)"), "not cut: {text}");
    insta::assert_snapshot!("message_log_80x24", screen.backend());
    app.update(Action::Messages);
    assert_eq!(app.mode, Mode::Normal);
}

/// At 60x20 the layer table has room for two layers and the total: moving down to fc2
/// scrolls it into view, the total row stays, and the title says which layers show.
#[test]
fn the_layer_table_scrolls_to_the_selected_layer_60x20() {
    let mut app = app_without_color(lenet5_view());
    for _ in 0..3 {
        app.update(Action::Down);
    }
    let screen = render(&app, 60, 20);
    let text = format!("{:?}", screen.backend());
    assert!(text.contains("fc2") && text.contains("total"), "{text}");
    assert!(text.contains("3-4 of 4"), "{text}");
    insta::assert_snapshot!("scrolled_table_60x20", screen.backend());
}

/// Before the checkpoint is loaded the status line says nothing is known yet, rather than
/// "baseline 0.00%" and "0 B 0.0x".
#[test]
fn the_first_frame_shows_no_zeros_before_anything_is_computed() {
    let app = app_without_color(ViewModel {
        model: "course-cnn".into(),
        ..ViewModel::default()
    });
    let screen = format!("{:?}", render(&app, 100, 30).backend());
    let top = screen
        .lines()
        .find(|l| l.contains(" dcx "))
        .unwrap_or_default()
        .to_string();
    assert!(
        top.contains("baseline …") && top.contains("file size …"),
        "{top}"
    );
    assert!(!top.contains("0.00%") && !top.contains("0 B 0.0x"), "{top}");
}

/// WCAG 2 relative luminance of an sRGB colour.
fn luminance(c: Color) -> Option<f64> {
    let (r, g, b) = match c {
        Color::Rgb(r, g, b) => (r, g, b),
        Color::White => (255, 255, 255),
        Color::Black => (0, 0, 0),
        _ => return None,
    };
    let lin = |v: u8| {
        let v = v as f64 / 255.0;
        if v <= 0.03928 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        }
    };
    Some(0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b))
}

/// Every cell the theme gives a background (the selection bar) has text at WCAG AA contrast
/// (4.5:1) against it, in colour, on every curve tab, normal and in lecture mode.
#[test]
fn text_on_a_coloured_background_meets_wcag_aa() {
    for lecture in [false, true] {
        let mut app = App::new(lenet5_view());
        app.colors = Colors::On;
        app.lecture = lecture;
        app.selected = 2;
        for _ in 0..3 {
            let screen = render(&app, 160, 48);
            let buf = screen.backend().buffer();
            let mut checked = 0;
            for cell in buf.content() {
                let Some(bg) = luminance(cell.bg) else {
                    continue;
                };
                // A full block is a patch of colour (a chart's mark), not text to read.
                if cell.symbol().trim().is_empty() || cell.symbol() == "█" {
                    continue;
                }
                let fg = match cell.fg {
                    // The terminal's default text colour: the bar must not rely on it.
                    Color::Reset => panic!(
                        "text {:?} on {:?} in the default colour",
                        cell.symbol(),
                        cell.bg
                    ),
                    c => luminance(c).unwrap_or_else(|| panic!("unmeasurable {c:?}")),
                };
                let (hi, lo) = if fg > bg { (fg, bg) } else { (bg, fg) };
                let ratio = (hi + 0.05) / (lo + 0.05);
                assert!(
                    ratio >= 4.5,
                    "{:?} {:?} on {:?}: contrast {ratio:.2}",
                    cell.symbol(),
                    cell.fg,
                    cell.bg
                );
                checked += 1;
            }
            assert!(
                checked > 10,
                "the selection bar was drawn ({checked} cells)"
            );
            app.update(Action::NextCurve);
        }
    }
}

/// A lesson step as the panel beside the explorer shows it, one check met and one measuring.
fn lesson_panel() -> LessonPanel {
    LessonPanel {
        lesson: "Deep Compression on LeNet-5".into(),
        step: 3,
        steps: 7,
        title: "Retrain the survivors".into(),
        text: "Masked retraining trains the *kept* weights only; the pruned stay zero.\n- one epoch recovers most of the loss\n- the file does not change: same weights kept".into(),
        checks: vec![
            PanelCheck {
                label: "accuracy >= 99%".into(),
                measured: "99.21%".into(),
                met: Some(true),
            },
            PanelCheck {
                label: "fc1 file < 45 KB".into(),
                measured: "measuring…".into(),
                met: None,
            },
        ],
        state: "changed since the step was prepared: x returns to it".into(),
        live: true,
    }
}

/// Wide: the lesson's panel beside the explorer with its text, checks, state and keys; the
/// explorer keeps at least its narrowest layout.
#[test]
fn a_lesson_beside_the_explorer_100x30_and_160x48() {
    let mut app = app_without_color(lenet5_view());
    app.lesson = Some(lesson_panel());
    for (w, h) in [(100, 30), (160, 48)] {
        let text = screen_text(&render(&app, w, h));
        assert!(text.contains("step 3/7 · Deep Compression on"), "{text}");
        assert!(text.contains("✓ accuracy >= 99%: 99.21%"), "{text}");
        assert!(text.contains("… fc1 file < 45 KB: measuring…"), "{text}");
        assert!(text.contains("x returns to it"), "{text}");
        assert!(text.contains("n next step · b back"), "{text}");
        // The explorer's table is still there, beside the panel.
        assert!(text.contains("conv1"), "{text}");
        insta::assert_snapshot!(format!("lesson_{w}x{h}"), render(&app, w, h).backend());
    }
}

/// Narrow: the panel goes under the explorer; too short for both, the explorer alone.
#[test]
fn a_lesson_on_narrow_screens_goes_under_the_explorer_or_gives_way() {
    let mut app = app_without_color(lenet5_view());
    app.lesson = Some(lesson_panel());
    let text = screen_text(&render(&app, 80, 24));
    let panel_row = text
        .lines()
        .position(|l| l.contains("step 3/7"))
        .expect("the panel at 80x24");
    let table_row = text.lines().position(|l| l.contains("conv1")).unwrap();
    assert!(panel_row > table_row, "{text}");
    insta::assert_snapshot!("lesson_80x24", render(&app, 80, 24).backend());
    let text = screen_text(&render(&app, 60, 20));
    assert!(!text.contains("step 3/7"), "{text}");
    assert!(text.contains("conv1"), "{text}");
}

/// `o` lists the lessons with their titles (a broken one says why), Enter opens the one
/// highlighted, Esc closes the list.
#[test]
fn the_lesson_list_opens_the_highlighted_lesson() {
    let mut app = app_without_color(lenet5_view());
    assert_eq!(app.update(Action::Lessons), vec![Effect::ListLessons]);
    app.lesson_choices = vec![
        LessonChoice {
            path: "lessons/deep-compression.toml".into(),
            title: Ok("Deep Compression on LeNet-5".into()),
        },
        LessonChoice {
            path: "lessons/broken.toml".into(),
            title: Err("lessons/broken.toml: step 2 \"Two\": actions[0].kep: unknown field".into()),
        },
    ];
    app.mode = Mode::Lessons(0);
    let text = screen_text(&render(&app, 80, 24));
    assert!(
        text.contains("▶ deep-compression.toml  Deep Compression on LeNet-5"),
        "{text}"
    );
    assert!(text.contains("broken.toml"), "{text}");
    assert!(text.contains("cannot open: lessons/broken.toml"), "{text}");
    insta::assert_snapshot!("lesson_list_80x24", render(&app, 80, 24).backend());
    assert!(app.update(Action::Down).is_empty());
    assert_eq!(app.mode, Mode::Lessons(1));
    assert!(app.update(Action::Down).is_empty());
    assert_eq!(app.mode, Mode::Lessons(0));
    assert_eq!(app.update(Action::Submit), vec![Effect::OpenLesson(0)]);
    assert_eq!(app.mode, Mode::Normal);
    app.update(Action::Lessons);
    app.mode = Mode::Lessons(1);
    assert!(app.update(Action::Back).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    // The step keys ask the controller; they do nothing by themselves.
    assert_eq!(
        app.update(Action::LessonStep(1)),
        vec![Effect::LessonStep(1)]
    );
    assert_eq!(app.update(Action::LessonReset), vec![Effect::LessonReset]);
}

/// The plan search's candidates on the accuracy-vs-compression chart: their own series
/// (held-out accuracy), the chosen one marked, while the search runs in the status line.
#[test]
fn search_candidates_on_the_accuracy_vs_compression_chart_80x24() {
    let mut view = lenet5_view();
    view.curves.tune = vec![(30.0, 99.1), (52.0, 98.9), (61.0, 98.2), (44.0, 99.0)];
    view.curves.tune_chosen = Some((52.0, 98.9));
    view.job = Some(JobView {
        label: "plan search".into(),
        fraction: 0.5,
        detail:
            "candidate 5 (fewer bits): keep 66% / 12% / 8% / 19%, bits 8 / 5 / 4 / 5 · epoch 1/2"
                .into(),
        then: Vec::new(),
    });
    view.searching = true;
    let mut app = app_without_color(view);
    app.update(Action::NextCurve);
    assert_eq!(app.curve_tab, CurveTab::History);
    let screen = render(&app, 80, 24);
    let text = screen_text(&screen);
    assert!(text.contains("search (held-out)"), "{text}");
    assert!(text.contains("plan search"), "{text}");
    insta::assert_snapshot!(screen.backend());
    // Esc stops the search rather than asking to quit.
    assert_eq!(app.update(Action::Back), vec![Effect::StopSearch]);
    assert_eq!(app.mode, Mode::Normal);
}

/// `a` asks the search's budget first: what to type, what Enter alone does; the typed text
/// shows as it is typed, at the smallest size the prompt is drawn for and a usual one.
#[test]
fn the_search_budget_prompt_60x20_and_80x24() {
    let mut app = app_without_color(lenet5_view());
    assert!(app.update(Action::Search).is_empty());
    for c in "0.8%".chars() {
        app.update(Action::Char(c));
    }
    assert_eq!(app.mode, Mode::EditBudget("0.8%".into()));
    for (w, h) in [(60, 20), (80, 24)] {
        let screen = render(&app, w, h);
        let text = screen_text(&screen);
        assert!(text.contains("plan search budget"), "{text}");
        assert!(text.contains("0.8%▏"), "{text}");
        insta::assert_snapshot!(format!("search_budget_{w}x{h}"), screen.backend());
    }
}

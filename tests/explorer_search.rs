//! The explorer's plan search (`a`) end to end without a terminal: it runs `dcx tune`'s search
//! from the session's recipe and plan in the background, plots each candidate on the
//! accuracy-vs-compression chart as its own series, writes the chosen plan as an experiment
//! under the export folder and makes it the plan; Esc stops it and nothing is written; a
//! plan the search cannot vary is refused with a reason.

mod common;

use std::path::Path;
use std::sync::Arc;

use dcx::analysis::tune::{self, Budget};
use dcx::experiment::{Experiment, PruneRule};
use dcx::explore::WorkerOptions;
use dcx::tui::controller::{Controller, Setup};
use dcx::tui::keys::Action;
use dcx::tui::search::SearchSettings;

/// An explorer on the fixture with that recipe's LeNet-300-100 baseline, evaluated, whose `a`
/// searches cheaply: 100 held-out images, six pipeline runs, a budget of 5 points.
fn explorer(cache: &Path, exports: &Path) -> Controller {
    let mut ctl = Controller::start(Setup {
        data: Arc::new(common::fixture()),
        template: common::tune_recipe(),
        cache_dir: cache.to_path_buf(),
        export_root: exports.to_path_buf(),
        runs: Vec::new(),
        lecture: false,
        worker: WorkerOptions::default(),
        lessons_dir: std::path::PathBuf::from("lessons"),
        lesson_start: None,
        lesson: None,
    })
    .unwrap();
    ctl.set_search_settings(SearchSettings {
        budget: Budget::MaxDrop(0.05),
        holdout: Some(100),
        candidates: 6,
    });
    common::pump_until(&mut ctl, "the baseline's accuracy", common::exact);
    ctl
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_searches_the_plan_plots_each_candidate_and_writes_and_applies_the_chosen_one() {
    let cache = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let mut ctl = explorer(cache.path(), exports.path());
    let (start, options, path) = ctl.search_request().unwrap();
    assert_eq!(options.holdout, 100);
    assert_eq!(path, exports.path().join("tune-lenet-300-100-001.toml"));
    assert_eq!(options.name, "tune-lenet-300-100-001");

    // `a` asks the budget; Enter alone keeps the last one (here the settings' 5 points).
    ctl.act(Action::Search);
    assert!(!ctl.searching());
    ctl.act(Action::Submit);
    assert!(ctl.searching());
    let message = ctl.app.message().unwrap().to_string();
    assert!(
        message.contains("at most 5 points below the baseline's held-out accuracy")
            && message.contains("Esc stops it"),
        "{message}"
    );
    assert_eq!(ctl.app.view.job.as_ref().unwrap().label, "plan search");
    // A second `a` starts nothing while one runs.
    ctl.act(Action::Search);
    assert!(ctl.app.message().unwrap().contains("is running"));
    common::pump_until(&mut ctl, "the search", |c| !c.searching());
    let result = ctl
        .searched()
        .unwrap_or_else(|| panic!("no result: {:?}", ctl.app.message_log))
        .clone();
    assert!(result.runs >= 2, "{} runs", result.runs);

    // Every candidate is a point of its own series at the history's ratio, its accuracy the
    // held-out one; the chosen one is marked; the Pareto front is the tried plans' alone.
    let curves = ctl.app.view.curves.clone();
    let dense = ctl.app.view.totals.dense_bytes;
    let points: Vec<(f64, f64)> = result
        .candidates
        .iter()
        .map(|c| {
            (
                dcx::pipeline::size::ratio(dense, c.bytes),
                100.0 * c.holdout_accuracy,
            )
        })
        .collect();
    assert_eq!(curves.tune, points);
    assert_eq!(curves.tune_chosen, Some(points[result.chosen]));
    for p in &curves.pareto {
        assert!(curves.history.contains(p), "{p:?} is not a tried plan");
    }

    // The chosen plan, written where the export writes, re-reads as the search's experiment.
    assert_eq!(files(exports.path()), std::slice::from_ref(&path));
    let written = Experiment::load(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.starts_with("# Found by the explorer's plan search")
            && text.contains(&format!("#   dcx compress {}\n", path.display())),
        "{text}"
    );
    assert_eq!(written, result.experiment);
    let chosen = &result.candidates[result.chosen];
    for (l, plan) in written.layer_plans().iter().enumerate() {
        assert_eq!(plan.prune, PruneRule::Keep(chosen.keep[l]));
        assert_eq!(plan.bits, chosen.bits[l]);
        assert_eq!(plan.index_bits, chosen.index_bits[l]);
    }
    // The status bar says where the plan went, its size and held-out accuracy, and the
    // command that reproduces it (the log keeps it).
    let (_, message) = ctl
        .app
        .message_log
        .iter()
        .rev()
        .find(|(_, m)| m.starts_with("plan search done"))
        .expect("the search says it is done");
    assert!(
        message.contains(&format!("dcx compress {}", path.display()))
            && message.contains(&format!(
                "{:.2}% held-out accuracy",
                100.0 * chosen.holdout_accuracy
            ))
            && message.contains(" B at "),
        "{message}"
    );
    assert!(
        ctl.app
            .message_log
            .iter()
            .any(|(_, m)| m.contains("are now the plan, on the checkpoint's weights")),
        "{:?}",
        ctl.app.message_log
    );

    // It became the plan, measured on the test set as any plan is.
    let plan = ctl.session().unwrap().plan().to_vec();
    for (l, s) in plan.iter().enumerate() {
        assert_eq!(s.plan.prune, PruneRule::Keep(chosen.keep[l]));
        assert_eq!(s.plan.bits, chosen.bits[l]);
        // The search stored the biases on grids (the recipe does not say): so does the plan.
        assert_eq!(s.plan.bias_bits, 8);
    }
    common::pump_until(&mut ctl, "the chosen plan's accuracy", common::exact);

    // `dcx tune`'s search from the same recipe and options finds the same.
    let data = common::fixture();
    let again = tune::run(&start, &options, &data, cache.path(), &mut common::Quiet)
        .unwrap()
        .unwrap();
    assert_eq!(again.candidates, result.candidates);
    assert_eq!(again.chosen, result.chosen);
    assert_eq!(again.experiment, result.experiment);
}

#[test]
fn esc_stops_the_search_and_nothing_is_written() {
    let cache = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let mut ctl = explorer(cache.path(), exports.path());
    let before = ctl.session().unwrap().plan().to_vec();
    // A typed budget is the search's.
    ctl.act(Action::Search);
    ctl.act(Action::Char('3'));
    ctl.act(Action::Submit);
    assert!(ctl.searching());
    let message = ctl.app.message().unwrap().to_string();
    assert!(
        message.contains("at most 3 points below the baseline's held-out accuracy"),
        "{message}"
    );
    ctl.act(Action::Back);
    assert!(
        !ctl.app.should_quit,
        "Esc stops the search, not the explorer"
    );
    common::pump_until(&mut ctl, "the search to stop", |c| !c.searching());
    let message = ctl.app.message().unwrap().to_string();
    assert!(message.contains("stopped: nothing written"), "{message}");
    assert!(ctl.searched().is_none());
    assert!(files(exports.path()).is_empty());
    assert_eq!(ctl.session().unwrap().plan(), &before[..]);
    assert!(ctl.app.view.curves.tune_chosen.is_none());
    // With nothing running, Esc quits again.
    ctl.act(Action::Back);
    if ctl.app.mode == dcx::tui::app::Mode::ConfirmQuit {
        ctl.act(Action::Char('y'));
    }
    assert!(ctl.app.should_quit);
}

#[test]
fn a_plan_the_search_cannot_vary_is_refused_with_the_reason() {
    let cache = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let mut ctl = explorer(cache.path(), exports.path());
    // Q: the first layer on a uniform grid, which the search (k-means only) does not vary.
    ctl.act(Action::CycleQuantizer);
    ctl.act(Action::Search);
    ctl.act(Action::Submit);
    assert!(!ctl.searching());
    let message = ctl.app.message().unwrap().to_string();
    assert!(
        message.contains("cannot be searched") && message.contains("quantizer 'uniform'"),
        "{message}"
    );
    assert!(
        ctl.app
            .message_log
            .iter()
            .any(|(_, m)| m.contains("cannot be searched"))
    );
    assert!(files(exports.path()).is_empty());
}

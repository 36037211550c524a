//! `dcx tune`'s search on the committed fixture: it keeps its budget on the held-out training
//! images, never reads the test set, and the plan it writes re-runs to the same file.

mod common;

use std::path::Path;

use dcx::analysis::tune::{self, Budget, TuneOptions, TuneResult};
use dcx::data::Mnist;
use dcx::experiment::Experiment;
use dcx::model::train;

const HOLDOUT: usize = 100;

fn options() -> TuneOptions {
    TuneOptions {
        budget: Budget::MaxDrop(0.02),
        holdout: HOLDOUT,
        candidates: 4,
        name: "tuned".into(),
    }
}

fn search(data: &Mnist, cache: &Path) -> TuneResult {
    tune::run(
        &common::tune_recipe(),
        &options(),
        data,
        cache,
        &mut common::Quiet,
    )
    .unwrap()
    .expect("not stopped")
}

/// The fixture with every test label moved to the next class and every test pixel negated.
fn poisoned(clean: &Mnist) -> Mnist {
    let mut m = clean.clone();
    for l in &mut m.test.labels {
        *l = (*l + 1) % 10;
    }
    for p in &mut m.test.images {
        *p = -*p;
    }
    m.fingerprint = format!("{}-poisoned", clean.fingerprint);
    m
}

#[test]
fn the_search_never_reads_the_test_set_and_its_plan_re_runs_to_the_same_file() {
    let clean = common::fixture();
    let dirty = poisoned(&clean);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let found = search(&clean, a.path());
    let again = search(&dirty, b.path());
    assert_eq!(found.candidates, again.candidates);
    assert_eq!(found.chosen, again.chosen);
    assert_eq!(found.experiment, again.experiment);
    assert_eq!(
        found.baseline_holdout_accuracy,
        again.baseline_holdout_accuracy
    );
    assert!(found.runs >= 2, "{} runs", found.runs);

    // Within budget on the held-out images, and the choice is the smallest that is.
    let chosen = &found.candidates[found.chosen];
    assert!(chosen.within_budget);
    assert!(chosen.holdout_accuracy >= found.floor);
    assert!((found.floor - (found.baseline_holdout_accuracy - 0.02)).abs() < 1e-12);
    for c in &found.candidates {
        assert_eq!(c.within_budget, c.holdout_accuracy >= found.floor, "{c:?}");
        if c.within_budget {
            assert!(c.bytes >= chosen.bytes, "{c:?} is smaller than {chosen:?}");
        }
    }

    // The written experiment parses, trains on the images the search trained on, and
    // `dcx compress` of it on the real data gives the chosen candidate's file.
    let exp = Experiment::parse(&found.experiment.to_toml(), "the written plan").unwrap();
    assert_eq!(exp, found.experiment);
    assert_eq!(exp.train.train_limit, Some(clean.train.len - HOLDOUT));
    let view = clean.holdout(HOLDOUT).unwrap();
    let mut accuracies = Vec::new();
    for (data, cache) in [(&clean, a.path()), (&dirty, b.path())] {
        let result = dcx::pipeline::run(&exp, data, cache, &mut common::Quiet).unwrap();
        assert_eq!(result.bytes.len() as u64, chosen.bytes);
        let net = dcx::format::dcz::from_bytes(&result.bytes)
            .unwrap()
            .model
            .to_net()
            .unwrap();
        let held = train::evaluate(&net, &view.test).unwrap().accuracy;
        assert_eq!(held, chosen.holdout_accuracy);
        accuracies.push(train::evaluate(&net, &data.test).unwrap().accuracy);
    }
    // Only the final test accuracy tells the two data sets apart.
    assert_ne!(accuracies[0], accuracies[1]);
}

#[test]
fn a_budget_the_baseline_itself_misses_is_an_error_naming_it() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = TuneOptions {
        budget: Budget::MaxError(0.001),
        ..options()
    };
    let err = tune::run(
        &common::tune_recipe(),
        &opts,
        &data,
        dir.path(),
        &mut common::Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--max-error"), "{err}");
    assert!(err.contains("held-out error"), "{err}");
}

#[test]
fn a_holdout_that_leaves_no_training_image_is_an_error_naming_it() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = TuneOptions {
        holdout: data.train.len,
        ..options()
    };
    let err = tune::run(
        &common::tune_recipe(),
        &opts,
        &data,
        dir.path(),
        &mut common::Quiet,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--holdout"), "{err}");
}

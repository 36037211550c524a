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
        refine: false,
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
    assert!(tune::within_budget(chosen.holdout_accuracy, found.floor));
    assert!((found.floor - (found.baseline_holdout_accuracy - 0.02)).abs() < 1e-12);
    for c in &found.candidates {
        assert_eq!(
            c.within_budget,
            tune::within_budget(c.holdout_accuracy, found.floor),
            "{c:?}"
        );
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

#[test]
fn the_best_plan_is_thinned_a_rung_at_a_time_and_the_thinned_plan_re_runs_to_its_file() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let opts = TuneOptions {
        budget: Budget::MaxDrop(0.05),
        candidates: 8,
        ..options()
    };
    let found = tune::run(
        &common::tune_recipe(),
        &opts,
        &data,
        cache.path(),
        &mut common::Quiet,
    )
    .unwrap()
    .expect("not stopped");
    let thinned: Vec<&tune::Candidate> = found
        .candidates
        .iter()
        .filter(|c| c.ran && c.label == "thinner units")
        .collect();
    assert!(!thinned.is_empty(), "{:#?}", found.candidates);
    let last = found.layers.len() - 1;
    let mut before = vec![1.0; found.layers.len()];
    for c in &thinned {
        // Only sparse layers lose units, never the classes, and each step goes lower.
        for (l, (&u, &k)) in c.units.iter().zip(&c.keep).enumerate() {
            assert!(u == 1.0 || (k <= 0.25 && l != last), "{c:?}");
            assert!(u <= before[l], "{c:?}");
        }
        assert!(c.units != before, "{c:?}");
        // The plan it thinned was the best so far: same keep shares and bits, fewer bytes
        // than the thinned one or within budget.
        let from = found
            .candidates
            .iter()
            .take_while(|o| !std::ptr::eq(*o, *c))
            .filter(|o| o.within_budget && o.keep == c.keep && o.bits == c.bits)
            .min_by_key(|o| o.bytes)
            .expect("a plan within budget before it");
        assert!(from.units.iter().zip(&c.units).all(|(a, b)| b <= a));
        before = c.units.clone();
    }

    // Thinning paid here: the chosen plan cuts units, by the L1 rule its experiment names,
    // and its file comes back from that experiment.
    let chosen = &found.candidates[found.chosen];
    assert!(chosen.units.iter().any(|&u| u < 1.0), "{chosen:?}");
    let exp = Experiment::parse(&found.experiment.to_toml(), "the written plan").unwrap();
    for (plan, &u) in exp.layer_plans().iter().zip(&chosen.units) {
        assert_eq!(plan.structured.map(|s| s.keep), (u < 1.0).then_some(u));
    }
    let result = dcx::pipeline::run(&exp, &data, cache.path(), &mut common::Quiet).unwrap();
    assert_eq!(result.bytes.len() as u64, chosen.bytes);
}

#[test]
fn a_start_s_structured_rules_give_way_to_the_search_s_units_and_its_bias_storage_holds() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut start = common::tune_recipe();
    start.layers.entry("fc1".into()).or_default().structured = Some(dcx::experiment::UnitRule {
        keep: 0.5,
        rank: dcx::experiment::UnitRank::Apoz,
    });
    // A start that says how a layer stores its biases keeps it; the others go on grids.
    start.layers.entry("fc2".into()).or_default().bias_bits = Some(32);
    tune::check_searchable(&start).unwrap();
    let found = tune::run(&start, &options(), &data, cache.path(), &mut common::Quiet)
        .unwrap()
        .expect("not stopped");
    // The written plan cuts exactly the chosen candidate's units, by L1 norm: the start's
    // APoZ rule is gone.
    let chosen = &found.candidates[found.chosen];
    for (plan, &u) in found.experiment.layer_plans().iter().zip(&chosen.units) {
        let expected = (u < 1.0).then_some(dcx::experiment::UnitRule {
            keep: u,
            rank: dcx::experiment::UnitRank::L1,
        });
        assert_eq!(plan.structured, expected);
    }
    let bias_bits: Vec<u8> = found
        .experiment
        .layer_plans()
        .iter()
        .map(|p| p.bias_bits)
        .collect();
    assert_eq!(bias_bits, [8, 32, 8]);
}

/// `dcx tune --refit`: the plan is chosen as always, then the written experiment trains on
/// every training image; the file it reports is that experiment's, which `dcx compress`
/// writes again byte for byte.
#[test]
fn refit_writes_the_chosen_plan_trained_on_every_training_image() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("start.toml"),
        common::tune_recipe().to_toml(),
    )
    .unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
    let dcx = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcx"))
            .args(["--data", fixture.to_str().unwrap()])
            .args(args)
            .current_dir(dir.path())
            .env("DCX_CACHE", cache.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let said = dcx(&[
        "tune",
        "--experiment",
        "start.toml",
        "--holdout",
        &HOLDOUT.to_string(),
        "--max-drop",
        "5",
        "--candidates",
        "4",
        "--refit",
        "--out",
        "plan.toml",
    ]);
    let data = common::fixture();
    assert!(
        said.contains(&format!("refit on all {} training images", data.train.len)),
        "{said}"
    );
    let text = std::fs::read_to_string(dir.path().join("plan.toml")).unwrap();
    assert!(text.contains("(refit)"), "{text}");
    // The header says how far chance moves a held-out accuracy near the baseline's.
    let after = |marker: &str| -> f64 {
        let rest = &text[text
            .find(marker)
            .unwrap_or_else(|| panic!("{marker}: {text}"))
            + marker.len()..];
        rest.trim_start_matches(['#', ' ', '\n'])
            .split(|c: char| !(c.is_ascii_digit() || c == '.'))
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let baseline = after("; baseline ") / 100.0;
    let said_error = after("standard error of a held-out accuracy there: ");
    let binomial = (baseline * (1.0 - baseline) / HOLDOUT as f64).sqrt() * 100.0;
    assert!(
        (said_error - binomial).abs() < 0.006,
        "{said_error} vs {binomial}: {text}"
    );
    assert!(said_error > 0.0, "{text}");
    let plan = Experiment::parse(&text, "plan.toml").unwrap();
    assert_eq!(plan.train.train_limit, None, "every training image");
    let searched = std::fs::read(dir.path().join("out/plan/model.dcz")).unwrap();

    dcx(&["compress", "plan.toml", "--out", "again"]);
    let again = std::fs::read(dir.path().join("again/model.dcz")).unwrap();
    assert_eq!(again, searched);
    // The chosen candidate is the same plan trained without the held-out images: that one
    // gives the bytes the table lists, and other weights than the refit's.
    let chosen_bytes: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("# *"))
        .filter_map(|l| l.split(" B ").next()?.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(chosen_bytes.len(), 1, "{text}");
    let mut held = plan.clone();
    held.train.train_limit = Some(data.train.len - HOLDOUT);
    held.description = held.description.replace(
        &format!(", then trained on all {} training images", data.train.len),
        "",
    );
    std::fs::write(dir.path().join("plan.toml"), held.to_toml()).unwrap();
    dcx(&["compress", "plan.toml", "--out", "held"]);
    let candidate = std::fs::read(dir.path().join("held/model.dcz")).unwrap();
    assert_eq!(candidate.len() as u64, chosen_bytes[0]);
    let weights = |bytes: &[u8]| {
        dcx::format::dcz::from_bytes(bytes)
            .unwrap()
            .model
            .layers
            .iter()
            .map(|l| l.dense_weights())
            .collect::<Vec<_>>()
    };
    assert_ne!(weights(&candidate), weights(&again));
}

/// `--refine`: the start's own plan is the first run (no sweep, no allocation), and every
/// later run only makes it smaller: the same keep shares, no more bits, no more units.
#[test]
fn refining_starts_from_the_start_s_plan_and_only_lowers_bits_and_units() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut start = common::tune_recipe();
    for (name, keep, bits) in [("fc1", 0.1, 5), ("fc2", 0.2, 4), ("fc3", 1.0, 5)] {
        let o = start.layers.entry(name.into()).or_default();
        o.prune = Some(dcx::experiment::PruneRule::Keep(keep));
        o.bits = Some(bits);
    }
    start.layers.get_mut("fc1").unwrap().structured = Some(dcx::experiment::UnitRule {
        keep: 0.5,
        rank: dcx::experiment::UnitRank::L1,
    });
    let opts = TuneOptions {
        budget: Budget::MaxDrop(0.3),
        candidates: 4,
        refine: true,
        ..options()
    };
    let found = tune::run(&start, &opts, &data, cache.path(), &mut common::Quiet)
        .unwrap()
        .expect("not stopped");
    let first = &found.candidates[0];
    assert_eq!(first.label, "the start's plan");
    assert_eq!(first.keep, [0.1, 0.2, 1.0]);
    assert_eq!(first.bits, [5, 4, 5]);
    assert_eq!(first.index_bits, [5, 5, 5]);
    assert_eq!(first.units, [0.5, 1.0, 1.0]);
    assert!(found.runs >= 2, "{:#?}", found.candidates);
    for c in &found.candidates {
        assert!(!c.label.starts_with("allocation"), "{c:?}");
        assert_eq!(c.keep, first.keep, "{c:?}");
        assert!(c.bits.iter().zip(&first.bits).all(|(a, b)| a <= b), "{c:?}");
        assert!(
            c.units.iter().zip(&first.units).all(|(a, b)| a <= b),
            "{c:?}"
        );
    }
    let chosen = &found.candidates[found.chosen];
    assert!(chosen.bytes <= first.bytes, "{chosen:?}");
    assert!(
        found
            .experiment
            .description
            .starts_with("refined by dcx tune from tiny"),
        "{}",
        found.experiment.description
    );
}

#[test]
fn refining_a_plan_pruned_by_a_threshold_is_an_error_naming_the_layer() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut start = common::tune_recipe();
    start.layers.entry("fc2".into()).or_default().prune =
        Some(dcx::experiment::PruneRule::Threshold(0.01));
    let opts = TuneOptions {
        refine: true,
        ..options()
    };
    let err = tune::run(&start, &opts, &data, cache.path(), &mut common::Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--refine: layer fc2"), "{err}");
    assert!(err.contains("keep share"), "{err}");
}

#[test]
fn refining_a_start_over_budget_says_the_start_is_the_problem() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let mut start = common::tune_recipe();
    for name in ["fc1", "fc2", "fc3"] {
        let o = start.layers.entry(name.into()).or_default();
        o.prune = Some(dcx::experiment::PruneRule::Keep(0.01));
        o.bits = Some(2);
    }
    let opts = TuneOptions {
        budget: Budget::MaxDrop(0.0),
        refine: true,
        ..options()
    };
    let err = tune::run(&start, &opts, &data, cache.path(), &mut common::Quiet)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--refine: the start's own plan is over the budget"),
        "{err}"
    );
}

/// `--refine` refines an experiment's plan: with `--model` there is none, and it says so
/// before reading any data.
#[test]
fn refine_without_an_experiment_is_an_error_before_any_data_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--data", dir.path().join("absent").to_str().unwrap()])
        .args([
            "tune",
            "--model",
            "lenet-5",
            "--refine",
            "--max-drop",
            "0.1",
        ])
        .current_dir(dir.path())
        .env("DCX_CACHE", dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--refine: give --experiment"), "{err}");
}

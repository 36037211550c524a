//! The training-time methods: lottery-ticket rewinding and its control, L1 / L2 penalties,
//! dense-sparse-dense through the pipeline, the aggressive and iterative schedules, and
//! `dcx study` (fixture data, an epoch or two).

mod common;

use std::process::{Command, Output};

use dcx::analysis::study::{self, ACCURACY, FIRST_EPOCH, PRUNED, StudyKind, StudyOptions};
use dcx::experiment::Experiment;
use dcx::model::cache;
use dcx::model::train::{self, Silent, Snapshot, TrainConfig};
use dcx::model::{ModelKind, Net};
use dcx::pipeline::layer::LayerState;
use dcx::pipeline::lottery;

const MODEL: ModelKind = ModelKind::Lenet300100;

fn quick(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        seed,
        ..TrainConfig::default()
    }
}

fn dense_states(net: &Net) -> Vec<LayerState> {
    (0..net.params.len())
        .map(|l| LayerState::dense(net.weight_values(l).unwrap(), net.bias_values(l).unwrap()))
        .collect()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// The baseline's checkpoint keeps its initialisation; a round's survivors start from it bit
/// for bit, the cut weights from exact zeros, and training holds the cut.
#[test]
fn rewinding_restores_the_exact_initial_values_of_the_survivors_and_keeps_the_mask() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(1, 4);
    // A checkpoint saved without snapshots (as before they existed) cannot be rewound: asked
    // for them, the cache trains the recipe again and keeps them.
    let plain = cache::obtain(&MODEL.arch(), &cfg, &data, false, dir.path(), &mut Silent).unwrap();
    let (got, snaps) = cache::obtain_keeping(
        &MODEL.arch(),
        &cfg,
        None,
        &data,
        false,
        dir.path(),
        &[0, 1],
        &mut Silent,
    )
    .unwrap();
    assert!(
        !got.reused,
        "a checkpoint without the snapshots was reused for rewinding"
    );
    assert_eq!(
        got.net.weight_values(0).unwrap(),
        plain.net.weight_values(0).unwrap(),
        "keeping snapshots changed the training"
    );
    // Read back from the file this time.
    let (again, snaps_again) = cache::obtain_keeping(
        &MODEL.arch(),
        &cfg,
        None,
        &data,
        false,
        dir.path(),
        &[0],
        &mut Silent,
    )
    .unwrap();
    assert!(again.reused);
    assert_eq!(snaps_again[0], snaps[0]);
    assert_eq!(snaps[1].epoch, 1);
    assert!(same_bits(
        &snaps[1].values[0].0,
        &got.net.weight_values(0).unwrap()
    ));
    let init = Snapshot::of(&Net::new(&MODEL.arch(), cfg.seed).unwrap(), 0).unwrap();
    for (l, ((w, b), (iw, ib))) in snaps_again[0].values.iter().zip(&init.values).enumerate() {
        assert!(
            same_bits(w, iw) && same_bits(b, ib),
            "layer {l}: not the initialisation"
        );
    }

    let plan: dcx::experiment::LotteryPlan = toml::from_str("rounds = 2").unwrap();
    let rates = lottery::rates(&plan, 3);
    let masks = lottery::prune_round(&dense_states(&again.net), &rates);
    let start = lottery::masked_start(&snaps_again[0].values, &masks);
    for (l, (m, (w, b))) in masks.iter().zip(&start).enumerate() {
        let n = m.weights.len();
        let want = ((n as f64) * (1.0 - rates[l] as f64)).round() as usize;
        assert_eq!(m.kept(), want, "layer {l}");
        for (i, (&w, (&keep, &init))) in w
            .iter()
            .zip(m.weights.iter().zip(&init.values[l].0))
            .enumerate()
        {
            let expected = if keep { init } else { 0.0 };
            assert_eq!(w.to_bits(), expected.to_bits(), "layer {l} weight {i}");
        }
        assert!(
            same_bits(b, &init.values[l].1),
            "layer {l}: biases are not pruned"
        );
    }
    let (net, out) = lottery::train_masked(
        &MODEL.arch(),
        start,
        &masks,
        &quick(1, 4),
        &data,
        None,
        &mut Silent,
    )
    .unwrap();
    assert!(!out.cancelled);
    for (l, m) in masks.iter().enumerate() {
        let w = net.weight_values(l).unwrap();
        let init_w = &init.values[l].0;
        assert!(
            m.weights.iter().zip(&w).all(|(&k, &v)| k || v == 0.0),
            "layer {l}: the cut grew back"
        );
        let moved = (0..w.len())
            .filter(|&i| m.weights[i] && w[i] != init_w[i])
            .count();
        assert!(
            moved > m.kept() / 2,
            "layer {l}: only {moved} survivors trained"
        );
    }
    // The next round cuts 20% of what is left: the mask only shrinks.
    let next = lottery::prune_round(
        &lottery::states_after(&net, masks.clone(), &dense_states(&again.net)).unwrap(),
        &rates,
    );
    for (a, b) in masks.iter().zip(&next) {
        assert!(a.weights.iter().zip(&b.weights).all(|(&a, &b)| a || !b));
        assert!(b.kept() < a.kept());
    }
}

/// The control: the same mask, values of another initialisation.
#[test]
fn the_reinit_control_has_the_same_mask_and_other_values() {
    let init = Net::new(&MODEL.arch(), 4).unwrap();
    let masks = lottery::prune_round(&dense_states(&init), &[0.5, 0.5, 0.25]);
    let winning = lottery::masked_start(&Snapshot::of(&init, 0).unwrap().values, &masks);
    let control = lottery::masked_start(
        &lottery::reinit_values(&MODEL.arch(), 4, 1).unwrap(),
        &masks,
    );
    let other_round = lottery::masked_start(
        &lottery::reinit_values(&MODEL.arch(), 4, 2).unwrap(),
        &masks,
    );
    for (l, m) in masks.iter().enumerate() {
        let (w, c) = (&winning[l].0, &control[l].0);
        let mut differ = 0;
        for i in 0..m.weights.len() {
            if m.weights[i] {
                differ += (w[i] != c[i]) as usize;
            } else {
                assert_eq!((w[i], c[i]), (0.0, 0.0), "layer {l} weight {i}: not cut");
            }
        }
        assert!(
            differ > m.kept() * 99 / 100,
            "layer {l}: {differ} of {} differ",
            m.kept()
        );
        assert_ne!(control[l].0, other_round[l].0, "each round draws its own");
    }
}

/// One SGD step (no momentum) on one batch: the penalty moves each weight by exactly
/// -lr · lambda · sign(w) (L1) or -lr · 2 · lambda · w (L2) more than the data alone,
/// on the named layers only.
#[test]
fn a_penalty_adds_its_gradient_on_a_real_network() {
    let data = common::fixture();
    let sgd = TrainConfig {
        epochs: 1,
        batch_size: 16,
        lr: 0.1,
        optimizer: dcx::model::optim::OptimizerKind::Sgd,
        momentum: 0.0,
        schedule: dcx::model::train::Schedule::Constant,
        seed: 2,
        // One batch: one step.
        train_limit: Some(16),
        ..TrainConfig::default()
    };
    let step = |cfg: &TrainConfig| {
        let net = Net::new(&MODEL.arch(), 9).unwrap();
        train::train(&net, &data, cfg, &[], &mut Silent).unwrap();
        (0..3)
            .map(|l| net.weight_values(l).unwrap())
            .collect::<Vec<_>>()
    };
    let init: Vec<Vec<f32>> = {
        let net = Net::new(&MODEL.arch(), 9).unwrap();
        (0..3).map(|l| net.weight_values(l).unwrap()).collect()
    };
    let plain = step(&sgd);
    let lambda = 0.01f32;
    let l1 = step(&TrainConfig {
        l1: lambda as f64,
        ..sgd.clone()
    });
    let l2 = step(&TrainConfig {
        l2: lambda as f64,
        ..sgd.clone()
    });
    for l in 0..3 {
        for i in (0..init[l].len()).step_by(97) {
            let w = init[l][i];
            let sign = if w > 0.0 {
                1.0
            } else if w < 0.0 {
                -1.0
            } else {
                0.0
            };
            let d1 = l1[l][i] - plain[l][i];
            let d2 = l2[l][i] - plain[l][i];
            assert!(
                (d1 - -0.1 * lambda * sign).abs() < 2e-6,
                "L1 layer {l} weight {i}: {d1}"
            );
            assert!(
                (d2 - -0.1 * 2.0 * lambda * w).abs() < 2e-6,
                "L2 layer {l} weight {i}: {d2}"
            );
        }
    }
    // Only fc3's own penalty: the other layers step as without one, bit for bit.
    let mut fc3 = sgd.clone();
    fc3.penalty.insert(
        "fc3".into(),
        dcx::model::train::LayerPenalty {
            l1: Some(lambda as f64),
            l2: None,
        },
    );
    let only = step(&fc3);
    assert_eq!(only[0], plain[0]);
    assert_eq!(only[1], plain[1]);
    assert_ne!(only[2], plain[2]);
    // A layer that does not exist is an error naming it, not a silent no-op.
    let mut typo = sgd.clone();
    typo.penalty.insert("fc9".into(), Default::default());
    let net = Net::new(&MODEL.arch(), 9).unwrap();
    let err = train::train(&net, &data, &typo, &[], &mut Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("penalty.fc9"), "{err}");
}

fn experiment(extra: &str) -> Experiment {
    let text = format!(
        "name = \"t\"\nmodel = \"lenet-300-100\"\n[train]\nepochs = 1\nbatch_size = 32\nlr = 0.001\noptimizer = \"adam\"\nschedule = \"cosine\"\nseed = 3\n{extra}"
    );
    Experiment::parse(&text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// `dcx compress` runs `[lottery]` rounds, then the plan: the file keeps the last round's mask.
#[test]
fn the_pipeline_runs_lottery_rounds_and_the_control_on_the_last() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    for (control, start) in [("winning", "rewound to init"), ("reinit", "random reinit")] {
        let exp = experiment(&format!(
            "[lottery]\nrounds = 2\nprune = 0.5\ncontrol = \"{control}\"\n[defaults]\nbits = 4\n"
        ));
        let r = dcx::pipeline::run(&exp, &data, dir.path(), &mut common::Quiet).unwrap();
        let stages: Vec<&str> = r.report.stages.iter().map(|s| s.stage.as_str()).collect();
        assert_eq!(stages.len(), 4, "{stages:?}");
        assert!(stages[1].starts_with("lottery round 1") && stages[1].contains("rewound to init"));
        assert!(
            stages[2].starts_with("lottery round 2") && stages[2].contains(start),
            "{stages:?}"
        );
        // fc1 and fc2 keep a quarter, fc3 (the output layer) 0.75^2.
        let kept: Vec<usize> = r.model.layers.iter().map(|l| l.kept()).collect();
        assert_eq!(kept, vec![58800, 7500, 563]);
        assert_eq!(r.report.retrain_history.len(), 2);
    }
}

/// `[dsd]`: the sparse phase prunes to `keep` and retrains, the dense phase frees every weight;
/// the file is dense (the plan prunes nothing).
#[test]
fn dense_sparse_dense_ends_dense_through_the_pipeline() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let exp = experiment("[dsd]\nkeep = 0.3\nepochs = 1\nlr = 0.001\n");
    let steps = exp.recipe();
    assert_eq!(steps.len(), 2);
    assert_eq!(
        steps[1].lr, 0.0001,
        "the dense phase's rate defaults to a tenth"
    );
    let r = dcx::pipeline::run(&exp, &data, dir.path(), &mut common::Quiet).unwrap();
    let stages: Vec<(&str, f64)> = r
        .report
        .stages
        .iter()
        .map(|s| (s.stage.as_str(), s.kept))
        .collect();
    assert_eq!(stages[2].0, "retrained");
    assert!((stages[2].1 - 0.3).abs() < 1e-3, "{stages:?}");
    assert_eq!(stages[4].0, "dense-sparse-dense");
    let fc1 = &r.model.layers[0];
    // Every weight is stored; the ones the sparse phase cut trained away from zero.
    assert_eq!(fc1.kept(), fc1.weight_count());
    let weights = r.net.weight_values(0).unwrap();
    let nonzero = weights.iter().filter(|&&w| w != 0.0).count();
    assert!(
        nonzero > weights.len() / 2,
        "{nonzero} of {} nonzero",
        weights.len()
    );
}

/// `[retrain_distill]`: the retraining and fine-tuning steps learn from the uncompressed
/// baseline's logits (stored beside its checkpoint). With `alpha = 0` the soft targets weigh
/// nothing and the run is the plain one bit for bit; with `alpha = 0.9` they move the weights.
#[test]
fn retraining_learns_from_the_uncompressed_baseline_when_asked() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let recipe = "[defaults]\nbits = 4\n[defaults.prune]\nkeep = 0.2\n[retrain]\nrounds = 1\nepochs = 1\nlr = 0.001\n[finetune]\nepochs = 1\nlr = 0.0001\n";
    let run = |extra: &str| {
        let exp = experiment(&format!("{recipe}{extra}"));
        dcx::pipeline::run(&exp, &data, dir.path(), &mut common::Quiet).unwrap()
    };
    let logits_files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains("logits")
            })
            .count()
    };
    let plain = run("");
    assert_eq!(logits_files(), 0, "a plain run computes no teacher logits");
    let weightless = run("[retrain_distill]\ntemperature = 4.0\nalpha = 0.0\n");
    let taught = run("[retrain_distill]\ntemperature = 4.0\nalpha = 0.9\n");
    let differing = |other: &dcx::pipeline::CompressionResult| {
        (0..3)
            .map(|l| {
                let a = plain.net.weight_values(l).unwrap();
                let b = other.net.weight_values(l).unwrap();
                a.iter()
                    .zip(&b)
                    .filter(|(x, y)| x.to_bits() != y.to_bits())
                    .count()
            })
            .sum::<usize>()
    };
    assert_eq!(differing(&weightless), 0);
    let moved = differing(&taught);
    assert!(moved > 1000, "{moved} weights differ");
    // The same baseline taught both: its logits were computed once and kept.
    assert_eq!(logits_files(), 1);
    // Lottery rounds are retraining too: the teacher reaches them.
    let lottery = |alpha: &str| {
        let exp = experiment(&format!(
            "[lottery]\nrounds = 1\nprune = 0.5\n[defaults]\nbits = 4\n[retrain_distill]\ntemperature = 4.0\nalpha = {alpha}\n"
        ));
        let r = dcx::pipeline::run(&exp, &data, dir.path(), &mut common::Quiet).unwrap();
        assert!(r.report.stages[1].stage.starts_with("lottery round 1"));
        r.net.weight_values(0).unwrap()
    };
    assert_ne!(lottery("0.0"), lottery("0.9"));
    let header = "name = \"t\"\nmodel = \"lenet-300-100\"\n";
    let train = "[train]\nepochs = 1\nbatch_size = 32\nlr = 0.001\noptimizer = \"adam\"\nschedule = \"cosine\"\nseed = 3\n";
    for (top, extra, expected) in [
        (
            "",
            "[retrain_distill]\ntemperature = 4.0\nalpha = 1.5\n",
            "retrain_distill.alpha",
        ),
        (
            "from_scratch = true\n",
            "[retrain_distill]\ntemperature = 4.0\nalpha = 0.5\n",
            "retrain_distill: a from_scratch recipe",
        ),
    ] {
        let text = format!("{header}{top}{train}{extra}");
        let err = Experiment::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains(expected) && err.contains("t.toml"), "{err}");
    }
}

fn study_opts(kind: StudyKind) -> StudyOptions {
    StudyOptions {
        seeds: 2,
        epochs: 1,
        retrain_epochs: 1,
        train_limit: Some(200),
        ..StudyOptions::new(kind, MODEL)
    }
}

/// One prune to the target and several gentle ones end at the same sparsity, layer by layer.
#[test]
fn aggressive_and_iterative_schedules_reach_the_same_sparsity() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = StudyOptions {
        keep: Some(vec![0.3, 0.05]),
        ..study_opts(StudyKind::PruneSchedule)
    };
    let s = study::run(&opts, &data, dir.path(), &mut common::Quiet)
        .unwrap()
        .unwrap();
    assert_eq!(s.rows.len(), 4);
    for pair in s.rows.chunks(2) {
        let (once, gentle) = (&pair[0], &pair[1]);
        assert_eq!(once.group, gentle.group);
        assert!(once.variant.starts_with("aggressive") && gentle.variant.starts_with("iterative"));
        assert_eq!(once.kept, gentle.kept, "{}", once.group);
        assert_eq!(
            once.metric(ACCURACY).unwrap().values.len(),
            2,
            "one value per seed"
        );
        assert!(once.metric(PRUNED).is_some() && gentle.metric(PRUNED).is_none());
    }
    let want: usize = [235200usize, 30000, 1000]
        .iter()
        .map(|&n| (n as f64 * 0.3f32 as f64).round() as usize)
        .sum();
    assert!((s.rows[0].kept - want as f64 / 266200.0).abs() < 1e-12);
}

/// The lottery study: every round's winning ticket, the control where asked, both metrics
/// for both seeds, and the figure renders.
#[test]
fn the_lottery_study_trains_tickets_and_controls() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = StudyOptions {
        rounds: Some(3),
        control_rounds: vec![2, 9],
        ..study_opts(StudyKind::LotteryTicket)
    };
    let s = study::run(&opts, &data, dir.path(), &mut common::Quiet)
        .unwrap()
        .unwrap();
    let names: Vec<(String, String)> = s
        .rows
        .iter()
        .map(|r| (r.group.clone(), r.variant.clone()))
        .collect();
    let pairs: Vec<(&str, &str)> = names
        .iter()
        .map(|(g, v)| (g.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("dense", "baseline"),
            ("round 1", "winning ticket"),
            ("round 2", "winning ticket"),
            ("round 2", "random reinit"),
            ("round 3", "winning ticket"),
        ]
    );
    assert_eq!(s.rows[2].kept, s.rows[3].kept);
    assert!(
        s.rows
            .iter()
            .all(|r| r.metric(FIRST_EPOCH).unwrap().values.len() == 2)
    );
    let png = dcx::plot::render_study(
        "lottery-ticket",
        &s,
        dcx::plot::Format::Png,
        (800, 500),
        1.0,
    )
    .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<study::StudyData>(&json).unwrap(), s);
}

/// The L1 study trains its own baseline with the penalty (its own cache entry), and its
/// histograms share their bins.
#[test]
fn the_l1_study_compares_penalised_and_plain_baselines() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let s = study::run(
        &study_opts(StudyKind::L1),
        &data,
        dir.path(),
        &mut common::Quiet,
    )
    .unwrap()
    .unwrap();
    assert_eq!(s.histograms.len(), 2);
    let (a, b) = (&s.histograms[0], &s.histograms[1]);
    assert_eq!((a.lo, a.hi, a.counts.len()), (b.lo, b.hi, b.counts.len()));
    assert_eq!(a.counts.iter().sum::<u64>(), 235200);
    assert_ne!(a.counts, b.counts, "the penalty changed nothing");
    let checkpoints = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(checkpoints, 4, "two seeds, with and without the penalty");
    let png = dcx::plot::render_study("l1-histogram", &s, dcx::plot::Format::Png, (800, 500), 1.0)
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}

fn dcx(args: &[&str], cache: &std::path::Path) -> Output {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
    Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--data", &fixture.display().to_string()])
        .args(args)
        .env("DCX_CACHE", cache)
        .output()
        .expect("the binary runs")
}

#[test]
fn dcx_study_writes_its_table_json_and_figure() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dsd");
    let run = dcx(
        &[
            "study",
            "dsd",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--retrain-epochs",
            "1",
            "--limit",
            "200",
            "--out",
            &out.display().to_string(),
        ],
        dir.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("| dense-sparse-dense |") && stdout.contains(" ± "),
        "{stdout}"
    );
    let data: study::StudyData =
        serde_json::from_slice(&std::fs::read(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(data.study, StudyKind::Dsd);
    assert!(out.join("study.md").exists());
    let lottery = dir.path().join("lottery");
    let run = dcx(
        &[
            "study",
            "lottery-ticket",
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--rounds",
            "1",
            "--limit",
            "100",
            "--out",
            &lottery.display().to_string(),
        ],
        dir.path(),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(lottery.join("lottery-ticket.png").exists());
    // `dcx plot` re-renders a study's figure from its study.json, and says when it has none.
    let svg = dcx(
        &["plot", &lottery.display().to_string(), "--format", "svg"],
        dir.path(),
    );
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(lottery.join("lottery-ticket.svg").exists());
    let none = dcx(&["plot", &out.display().to_string()], dir.path());
    let err = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success() && err.contains("no figure"), "{err}");
}

#[test]
fn bad_study_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (args, words) in [
        (vec!["study", "lottery"], vec!["lottery-ticket"]),
        (vec!["study", "l1", "--seeds", "0"], vec!["--seeds"]),
        (
            vec!["study", "prune-schedule", "--keep", "0.5,2"],
            vec!["--keep", "2"],
        ),
        (
            vec!["study", "lottery-ticket", "--rewind", "start"],
            vec!["start", "init"],
        ),
        (
            vec!["study", "lottery-ticket", "--rewind", "9"],
            vec!["--rewind", "epoch 9"],
        ),
        (vec!["study", "l1", "--l1=-1"], vec!["--l1"]),
    ] {
        let out = dcx(&args, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_ne!(out.status.code(), Some(101), "{args:?} panicked: {err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: {w:?} missing from {err}");
        }
    }
}

/// Ctrl-C during a study: status 130, and the output folder as it was.
#[cfg(unix)]
#[test]
fn an_interrupted_study_exits_130_and_writes_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("study");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("earlier.txt"), "kept").unwrap();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--data", &fixture.display().to_string()])
        .args([
            "study",
            "l1",
            "--seeds",
            "1",
            "--epochs",
            "5000",
            "--out",
            &out.display().to_string(),
        ])
        .env("DCX_CACHE", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        seen.push_str(&line);
        if line.contains("epoch  1") {
            break;
        }
        line.clear();
    }
    assert!(seen.contains("epoch  1"), "never trained: {seen}");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(rest.contains("nothing written"), "{rest}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["earlier.txt"]);
}

/// The distillation study: the seed-1 teacher, the quarter-width student alone and at each
/// temperature, one value per seed; the student is LeNet-300-100 at a quarter of its units.
#[test]
fn the_distill_study_compares_a_student_alone_and_taught() {
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let opts = StudyOptions {
        temperatures: vec![4.0, 20.0],
        ..study_opts(StudyKind::Distill)
    };
    let student = study::quarter(&MODEL.arch());
    let units: Vec<usize> = student.layers.iter().map(|l| l.outputs).collect();
    assert_eq!(units, [75, 25, 10]);
    let s = study::run(&opts, &data, dir.path(), &mut common::Quiet)
        .unwrap()
        .unwrap();
    let variants: Vec<&str> = s.rows.iter().map(|r| r.variant.as_str()).collect();
    assert_eq!(
        variants,
        [
            "teacher (seed 1)",
            "alone",
            "distilled, T = 4",
            "distilled, T = 20"
        ]
    );
    for row in &s.rows[1..] {
        assert_eq!(
            row.metric(ACCURACY).unwrap().values.len(),
            2,
            "{}",
            row.variant
        );
    }
    // Taught and alone are different networks (the soft targets change the training).
    assert_ne!(
        s.rows[1].metric(ACCURACY).unwrap().values,
        s.rows[2].metric(ACCURACY).unwrap().values
    );
    let bad = StudyOptions {
        alpha: 1.5,
        ..opts.clone()
    };
    let err = study::run(&bad, &data, dir.path(), &mut common::Quiet).unwrap_err();
    assert!(err.to_string().contains("--alpha"), "{err}");
}

/// Network slimming's penalty: an L1 on a batch-norm's scales (`[train.penalty."conv1.bn"]`)
/// shrinks them against the same training without it; the layers' weights are untouched by
/// it (only the named batch-norm gets a penalty).
#[test]
fn an_l1_penalty_on_batch_norm_scales_shrinks_them() {
    let data = common::fixture();
    let text = |penalty: &str| {
        format!(
            r#"
name = "slim"
[model]
name = "slim-net"
layers = [
  {{ type = "conv", name = "conv1", outputs = 8, kernel = 5 }},
  {{ type = "batch-norm" }},
  {{ type = "relu" }},
  {{ type = "max-pool" }},
  {{ type = "flatten" }},
  {{ type = "fc", name = "fc1", outputs = 10 }},
]
[train]
epochs = 4
batch_size = 32
lr = 0.01
optimizer = "adam"
schedule = "constant"
seed = 2
{penalty}
"#
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let scales = |penalty: &str| {
        let exp = Experiment::parse(&text(penalty), "slim").unwrap();
        let got =
            dcx::pipeline::baseline::obtain(&exp, &data, false, dir.path(), &mut Silent).unwrap();
        let gamma: Vec<f32> = got.net.norms[0].scale.to_vec1().unwrap();
        gamma.iter().map(|g| g.abs() as f64).sum::<f64>() / gamma.len() as f64
    };
    let plain = scales("");
    let slim = scales("[train.penalty.\"conv1.bn\"]\nl1 = 0.5");
    assert!(
        slim < 0.5 * plain,
        "mean |gamma| {slim} with L1, {plain} without"
    );
    let err = Experiment::parse(&text("[train.penalty.bn9]\nl1 = 0.1"), "slim").unwrap_err();
    assert!(
        err.to_string().contains("train.penalty.bn9") && err.to_string().contains("conv1.bn"),
        "{err}"
    );
}

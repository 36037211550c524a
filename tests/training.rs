//! Training: reproducibility, learning, checkpoint reuse.

mod common;

use dcx::model::cache;
use dcx::model::train::{self, Silent, TrainConfig};
use dcx::model::{ModelKind, Net};

fn quick(epochs: usize, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 32,
        seed,
        ..TrainConfig::default()
    }
}

fn weights(net: &Net) -> Vec<Vec<f32>> {
    (0..net.arch.layers.len())
        .map(|l| net.weight_values(l).unwrap())
        .collect()
}

#[test]
fn same_seed_gives_the_same_weights() {
    let data = common::fixture().subset(256, 50);
    let run = |seed| {
        let net = Net::new(&ModelKind::Lenet5.arch(), seed).unwrap();
        train::train(&net, &data, &quick(1, seed), &[], &mut Silent).unwrap();
        weights(&net)
    };
    let a = run(3);
    assert_eq!(a, run(3), "same seed, different weights");
    assert_ne!(a, run(4), "different seeds gave identical weights");
}

#[test]
fn short_training_on_the_fixture_beats_chance() {
    let data = common::fixture();
    let net = Net::new(&ModelKind::Lenet300100.arch(), 1).unwrap();
    let before = train::evaluate(&net, &data.test).unwrap().accuracy;
    let out = train::train(&net, &data, &quick(5, 1), &[], &mut Silent).unwrap();
    let after = out.history.last().unwrap().test_accuracy;
    assert_eq!(out.history.len(), 5);
    assert!(after > 0.75, "600 images, 5 epochs: {after}");
    assert!(after > before + 0.5, "{before} -> {after}");
}

#[test]
fn a_few_thousand_real_images_train_lenet5_well_past_chance() {
    let Some(data) = common::full_mnist("a_few_thousand_real_images_train_lenet5_well_past_chance")
    else {
        return;
    };
    let data = data.subset(4000, 2000);
    let net = Net::new(&ModelKind::Lenet5.arch(), 1).unwrap();
    let out = train::train(&net, &data, &quick(1, 1), &[], &mut Silent).unwrap();
    let acc = out.history[0].test_accuracy;
    assert!(acc > 0.9, "4000 images, 1 epoch: {acc}");
}

struct StopAfter(usize, usize);
impl train::Observer for StopAfter {
    fn progress(&mut self, _p: &train::Progress) {
        self.1 += 1;
    }
    fn should_stop(&self) -> bool {
        self.1 >= self.0
    }
}

#[test]
fn cached_checkpoints_are_reused_and_cancelled_runs_are_not() {
    let data = common::fixture().subset(200, 50);
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(2, 5);

    let mut stop = StopAfter(3, 0);
    let partial = cache::obtain(
        &ModelKind::Lenet300100.arch(),
        &cfg,
        &data,
        false,
        dir.path(),
        &mut stop,
    )
    .unwrap();
    assert!(!partial.meta.complete && !partial.reused);
    assert_eq!(stop.1, 3, "training went on after the stop request");
    assert!(partial.path.exists());
    // What a checkpoint save killed mid-write leaves (its process is gone), and what one
    // still running has written so far.
    let mut running = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let killed = dir
        .path()
        .join(".lenet-5-e1-000000000000.safetensors.tmp-999999999");
    let writing = dir.path().join(format!(
        ".lenet-5-e1-000000000000.safetensors.tmp-{}",
        running.id()
    ));
    for p in [&killed, &writing] {
        std::fs::write(p, b"half a checkpoint").unwrap();
    }

    let first = cache::obtain(
        &ModelKind::Lenet300100.arch(),
        &cfg,
        &data,
        false,
        dir.path(),
        &mut Silent,
    )
    .unwrap();
    assert!(
        first.meta.complete && !first.reused,
        "a partial run was reused"
    );
    assert!(
        !partial.path.exists(),
        "the cancelled run's weights stay beside a complete checkpoint of the same recipe"
    );
    assert!(!killed.exists(), "a killed save's temporary file stays");
    assert!(
        writing.exists(),
        "a running save's temporary file was removed"
    );
    let _ = running.kill();
    let _ = running.wait();
    let second = cache::obtain(
        &ModelKind::Lenet300100.arch(),
        &cfg,
        &data,
        false,
        dir.path(),
        &mut Silent,
    )
    .unwrap();
    assert!(second.reused);
    assert_eq!(weights(&first.net), weights(&second.net));
    assert_eq!(first.meta, second.meta);
    let forced = cache::obtain(
        &ModelKind::Lenet300100.arch(),
        &cfg,
        &data,
        true,
        dir.path(),
        &mut Silent,
    )
    .unwrap();
    assert!(!forced.reused);
}

#[test]
fn fast_kernels_train_as_well_as_candle_stock_ops() {
    let data = common::fixture();
    let run = |backend| {
        let mut net = Net::new(&ModelKind::Lenet5.arch(), 9).unwrap();
        net.backend = backend;
        let out = train::train(&net, &data, &quick(3, 9), &[], &mut Silent).unwrap();
        out.history.last().unwrap().test_accuracy
    };
    let stock = run(dcx::model::Backend::Stock);
    let fast = run(dcx::model::Backend::Fast);
    assert!(stock > 0.7 && fast > 0.7, "stock {stock}, fast {fast}");
    assert!((stock - fast).abs() < 0.06, "stock {stock}, fast {fast}");
}

#[test]
fn diverged_training_is_an_error_and_nothing_is_cached() {
    let data = common::fixture().subset(256, 50);
    let cache_dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        lr: 1e30,
        ..quick(1, 5)
    };
    let err = cache::obtain(
        &ModelKind::Lenet300100.arch(),
        &cfg,
        &data,
        false,
        cache_dir.path(),
        &mut Silent,
    )
    .err()
    .expect("a rate of 1e30 diverges");
    assert!(format!("{err:#}").contains("training diverged"), "{err:#}");
    let left: Vec<_> = std::fs::read_dir(cache_dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a diverged run left {left:?}");
}

#[test]
fn settings_no_training_can_run_with_are_refused() {
    let ok = quick(1, 1);
    assert_eq!(ok.validate(), Ok(()));
    let bad = [
        (
            "lr",
            TrainConfig {
                lr: f64::NAN,
                ..ok.clone()
            },
        ),
        (
            "lr",
            TrainConfig {
                lr: f64::INFINITY,
                ..ok.clone()
            },
        ),
        (
            "lr",
            TrainConfig {
                lr: 0.0,
                ..ok.clone()
            },
        ),
        (
            "lr",
            TrainConfig {
                lr: -1.0,
                ..ok.clone()
            },
        ),
        (
            "epochs",
            TrainConfig {
                epochs: 0,
                ..ok.clone()
            },
        ),
        (
            "batch_size",
            TrainConfig {
                batch_size: 0,
                ..ok.clone()
            },
        ),
        (
            "weight_decay",
            TrainConfig {
                weight_decay: -0.1,
                ..ok.clone()
            },
        ),
        (
            "momentum",
            TrainConfig {
                momentum: 1.5,
                ..ok.clone()
            },
        ),
        (
            "train_limit",
            TrainConfig {
                train_limit: Some(0),
                ..ok.clone()
            },
        ),
        (
            "shift",
            TrainConfig {
                shift: 5,
                ..ok.clone()
            },
        ),
    ];
    let data = common::fixture().subset(64, 10);
    for (key, cfg) in bad {
        let e = cfg.validate().unwrap_err();
        assert!(e.starts_with(key), "{key}: {e}");
        // train() itself refuses too, before touching the network.
        let net = Net::new(&ModelKind::Lenet300100.arch(), 1).unwrap();
        let before = weights(&net);
        let err = train::train(&net, &data, &cfg, &[], &mut Silent).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
        assert_eq!(weights(&net), before);
    }
}

/// A student learns from a teacher experiment's cached baseline: the teacher's logits are
/// computed once and stored, the student's checkpoint is keyed by its teacher and settings
/// (a different temperature trains another), and a plain student is a third checkpoint.
#[test]
fn a_distilled_student_is_cached_by_its_teacher_and_settings() {
    use dcx::experiment::Experiment;
    let data = common::fixture();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let teacher = dir.path().join("teacher.toml");
    std::fs::write(
        &teacher,
        r#"
name = "teacher"
model = "lenet-300-100"
[train]
epochs = 2
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 5
"#,
    )
    .unwrap();
    let student = |temperature: f64| {
        let text = format!(
            r#"
name = "student"
[model]
name = "thin-mlp"
layers = [
  {{ type = "flatten" }},
  {{ type = "fc", name = "fc1", outputs = 30 }},
  {{ type = "relu" }},
  {{ type = "fc", name = "fc2", outputs = 10 }},
]
[train]
epochs = 2
batch_size = 32
lr = 0.002
optimizer = "adam"
schedule = "cosine"
seed = 1
[distill]
teacher = "{}"
temperature = {temperature}
alpha = 0.7
"#,
            teacher.display()
        );
        Experiment::parse(&text, "student").unwrap()
    };
    let obtain = |exp: &Experiment| {
        dcx::pipeline::baseline::obtain(exp, &data, false, &cache, &mut Silent).unwrap()
    };
    let taught = obtain(&student(4.0));
    assert!(!taught.reused);
    assert_eq!(
        taught
            .meta
            .distilled
            .as_deref()
            .map(|d| d.ends_with("T 4, alpha 0.7")),
        Some(true),
        "{:?}",
        taught.meta.distilled
    );
    assert!(taught.meta.test_accuracy().unwrap() > 0.6);
    let logits: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".logits"))
        .collect();
    assert_eq!(logits.len(), 1, "the teacher's logits are stored once");
    let len = logits[0].metadata().unwrap().len();
    assert_eq!(len as usize, 4 * 10 * data.train.len);

    let again = obtain(&student(4.0));
    assert!(again.reused);
    assert_eq!(again.path, taught.path);
    let hotter = obtain(&student(8.0));
    assert!(!hotter.reused);
    assert_ne!(hotter.path, taught.path);
    let mut alone = student(4.0);
    alone.distill = None;
    let plain = obtain(&alone);
    assert!(!plain.reused && plain.meta.distilled.is_none());
    assert_ne!(plain.path, taught.path);
    assert_ne!(weights(&plain.net), weights(&taught.net));
}

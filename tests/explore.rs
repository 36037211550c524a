//! The explore engine against the rest of dcx: its accuracy is Candle's, its sizes are the
//! file's bytes, its layers are the pipeline's, its plans are the experiment format's, and the
//! worker's coalescing and cancellation behave.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dcx::compress::kmeans::Init;
use dcx::data::{Mnist, Split};
use dcx::experiment::{Experiment, LayerPlan, PruneRule, Quantizer};
use dcx::explore::eval::{EvalMode, EvalOptions, Evaluator, PreparedLayer};
use dcx::explore::layer::LayerSetting;
use dcx::explore::worker::{Event, JobId, JobKind, Worker, WorkerOptions};
use dcx::explore::{Accuracy, AloneDrop, Edit, ExploreError, Scope, Session};
use dcx::format::dcz;
use dcx::model::optim::OptimizerKind;
use dcx::model::train::{self, Observer, Schedule, Silent, TrainConfig};
use dcx::model::{ModelKind, Net};
use dcx::pipeline::{self, PipelineObserver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Quiet;
impl Observer for Quiet {}
impl PipelineObserver for Quiet {}

fn recipe() -> TrainConfig {
    TrainConfig {
        epochs: 2,
        batch_size: 32,
        lr: 1e-3,
        optimizer: OptimizerKind::Adam,
        momentum: 0.9,
        weight_decay: 0.0,
        schedule: Schedule::Cosine,
        seed: 5,
        train_limit: None,
        ..TrainConfig::default()
    }
}

fn fixture() -> &'static Mnist {
    static DATA: OnceLock<Mnist> = OnceLock::new();
    DATA.get_or_init(common::fixture)
}

/// Weights and biases per layer.
type Weights = Vec<(Vec<f32>, Vec<f32>)>;

/// A network trained briefly on the fixture (trained once per test binary), as weights.
fn trained(model: ModelKind) -> &'static Weights {
    static NETS: OnceLock<HashMap<ModelKind, Weights>> = OnceLock::new();
    &NETS.get_or_init(|| {
        [ModelKind::Lenet5, ModelKind::Lenet300100]
            .into_iter()
            .map(|m| {
                let net = Net::new(&m.arch(), 11).unwrap();
                train::train(&net, fixture(), &recipe(), &[], &mut Silent).unwrap();
                let values = (0..net.arch.layers.len())
                    .map(|l| (net.weight_values(l).unwrap(), net.bias_values(l).unwrap()))
                    .collect();
                (m, values)
            })
            .collect()
    })[&model]
}

fn session(model: ModelKind) -> Session {
    Session::from_weights(
        model.arch(),
        trained(model).clone(),
        Session::default_experiment(&model.arch(), recipe()),
    )
    .unwrap()
}

/// A random but valid plan; optimal k-means only at few bits (it is exact and slow).
fn random_plan(rng: &mut StdRng, session: &Session) -> Vec<LayerSetting> {
    (0..session.layer_count())
        .map(|l| random_setting(rng, session, l))
        .collect()
}

fn random_setting(rng: &mut StdRng, session: &Session, l: usize) -> LayerSetting {
    let range = session.threshold_range(l).unwrap();
    let prune = match rng.random_range(0..4) {
        0 => PruneRule::Threshold(rng.random_range(0.0..0.6) * range),
        1 => PruneRule::Keep(rng.random_range(0.02f32..=1.0)),
        2 => PruneRule::Quality(rng.random_range(0.0..2.0)),
        _ => PruneRule::Keep(1.0),
    };
    let init = Init::ALL[rng.random_range(0..Init::ALL.len())];
    // Half the plans use a fixed-grid quantizer, at one of its own widths.
    let quantizer = if rng.random_bool(0.5) {
        Quantizer::KMeans
    } else {
        Quantizer::ALL[rng.random_range(1..Quantizer::ALL.len())]
    };
    let bits = if quantizer != Quantizer::KMeans {
        rng.random_range(quantizer.bits_range())
    } else if init == Init::Optimal {
        rng.random_range(1..=3)
    } else {
        rng.random_range(1..=8)
    };
    LayerSetting {
        plan: LayerPlan {
            prune,
            prune_bias: rng.random_bool(0.3),
            bits,
            index_bits: rng.random_range(2..=8),
            quantizer,
            init,
            per_channel: quantizer.allows_per_channel() && rng.random_bool(0.5),
            structured: None,
            bias_bits: if rng.random_bool(0.3) { 8 } else { 32 },
        },
        finetuned: false,
    }
}

/// Candle's evaluation of the session's current plan, from its `CompressedModel`.
fn candle_eval(session: &mut Session, test: &Split) -> train::Evaluation {
    let net = session.compressed_model_now().unwrap().to_net().unwrap();
    train::evaluate(&net, test).unwrap()
}

/// Events until `id`'s final one (panics after `timeout`).
fn until_final(worker: &Worker, id: JobId, timeout: Duration) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    let mut events = Vec::new();
    while Instant::now() < deadline {
        if let Some(e) = worker.recv_timeout(Duration::from_millis(50)) {
            let done = e.id() == id && e.is_final();
            events.push(e);
            if done {
                return events;
            }
        }
    }
    panic!("job {id} did not finish in {timeout:?}; got {events:#?}");
}

fn worker(data: Mnist, subset: usize) -> Worker {
    Worker::spawn(
        Arc::new(data),
        WorkerOptions {
            eval: EvalOptions {
                subset,
                ..EvalOptions::default()
            },
            ..WorkerOptions::default()
        },
    )
    .unwrap()
}

#[test]
fn plans_round_trip_through_experiment_toml_exactly() {
    let mut rng = StdRng::seed_from_u64(1);
    for model in [ModelKind::Lenet5, ModelKind::Lenet300100] {
        let net = Net::new(&model.arch(), 1).unwrap();
        let mut s =
            Session::new(&net, Session::default_experiment(&model.arch(), recipe())).unwrap();
        for _ in 0..25 {
            let plan = random_plan(&mut rng, &s);
            s.set_plan(plan.clone()).unwrap();
            let text = s.to_toml();
            let exp = Experiment::parse(&text, "session").unwrap();
            let plans: Vec<LayerPlan> = plan.iter().map(|p| p.plan).collect();
            assert_eq!(exp.layer_plans(), plans);
            let mut again =
                Session::new(&net, Session::default_experiment(&model.arch(), recipe())).unwrap();
            again.load_toml(&text, "session").unwrap();
            assert_eq!(again.plan(), s.plan());
            assert_eq!(again.to_toml(), text);
        }
        let other = Session::default_experiment(&ModelKind::CourseCnn.arch(), recipe());
        assert!(matches!(
            s.load_experiment(&other),
            Err(ExploreError::ModelMismatch { .. })
        ));
    }
}

const PIPELINE_EXPERIMENT: &str = r#"
name = "explore-vs-pipeline"
model = "lenet-300-100"
[train]
epochs = 2
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 9
[defaults]
prune = { keep = 0.12 }
bits = 4
index_bits = 4
[layers.fc2]
prune = { threshold = 0.05 }
init = "kmeans++"
bits = 6
[layers.fc3]
prune = { quality = 0.5 }
prune_bias = true
bits = 3
init = "density"
[share]
seed = 4
"#;

#[test]
fn session_layers_sizes_and_file_are_the_pipelines() {
    let data = fixture();
    let exp = Experiment::parse(PIPELINE_EXPERIMENT, "test").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, data, cache.path(), &mut Quiet).unwrap();
    let checkpoint = Path::new(&result.report.baseline_checkpoint);
    let (base, _) = dcx::model::checkpoint::load(checkpoint).unwrap();
    let mut s = Session::new(&base, exp.clone())
        .unwrap()
        .with_checkpoint(checkpoint);

    // The same layers as the pipeline wrote (prune, share, bias pruning, seeds).
    let model = s.compressed_model_now().unwrap();
    assert_eq!(model.layers, result.model.layers);

    // Sizes are the bytes of the file a write now produces, section by section.
    let (bytes, layout) = s.file_bytes_now().unwrap();
    let sizes = s.sizes_now().unwrap();
    assert_eq!(sizes.file_bytes as usize, bytes.len());
    assert_eq!(
        (sizes.header_bytes + sizes.trailer_bytes) as usize,
        layout.header_bytes + layout.trailer_bytes
    );
    for (l, section) in layout.section_bytes.iter().enumerate() {
        assert_eq!(sizes.layers[l].file_bytes as usize, *section);
        assert_eq!(s.layer(l).unwrap().size, sizes.layers[l]);
    }
    let file = dcz::from_bytes(&bytes).unwrap();
    assert_eq!(file.model, model);
    assert_eq!(
        Experiment::parse(&file.model.experiment, "file")
            .unwrap()
            .layer_plans(),
        exp.layer_plans()
    );

    // The evaluator's accuracy is the pipeline's final accuracy for the same weights.
    let mut ev = Evaluator::new(
        &ModelKind::Lenet300100.arch(),
        &data.test,
        EvalOptions::default(),
    )
    .unwrap();
    let e = evaluate(&mut ev, &mut s, EvalMode::INTERACTIVE);
    assert_eq!(e.accuracy, result.report.last().accuracy);
}

/// The session's current plan through the evaluator.
fn evaluate(ev: &mut Evaluator, s: &mut Session, mode: EvalMode) -> train::Evaluation {
    let geoms = ev.geometry().to_vec();
    let layers: Vec<Arc<PreparedLayer>> = s
        .results_now()
        .unwrap()
        .iter()
        .map(|r| {
            Arc::new(
                PreparedLayer::from_compressed(
                    &geoms[r.layer],
                    r.layer,
                    &r.compressed,
                    r.fingerprint,
                )
                .unwrap(),
            )
        })
        .collect();
    ev.evaluate(&layers, mode, &mut |_| {}, &|| false)
        .unwrap()
        .unwrap()
}

/// Random walks of single-layer changes (and some whole new plans), each evaluated
/// incrementally from cached activations and compared with Candle from scratch.
fn incremental_matches_candle(test: &Split, steps: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    for model in [ModelKind::Lenet5, ModelKind::Lenet300100] {
        let mut s = session(model);
        let opts = EvalOptions {
            subset: 100,
            ..EvalOptions::default()
        };
        let mut ev = Evaluator::new(&model.arch(), test, opts).unwrap();
        for step in 0..steps {
            if step % 5 == 0 {
                let plan = random_plan(&mut rng, &s);
                s.set_plan(plan).unwrap();
            } else {
                let l = rng.random_range(0..s.layer_count());
                let setting = random_setting(&mut rng, &s, l);
                let mut plan = s.plan().to_vec();
                plan[l] = setting;
                s.set_plan(plan).unwrap();
            }
            let mut estimate = None;
            let geoms = ev.geometry().to_vec();
            let layers: Vec<Arc<PreparedLayer>> = s
                .results_now()
                .unwrap()
                .iter()
                .map(|r| {
                    Arc::new(
                        PreparedLayer::from_compressed(
                            &geoms[r.layer],
                            r.layer,
                            &r.compressed,
                            r.fingerprint,
                        )
                        .unwrap(),
                    )
                })
                .collect();
            let ours = ev
                .evaluate(
                    &layers,
                    EvalMode::INTERACTIVE,
                    &mut |e| estimate = Some(*e),
                    &|| false,
                )
                .unwrap()
                .unwrap();
            let reference = candle_eval(&mut s, test);
            assert_eq!(
                ours.correct,
                reference.correct,
                "{model} step {step}: plan {:?}",
                s.plan()
            );
            assert_eq!(ours.total, reference.total);
            let tol = 1e-4 * reference.loss.abs().max(1.0);
            assert!(
                (ours.loss - reference.loss).abs() <= tol,
                "{model} step {step}: loss {} vs {}",
                ours.loss,
                reference.loss
            );
            let est = estimate.expect("an estimate comes first");
            assert_eq!(est.images, 100.min(test.len));
            assert!(est.stderr >= 0.0 && est.stderr < 0.1);
        }
        assert!(ev.stats().entries > 0);
    }
}

#[test]
fn incremental_accuracy_equals_candle_from_scratch_on_the_fixture() {
    incremental_matches_candle(&fixture().test, 25, 2);
}

#[test]
fn incremental_accuracy_equals_candle_from_scratch_on_full_mnist() {
    let Some(full) =
        common::full_mnist("incremental_accuracy_equals_candle_from_scratch_on_full_mnist")
    else {
        return;
    };
    incremental_matches_candle(&full.test, 8, 3);
}

#[test]
fn padded_convolutions_with_relu_and_pool_match_candle() {
    // The course CNN pads its convolutions and puts a ReLU before each pool; random weights,
    // some layers pruned into the sparse kernel, others dense.
    let test = Mnist {
        train: fixture().train.clone(),
        test: fixture().test.clone(),
        fingerprint: String::new(),
    }
    .subset(0, 64)
    .test;
    let net = Net::new(&ModelKind::CourseCnn.arch(), 3).unwrap();
    let mut s = Session::new(
        &net,
        Session::default_experiment(&ModelKind::CourseCnn.arch(), recipe()),
    )
    .unwrap();
    s.set_plan(dcx::explore::session::plan_with_keep(
        s.arch(),
        &[0.5, 1.0, 0.1, 0.9],
    ))
    .unwrap();
    let mut ev =
        Evaluator::new(&ModelKind::CourseCnn.arch(), &test, EvalOptions::default()).unwrap();
    let ours = evaluate(&mut ev, &mut s, EvalMode::INTERACTIVE);
    let reference = candle_eval(&mut s, &test);
    assert_eq!(ours.correct, reference.correct);
    assert!(
        (ours.loss - reference.loss).abs() < 1e-4,
        "{ours:?} {reference:?}"
    );
}

/// `experiments/strided-lenet-5.toml`'s network: stride-2 5x5 convolutions, conv2 on 20
/// channels with an even output (the shape the explorer runs as Winograd at stride 1, which
/// must not take it), each layer through the sparse and the dense kernel.
#[test]
fn strided_convolutions_match_candle() {
    let test = Mnist {
        train: fixture().train.clone(),
        test: fixture().test.clone(),
        fingerprint: String::new(),
    }
    .subset(0, 64)
    .test;
    let arch = Experiment::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/strided-lenet-5.toml"
    )))
    .unwrap()
    .arch();
    assert_eq!(
        arch.layers.iter().map(|l| l.stride).collect::<Vec<_>>(),
        [2, 2, 1, 1]
    );
    let net = Net::new(&arch, 3).unwrap();
    let mut s = Session::new(&net, Session::default_experiment(&arch, recipe())).unwrap();
    let mut ev = Evaluator::new(&arch, &test, EvalOptions::default()).unwrap();
    assert_eq!(ev.geometry()[1].stride, 2);
    for keep in [[0.5, 0.4, 0.1, 0.9], [1.0, 1.0, 1.0, 1.0]] {
        s.set_plan(dcx::explore::session::plan_with_keep(s.arch(), &keep))
            .unwrap();
        let ours = evaluate(&mut ev, &mut s, EvalMode::INTERACTIVE);
        let reference = candle_eval(&mut s, &test);
        assert_eq!(ours.correct, reference.correct, "keep {keep:?}");
        assert!(
            (ours.loss - reference.loss).abs() < 1e-4,
            "keep {keep:?}: {ours:?} {reference:?}"
        );
    }
}

#[test]
fn a_tiny_cache_budget_changes_speed_not_results() {
    let test = &fixture().test;
    let mut rng = StdRng::seed_from_u64(4);
    let mut s = session(ModelKind::Lenet5);
    let budget = 2 << 20;
    let mut ev = Evaluator::new(
        &ModelKind::Lenet5.arch(),
        test,
        EvalOptions {
            subset: 50,
            cache_budget: budget,
        },
    )
    .unwrap();
    for _ in 0..6 {
        let plan = random_plan(&mut rng, &s);
        s.set_plan(plan).unwrap();
        let ours = evaluate(&mut ev, &mut s, EvalMode::INTERACTIVE);
        assert_eq!(ours.correct, candle_eval(&mut s, test).correct);
        while ev.warm_step() {}
        assert!(ev.stats().peak_bytes <= budget, "{:?}", ev.stats());
    }
}

#[test]
fn the_estimate_comes_first_and_brackets_the_full_figure() {
    let data = fixture();
    let mut s = session(ModelKind::Lenet300100);
    let mut ev = Evaluator::new(
        &ModelKind::Lenet300100.arch(),
        &data.test,
        EvalOptions {
            subset: 80,
            ..EvalOptions::default()
        },
    )
    .unwrap();
    s.set_plan(dcx::explore::session::plan_with_keep(
        s.arch(),
        &[0.2, 0.3, 0.5],
    ))
    .unwrap();
    let geoms = ev.geometry().to_vec();
    let layers: Vec<Arc<PreparedLayer>> = s
        .results_now()
        .unwrap()
        .iter()
        .map(|r| {
            Arc::new(
                PreparedLayer::from_compressed(
                    &geoms[r.layer],
                    r.layer,
                    &r.compressed,
                    r.fingerprint,
                )
                .unwrap(),
            )
        })
        .collect();
    let mut est = None;
    let full = ev
        .evaluate(
            &layers,
            EvalMode::INTERACTIVE,
            &mut |e| est = Some(*e),
            &|| false,
        )
        .unwrap()
        .unwrap();
    let est = est.unwrap();
    assert_eq!(est.images, 80);
    assert!(est.stderr > 0.0);
    assert!(
        (est.accuracy - full.accuracy).abs() <= 4.0 * est.stderr + 0.01,
        "{est:?} vs {full:?}"
    );
    // Stopping leaves no half-written activations behind: the next run is still exact.
    let stopped = ev
        .evaluate(&layers, EvalMode::INTERACTIVE, &mut |_| {}, &|| true)
        .unwrap();
    assert!(stopped.is_none());
    let again = ev
        .evaluate(&layers, EvalMode::INTERACTIVE, &mut |_| {}, &|| false)
        .unwrap()
        .unwrap();
    assert_eq!(again, full);
}

#[test]
fn edits_undo_redo_and_validation() {
    let mut s = session(ModelKind::Lenet5);
    let start = s.plan().to_vec();
    // A scrub is one undo step.
    for t in [0.01, 0.02, 0.03] {
        assert!(s.set_threshold(2, t).unwrap());
    }
    assert!(s.set_bits(2, 3).unwrap());
    assert!(!s.set_bits(2, 3).unwrap(), "no change, no step");
    assert_eq!(s.setting(2).unwrap().plan.prune, PruneRule::Threshold(0.03));
    assert!(s.undo());
    assert_eq!(s.setting(2).unwrap().plan.bits, start[2].plan.bits);
    assert_eq!(s.setting(2).unwrap().plan.prune, PruneRule::Threshold(0.03));
    assert!(s.undo());
    assert_eq!(s.plan(), &start[..]);
    assert!(!s.undo());
    assert!(s.redo() && s.redo() && !s.redo());
    assert_eq!(s.setting(2).unwrap().plan.bits, 3);

    // Invalid settings are errors and change nothing.
    let before = s.plan().to_vec();
    assert!(matches!(
        s.set_bits(0, 9),
        Err(ExploreError::InvalidSetting { .. })
    ));
    assert!(s.set_threshold(0, f32::NAN).is_err());
    assert!(s.set_prune(0, PruneRule::Keep(0.0)).is_err());
    assert!(s.set_index_bits(0, 17).is_err());
    assert!(matches!(
        s.set_threshold(9, 0.1),
        Err(ExploreError::NoLayer { .. })
    ));
    assert!(s.set_finetuned(0, true).is_err(), "no trained weights yet");
    assert_eq!(s.plan(), &before[..]);

    // One call each for what the UI does.
    assert!(!s.step_bits(2, 10).unwrap() || s.setting(2).unwrap().plan.bits == 8);
    assert_eq!(s.setting(2).unwrap().plan.bits, 8);
    s.cycle_init(1).unwrap();
    assert_eq!(s.setting(1).unwrap().plan.init, Init::Linear.next());
    s.apply_to_all(1).unwrap();
    assert!(s.plan().iter().all(|p| *p == s.plan()[1]));
    s.edit(Scope::All, Edit::IndexBits(7)).unwrap();
    assert!(s.plan().iter().all(|p| p.plan.index_bits == 7));
    s.reset_layer(3).unwrap();
    assert_eq!(s.plan()[3], start[3]);
    assert!(s.reset_all());
    assert_eq!(s.plan(), &start[..]);
}

#[test]
fn the_quantizer_and_its_grid_per_channel_are_part_of_a_result() {
    let mut s = session(ModelKind::Lenet300100);
    let kmeans = s.layer_now(1).unwrap();
    assert!(s.cycle_quantizer(1).unwrap());
    let uniform = s.layer_now(1).unwrap();
    assert_eq!(uniform.setting.plan.quantizer, Quantizer::Uniform);
    assert!(!Arc::ptr_eq(&kmeans, &uniform));
    assert!(s.toggle_per_channel(1).unwrap());
    let per_channel = s.layer_now(1).unwrap();
    assert!(
        !Arc::ptr_eq(&uniform, &per_channel),
        "a per-channel grid is another result"
    );
    assert_eq!(per_channel.compressed.groups(), 100);
    assert_eq!(uniform.compressed.groups(), 1);
    // Binary and ternary take one bit; leaving them gives the layer its width back.
    s.cycle_quantizer(1).unwrap();
    s.cycle_quantizer(1).unwrap();
    assert_eq!(s.setting(1).unwrap().plan.quantizer, Quantizer::Binary);
    assert_eq!(s.setting(1).unwrap().plan.bits, 1);
    assert!(!s.step_bits(1, 1).unwrap(), "binary has one width");
    s.cycle_quantizer(1).unwrap();
    s.cycle_quantizer(1).unwrap();
    assert_eq!(s.setting(1).unwrap().plan.quantizer, Quantizer::KMeans);
    assert_eq!(s.setting(1).unwrap().plan.bits, 5);
    assert!(!s.setting(1).unwrap().plan.per_channel);
    // Like scrubbing, presses of Q in a row are one undo step.
    s.undo();
    let plan = s.setting(1).unwrap().plan;
    assert_eq!(
        (plan.quantizer, plan.per_channel),
        (Quantizer::Uniform, true)
    );
}

#[test]
fn results_are_cached_by_setting_so_scrubbing_back_is_free() {
    let mut s = session(ModelKind::Lenet300100);
    s.set_threshold(0, 0.05).unwrap();
    let a = s.layer_now(0).unwrap();
    s.set_threshold(0, 0.08).unwrap();
    assert!(
        s.layer(0).is_none(),
        "a new setting is computed, not guessed"
    );
    let b = s.layer_now(0).unwrap();
    assert!(b.kept() < a.kept());
    s.set_threshold(0, 0.05).unwrap();
    assert!(Arc::ptr_eq(&s.layer(0).unwrap(), &a));
    s.undo();
    assert!(s.layer(1).is_none());
    // Plain data the views need.
    let r = s.layer_now(0).unwrap();
    let h = &r.histograms;
    assert_eq!(h.all.iter().sum::<u32>() as usize, r.total());
    assert_eq!(h.kept.iter().sum::<u32>() as usize, r.kept());
    assert_eq!(h.shared.iter().sum::<u32>() as usize, r.kept());
    assert_eq!(r.sharing.cluster_sizes.iter().sum::<usize>(), r.kept());
    assert!(r.sharing.sse <= r.sharing.init_sse);
    assert!(r.coding.weight_bits_huffman <= r.coding.weight_bits_fixed + 1e-9);
    assert!(r.coding.weight_bits_entropy <= r.coding.weight_bits_huffman + 1e-9);
    assert!(r.size.file_bytes < r.size.shared_bytes && r.size.shared_bytes < r.size.dense_bytes);
    assert_eq!(h.edges, s.layer_now(0).unwrap().histograms.edges);
}

#[test]
fn a_superseded_evaluation_never_overwrites_a_newer_result() {
    // A larger test set, so evaluations take long enough to be overtaken.
    let base = &fixture().test;
    let mut test = Split {
        images: Vec::new(),
        labels: Vec::new(),
        len: 0,
    };
    for _ in 0..10 {
        test.images.extend_from_slice(&base.images);
        test.labels.extend_from_slice(&base.labels);
        test.len += base.len;
    }
    let data = Mnist {
        train: fixture().train.clone(),
        test,
        fingerprint: "fixture-x10".into(),
    };
    let w = worker(data.clone(), 200);
    let mut s = session(ModelKind::Lenet5);
    let mut ids = Vec::new();
    for i in 0..8 {
        s.set_threshold(1, 0.01 * i as f32).unwrap();
        ids.push(w.submit(s.eval_job()));
    }
    let last = *ids.last().unwrap();
    let events = until_final(&w, last, Duration::from_secs(120));
    let mut newest_started = 0;
    for e in &events {
        match e {
            Event::Started { id, .. } => newest_started = newest_started.max(*id),
            Event::Estimate { id, .. } | Event::Evaluated { id, .. } => {
                assert!(
                    *id >= newest_started,
                    "job {id} reported after {newest_started} started"
                )
            }
            _ => {}
        }
    }
    assert!(matches!(events.last(), Some(Event::Evaluated { id, .. }) if *id == last));
    assert!(
        events.iter().any(|e| matches!(e, Event::Superseded { .. })),
        "older requests were superseded"
    );
    for e in &events {
        s.absorb(e);
    }
    let Accuracy::Exact(e) = s.accuracy() else {
        panic!("no result for the current plan")
    };
    let reference = candle_eval(&mut s, &data.test);
    assert_eq!(e.correct, reference.correct);

    // The session keeps the newer of two results for one plan, whatever order they come in.
    let Some(Event::Evaluated {
        key, plan, sizes, ..
    }) = events.last().cloned()
    else {
        unreachable!()
    };
    let fake = |id, correct| Event::Evaluated {
        id,
        key: key.clone(),
        plan: plan.clone(),
        evaluation: train::Evaluation {
            accuracy: correct as f64 / 10.0,
            loss: 0.0,
            correct,
            total: 10,
        },
        sizes: sizes.clone(),
        elapsed: Duration::ZERO,
    };
    s.absorb(&fake(last + 100, 7));
    assert!(!s.absorb(&fake(last + 50, 3)));
    assert_eq!(s.evaluation().unwrap().correct, 7);
}

#[test]
fn cancelling_a_sweep_stops_it_promptly() {
    let base = &fixture().test;
    let mut test = base.clone();
    for _ in 0..9 {
        test.images.extend_from_slice(&base.images);
        test.labels.extend_from_slice(&base.labels);
        test.len += base.len;
    }
    let w = worker(
        Mnist {
            train: fixture().train.clone(),
            test,
            fingerprint: "x".into(),
        },
        200,
    );
    let s = session(ModelKind::Lenet5);
    let id = w.submit(s.sweep_job());
    // Wait until it is running, then cancel.
    loop {
        match w.recv_timeout(Duration::from_secs(60)) {
            Some(Event::SweepProgress { id: i, .. }) if i == id => break,
            Some(e) => assert!(!e.is_final(), "{e:?}"),
            None => panic!("sweep never progressed"),
        }
    }
    let asked = Instant::now();
    w.cancel(JobKind::Sweep);
    let events = until_final(&w, id, Duration::from_secs(30));
    let took = asked.elapsed();
    assert!(
        matches!(events.last(), Some(Event::Cancelled { .. })),
        "{events:?}"
    );
    assert!(took < Duration::from_secs(2), "cancellation took {took:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Swept { .. })));

    // The worker goes on serving.
    let id = w.submit(s.eval_job());
    let events = until_final(&w, id, Duration::from_secs(60));
    assert!(matches!(events.last(), Some(Event::Evaluated { .. })));
}

#[test]
fn sweep_is_stored_beside_the_checkpoint_and_reopens_instantly() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = dir.path().join("lenet-300-100-e2-test.safetensors");
    let w = worker(fixture().clone(), 1000);
    let mut s = session(ModelKind::Lenet300100).with_checkpoint(&checkpoint);
    s.set_plan(dcx::explore::session::plan_with_keep(
        s.arch(),
        &[0.1, 0.5, 1.0],
    ))
    .unwrap();
    let id = w.submit(s.sweep_job());
    let events = until_final(&w, id, Duration::from_secs(120));
    let Some(Event::Swept {
        sensitivity,
        from_cache: false,
        ..
    }) = events.last()
    else {
        panic!("{:?}", events.last())
    };
    let progress = events
        .iter()
        .filter(|e| matches!(e, Event::SweepProgress { .. }))
        .count();
    // 15 sparsities and 8 widths per layer, and 9 unit shares for the two hidden layers.
    assert_eq!(progress, 3 * (15 + 8) + 2 * 9);
    let path = dir.path().join("lenet-300-100-e2-test.sensitivity.json");
    assert!(path.exists());
    for l in &sensitivity.layers {
        assert_eq!(l.prune.len(), 15);
        assert_eq!(l.bits.len(), 8);
        // Pruning nothing is the checkpoint itself.
        assert_eq!(l.prune[0].accuracy, sensitivity.baseline_accuracy);
        assert!(l.prune.last().unwrap().accuracy <= sensitivity.baseline_accuracy);
    }
    let units: Vec<usize> = sensitivity.layers.iter().map(|l| l.units.len()).collect();
    assert_eq!(units, [9, 9, 0], "no units cut from the class layer");
    // Cutting 90% of fc1's neurons costs more than cutting 10%.
    let fc1 = &sensitivity.layers[0].units;
    assert!(fc1[0].sparsity < fc1[8].sparsity && fc1[8].accuracy < fc1[0].accuracy);
    for e in &events {
        s.absorb(e);
    }
    s.layer_now(0).unwrap();
    assert!(matches!(s.alone(0), Some(AloneDrop::Interpolated { .. })));

    // Reopening reads the file.
    let t = Instant::now();
    let id = w.submit(s.sweep_job());
    let events = until_final(&w, id, Duration::from_secs(30));
    assert!(matches!(
        events.last(),
        Some(Event::Swept {
            from_cache: true,
            ..
        })
    ));
    assert!(t.elapsed() < Duration::from_secs(1));
    let mut fresh = session(ModelKind::Lenet300100).with_checkpoint(&checkpoint);
    assert!(fresh.load_sensitivity(&fixture().fingerprint).unwrap());
    assert!(!fresh.load_sensitivity("other data").unwrap());

    // A measured alone drop replaces the interpolated one for the same setting.
    let id = w.submit(s.alone_job(0).unwrap());
    for e in until_final(&w, id, Duration::from_secs(60)) {
        s.absorb(&e);
    }
    let Some(AloneDrop::Measured { baseline, .. }) = s.alone(0) else {
        panic!("{:?}", s.alone(0))
    };
    assert_eq!(baseline, sensitivity.baseline_accuracy);
}

#[test]
fn retraining_and_fine_tuning_are_adopted_by_the_session() {
    let w = worker(fixture().clone(), 1000);
    let mut s = session(ModelKind::Lenet300100);
    s.set_plan(dcx::explore::session::plan_with_keep(
        s.arch(),
        &[0.1, 0.2, 0.5],
    ))
    .unwrap();
    s.set_prune_bias(2, true).unwrap();
    let masks: Vec<Vec<bool>> = s
        .results_now()
        .unwrap()
        .iter()
        .map(|r| r.compressed.mask())
        .collect();
    let cfg = TrainConfig {
        epochs: 1,
        train_limit: Some(320),
        ..s.retrain_config()
    };
    let id = w.submit(s.retrain_job(cfg.clone()));
    let events = until_final(&w, id, Duration::from_secs(120));
    let Some(Event::Tuned { tuned, .. }) = events.last() else {
        panic!("{:?}", events.last())
    };
    assert!(events.iter().any(|e| matches!(e, Event::Epoch { .. })));
    for (t, mask) in tuned.layers.iter().zip(&masks) {
        for (&v, &keep) in t.weights.iter().zip(mask) {
            assert!(keep || v == 0.0, "a pruned weight came back");
        }
    }
    assert!(s.absorb(events.last().unwrap()));
    assert!(s.plan().iter().all(|p| p.finetuned));
    assert_eq!(
        s.recipe().len(),
        1,
        "the retraining is the session's recipe"
    );
    for (l, mask) in masks.iter().enumerate() {
        let r = s.layer_now(l).unwrap();
        // The same rule on retrained weights prunes no weight that was kept out before.
        assert!(r.compressed.positions.iter().all(|&p| mask[p as usize]));
    }

    // Centroid fine-tuning: the codebook moves, the assignments stay, and the session uses
    // the fine-tuned codebook while the plan is unchanged.
    let before: Vec<_> = s.results_now().unwrap();
    let id = w.submit(s.finetune_job(TrainConfig {
        epochs: 1,
        train_limit: Some(320),
        ..s.finetune_config()
    }));
    let events = until_final(&w, id, Duration::from_secs(120));
    let Some(ev @ Event::Tuned { tuned, .. }) = events.last() else {
        panic!("{:?}", events.last())
    };
    assert!(s.absorb(ev));
    for (l, r0) in before.iter().enumerate() {
        let r = s.layer_now(l).unwrap();
        assert!(r.fine_tuned_codebook);
        assert_eq!(r.compressed.positions, r0.compressed.positions);
        assert_eq!(r.compressed.assignments, r0.compressed.assignments);
        assert_eq!(
            Some(&r.compressed.codebook),
            tuned.layers[l].tie.as_ref().map(|t| &t.codebook)
        );
        for &v in &tuned.layers[l].weights {
            assert!(v == 0.0 || r.compressed.codebook.contains(&v));
        }
    }
    assert_ne!(
        s.layer_now(0).unwrap().compressed.codebook,
        before[0].compressed.codebook
    );
    // A new setting re-shares the fine-tuned weights; going back restores the codebook.
    s.set_bits(0, 3).unwrap();
    assert!(!s.layer_now(0).unwrap().fine_tuned_codebook);
    s.undo();
    assert!(s.layer_now(0).unwrap().fine_tuned_codebook);
    // Undo of the adoption returns to the checkpoint's weights (the fine-tuned ones replaced
    // the retrained ones, so the fine-tuning adoption changed no flag and made no step).
    s.undo();
    assert!(s.plan().iter().all(|p| !p.finetuned));
    assert!(!s.layer_now(0).unwrap().fine_tuned_codebook);

    // The evaluator still agrees with Candle on trained weights.
    s.redo();
    assert!(s.layer_now(0).unwrap().fine_tuned_codebook);
    let id = w.submit(s.eval_job());
    for e in until_final(&w, id, Duration::from_secs(60)) {
        s.absorb(&e);
    }
    let ours = s.evaluation().unwrap();
    assert_eq!(ours.correct, candle_eval(&mut s, &fixture().test).correct);
    assert_eq!(s.history().len(), 1);
}

#[test]
fn history_records_evaluated_plans_and_their_pareto_front() {
    let w = worker(fixture().clone(), 1000);
    let mut s = session(ModelKind::Lenet300100);
    for keep in [1.0, 0.5, 0.2, 0.05, 0.2] {
        s.edit(Scope::All, Edit::Prune(PruneRule::Keep(keep)))
            .unwrap();
        let id = w.submit(s.eval_job());
        for e in until_final(&w, id, Duration::from_secs(60)) {
            s.absorb(&e);
        }
        let sizes = s.sizes().unwrap();
        assert_eq!(
            sizes.file_bytes as usize,
            s.file_bytes_now().unwrap().0.len()
        );
    }
    // Five evaluations of four distinct plans.
    let h = s.history();
    assert_eq!(h.len(), 4);
    let ratios: Vec<f64> = h.points().iter().map(|p| p.ratio).collect();
    assert!(ratios.windows(2).all(|w| w[0] < w[1]), "{ratios:?}");
    let front = h.pareto();
    assert!(!front.is_empty());
    for p in h.points() {
        let dominated = h.points().iter().any(|q| q.dominates(p));
        assert_eq!(front.iter().any(|f| f.seq == p.seq), !dominated);
    }
}

#[test]
fn baselines_train_in_the_worker_are_cached_and_cancellable() {
    let w = worker(fixture().clone(), 1000);
    let cache = tempfile::tempdir().unwrap();
    let request = |epochs| {
        dcx::explore::Job::Train(dcx::explore::worker::BaselineRequest {
            model: ModelKind::Lenet300100.arch(),
            config: TrainConfig {
                epochs,
                train_limit: Some(256),
                ..recipe()
            },
            cache_dir: cache.path().to_path_buf(),
            retrain: false,
            distill: None,
        })
    };
    let id = w.submit(request(1));
    let events = until_final(&w, id, Duration::from_secs(120));
    let Some(Event::Baseline { baseline, .. }) = events.last() else {
        panic!("{:?}", events.last())
    };
    assert!(!baseline.reused && baseline.path.exists());
    assert!(events.iter().any(|e| matches!(e, Event::Training { .. })));
    // The activation ranks' evidence comes with it: every hidden layer (a ReLU follows each)
    // has one value per unit, the output layer none.
    let activity = &baseline.activity.layers;
    assert_eq!(activity.len(), 3);
    assert_eq!(activity[0].as_ref().unwrap().zero_fraction.len(), 300);
    assert_eq!(activity[1].as_ref().unwrap().mean.len(), 100);
    assert!(activity[2].is_none());
    let s = Session::from_baseline(
        baseline,
        Session::default_experiment(&ModelKind::Lenet300100.arch(), baseline.meta.train.clone()),
    )
    .unwrap();
    assert_eq!(s.checkpoint(), Some(baseline.path.as_path()));
    let id = w.submit(request(1));
    let events = until_final(&w, id, Duration::from_secs(60));
    assert!(matches!(events.last(), Some(Event::Baseline { baseline, .. }) if baseline.reused));

    // A long run stops at the next batch once cancelled, and is not reported as trained.
    let id = w.submit(request(500));
    loop {
        match w.recv_timeout(Duration::from_secs(60)) {
            Some(Event::Training { id: i, .. }) if i == id => break,
            Some(e) => assert!(!e.is_final(), "{e:?}"),
            None => panic!("training never started"),
        }
    }
    let asked = Instant::now();
    w.cancel(JobKind::Train);
    let events = until_final(&w, id, Duration::from_secs(60));
    assert!(
        matches!(events.last(), Some(Event::Cancelled { .. })),
        "{events:?}"
    );
    assert!(asked.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_session_ignores_results_of_another_session() {
    let w = worker(fixture().clone(), 1000);
    let mut a = session(ModelKind::Lenet300100);
    let mut b = session(ModelKind::Lenet300100);
    let id = w.submit(a.eval_job());
    for e in until_final(&w, id, Duration::from_secs(60)) {
        assert!(!b.absorb(&e) || matches!(e, Event::Started { .. }));
        a.absorb(&e);
    }
    assert!(matches!(a.accuracy(), Accuracy::Exact(_)));
    assert_eq!(b.accuracy(), Accuracy::Unknown);
    assert!(b.history().is_empty() && b.layer(0).is_none());
    assert_eq!(a.history().len(), 1);
    let _ = b.results_now().unwrap();
}

/// Runs the job `make` builds from the session on `w` and feeds every event back to it.
fn run_job(
    w: &Worker,
    s: &mut Session,
    make: impl Fn(&Session) -> dcx::explore::Job,
) -> Vec<Event> {
    let id = w.submit(make(s));
    let events = until_final(w, id, Duration::from_secs(180));
    for e in &events {
        s.absorb(e);
    }
    events
}

#[test]
fn an_export_re_runs_with_the_pipeline_to_the_same_file() {
    // What a user does in the explorer: scrub, retrain twice (scrubbing again between the
    // two), fine-tune, change a layer's index bits, export. `dcx compress` on the exported
    // experiment must write the same bytes.
    let data = fixture();
    let mut exp = Experiment::parse(PIPELINE_EXPERIMENT, "test").unwrap();
    exp.defaults = Default::default();
    exp.layers.clear();
    let cache = tempfile::tempdir().unwrap();
    let base = dcx::model::cache::obtain(
        &exp.arch(),
        &exp.train,
        data,
        false,
        cache.path(),
        &mut Quiet,
    )
    .unwrap();
    let mut s = Session::new(&base.net, exp.clone())
        .unwrap()
        .with_checkpoint(&base.path);
    let w = worker(data.clone(), 1000);
    let quick = |c: TrainConfig| TrainConfig { epochs: 1, ..c };

    for (l, sparsity) in [(0, 0.6), (1, 0.5), (2, 0.3)] {
        let t = s.threshold_for_sparsity(l, sparsity).unwrap();
        s.set_threshold(l, t).unwrap();
    }
    run_job(&w, &mut s, |s| s.retrain_job(quick(s.retrain_config())));
    assert!(s.plan().iter().all(|p| p.finetuned));
    let t = s.threshold_for_sparsity(0, 0.8).unwrap();
    s.set_threshold(0, t).unwrap();
    run_job(&w, &mut s, |s| s.retrain_job(quick(s.retrain_config())));
    s.set_bits(1, 3).unwrap();
    run_job(&w, &mut s, |s| s.finetune_job(quick(s.finetune_config())));
    s.set_index_bits(2, 6).unwrap();
    run_job(&w, &mut s, |s| s.eval_job());
    assert!(s.evaluation().is_some());
    assert_eq!(s.recipe().len(), 3);

    let root = tempfile::tempdir().unwrap();
    let exported = dcx::explore::export::export(&mut s, root.path(), &Default::default()).unwrap();
    let file = std::fs::read(exported.dir.join("model.dcz")).unwrap();
    let again = Experiment::load(&exported.dir.join("experiment.toml")).unwrap();
    assert_eq!(again.steps.len(), 3, "{}", again.to_toml());
    // The first retraining ran under fc1's earlier cut, which differs from the plan's.
    assert!(again.steps[0].layers.contains_key("fc1"));
    let rerun = pipeline::run(&again, data, cache.path(), &mut Quiet).unwrap();
    assert_eq!(rerun.model, dcz::from_bytes(&file).unwrap().model);
    assert!(rerun.bytes == file, "the re-run wrote other bytes");
    assert_eq!(
        rerun.report.last().accuracy,
        s.evaluation().unwrap().accuracy,
        "the pipeline's final accuracy is the explorer's"
    );
}

/// Sets `layer`'s structured cut to `keep_tenths` of its units ranked by `rank`, through the
/// keys' session calls (`<`, then `U` until the rank comes up).
fn cut_units(s: &mut Session, layer: usize, keep_tenths: i32, rank: dcx::experiment::UnitRank) {
    s.step_units(layer, keep_tenths - 10).unwrap();
    for _ in 0..dcx::experiment::UnitRank::ALL.len() {
        if s.setting(layer).unwrap().plan.structured.unwrap().rank == rank {
            return;
        }
        s.cycle_unit_rank(layer).unwrap();
    }
    panic!("U never offered {rank:?}");
}

#[test]
fn activation_ranked_cuts_in_the_explorer_re_run_with_the_pipeline_to_the_same_file() {
    // The explorer measures the activations an `apoz` or `mean-activation` cut reads where
    // the pipeline does: on the checkpoint for a first cut, and on the retrained network for a
    // cut made after retraining. The export then re-runs to the same bytes.
    let data = fixture();
    let mut exp = Experiment::parse(PIPELINE_EXPERIMENT, "test").unwrap();
    exp.defaults = Default::default();
    exp.layers.clear();
    let cache = tempfile::tempdir().unwrap();
    let w = worker(data.clone(), 1000);
    let id = w.submit(dcx::explore::Job::Train(
        dcx::explore::worker::BaselineRequest {
            model: exp.arch(),
            config: exp.train.clone(),
            cache_dir: cache.path().to_path_buf(),
            retrain: false,
            distill: None,
        },
    ));
    let events = until_final(&w, id, Duration::from_secs(180));
    let Some(Event::Baseline { baseline, .. }) = events.last() else {
        panic!("{:?}", events.last())
    };
    let mut s = Session::from_baseline(baseline, exp.clone()).unwrap();
    let quick = |c: TrainConfig| TrainConfig { epochs: 1, ..c };

    use dcx::experiment::UnitRank;
    cut_units(&mut s, 0, 6, UnitRank::Apoz);
    let first = s.units(0).unwrap().outputs;
    let t = s.threshold_for_sparsity(2, 0.5).unwrap();
    s.set_threshold(2, t).unwrap();
    run_job(&w, &mut s, |s| s.retrain_job(quick(s.retrain_config())));
    // The cut made before retraining holds; a new one reads the retrained network.
    assert_eq!(s.units(0).unwrap().outputs, first);
    cut_units(&mut s, 1, 5, UnitRank::MeanActivation);
    run_job(&w, &mut s, |s| s.retrain_job(quick(s.retrain_config())));
    run_job(&w, &mut s, |s| s.eval_job());
    assert!(s.evaluation().is_some());

    let root = tempfile::tempdir().unwrap();
    let exported = dcx::explore::export::export(&mut s, root.path(), &Default::default()).unwrap();
    let file = std::fs::read(exported.dir.join("model.dcz")).unwrap();
    let again = Experiment::load(&exported.dir.join("experiment.toml")).unwrap();
    let text = again.to_toml();
    assert!(
        text.contains("apoz") && text.contains("mean-activation"),
        "{text}"
    );
    let rerun = pipeline::run(&again, data, cache.path(), &mut Quiet).unwrap();
    let explored = dcz::from_bytes(&file).unwrap().model;
    for (a, b) in rerun.model.layers.iter().zip(&explored.layers) {
        assert!(a.units == b.units, "{}: the re-run cut other units", a.name);
    }
    assert!(rerun.bytes == file, "the re-run wrote other bytes");
}

#[test]
fn the_explorers_fine_tuning_quantizes_activations_as_the_pipeline_does() {
    // A template with [activations]: `f` trains against the same grids as `dcx compress`
    // (else the re-run's weights would differ), the export carries the section, and the
    // explorer's own f32-activation figure is labelled as such.
    let data = fixture();
    let mut exp = Experiment::parse(PIPELINE_EXPERIMENT, "test").unwrap();
    exp.defaults = Default::default();
    exp.layers.clear();
    exp.activations = Some(dcx::experiment::ActivationPlan {
        bits: 3,
        calibration: dcx::experiment::Calibration::MinMax,
        images: 100,
    });
    let cache = tempfile::tempdir().unwrap();
    let base = dcx::model::cache::obtain(
        &exp.arch(),
        &exp.train,
        data,
        false,
        cache.path(),
        &mut Quiet,
    )
    .unwrap();
    let mut s = Session::new(&base.net, exp.clone())
        .unwrap()
        .with_checkpoint(&base.path);
    let w = worker(data.clone(), 1000);
    let quick = |c: TrainConfig| TrainConfig { epochs: 1, ..c };
    for l in 0..3 {
        let t = s.threshold_for_sparsity(l, 0.5).unwrap();
        s.set_threshold(l, t).unwrap();
    }
    run_job(&w, &mut s, |s| s.retrain_job(quick(s.retrain_config())));
    run_job(&w, &mut s, |s| s.finetune_job(quick(s.finetune_config())));
    run_job(&w, &mut s, |s| s.eval_job());

    let root = tempfile::tempdir().unwrap();
    let exported = dcx::explore::export::export(&mut s, root.path(), &Default::default()).unwrap();
    let explored = dcz::from_bytes(&std::fs::read(exported.dir.join("model.dcz")).unwrap())
        .unwrap()
        .model;
    let again = Experiment::load(&exported.dir.join("experiment.toml")).unwrap();
    assert_eq!(again.activations, exp.activations);
    let rerun = pipeline::run(&again, data, cache.path(), &mut Quiet).unwrap();
    assert_eq!(rerun.model.layers, explored.layers);
    assert_eq!(rerun.model.activations.as_ref().map(|a| a.bits), Some(3));
    assert!(explored.activations.is_none());
    let stage = &exported.report.last().stage;
    assert!(stage.contains("f32 activations"), "{stage}");
}

#[test]
fn random_pruning_is_a_method_of_the_pipeline() {
    // The recipe of docs/architecture.md followed once: the rule in an experiment, an explorer
    // edit, the file and the pipeline agree.
    let mut s = session(ModelKind::Lenet300100);
    let t = s.threshold_for_sparsity(0, 0.9).unwrap();
    s.set_threshold(0, t).unwrap();
    let magnitude = s.layer_now(0).unwrap();
    assert!(s.toggle_random_pruning(0).unwrap());
    let PruneRule::Random(keep) = s.setting(0).unwrap().plan.prune else {
        panic!("{:?}", s.setting(0))
    };
    assert!((f64::from(keep) - (1.0 - magnitude.sparsity())).abs() < 1e-6);
    let random = s.layer_now(0).unwrap();
    assert_eq!(random.kept(), magnitude.kept());
    assert_ne!(random.compressed.positions, magnitude.compressed.positions);
    // Random keeps small weights that magnitude pruning removed.
    let w = &s.source(0).unwrap().state.weights;
    let smallest_kept = |r: &dcx::explore::LayerResult| {
        r.compressed
            .positions
            .iter()
            .map(|&p| w[p as usize].abs())
            .fold(f32::INFINITY, f32::min)
    };
    assert!(smallest_kept(&random) < smallest_kept(&magnitude));

    let text = s.to_toml();
    assert!(text.contains("random = "), "{text}");
    let exp = Experiment::parse(&text, "session").unwrap();
    assert_eq!(exp.layer_plans()[0].prune, PruneRule::Random(keep));
    // The batch pipeline's per-layer path gives the same layer.
    let (w0, b0) = trained(ModelKind::Lenet300100)[0].clone();
    let spec = &s.arch().layers[0];
    let batch = dcx::pipeline::layer::LayerState::dense(w0, b0).share(
        0,
        spec,
        &exp.layer_plans()[0],
        dcx::pipeline::layer::ShareParams::of(&exp),
        None,
    );
    assert_eq!(batch.compressed, random.compressed);
    assert!(s.toggle_random_pruning(0).unwrap());
    assert_eq!(s.setting(0).unwrap().plan.prune, PruneRule::Keep(keep));
    let err = Experiment::parse(
        &text.replace(&format!("random = {keep}"), "random = 1.5"),
        "bad",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("prune.random"), "{err}");
}

#[test]
fn a_structured_cut_is_timed_thinned_and_the_session_keeps_each_plans_speed() {
    let mut s = session(ModelKind::Lenet300100);
    let w = worker(fixture().clone(), 64);
    run_job(&w, &mut s, |s| s.speed_job());
    let (plain, fresh) = s.speed().expect("measured");
    assert!(fresh);
    let row = &plain.rows[0];
    assert_eq!(row.batch, 1);
    let paths: Vec<&str> = row.paths.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["sparse"], "nothing thinned yet");
    // Cutting fc1's neurons thins fc1 and fc2: the next measurement times the thinned net.
    assert!(s.step_units(0, -5).unwrap());
    let units = s.units(0).unwrap();
    assert_eq!(units.kept_outputs(), 150);
    assert_eq!(
        s.units(1).unwrap().inputs,
        units.outputs,
        "fc2 loses fc1's cut inputs"
    );
    assert!(!s.speed().unwrap().1, "the old plan's figure, marked stale");
    run_job(&w, &mut s, |s| s.speed_job());
    let (cut, fresh) = s.speed().unwrap();
    assert!(fresh);
    let paths: Vec<&str> = cut.rows[0].paths.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["sparse", "thinned", "thinned_sparse"]);
    for p in &cut.rows[0].paths {
        assert!(p.ms > 0.0 && (p.speedup - cut.rows[0].dense_ms / p.ms).abs() < 1e-9);
    }
    // The last layer's outputs are the classes: no cut, and the key says nothing changed.
    assert!(!s.step_units(2, -1).unwrap());
    // Back to the first plan: its measurement is still known.
    assert!(s.undo());
    assert_eq!(s.speed().unwrap(), (plain, true));
}

/// The explorer cuts by batch-norm scales (network slimming) and by activations with the
/// evidence measured on the checkpoint: the kept channels are those of largest |γ|, of
/// fewest zero activations (APoZ) or of largest mean activation; `U` offers a rank only
/// where a layer has its evidence, and a plan asking for one where there is none is refused.
#[test]
fn the_explorer_cuts_channels_by_the_checkpoints_scales_and_activations() {
    let text = r#"
name = "slim-explore"
[model]
name = "bn-net"
layers = [
  { type = "conv", name = "conv1", outputs = 6, kernel = 5 },
  { type = "batch-norm" },
  { type = "relu" },
  { type = "max-pool" },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 10 },
]
[train]
epochs = 1
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "constant"
seed = 1
[layers.conv1]
structured = { keep = 0.5, rank = "bn-scale" }
"#;
    let exp = Experiment::parse(text, "slim").unwrap();
    let net = Net::new(&exp.arch(), 3).unwrap();
    let folded = net.folded().unwrap();
    let weights: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
        .map(|l| {
            (
                folded.weight_values(l).unwrap(),
                folded.bias_values(l).unwrap(),
            )
        })
        .collect();
    use dcx::pipeline::structure::{Activity, UnitActivity};
    let scales = vec![Some(vec![0.9, 0.1, 0.5, 0.05, 0.7, 0.3]), None];
    let activations = vec![
        Some(UnitActivity {
            zero_fraction: vec![0.1, 0.9, 0.2, 0.3, 0.8, 0.7],
            mean: vec![0.0, 0.5, 0.4, 0.3, 0.2, 0.1],
        }),
        None,
    ];
    let baseline = |norm_scales: Vec<Option<Vec<f64>>>| dcx::explore::worker::Baseline {
        model: folded.arch.clone(),
        weights: weights.clone(),
        activity: Activity {
            layers: activations.clone(),
            norm_scales,
        },
        meta: dcx::model::checkpoint::CheckpointMeta {
            model: dcx::model::ModelRef::of(&exp.arch()),
            train: exp.train.clone(),
            data_fingerprint: String::new(),
            history: Vec::new(),
            complete: true,
            distilled: None,
        },
        path: std::path::PathBuf::from("bn-net.safetensors"),
        reused: true,
    };
    let mut s = Session::from_baseline(&baseline(scales), exp.clone()).unwrap();
    let cut = s.units(0).expect("conv1 is cut");
    assert_eq!(cut.outputs, [true, false, true, false, true, false]);
    // Cycling the rank on conv1 visits every rank (it has all the evidence), each cutting
    // by its own numbers; fc1 (the last layer) has no rule.
    use dcx::experiment::UnitRank;
    let mut seen = Vec::new();
    for _ in 0..UnitRank::ALL.len() {
        s.cycle_unit_rank(0).unwrap();
        let rank = s.setting(0).unwrap().plan.structured.unwrap().rank;
        let kept = s.units(0).unwrap().outputs;
        match rank {
            UnitRank::Apoz => assert_eq!(kept, [true, false, true, true, false, false]),
            UnitRank::MeanActivation => {
                assert_eq!(kept, [false, true, true, true, false, false])
            }
            UnitRank::BnScale => assert_eq!(kept, [true, false, true, false, true, false]),
            _ => {}
        }
        seen.push(rank);
    }
    seen.sort_by_key(|r| r.name());
    let mut all = UnitRank::ALL.to_vec();
    all.sort_by_key(|r| r.name());
    assert_eq!(seen, all);
    // Without activations for conv1 an activation rank is refused, by name, and `U` skips it.
    let mut blind = Session::from_weights(folded.arch.clone(), weights.clone(), {
        let mut e = exp.clone();
        e.layers.clear();
        e
    })
    .unwrap();
    assert!(blind.step_units(0, -5).unwrap());
    for _ in 0..UnitRank::ALL.len() {
        blind.cycle_unit_rank(0).unwrap();
        let rank = blind.setting(0).unwrap().plan.structured.unwrap().rank;
        assert!(
            !rank.needs_activations() && rank != UnitRank::BnScale,
            "{rank:?}"
        );
    }
    let apoz = Experiment::parse(&text.replace("bn-scale", "apoz"), "apoz").unwrap();
    let err = Session::from_weights(folded.arch.clone(), weights.clone(), apoz)
        .err()
        .expect("no activations, no apoz cut")
        .to_string();
    assert!(err.contains("conv1") && err.contains("apoz"), "{err}");
    // Without scales for conv1 the plan is refused, by name.
    let err = Session::from_baseline(&baseline(vec![None, None]), exp)
        .err()
        .expect("no scales, no bn-scale cut")
        .to_string();
    assert!(err.contains("conv1") && err.contains("bn-scale"), "{err}");
}

//! The compression pipeline end to end on the committed fixture: the invariants the design
//! asks for (zeros stay zero, shared weights stay in the codebook, the file reproduces the
//! in-memory model and accuracy, reported sizes are the file's bytes).

mod common;

use dcx::experiment::Experiment;
use dcx::format::dcz;
use dcx::model::optim::Constraint;
use dcx::model::train::{self, Silent, TrainConfig};
use dcx::model::{ModelKind, Net};
use dcx::pipeline;

use common::Quiet;

const EXPERIMENT: &str = r#"
name = "fixture-lenet-300-100"
model = "lenet-300-100"
[train]
epochs = 3
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 7
[defaults]
prune = { keep = 0.1 }
bits = 4
index_bits = 4
[layers.fc3]
prune = { quality = 0.5 }
prune_bias = true
bits = 3
init = "kmeans++"
[retrain]
rounds = 2
epochs = 1
lr = 0.0005
batch_size = 32
[finetune]
epochs = 1
lr = 0.0005
batch_size = 32
"#;

#[test]
fn pipeline_file_round_trip_and_invariants() {
    let data = common::fixture();
    let exp = Experiment::parse(EXPERIMENT, "fixture").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    let stages: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "baseline",
            "pruned (round 1)",
            "retrained (round 1)",
            "pruned (round 2)",
            "retrained (round 2)",
            "shared",
            "fine-tuned"
        ]
    );
    assert!(
        r.baseline().accuracy > 0.6,
        "baseline {}",
        r.baseline().accuracy
    );

    // Reported sizes are the bytes of the file, header counted separately.
    assert_eq!(r.sizes.file_bytes as usize, result.bytes.len());
    let sections: u64 = r.sizes.layers.iter().map(|l| l.file_bytes).sum();
    assert_eq!(
        sections + r.sizes.header_bytes + r.sizes.trailer_bytes,
        r.sizes.file_bytes
    );
    assert!(r.sizes.ratio() > 5.0, "ratio {}", r.sizes.ratio());

    // The in-memory network: pruned weights are exactly zero, survivors are codebook values.
    for (l, layer) in result.model.layers.iter().enumerate() {
        let w = result.net.weight_values(l).unwrap();
        let mask = layer.mask();
        let kept = mask.iter().filter(|&&k| k).count();
        let expected = (0.1 * layer.weight_count() as f64).round() as usize;
        if l < 2 {
            assert_eq!(kept, expected, "{}", layer.name);
        }
        for (i, &v) in w.iter().enumerate() {
            if mask[i] {
                assert!(
                    layer.codebook.contains(&v),
                    "{}[{i}] = {v} not shared",
                    layer.name
                );
            } else {
                assert_eq!(v, 0.0, "{}[{i}] pruned but {v}", layer.name);
            }
        }
        assert!(layer.codebook.len() <= 1 << layer.bits);
        assert_eq!(w, layer.dense_weights());
    }

    the_file_alone_reproduces(&result, &data, &exp);
}

#[test]
fn biases_go_on_8_bit_grids_after_training_and_cost_a_byte_each() {
    let data = common::fixture();
    let cache = tempfile::tempdir().unwrap();
    let plain = Experiment::parse(EXPERIMENT, "fixture").unwrap();
    let text = EXPERIMENT.replace("[defaults]\n", "[defaults]\nbias_bits = 8\n");
    let exp = Experiment::parse(&text, "fixture").unwrap();
    assert!(exp.layer_plans().iter().all(|p| p.bias_bits == 8));
    let f32_run = pipeline::run(&plain, &data, cache.path(), &mut Quiet).unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    // Training is that of the f32 plan, stage for stage; the grids come after it, and the
    // last stage measures the network the file holds.
    let stages: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
    let n = stages.len();
    assert_eq!(stages[n - 2..], ["fine-tuned", "biases on 8-bit grids"]);
    let trained = |stages: &[pipeline::StageEval]| -> Vec<(String, f64, f32)> {
        stages[..n - 1]
            .iter()
            .map(|s| (s.stage.clone(), s.accuracy, s.loss))
            .collect()
    };
    assert_eq!(trained(&r.stages), trained(&f32_run.report.stages));
    assert_eq!(r.last().file_bytes, Some(result.bytes.len() as u64));
    for (l, (g, f)) in result
        .model
        .layers
        .iter()
        .zip(&f32_run.model.layers)
        .enumerate()
    {
        let grid = g.bias_grid.expect("every layer's biases on a grid");
        assert_eq!(g.dense_weights(), f.dense_weights(), "{}", g.name);
        assert_eq!(result.net.bias_values(l).unwrap(), g.bias, "{}", g.name);
        for (&a, &b) in g.bias.iter().zip(&f.bias) {
            assert_eq!(
                grid.value(grid.code(a)),
                a,
                "{}: {a} is on the grid",
                g.name
            );
            assert!(
                (a - b).abs() <= grid.scale * 0.5001,
                "{}: {a} vs {b}",
                g.name
            );
            if b == 0.0 {
                assert_eq!(a, 0.0, "{}: a pruned bias stays 0", g.name);
            }
        }
    }
    // fc3 prunes its biases.
    assert!(f32_run.model.layers[2].bias.contains(&0.0));
    // Same weights, same codes: each section differs by its biases alone, 4 bytes each
    // against a scale, a zero point and a byte each.
    for ((g, f), layer) in r
        .sizes
        .layers
        .iter()
        .zip(&f32_run.report.sizes.layers)
        .zip(&result.model.layers)
    {
        let b = layer.bias.len() as u64;
        assert_eq!(f.file_bytes - g.file_bytes, 3 * b - 5, "{}", g.name);
        assert_eq!(f.shared_bytes - g.shared_bytes, 3 * b - 5, "{}", g.name);
        assert_eq!(f.pruned_bytes, g.pruned_bytes, "{}", g.name);
    }
    the_file_alone_reproduces(&result, &data, &exp);
}

/// The written file gives back the same model and the same accuracy, and the experiment
/// travels in it and parses back to the same plan.
fn the_file_alone_reproduces(
    result: &pipeline::CompressionResult,
    data: &dcx::data::Mnist,
    exp: &Experiment,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.dcz");
    dcz::save(&path, &result.bytes).unwrap();
    let file = dcz::load(&path).unwrap();
    assert_eq!(file.model, result.model);
    let from_file = train::evaluate(&file.model.to_net().unwrap(), &data.test).unwrap();
    let in_memory = train::evaluate(&result.net, &data.test).unwrap();
    assert_eq!(from_file.correct, in_memory.correct);
    assert_eq!(from_file.accuracy, result.report.last().accuracy);
    let again = Experiment::parse(&file.model.experiment, "from file").unwrap();
    assert_eq!(&again, exp);
}

#[test]
fn masked_retraining_keeps_pruned_weights_at_zero_and_trains_the_rest() {
    let data = common::fixture().subset(300, 50);
    let net = Net::new(&ModelKind::Lenet5.arch(), 2).unwrap();
    let masks: Vec<Vec<bool>> = net
        .arch
        .layers
        .iter()
        .map(|l| (0..l.weight_count()).map(|i| i % 3 == 0).collect())
        .collect();
    let before: Vec<Vec<f32>> = (0..4).map(|l| net.weight_values(l).unwrap()).collect();
    let constraints = train::weight_constraints(
        masks
            .iter()
            .map(|m| Constraint {
                mask: Some(m.clone()),
                ..Constraint::default()
            })
            .collect(),
    );
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        weight_decay: 1e-4,
        ..TrainConfig::default()
    };
    train::train(&net, &data, &cfg, &constraints, &mut Silent).unwrap();
    for (l, mask) in masks.iter().enumerate() {
        let after = net.weight_values(l).unwrap();
        let mut moved = 0;
        for (i, &keep) in mask.iter().enumerate() {
            if keep {
                moved += (after[i] != before[l][i]) as usize;
            } else {
                assert_eq!(after[i], 0.0, "layer {l} weight {i}");
            }
        }
        assert!(moved > 0, "layer {l}: no kept weight trained");
    }
}

/// Fixed-grid quantizers through the whole pipeline: quantization-aware training, the file,
/// and evaluation from the file alone.
const GRIDS: &str = r#"
name = "fixture-grids"
model = "lenet-300-100"
[train]
epochs = 3
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 7
[defaults]
index_bits = 4
[layers.fc1]
prune = { keep = 0.2 }
quantizer = "ternary"
per_channel = true
[layers.fc2]
prune = { keep = 0.5 }
quantizer = "uniform"
bits = 4
per_channel = true
[layers.fc3]
quantizer = "binary"
[retrain]
epochs = 1
lr = 0.0005
batch_size = 32
[finetune]
epochs = 1
lr = 0.0005
batch_size = 32
"#;

#[test]
fn grid_quantizers_train_aware_and_the_file_holds_what_training_ended_on() {
    let data = common::fixture();
    let exp = Experiment::parse(GRIDS, "fixture").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    let stages: Vec<&str> = r.stages.iter().map(|s| s.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "baseline",
            "pruned",
            "retrained",
            "quantized",
            "quantization-aware"
        ]
    );
    // The last stage is the file: its bytes, and what the network it evaluated holds.
    assert_eq!(r.last().file_bytes, Some(result.bytes.len() as u64));
    assert!(r.stages[3].file_bytes.is_some());
    for (l, layer) in result.model.layers.iter().enumerate() {
        assert_eq!(result.net.weight_values(l).unwrap(), layer.dense_weights());
        assert!(layer.grid.is_some(), "{}", layer.name);
    }
    // Ternary pruned beyond the plan's 20%; binary keeps every weight at +-alpha per layer.
    let fc1 = &result.model.layers[0];
    assert!(fc1.kept() < fc1.weight_count() / 5, "{}", fc1.kept());
    let fc3 = &result.model.layers[2];
    assert_eq!(fc3.kept(), fc3.weight_count());
    let fc3_values: std::collections::BTreeSet<u32> = fc3
        .dense_weights()
        .iter()
        .map(|v| v.abs().to_bits())
        .collect();
    assert_eq!(fc3_values.len(), 1, "one |alpha| per layer");
    // Sizes: a per-channel uniform grid stores 5 bytes per output channel, not its levels.
    assert_eq!(result.model.layers[1].level_bytes(), 5 * 100);

    the_file_alone_reproduces(&result, &data, &exp);
}

const ACTIVATIONS: &str = r#"
name = "fixture-activations"
model = "lenet-5"
[train]
epochs = 2
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 7
[defaults]
prune = { keep = 0.3 }
quantizer = "uniform"
bits = 4
[retrain]
epochs = 1
lr = 0.0005
batch_size = 32
[finetune]
epochs = 1
lr = 0.0001
batch_size = 32
[activations]
bits = 3
images = 150
"#;

#[test]
fn quantized_activations_are_trained_against_and_travel_in_the_file() {
    let data = common::fixture();
    let exp = Experiment::parse(ACTIVATIONS, "fixture").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    // Pruning runs in f32; the quantized network, before and after training, on the grids.
    let widths: Vec<(&str, Option<u8>)> = r
        .stages
        .iter()
        .map(|s| (s.stage.as_str(), s.activation_bits))
        .collect();
    assert_eq!(
        widths,
        [
            ("baseline", None),
            ("pruned", None),
            ("retrained", None),
            ("quantized", Some(3)),
            ("quantization-aware", Some(3)),
        ]
    );
    assert_eq!(
        r.activations.as_deref(),
        Some("3-bit activations (min/max on 150 training images)")
    );
    let a = result
        .model
        .activations
        .as_ref()
        .expect("the file holds grids");
    assert_eq!(a.grids.len(), 4);
    assert!(a.grids.iter().all(|g| g.bits == 3 && g.scale > 0.0));
    assert_eq!(result.net.activations(), Some(a));
    // The grids are not decoration: the same weights with f32 activations evaluate otherwise.
    let quantized = train::evaluate(&result.net, &data.test).unwrap();
    let mut f32_net = result.model.to_net().unwrap();
    f32_net.set_activations(None);
    let plain = train::evaluate(&f32_net, &data.test).unwrap();
    assert_ne!(quantized.loss, plain.loss);

    // The command line gives the same file: `dcx eval` prints the in-memory count and says
    // the activations are quantized; report.md and report.json say so next to the accuracy.
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("act.toml");
    std::fs::write(&toml, ACTIVATIONS).unwrap();
    let out = dir.path().join("out");
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mnist-small");
    let dcx = |args: &[&std::ffi::OsStr]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_dcx"))
            .env("DCX_CACHE", cache.path())
            .arg("--data")
            .arg(fixture)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        text
    };
    dcx(&[
        "compress".as_ref(),
        toml.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let file = out.join("model.dcz");
    assert_eq!(std::fs::read(&file).unwrap(), result.bytes);
    let eval = dcx(&["eval".as_ref(), file.as_os_str()]);
    let quantized_count = format!("({} / {})", quantized.correct, quantized.total);
    assert!(eval.contains(&quantized_count), "{eval}");
    assert!(eval.contains("3-bit activations (min/max on 150"), "{eval}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("| activations |") && md.contains("| 3-bit |"),
        "{md}"
    );
    assert!(md.contains("3-bit activations (min/max on 150 training images)"));
    let json = std::fs::read_to_string(out.join("report.json")).unwrap();
    assert!(json.contains("\"activation_bits\": 3"), "{json}");
    // A 3-bit grid cannot be the INT8 engine's: it calibrates its own 8-bit ranges.
    let int8 = dcx(&["eval".as_ref(), file.as_os_str(), "--int8".as_ref()]);
    assert!(int8.contains("activations by min/max on 500"), "{int8}");
    // With 8-bit grids it computes with the file's own.
    let eight = dir.path().join("act8.toml");
    std::fs::write(
        &eight,
        ACTIVATIONS.replace("bits = 3\nimages", "bits = 8\nimages"),
    )
    .unwrap();
    let out8 = dir.path().join("out8");
    dcx(&[
        "compress".as_ref(),
        eight.as_os_str(),
        "--out".as_ref(),
        out8.as_os_str(),
    ]);
    let file8 = out8.join("model.dcz");
    let int8 = dcx(&["eval".as_ref(), file8.as_os_str(), "--int8".as_ref()]);
    assert!(int8.contains("the file's 8-bit activation grids"), "{int8}");

    the_file_alone_reproduces(&result, &data, &exp);
}

#[test]
fn binary_weights_train_from_scratch() {
    let data = common::fixture();
    let text = r#"
name = "fixture-binaryconnect"
model = "lenet-300-100"
from_scratch = true
[train]
epochs = 1
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 3
[defaults]
quantizer = "binary"
[[step]]
kind = "finetune"
epochs = 4
lr = 0.002
batch_size = 32
"#;
    let exp = Experiment::parse(text, "fixture").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    assert_eq!(r.stages[0].stage, "untrained (random init)");
    assert!(r.baseline_checkpoint.is_empty());
    // No baseline was trained: the cache stays empty.
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 0);
    // Binarised from random weights, training moves it far from chance (10%).
    assert!(r.stages[1].accuracy < 0.3, "{}", r.stages[1].accuracy);
    assert!(r.last().accuracy > 0.6, "{}", r.last().accuracy);
    for layer in &result.model.layers {
        assert_eq!(layer.bits, 1);
        assert_eq!(layer.kept(), layer.weight_count());
    }
}

const DEFINED: &str = r#"
name = "fixture-defined"
[model]
name = "narrow-lenet-5"
layers = [
  { type = "conv", name = "conv1", outputs = 6, kernel = 5 },
  { type = "batch-norm" },
  { type = "relu" },
  { type = "max-pool" },
  { type = "conv", name = "conv2", outputs = 12, kernel = 5 },
  { type = "batch-norm", name = "bn2" },
  { type = "max-pool" },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 60 },
  { type = "relu" },
  { type = "dropout", p = 0.2 },
  { type = "fc", name = "fc2", outputs = 10 },
]
[train]
epochs = 2
batch_size = 32
lr = 0.003
optimizer = "adam"
schedule = "cosine"
seed = 3
# Network slimming's penalty: named by a batch-norm the folded network retrained later
# no longer has (those steps skip it).
[train.penalty."conv1.bn"]
l1 = 0.0001
[defaults]
prune = { keep = 0.5 }
bits = 5
[layers.conv1]
structured = { keep = 0.5, rank = "bn-scale" }
[retrain]
epochs = 1
lr = 0.001
batch_size = 32
"#;

/// A network the experiment defines, with batch-norm and dropout: trained with both, folded
/// for everything after training, and the file carries its stages so it runs alone.
#[test]
fn a_network_defined_in_the_experiment_runs_the_whole_pipeline() {
    let data = common::fixture();
    let exp = Experiment::parse(DEFINED, "fixture").unwrap();
    let arch = exp.arch();
    assert_eq!(arch.norms.len(), 2);
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    assert!(
        r.baseline().accuracy > 0.6,
        "baseline {}",
        r.baseline().accuracy
    );
    assert_eq!(r.model, "narrow-lenet-5");
    // The file holds the inference network: the same layers, no batch-norm or dropout.
    assert_eq!(result.model.arch, arch.inference());
    the_file_alone_reproduces(&result, &data, &exp);

    // The checkpoint is cached under the network's stages: the same experiment reuses it,
    // and the folded baseline evaluates to the report's baseline accuracy.
    let again =
        dcx::model::cache::obtain(&arch, &exp.train, &data, false, cache.path(), &mut Quiet)
            .unwrap();
    assert!(again.reused);
    let folded = again.net.folded().unwrap();
    let base = train::evaluate(&folded, &data.test).unwrap();
    assert_eq!(base.accuracy, r.baseline().accuracy);
    let unfolded = train::evaluate(&again.net, &data.test).unwrap();
    assert_eq!(unfolded.correct, base.correct);

    // A finished run in an output folder is found by the explorer under its name; other
    // networks' runs and unreadable folders are not.
    let out = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        std::fs::create_dir_all(out.path().join(name)).unwrap();
        std::fs::write(out.path().join(name).join("report.json"), text).unwrap();
    };
    write("fixture-defined", &serde_json::to_string(r).unwrap());
    let mut other = r.clone();
    other.model = "lenet-5".into();
    write("other-network", &serde_json::to_string(&other).unwrap());
    write("garbage", "{ not json");
    let runs = dcx::explore::runs::scan(&[out.path()], "narrow-lenet-5");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].label, "fixture-defined");
    assert_eq!(runs[0].ratio, r.sizes.ratio());
    assert_eq!(runs[0].accuracy, r.last().accuracy);
    assert_eq!(
        runs[0].training.len(),
        r.retrain_history.len() + r.finetune_history.len()
    );

    // Network slimming's cut: conv1 keeps the 3 of its 6 channels whose batch-norm scale
    // |γ| is largest.
    let gamma: Vec<f32> = again.net.norms[0].scale.to_vec1().unwrap();
    let mut order: Vec<usize> = (0..gamma.len()).collect();
    order.sort_by(|&a, &b| gamma[b].abs().total_cmp(&gamma[a].abs()).then(a.cmp(&b)));
    let kept = &result.model.layers[0].units.as_ref().unwrap().outputs;
    let want: Vec<bool> = (0..6).map(|u| order[..3].contains(&u)).collect();
    assert_eq!(kept, &want, "gamma {gamma:?}");
}

const STRIDED: &str = r#"
name = "fixture-strided"
[model]
name = "strided-lenet"
layers = [
  { type = "conv", name = "conv1", outputs = 8, kernel = 5, stride = 2 },
  { type = "relu" },
  { type = "conv", name = "conv2", outputs = 16, kernel = 3, padding = 1, stride = 2 },
  { type = "relu" },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 32 },
  { type = "relu" },
  { type = "fc", name = "fc2", outputs = 10 },
]
[train]
epochs = 2
batch_size = 32
lr = 0.003
optimizer = "adam"
schedule = "cosine"
seed = 3
train_limit = 256
[defaults]
prune = { keep = 0.5 }
bits = 5
[layers.conv1]
structured = { keep = 0.5, rank = "l1" }
[retrain]
epochs = 1
lr = 0.001
batch_size = 32
"#;

/// Strided convolutions through training (a few batches), pruning (conv1 thinned to half
/// its filters, so conv2's section is thinned too), sharing and the file: the file alone
/// gives the in-memory accuracy, and the costs count each stride's output pixels.
#[test]
fn a_network_with_strided_convolutions_runs_the_whole_pipeline() {
    let data = common::fixture();
    let exp = Experiment::parse(STRIDED, "fixture").unwrap();
    let arch = exp.arch();
    // 28 -> 12 (5x5, stride 2) -> 6 (3x3, padding 1, stride 2): fc1 reads 16 x 6 x 6.
    assert_eq!(arch.layers[2].inputs, 576);
    let cache = tempfile::tempdir().unwrap();
    let result = pipeline::run(&exp, &data, cache.path(), &mut Quiet).unwrap();
    let r = &result.report;
    // 16 batches of 32 images: well above chance (10%) only if the strided layers learn.
    assert!(
        r.baseline().accuracy > 0.4,
        "baseline {}",
        r.baseline().accuracy
    );
    assert_eq!(result.model.arch, arch);
    assert_eq!(
        r.cost.macs_dense(),
        (12 * 12 * 8 * 25 + 6 * 6 * 16 * 8 * 9 + 576 * 32 + 32 * 10) as u64
    );
    // conv1 keeps 4 of 8 filters: its multiply-adds and conv2's halve.
    assert_eq!(
        r.cost.macs_thinned(),
        (12 * 12 * 4 * 25 + 6 * 6 * 16 * 4 * 9 + 576 * 32 + 32 * 10) as u64
    );
    the_file_alone_reproduces(&result, &data, &exp);
}

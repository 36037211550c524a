//! `tools/dcz_decode.py`, a decoder written from `docs/dcz-format.md` alone, reads the files
//! dcx writes and agrees with `dcx inspect` on every figure and with `dcx eval` on the correct
//! count: if the writer and the documentation part ways, this fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn fixture() -> String {
    repo("tests/fixtures/mnist-small").display().to_string()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out: Output = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed: {stdout}{stderr}");
    stdout
}

fn dcx(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcx"));
    cmd.env("DCX_CACHE", cache).args(["--data", &fixture()]);
    cmd
}

fn decoder(args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(repo("tools/dcz_decode.py")).args(args);
    cmd
}

fn python3_missing() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!(
            "skipping the reference decoder test: python3 is not on PATH \
             (tools/dcz_decode.py needs a Python 3 interpreter)"
        );
    }
    !found
}

/// The first markdown table of `text` as (row label -> (column -> cell)), and the line that
/// names the file.
fn table(text: &str) -> (String, BTreeMap<String, BTreeMap<String, String>>) {
    let cells = |line: &str| -> Vec<String> {
        line.trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    let mut lines = text.lines();
    let title = lines.next().expect("a title line").to_string();
    let mut lines = lines.skip_while(|l| !l.starts_with("| layer |"));
    let header = cells(lines.next().expect("a table"));
    let mut rows = BTreeMap::new();
    for line in lines.skip(1).take_while(|l| l.starts_with('|')) {
        let row = cells(line);
        assert_eq!(row.len(), header.len(), "{line}");
        rows.insert(
            row[0].clone(),
            header.iter().cloned().zip(row.iter().cloned()).collect(),
        );
    }
    (title, rows)
}

/// Compresses `experiment` on the fixture and checks the decoder against inspect and eval.
fn decoder_agrees_with_dcx(cache: &Path, dir: &Path, name: &str, experiment: &str) {
    let file = compress(cache, dir, name, experiment);
    decoder_agrees_with_dcx_on(cache, dir, name, &file);
}

/// `dcx compress` of `experiment` on the fixture into `dir/name/`: the `.dcz` written.
fn compress(cache: &Path, dir: &Path, name: &str, experiment: &str) -> String {
    let toml = dir.join(format!("{name}.toml"));
    std::fs::write(&toml, experiment).unwrap();
    let out = dir.join(name);
    run(
        dcx(cache).arg("compress").arg(&toml).arg("--out").arg(&out),
        "dcx compress",
    );
    out.join("model.dcz").display().to_string()
}

/// `dcx eval`'s correct count of `file` on the fixture, as "correct/total".
fn dcx_eval_count(cache: &Path, file: &str) -> String {
    let eval = run(dcx(cache).args(["eval", file]), "dcx eval");
    eval.split('(')
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("dcx eval prints (correct / total)")
        .replace(' ', "")
}

/// The decoder against `dcx inspect` and `dcx eval` on `file`.
fn decoder_agrees_with_dcx_on(cache: &Path, dir: &Path, name: &str, file: &str) {
    let file = file.to_string();

    let inspect = run(dcx(cache).args(["inspect", &file]), "dcx inspect");
    let decoded = run(&mut decoder(&[&file]), "tools/dcz_decode.py");
    let (their_title, theirs) = table(&inspect);
    let (our_title, ours) = table(&decoded);
    assert_eq!(our_title, their_title);
    let labels: Vec<&String> = theirs.keys().collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        labels,
        "{decoded}\n{inspect}"
    );
    // Every column but the threshold, which the file does not hold.
    let columns: Vec<&String> = theirs["**total**"]
        .keys()
        .filter(|c| *c != "threshold")
        .collect();
    assert_eq!(columns.len(), 13, "inspect's columns changed: {columns:?}");
    for (label, row) in &theirs {
        for column in &columns {
            assert_eq!(
                ours[label].get(*column),
                row.get(*column),
                "{name}: {label}, {column}\n{decoded}\n{inspect}"
            );
        }
    }

    let count = dcx_eval_count(cache, &file);
    let ours = run(
        &mut decoder(&[&file, "--eval", &fixture()]),
        "tools/dcz_decode.py --eval",
    );
    assert!(
        ours.contains(&format!("accuracy: {count} correct")),
        "{name}: dcx eval says {count}: {ours}"
    );

    // A file changed after writing is refused, naming the file.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 1;
    let bad = dir.join(format!("{name}-bad.dcz"));
    std::fs::write(&bad, bytes).unwrap();
    let refused = decoder(&[&bad.display().to_string()]).output().unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.dcz") && err.contains("checksum"), "{err}");
}

const TRAIN: &str = r#"
[train]
epochs = 2
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 7
[retrain]
rounds = 1
epochs = 1
lr = 0.0005
batch_size = 32
[finetune]
epochs = 1
lr = 0.0005
batch_size = 32
"#;

#[test]
fn the_reference_decoder_reads_what_dcx_writes() {
    if python3_missing() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Plain-mode tables (1-bit sharing, 1-bit gaps: nearly every gap symbol a filler),
    // delta-mode tables (8-bit sharing, 16-bit gaps), a one-symbol gap code (nothing pruned)
    // and pruned biases; f32 biases and biases on 8-bit grids (pruned ones too).
    let mixed = format!(
        r#"name = "decoder-mixed"
model = "lenet-300-100"
max_code_len = 6
[layers.fc1]
prune = {{ keep = 0.03 }}
bits = 1
index_bits = 1
[layers.fc2]
prune = {{ keep = 0.1 }}
bits = 8
index_bits = 16
bias_bits = 8
[layers.fc3]
prune = {{ keep = 1.0 }}
prune_bias = true
bias_bits = 8
bits = 3
index_bits = 4
init = "kmeans++"
{TRAIN}"#
    );
    decoder_agrees_with_dcx(cache.path(), dir.path(), "mixed", &mixed);
    // A layer with no survivors (empty codes), gaps of tens of thousands with 16-bit
    // indices (a gap code table of thousands of symbols), and biases pruned to zero.
    let edges = format!(
        r#"name = "decoder-edges"
model = "lenet-300-100"
[layers.fc1]
prune = {{ keep = 0.00002 }}
bits = 1
index_bits = 16
[layers.fc2]
prune = {{ threshold = 1000.0 }}
bits = 4
index_bits = 5
[layers.fc3]
prune = {{ quality = 1.0 }}
prune_bias = true
bits = 2
index_bits = 3
{TRAIN}"#
    );
    decoder_agrees_with_dcx(cache.path(), dir.path(), "edges", &edges);
    // The fixed grids: per-channel ternary (it prunes too), symmetric and binary per layer.
    let grids = format!(
        r#"name = "decoder-grids"
model = "lenet-300-100"
[layers.fc1]
prune = {{ keep = 0.2 }}
quantizer = "ternary"
per_channel = true
[layers.fc2]
prune = {{ keep = 0.5 }}
quantizer = "symmetric"
bits = 3
[layers.fc3]
quantizer = "binary"
{TRAIN}"#
    );
    decoder_agrees_with_dcx(cache.path(), dir.path(), "grids", &grids);
    // Quantized activations: the decoder reads the grids after the layer count and runs the
    // network on them (its count must still be dcx eval's).
    let activations = format!(
        r#"name = "decoder-activations"
model = "lenet-300-100"
[defaults]
prune = {{ keep = 0.2 }}
quantizer = "uniform"
bits = 4
[activations]
bits = 3
calibration = "99.9"
images = 200
{TRAIN}"#
    );
    decoder_agrees_with_dcx(cache.path(), dir.path(), "activations", &activations);
}

/// A file's bytes, its metadata length and its metadata JSON.
fn read_metadata(file: &Path) -> (Vec<u8>, usize, serde_json::Value) {
    use std::io::Read;
    let bytes = std::fs::read(file).unwrap();
    let len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    let mut json = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[8..8 + len])
        .read_to_end(&mut json)
        .unwrap();
    (bytes, len, serde_json::from_slice(&json).unwrap())
}

/// `file` with its metadata JSON changed by `change`, deflated and checksummed again, so a
/// reader gets past the checksum to the metadata.
fn with_metadata(file: &Path, change: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    use sha2::Digest;
    use std::io::Write;
    let (bytes, len, mut meta) = read_metadata(file);
    change(&mut meta);
    let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&serde_json::to_vec(&meta).unwrap()).unwrap();
    let deflated = z.finish().unwrap();
    let mut out = bytes[..4].to_vec();
    out.extend_from_slice(&(deflated.len() as u32).to_le_bytes());
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&bytes[8 + len..bytes.len() - 8]);
    let digest = sha2::Sha256::digest(&out);
    out.extend_from_slice(&digest[..8]);
    out
}

/// A network the experiment defines rather than names: the decoder builds its layers from the
/// file's `network` stages and runs them (ReLU after conv1, where no built-in LeNet has one).
/// The batch-norm is folded into conv1 when written, conv2 is padded, conv1 loses half its
/// filters to structured pruning (so conv2's section is thinned too) and fc2 is ternary.
#[test]
fn the_reference_decoder_reads_a_defined_network() {
    if python3_missing() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let network = format!(
        r#"name = "decoder-network"
[model]
name = "small-lenet"
layers = [
  {{ type = "conv", name = "conv1", outputs = 6, kernel = 5 }},
  {{ type = "batch-norm" }},
  {{ type = "relu" }},
  {{ type = "max-pool" }},
  {{ type = "conv", name = "conv2", outputs = 8, kernel = 3, padding = 1 }},
  {{ type = "max-pool" }},
  {{ type = "flatten" }},
  {{ type = "fc", name = "fc1", outputs = 32 }},
  {{ type = "relu" }},
  {{ type = "fc", name = "fc2", outputs = 10 }},
]
[layers.conv1]
structured = {{ keep = 0.5, rank = "l1" }}
bits = 6
bias_bits = 8
[layers.conv2]
prune = {{ keep = 0.5 }}
bits = 5
index_bits = 3
[layers.fc1]
prune = {{ keep = 0.1 }}
[layers.fc2]
quantizer = "ternary"
per_channel = true
{TRAIN}"#
    );
    decoder_agrees_with_dcx(cache.path(), dir.path(), "network", &network);
    let file = dir.path().join("network").join("model.dcz");

    // The file holds the network inference runs: the stages, the batch-norm gone.
    let (_, _, written) = read_metadata(&file);
    assert_eq!(written["model"], "small-lenet");
    let types: Vec<&str> = written["network"]
        .as_array()
        .expect("a defined network's file lists its stages")
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "conv", "relu", "max-pool", "conv", "max-pool", "flatten", "fc", "relu", "fc"
        ]
    );
    assert_eq!(
        written["network"][3],
        serde_json::json!({"type": "conv", "name": "conv2", "outputs": 8, "kernel": 3, "padding": 1})
    );

    // Both readers refuse stages a file cannot hold, or that contradict its layers.
    type Change = fn(&mut serde_json::Value);
    let cases: [(&str, Change, &str, &str); 2] = [
        (
            "batch-norm",
            |m| {
                let stages = m["network"].as_array_mut().unwrap();
                stages.insert(1, serde_json::json!({"type": "batch-norm"}));
            },
            "network[1]: a batch-norm stage",
            "network[1]: a batch-norm stage",
        ),
        (
            "no padding",
            |m| {
                m["network"][3].as_object_mut().unwrap().remove("padding");
            },
            "does not match small-lenet's fc1 (Fc [32, 200])",
            "small-lenet's {'name': 'fc1', 'kind': 'fc', 'shape': [32, 200]}",
        ),
    ];
    for (what, change, dcx_says, decoder_says) in cases {
        let bad = dir
            .path()
            .join(format!("network-{}.dcz", what.replace(' ', "-")));
        std::fs::write(&bad, with_metadata(&file, change)).unwrap();
        let bad = bad.display().to_string();
        let out = dcx(cache.path()).args(["inspect", &bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: dcx inspect read it");
        assert!(
            err.contains(&bad) && err.contains(dcx_says),
            "{what}: {err}"
        );
        let out = decoder(&[&bad]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(
            err.contains(&bad) && err.contains(decoder_says),
            "{what}: {err}"
        );
    }
}

/// A built-in's file lists its stages too, so a decoder needs no table of built-ins; an older
/// file that only names the built-in still reads the same in both readers, and the built-in's
/// name over other stages is refused by both.
#[test]
fn a_built_in_file_lists_its_stages_and_older_files_that_only_name_it_still_read() {
    if python3_missing() {
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let builtin = format!(
        r#"name = "decoder-builtin"
model = "lenet-300-100"
[defaults]
prune = {{ keep = 0.1 }}
bits = 4
{TRAIN}"#
    );
    let file = compress(cache.path(), dir.path(), "builtin", &builtin);
    let (_, _, written) = read_metadata(Path::new(&file));
    assert_eq!(written["model"], "lenet-300-100");
    let types: Vec<&str> = written["network"]
        .as_array()
        .expect("a built-in's file lists its stages")
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["flatten", "fc", "relu", "fc", "relu", "fc"]);
    decoder_agrees_with_dcx_on(cache.path(), dir.path(), "builtin", &file);

    let older = dir.path().join("builtin-named-only.dcz");
    std::fs::write(
        &older,
        with_metadata(Path::new(&file), |m| {
            m.as_object_mut().unwrap().remove("network");
        }),
    )
    .unwrap();
    let older = older.display().to_string();
    decoder_agrees_with_dcx_on(cache.path(), dir.path(), "builtin-older", &older);

    let other = dir.path().join("builtin-other-stages.dcz");
    std::fs::write(
        &other,
        with_metadata(Path::new(&file), |m| {
            m["network"].as_array_mut().unwrap().remove(2);
        }),
    )
    .unwrap();
    let other = other.display().to_string();
    let out = dcx(cache.path())
        .args(["inspect", &other])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "dcx inspect read it");
    let says = "'lenet-300-100' is a built-in network: its network must be the built-in's stages";
    assert!(err.contains(&other) && err.contains(says), "{err}");
    let out = decoder(&[&other]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&other) && err.contains(says), "{err}");
}

/// Strided convolutions (stride 2 with and without padding, then stride 3) trained for a few
/// batches: `dcx eval` on the file gives the accuracy the compress run measured in memory,
/// the file lists each stride other than 1, and the decoder computes the same convolutions.
#[test]
fn a_strided_network_evaluates_from_its_file_and_the_reference_decoder_agrees() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let network = r#"name = "decoder-strided"
[model]
name = "strided-lenet"
layers = [
  { type = "conv", name = "conv1", outputs = 8, kernel = 5, stride = 2 },
  { type = "relu" },
  { type = "conv", name = "conv2", outputs = 16, kernel = 3, padding = 1, stride = 2 },
  { type = "relu" },
  { type = "conv", name = "conv3", outputs = 16, kernel = 3, stride = 3 },
  { type = "flatten" },
  { type = "fc", name = "fc1", outputs = 10 },
]
[train]
epochs = 2
batch_size = 32
lr = 0.003
optimizer = "adam"
schedule = "cosine"
seed = 7
train_limit = 384
[defaults]
prune = { keep = 0.5 }
bits = 5
[retrain]
rounds = 1
epochs = 1
lr = 0.0005
batch_size = 32
"#;
    let file = compress(cache.path(), dir.path(), "strided", network);
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("strided").join("report.json")).unwrap(),
    )
    .unwrap();
    let in_memory = report["stages"].as_array().unwrap().last().unwrap()["accuracy"]
        .as_f64()
        .unwrap();
    let count = dcx_eval_count(cache.path(), &file);
    let (correct, total) = count.split_once('/').unwrap();
    let (correct, total): (f64, f64) = (correct.parse().unwrap(), total.parse().unwrap());
    assert_eq!(correct / total, in_memory, "dcx eval {count}");
    // 24 batches already beat chance (10%) by far (about 44% measured).
    assert!(in_memory > 0.25, "{in_memory}");

    // 28 -> 12 -> 6 -> 2: fc1 reads 16 x 2 x 2.
    let (_, _, written) = read_metadata(Path::new(&file));
    let strides: Vec<Option<u64>> = written["network"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "conv")
        .map(|s| s.get("stride").map(|v| v.as_u64().unwrap()))
        .collect();
    assert_eq!(strides, [Some(2), Some(2), Some(3)]);
    assert_eq!(written["layers"][3]["shape"], serde_json::json!([10, 64]));

    if python3_missing() {
        return;
    }
    decoder_agrees_with_dcx_on(cache.path(), dir.path(), "strided", &file);
    // Without conv3's stride fc1 would read 16 x 4 x 4: both readers refuse the file.
    let bad = dir.path().join("strided-no-stride.dcz");
    std::fs::write(
        &bad,
        with_metadata(Path::new(&file), |m| {
            m["network"][4].as_object_mut().unwrap().remove("stride");
        }),
    )
    .unwrap();
    let bad = bad.display().to_string();
    let out = dcx(cache.path()).args(["inspect", &bad]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&bad) && err.contains("does not match strided-lenet's fc1 (Fc [10, 256])"),
        "{err}"
    );
    let out = decoder(&[&bad]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&bad) && err.contains("'shape': [10, 256]"),
        "{err}"
    );
}

//! The command line refuses bad input at once, with an error naming the input, never a panic,
//! and before any training (these run the real binary).

use std::path::Path;
use std::process::{Command, Output};

fn dcx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(args)
        .env("DCX_CACHE", std::env::temp_dir().join("dcx-cli-test-cache"))
        .output()
        .expect("the binary runs")
}

/// Fails unless the command failed cleanly and its error says each of `words`.
fn refused(out: &Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_ne!(out.status.code(), Some(101), "panicked: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for w in words {
        assert!(err.contains(w), "{w:?} missing from: {err}");
    }
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[test]
fn training_options_no_training_can_run_with() {
    for (flag, value, key) in [
        ("--lr", "nan", "lr"),
        ("--lr", "inf", "lr"),
        ("--lr", "0", "lr"),
        ("--lr", "-1", "lr"),
        ("--limit", "0", "train_limit"),
        ("--epochs", "0", "epochs"),
        ("--l1", "-1", "l1"),
        ("--l2", "nan", "l2"),
        ("--shift", "5", "shift"),
    ] {
        refused(&dcx(&["train", &format!("{flag}={value}")]), &[key]);
    }
}

#[test]
fn an_output_folder_that_is_a_file_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("taken");
    std::fs::write(&file, b"keep me").unwrap();
    let out = dcx(&[
        "compress",
        &repo("experiments/paper-lenet-300-100.toml"),
        "--out",
        &file.display().to_string(),
    ]);
    refused(&out, &["taken", "is a file"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[test]
fn an_experiment_named_only_dots_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("experiments/paper-lenet-300-100.toml")).unwrap();
    let name_line = text.lines().find(|l| l.starts_with("name")).unwrap();
    let bad = dir.path().join("dots.toml");
    std::fs::write(&bad, text.replace(name_line, "name = \"..\"")).unwrap();
    refused(
        &dcx(&["compress", &bad.display().to_string()]),
        &["dots.toml", "name"],
    );
}

#[test]
fn figure_and_screenshot_sizes_that_cannot_be_drawn() {
    let figures = repo("screenshots/lenet-5");
    let out = tempfile::tempdir().unwrap();
    let out = out.path().display().to_string();
    // Once a spin at 100% CPU in the plotting library; now refused.
    refused(
        &dcx(&["plot", &figures, "--size", "30x20", "--out", &out]),
        &["30x20", "at least"],
    );
    refused(
        &dcx(&["plot", &figures, "--scale", "0", "--out", &out]),
        &["scale"],
    );
    let png = format!("{out}/s.png");
    let exp = repo("experiments/paper-lenet-5.toml");
    for (flag, value) in [
        ("--scale", "100"),
        ("--scale", "0"),
        ("--font-px", "0"),
        ("--font-px", "500"),
    ] {
        refused(
            &dcx(&["screenshot", &exp, flag, value, "--out", &png]),
            &[flag],
        );
    }
}

#[test]
fn a_figures_json_that_does_not_hang_together_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo("screenshots/lenet-5/figures.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["global"]["points"][0]["layer_sparsity"] = serde_json::json!([0.5]);
    std::fs::write(dir.path().join("figures.json"), v.to_string()).unwrap();
    let src = dir.path().display().to_string();
    refused(&dcx(&["plot", &src]), &["figures.json", "layer_sparsity"]);
    v["stages"] = serde_json::json!([]);
    std::fs::write(dir.path().join("figures.json"), v.to_string()).unwrap();
    refused(&dcx(&["plot", &src]), &["figures.json", "stages"]);
}

#[test]
fn an_os_error_is_said_once() {
    let out = dcx(&["inspect", "no/such/model.dcz"]);
    refused(&out, &["no/such/model.dcz"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
}

#[test]
fn a_reader_that_goes_away_is_no_panic() {
    use std::process::Stdio;
    // `dcx data where | true`: the pipe is closed before dcx prints (once a panic, exit 101,
    // in println!); now dcx ends quietly on SIGPIPE like other Unix tools.
    for _ in 0..5 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dcx"))
            .args([
                "--data",
                &repo("tests/fixtures/mnist-small"),
                "data",
                "where",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{err}");
        assert_ne!(out.status.code(), Some(101), "{err}");
    }
}

#[test]
fn output_that_cannot_be_written_is_an_error_not_a_panic() {
    // `> /dev/full` (a full disk) once panicked with exit 101 in println!.
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("skipping: no /dev/full on this system");
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args([
            "--data",
            &repo("tests/fixtures/mnist-small"),
            "data",
            "where",
        ])
        .stdout(full)
        .output()
        .unwrap();
    refused(
        &out,
        &["cannot write the output", "No space left on device"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line, no backtrace: {err}");
}

#[test]
fn devices_folders_and_giant_files_are_refused_without_reading_them() {
    // /dev/zero once grew dcx until memory ran out; a 3 GB file took 3.1 GB.
    let dir = tempfile::tempdir().unwrap();
    let giant = dir.path().join("giant.dcz");
    std::fs::File::create(&giant)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let giant = giant.display().to_string();
    let folder = dir.path().display().to_string();
    for (cmd, file) in [
        ("inspect", "/dev/zero"),
        ("eval", "/dev/zero"),
        ("compress", "/dev/zero"),
        ("inspect", folder.as_str()),
        ("inspect", giant.as_str()),
    ] {
        let words: &[&str] = if file == giant {
            &[file, "bytes"]
        } else {
            &[file, "not a regular file"]
        };
        refused(&dcx(&[cmd, file]), words);
    }
}

/// Starts a long `dcx train` on the fixture, waits until it is training, sends SIGINT
/// `presses` times, and returns its output.
#[cfg(unix)]
fn interrupt_training(presses: usize) -> Output {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--data", &repo("tests/fixtures/mnist-small")])
        .args([
            "train",
            "--model",
            "lenet-300-100",
            "--epochs",
            "200",
            "--batch",
            "8",
        ])
        .env("DCX_CACHE", cache.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first epoch line says training runs (and the Ctrl-C handler is installed).
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
    for _ in 0..presses {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    Output {
        stderr: format!("{seen}{rest}").into_bytes(),
        ..out
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_training_with_status_130_and_twice_stops_at_once() {
    for presses in [1, 2] {
        let out = interrupt_training(presses);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(130), "{presses} presses: {err}");
        assert!(err.contains("interrupted"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A small `.dcz` of the fixture: LeNet-300-100 trained one epoch, pruned and shared without
/// retraining.
fn fixture_dcz(dir: &Path) -> String {
    fixture_dcz_with(dir, "")
}

/// [`fixture_dcz`] with `extra` TOML appended to the experiment.
fn fixture_dcz_with(dir: &Path, extra: &str) -> String {
    let exp = dir.join("tiny.toml");
    std::fs::write(
        &exp,
        format!(
            r#"
name = "tiny"
model = "lenet-300-100"
[train]
epochs = 1
batch_size = 32
lr = 0.001
optimizer = "adam"
schedule = "cosine"
seed = 3
[defaults]
prune = {{ keep = 0.5 }}
bits = 5
index_bits = 5
{extra}"#
        ),
    )
    .unwrap();
    let out_dir = dir.join("out").display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--data", &repo("tests/fixtures/mnist-small")])
        .args(["compress", &exp.display().to_string(), "--out", &out_dir])
        .env("DCX_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{out_dir}/model.dcz")
}

#[test]
fn bench_infer_json_has_one_line_per_batch_size_and_eval_int8_agrees() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture_dcz(dir.path());
    let weights = dir.path().join("weights.safetensors");
    let fixture = repo("tests/fixtures/mnist-small");
    let out = dcx(&[
        "--data",
        &fixture,
        "bench",
        "infer",
        &file,
        "--batches",
        "1,7",
        "--repeats",
        "1",
        "--threads",
        "2",
        "--calibration-images",
        "100",
        "--json",
        "--weights-out",
        &weights.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let mut int8_accuracy = None;
    for (line, batch) in lines.iter().zip([1, 7]) {
        assert_eq!(line["batch"], batch, "{line}");
        assert_eq!(line["threads"], 2, "{line}");
        assert_eq!(line["images"], 200, "{line}");
        let num = |k: &str| line[k].as_f64().unwrap_or_else(|| panic!("{k} in {line}"));
        // The plan's figure is its fastest path, named.
        let plan = line["plan"].as_str().unwrap();
        assert!(["sparse", "int8"].contains(&plan), "{line}");
        assert_eq!(num("plan_ms"), num(&format!("{plan}_ms")), "{line}");
        assert!(
            num("plan_ms") <= num("sparse_ms").min(num("int8_ms")),
            "{line}"
        );
        assert!(line.get("thinned_ms").is_none(), "nothing thinned: {line}");
        assert!(num("dense_ms") > 0.0 && num("plan_ms") > 0.0, "{line}");
        let speedup = num("dense_ms") / num("plan_ms");
        assert!((num("speedup") - speedup).abs() < 1e-9 * speedup, "{line}");
        for k in ["f32_accuracy", "int8_accuracy"] {
            assert!((0.5..=1.0).contains(&num(k)), "{k} in {line}");
        }
        let diff = num("int8_accuracy") - num("f32_accuracy");
        assert!((num("accuracy_diff") - diff).abs() < 1e-12, "{line}");
        // The sparse path runs the same weights: its speedup is against the same dense run,
        // and its accuracy is the f32 one (a near-tie may round the other way).
        assert!(num("sparse_ms") > 0.0, "{line}");
        let sparse_speedup = num("dense_ms") / num("sparse_ms");
        assert!(
            (num("sparse_speedup") - sparse_speedup).abs() < 1e-9 * sparse_speedup,
            "{line}"
        );
        assert!(
            (num("sparse_accuracy") - num("f32_accuracy")).abs() <= 1.0 / 200.0,
            "{line}"
        );
        // LeNet-300-100 with half of every layer pruned: counted from the network, and an fc
        // network does one multiply-add per weight.
        assert_eq!(line["params"], 266_610, "{line}");
        assert_eq!(line["weights"], 266_200, "{line}");
        assert_eq!(line["macs_per_image"], 266_200, "{line}");
        let nonzero = num("weights_nonzero");
        assert_eq!(num("macs_per_image_nonzero"), nonzero, "{line}");
        assert!((0.45..=0.55).contains(&(nonzero / 266_200.0)), "{line}");
        assert!(num("params_nonzero") >= nonzero, "{line}");
        assert!(
            num("int8_weights_nonzero_share") <= nonzero / 266_200.0,
            "{line}"
        );
        // Accuracy does not depend on the batch size.
        assert_eq!(
            *int8_accuracy.get_or_insert(num("int8_accuracy")),
            num("int8_accuracy")
        );
    }
    // The decoded weights, for running the same network elsewhere.
    let bytes = std::fs::read(&weights).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("fc1.weight").unwrap().shape(), [300, 784]);
    assert_eq!(st.tensor("fc3.bias").unwrap().shape(), [10]);

    // `dcx eval --int8` reports the same int8 count on its own.
    let out = dcx(&[
        "--data",
        &fixture,
        "eval",
        &file,
        "--int8",
        "--calibration-images",
        "100",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let correct = (int8_accuracy.unwrap() * 200.0).round() as usize;
    let int8_line = text.lines().find(|l| l.starts_with("int8")).expect(&text);
    assert!(
        int8_line.contains(&format!("({correct} / 200)")),
        "{correct}: {text}"
    );
}

#[test]
fn a_thinned_file_runs_thinned_and_reports_its_cost_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let file = fixture_dcz_with(
        dir.path(),
        "[layers.fc1]\nstructured = { keep = 0.5 }\n[layers.fc2]\nstructured = { keep = 0.4, rank = \"apoz\" }\nbias_bits = 8\n",
    );
    let fixture = repo("tests/fixtures/mnist-small");
    let out = dcx(&[
        "--data",
        &fixture,
        "bench",
        "infer",
        &file,
        "--batches",
        "3",
        "--repeats",
        "1",
        "--calibration-images",
        "50",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let num = |k: &str| line[k].as_f64().unwrap_or_else(|| panic!("{k} in {line}"));
    // fc1 150 of 300 neurons, fc2 40 of 100 reading them, fc3 reading 40.
    let thinned = (784 * 150 + 150 * 40 + 40 * 10) as f64;
    assert_eq!(num("macs_per_image_thinned"), thinned, "{line}");
    assert_eq!(
        num("params_thinned"),
        thinned + (150 + 40 + 10) as f64,
        "{line}"
    );
    for path in ["thinned", "thinned_sparse"] {
        assert!(num(&format!("{path}_ms")) > 0.0, "{line}");
        // The same function of the input as the masked network (a near-tie may round).
        let diff = num(&format!("{path}_accuracy")) - num("f32_accuracy");
        assert!(diff.abs() <= 1.0 / 200.0, "{path}: {line}");
    }
    let out = dcx(&["inspect", &file]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        text.contains("| fc1 | 150 / 300 |") && text.contains("| fc2 | 40 / 100 |"),
        "{text}"
    );
    assert!(text.contains("thinned f32 (cut units removed)"), "{text}");
    // The stored biases: fc2's 40 kept ones on a grid, fc1's 150 and fc3's 10 as f32.
    let biases = "Biases on 8-bit grids (a byte each, and 5 bytes per layer for the grid's scale and zero point) in fc2: 45 bytes; as f32 (4 bytes each) in fc1, fc3: 640 bytes.";
    assert!(text.contains(biases), "{text}");
    // The report measured the same paths, each against the dense run beside it.
    let report = std::fs::read_to_string(file.replace("model.dcz", "report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let rows = report["latency"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    for row in rows {
        let dense = row["dense_ms"].as_f64().unwrap();
        let paths: Vec<&str> = row["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let ms = p["ms"].as_f64().unwrap();
                assert!((p["speedup"].as_f64().unwrap() - dense / ms).abs() < 1e-9 * dense / ms);
                p["path"].as_str().unwrap()
            })
            .collect();
        assert_eq!(paths, ["sparse", "thinned", "thinned_sparse"], "{row}");
    }
    let md = std::fs::read_to_string(file.replace("model.dcz", "report.md")).unwrap();
    assert!(md.contains("## Inference speed (measured)") && md.contains("| 150 / 300 |"));
    assert!(md.contains(biases), "{md}");
}

#[test]
fn bench_infer_refuses_bad_input_by_name() {
    refused(
        &dcx(&["bench", "infer", "no/such/model.dcz"]),
        &["no/such/model.dcz"],
    );
    refused(
        &dcx(&["eval", "--int8", "no/such/model.dcz"]),
        &["no/such/model.dcz"],
    );
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.dcz");
    std::fs::write(&junk, b"not a model").unwrap();
    let junk = junk.display().to_string();
    refused(
        &dcx(&["bench", "infer", &junk]),
        &["junk.dcz", "not a valid .dcz"],
    );
    for (flag, value, words) in [
        ("--batches", "0", &["--batches", "at least 1"][..]),
        ("--threads", "0", &["--threads"][..]),
        ("--repeats", "0", &["--repeats"][..]),
        ("--calibration", "101", &["calibration", "101"][..]),
    ] {
        refused(&dcx(&["bench", "infer", &junk, flag, value]), words);
    }
}

#[test]
fn tune_options_are_refused_by_name_before_any_training() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.toml").display().to_string();
    let fixture = repo("tests/fixtures/mnist-small");
    let tune = |extra: &[&str]| {
        let mut args = vec!["--data", &fixture, "tune", "--out", &out];
        args.extend_from_slice(extra);
        dcx(&args)
    };
    for (extra, words) in [
        (
            &["--model", "lenet-5", "--max-error", "0"][..],
            &["--max-error"][..],
        ),
        (
            &["--model", "lenet-5", "--max-error", "100"],
            &["--max-error"],
        ),
        (
            &["--model", "lenet-5", "--max-error", "nan"],
            &["--max-error"],
        ),
        (&["--model", "lenet-5", "--max-drop", "-1"], &["--max-drop"]),
        (
            &["--model", "lenet-5", "--max-drop", "inf"],
            &["--max-drop"],
        ),
        (
            &["--model", "lenet-5", "--max-drop", "1", "--holdout", "0"],
            &["--holdout"],
        ),
        (
            &["--model", "lenet-5", "--max-drop", "1", "--candidates", "0"],
            &["--candidates"],
        ),
        // A budget and a starting point are both required, one of each.
        (&["--model", "lenet-5"], &["--max-error", "--max-drop"]),
        (&["--max-drop", "1"], &["--model", "--experiment"]),
        (
            &["--model", "lenet-5", "--max-drop", "1", "--max-error", "1"],
            &["--max-drop", "--max-error"],
        ),
        (
            &[
                "--experiment",
                &repo("experiments/ternary-lenet-5.toml"),
                "--max-drop",
                "1",
            ],
            &["--experiment", "quantizer"],
        ),
        // More held-out images than the fixture's 600 training images.
        (
            &["--model", "lenet-5", "--max-drop", "1", "--holdout", "600"],
            &["--holdout", "600"],
        ),
    ] {
        refused(&tune(extra), words);
    }
    let txt = dir.path().join("plan.txt").display().to_string();
    refused(
        &dcx(&[
            "tune",
            "--model",
            "lenet-5",
            "--max-drop",
            "1",
            "--out",
            &txt,
        ]),
        &["--out", "plan.txt", ".toml"],
    );
    refused(
        &dcx(&[
            "tune",
            "--model",
            "lenet-5",
            "--max-drop",
            "1",
            "--out",
            "bad name!.toml",
        ]),
        &["--out", "name"],
    );
    assert!(!dir.path().join("plan.toml").exists());
}

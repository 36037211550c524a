//! Lessons (`lessons/*.toml`, `dcx lesson`): the shipped ones parse and run on the fixture
//! with every step applied and every check evaluated; bad files are refused naming the step
//! and the key; `--slides` writes a PNG per step and slides.md, and a failed run no folder.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use dcx::explore::lesson::Lesson;
use dcx::explore::{Session, WorkerOptions};
use dcx::model::train::{Snapshot, TrainConfig};
use dcx::model::{ModelKind, Net};
use dcx::tui::controller::{Controller, OpenLesson, Setup};
use dcx::tui::keys::Action;

const SHIPPED: [&str; 8] = [
    "lessons/deep-compression.toml",
    "lessons/storage.toml",
    "lessons/centroid-init.toml",
    "lessons/huffman.toml",
    "lessons/quantizers.toml",
    "lessons/structured-vs-unstructured.toml",
    "lessons/distillation.toml",
    "lessons/lottery-ticket.toml",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `dcx lesson` on the fixture, with a cache of its own and one epoch per training.
fn run_lesson(cache: &Path, file: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dcx"))
        .current_dir(root())
        .env("DCX_CACHE", cache)
        .env("NO_COLOR", "1")
        .args(["--data", "tests/fixtures/mnist-small", "lesson"])
        .arg(file)
        .args(["--max-epochs", "1", "--check"])
        .args(extra)
        .output()
        .expect("dcx runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lenet5_layers() -> Vec<String> {
    ModelKind::Lenet5
        .arch()
        .layers
        .iter()
        .map(|l| l.name.clone())
        .collect()
}

#[test]
fn the_shipped_lessons_parse_and_name_only_their_networks_layers() {
    for file in SHIPPED {
        let lesson = Lesson::load(&root().join(file)).unwrap_or_else(|e| panic!("{e}"));
        // LeNet-5, LeNet-300-100, or a network an experiment defines with LeNet-5's layer
        // names.
        let layers = match lesson.model.as_deref() {
            Some("lenet-300-100") => ModelKind::Lenet300100
                .arch()
                .layers
                .iter()
                .map(|l| l.name.clone())
                .collect(),
            Some("lenet-5") => lenet5_layers(),
            _ => {
                assert!(lesson.experiment.is_some(), "{file}");
                lenet5_layers()
            }
        };
        assert!(
            lesson.steps.len() >= 5,
            "{file}: {} steps",
            lesson.steps.len()
        );
        assert!(lesson.steps.iter().all(|s| !s.checks.is_empty()), "{file}");
        lesson.check_layers(file, &layers).unwrap();
        assert_eq!(Lesson::parse(&lesson.to_toml(), file).unwrap(), lesson);
    }
}

/// The table's step rows: one per step, each with its checks evaluated (✓ or ✗ with the
/// measured value in parentheses).
fn step_rows(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|l| {
            l.contains(" KB")
                && l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .collect()
}

#[test]
fn the_shipped_lessons_run_on_the_fixture_with_every_check_evaluated() {
    let cache = tempfile::tempdir().unwrap();
    for file in SHIPPED {
        let lesson = Lesson::load(&root().join(file)).unwrap();
        let out = run_lesson(cache.path(), Path::new(file), &[]);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{file}: {stderr}");
        for (i, step) in lesson.steps.iter().enumerate() {
            assert!(
                stderr.contains(&format!(
                    "-> step {}/{}: {}",
                    i + 1,
                    lesson.steps.len(),
                    step.title
                )),
                "{file}: step {} not run: {stderr}",
                i + 1
            );
        }
        let rows = step_rows(&stdout);
        assert_eq!(rows.len(), lesson.steps.len(), "{stdout}");
        for (row, step) in rows.iter().zip(&lesson.steps) {
            assert!(row.contains(&step.title), "{row}");
            let evaluated = row.matches('✓').count() + row.matches('✗').count();
            assert_eq!(evaluated, step.checks.len(), "{file}: {row}");
            assert!(
                row.contains('%') && row.contains(" KB"),
                "measured values: {row}"
            );
        }
        let total: usize = lesson.steps.iter().map(|s| s.checks.len()).sum();
        assert!(
            stdout.contains(&format!(" of {total} checks met")),
            "{stdout}"
        );
    }
}

#[test]
fn the_storage_lesson_finds_pruning_alone_bigger_than_dense_above_the_crossover() {
    // Sizes do not depend on how well the network is trained: these hold on the fixture.
    let cache = tempfile::tempdir().unwrap();
    let out = run_lesson(cache.path(), Path::new("lessons/storage.toml"), &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = step_rows(&stdout);
    assert!(rows[1].contains("✓ fc1 pruned > 1600 KB"), "{}", rows[1]);
    assert!(rows[2].contains("✓ fc1 pruned < 1600 KB"), "{}", rows[2]);
    assert!(rows[4].contains("✓ fc1 shared < 45 KB"), "{}", rows[4]);
}

fn write_lesson(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("x.toml");
    std::fs::write(
        &path,
        format!(
            "title = \"t\"\nmodel = \"lenet-5\"\n[[step]]\ntitle = \"Start\"\ntext = \"a\"\n{body}"
        ),
    )
    .unwrap();
    path
}

#[test]
fn bad_lessons_are_refused_naming_the_step_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[step]]\ntitle = \"Share fc1\"\ntext = \"b\"\nactions = [{ layer = \"fc1\", keep = 0.1 }, { layer = \"fc1\", bits = 12 }]\n",
            "x.toml: step 2 \"Share fc1\": actions[1].bits: must be 1..=8, got 12",
        ),
        (
            "[[step]]\ntitle = \"Two\"\ntext = \"b\"\nactions = [{ layer = \"fc1\", kep = 0.1 }]\n",
            "x.toml: step 2 \"Two\": actions[0].kep: unknown field `kep`",
        ),
        (
            "[[step]]\ntitle = \"Two\"\ntext = \"b\"\nchecks = [{ accuracy = \"about 99\" }]\n",
            "x.toml: step 2 \"Two\": checks[0].accuracy: \"about 99\" is not a condition",
        ),
        (
            "[[step]]\ntitle = \"Two\"\ntext = \"b\"\nactions = [{ do = \"retrain\", epochs = 0 }]\n",
            "x.toml: step 2 \"Two\": actions[0].epochs: must be 1..=100, got 0",
        ),
        (
            "[[step]]\ntitle = \"Thin\"\ntext = \"b\"\nactions = [{ layer = \"conv2\", units = 1.5 }]\n",
            "x.toml: step 2 \"Thin\": actions[0].units: must be in (0, 1], got 1.5",
        ),
        (
            "[[step]]\ntitle = \"Thin\"\ntext = \"b\"\nactions = [{ layer = \"conv2\", rank = \"l2\" }]\n",
            "x.toml: step 2 \"Thin\": actions[0].rank: only with units",
        ),
        (
            "[[step]]\ntitle = \"Two\"\ntxt = \"b\"\n",
            "x.toml: step 2 \"Two\": txt: unknown field `txt`",
        ),
    ];
    let cache = tempfile::tempdir().unwrap();
    for (body, want) in cases {
        let path = write_lesson(dir.path(), body);
        let out = run_lesson(cache.path(), &path, &[]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{body}");
        assert!(stderr.contains(want), "want {want:?} in {stderr:?}");
    }
}

#[test]
fn slides_are_one_png_per_step_and_a_markdown_index() {
    let cache = tempfile::tempdir().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let slides = out_dir.path().join("slides");
    let file = "lessons/storage.toml";
    let lesson = Lesson::load(&root().join(file)).unwrap();
    let out = run_lesson(
        cache.path(),
        Path::new(file),
        &["--slides", slides.to_str().unwrap(), "--size", "120x40"],
    );
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let n = lesson.steps.len();
    let mut names: Vec<String> = std::fs::read_dir(&slides)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = (1..=n).map(|i| format!("step-{i:02}.png")).collect();
    want.push("slides.md".into());
    want.sort();
    assert_eq!(names, want);
    // Each slide is the explorer's 120 columns plus the panel's 56, 40 rows high.
    let png = image::open(slides.join("step-01.png")).unwrap();
    let wide = image::open(slides.join("step-02.png")).unwrap();
    assert_eq!(png.height(), wide.height());
    assert!(
        png.width() > 4 * png.height() / 3,
        "{}x{}",
        png.width(),
        png.height()
    );
    let md = std::fs::read_to_string(slides.join("slides.md")).unwrap();
    for (i, step) in lesson.steps.iter().enumerate() {
        assert!(
            md.contains(&format!("## {}. {}", i + 1, step.title)),
            "{md}"
        );
        assert!(md.contains(&format!("](step-{:02}.png)", i + 1)), "{md}");
    }
    assert_eq!(
        md.matches("- ✓").count() + md.matches("- ✗").count(),
        6,
        "{md}"
    );
    // No temporary folder is left beside it.
    let left: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
}

#[test]
fn a_failed_run_leaves_no_slides_folder_and_exits_non_zero() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Step 1 applies (its slide is drawn); step 2 asks fc2, binary now, for 5 bits.
    let path = write_lesson(
        dir.path(),
        "actions = [{ layer = \"fc2\", quantizer = \"binary\" }]\n[[step]]\ntitle = \"Widen fc2\"\ntext = \"b\"\nactions = [{ layer = \"fc2\", bits = 5 }]\n",
    );
    let slides = dir.path().join("slides");
    let out = run_lesson(cache.path(), &path, &["--slides", slides.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("-> step 2/2: Widen fc2"), "{stderr}");
    assert!(
        stderr.contains("step 2 \"Widen fc2\": actions[0]: bits:"),
        "{stderr}"
    );
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["x.toml"], "no slides folder, no temporary one");
}

fn pump_until(ctl: &mut Controller, what: &str, done: impl Fn(&Controller) -> bool) {
    if let Err(e) = ctl.pump_until(what, Duration::from_secs(300), &|| false, done) {
        panic!("{e:#}; status: {:?}", ctl.app.message());
    }
}

/// The open lesson is at `step` (1-based), its actions applied, training done and the plan
/// measured (every check has a verdict).
fn prepared_at(c: &Controller, step: usize) -> bool {
    c.app.lesson.as_ref().is_some_and(|p| {
        p.step == step
            && !p.state.starts_with("applying")
            && p.checks.iter().all(|k| k.met.is_some())
    }) && c.app.view.job.is_none()
}

fn fc1(c: &Controller) -> (f64, u8, bool) {
    let s = c.session().unwrap();
    let row = &c.app.view.layers[1];
    (row.kept, row.bits, s.setting(1).unwrap().finetuned)
}

/// The lesson beside the live explorer: each step's actions are applied in order, training
/// waits its turn, the class can touch any knob, `x` returns the step to its prepared state
/// and `b` / `n` move between prepared steps without training again.
#[test]
fn a_live_lesson_steps_forward_and_back_and_resets_what_the_class_touched() {
    let lesson = Lesson::parse(
        r#"
title = "Live"
model = "lenet-300-100"

[[step]]
title = "Prune fc2"
text = "Keep half of fc2."
actions = [{ select = "fc2" }, { layer = "fc2", keep = 0.5 }]
checks = [{ layer = "fc2", pruned_bytes = "< 120 KB" }]

[[step]]
title = "Share and retrain"
text = "Four bits, then one epoch."
actions = [{ layer = "fc2", bits = 4 }, { do = "retrain", epochs = 1 }]
checks = [{ accuracy = ">= 10%" }]

[[step]]
title = "Prune fc1"
text = "Keep a tenth of fc1."
actions = [{ layer = "fc1", keep = 0.1 }]
checks = [{ ratio = ">= 2x" }]
"#,
        "live.toml",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let train = TrainConfig {
        epochs: 1,
        seed: 5,
        ..TrainConfig::default()
    };
    let mut ctl = Controller::start(Setup {
        data: Arc::new(common::fixture()),
        template: Session::default_experiment(&ModelKind::Lenet300100.arch(), train),
        cache_dir: cache.path().to_path_buf(),
        export_root: cache.path().to_path_buf(),
        runs: Vec::new(),
        lecture: false,
        worker: WorkerOptions::default(),
        lessons_dir: PathBuf::from("lessons"),
        lesson_start: None,
        lesson: Some(OpenLesson {
            lesson,
            file: PathBuf::from("live.toml"),
            max_epochs: Some(1),
        }),
    })
    .unwrap();
    pump_until(&mut ctl, "step 1", |c| prepared_at(c, 1));
    let panel = ctl.app.lesson.clone().unwrap();
    assert_eq!((panel.step, panel.steps), (1, 3));
    assert_eq!(panel.title, "Prune fc2");
    assert_eq!(panel.checks[0].met, Some(true), "{:?}", panel.checks);
    assert_eq!(ctl.app.selected, 1, "the step selected fc2");
    let (kept, bits, trained) = fc1(&ctl);
    assert!((kept - 0.5).abs() < 0.01, "kept {kept}");
    assert!(!trained);

    // Step 2 shares and retrains: the retraining runs in the background, then the step is
    // prepared with the trained weights in use.
    ctl.act(Action::LessonStep(1));
    pump_until(&mut ctl, "step 2", |c| prepared_at(c, 2));
    assert_eq!(fc1(&ctl).1, 4);
    assert!(fc1(&ctl).2, "the retrained weights are in use");

    // The class touches a knob: the panel says so, x brings the step back.
    ctl.act(Action::Bits(-1));
    assert_eq!(fc1(&ctl).1, 3);
    let state = ctl.app.lesson.as_ref().unwrap().state.clone();
    assert!(state.contains("x returns to it"), "{state}");
    ctl.act(Action::LessonReset);
    pump_until(&mut ctl, "step 2 again", |c| prepared_at(c, 2));
    assert_eq!(fc1(&ctl).1, 4);
    assert!(fc1(&ctl).2);
    assert_eq!(ctl.app.lesson.as_ref().unwrap().state, "");

    // Back to step 1: its state, with the checkpoint's weights, and no training.
    ctl.act(Action::LessonStep(-1));
    assert!(ctl.app.view.job.is_none(), "going back trains nothing");
    pump_until(&mut ctl, "step 1 again", |c| prepared_at(c, 1));
    assert_eq!(fc1(&ctl).1, bits);
    assert!(!fc1(&ctl).2);

    // Forward again: step 2 as it was prepared, without retraining.
    ctl.act(Action::LessonStep(1));
    assert!(
        ctl.app.view.job.is_none(),
        "a prepared step is restored, not redone"
    );
    pump_until(&mut ctl, "step 2 restored", |c| prepared_at(c, 2));
    assert!(fc1(&ctl).2);
    ctl.act(Action::LessonStep(1));
    pump_until(&mut ctl, "step 3", |c| prepared_at(c, 3));
    assert!((ctl.app.view.layers[0].kept - 0.1).abs() < 0.01);
    ctl.act(Action::LessonStep(1));
    assert!(
        ctl.app.message().unwrap().contains("last step"),
        "{:?}",
        ctl.app.message()
    );
}

/// Lottery-ticket rewinding in the explorer: the kept weights go back to exactly the values
/// the baseline's training began from (the pruned ones stay zero), the control keeps the same
/// mask over other values, and no export pretends an experiment can say either.
#[test]
fn rewinding_sets_the_kept_weights_to_their_initial_values_and_the_control_to_others() {
    let lesson = Lesson::parse(
        r#"
title = "Ticket"
model = "lenet-300-100"

[[step]]
title = "Rewind"
text = "Prune fc1 and fc2, rewind."
actions = [{ layer = "fc1", keep = 0.1 }, { layer = "fc2", keep = 0.2 }, { do = "rewind" }]
checks = [{ accuracy = ">= 0%" }]

[[step]]
title = "Control"
text = "The same masks, other values."
actions = [{ do = "reinit" }]
checks = [{ accuracy = ">= 0%" }]
"#,
        "ticket.toml",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let train = TrainConfig {
        epochs: 1,
        seed: 7,
        ..TrainConfig::default()
    };
    let arch = ModelKind::Lenet300100.arch();
    let mut ctl = Controller::start(Setup {
        data: Arc::new(common::fixture()),
        template: Session::default_experiment(&arch, train),
        cache_dir: cache.path().to_path_buf(),
        export_root: exports.path().to_path_buf(),
        runs: Vec::new(),
        lecture: false,
        worker: WorkerOptions::default(),
        lessons_dir: PathBuf::from("lessons"),
        lesson_start: None,
        lesson: Some(OpenLesson {
            lesson,
            file: PathBuf::from("ticket.toml"),
            max_epochs: Some(1),
        }),
    })
    .unwrap();
    pump_until(&mut ctl, "the rewind", |c| prepared_at(c, 1));
    let init = Snapshot::of(&Net::new(&arch, 7).unwrap(), 0)
        .unwrap()
        .values;
    let kept = |c: &Controller, l: usize| -> Vec<(usize, f32)> {
        let s = c.session().unwrap();
        assert!(
            s.setting(l).unwrap().finetuned,
            "layer {l} uses the rewound weights"
        );
        s.source(l)
            .unwrap()
            .state
            .weights
            .iter()
            .copied()
            .enumerate()
            .filter(|&(_, w)| w != 0.0)
            .collect()
    };
    for (l, share) in [(0, 0.1), (1, 0.2)] {
        let survivors = kept(&ctl, l);
        let n = init[l].0.len() as f64;
        assert!(
            (survivors.len() as f64 / n - share).abs() < 0.005,
            "layer {l}: {} of {n} kept",
            survivors.len()
        );
        assert!(
            survivors.iter().all(|&(i, w)| w == init[l].0[i]),
            "layer {l}: not the initial values"
        );
    }
    // The output layer was not pruned: every weight is back at its initial value.
    assert_eq!(
        ctl.session().unwrap().source(2).unwrap().state.weights,
        init[2].0
    );
    ctl.act(Action::Export);
    let said = ctl.app.message().unwrap_or_default().to_string();
    assert!(said.contains("lottery-ticket rewind"), "{said}");
    assert_eq!(std::fs::read_dir(exports.path()).unwrap().count(), 0);

    let winning: Vec<usize> = kept(&ctl, 0).into_iter().map(|(i, _)| i).collect();
    ctl.act(Action::LessonStep(1));
    pump_until(&mut ctl, "the control", |c| prepared_at(c, 2));
    let control = kept(&ctl, 0);
    assert_eq!(
        control.iter().map(|&(i, _)| i).collect::<Vec<_>>(),
        winning,
        "the same mask"
    );
    let same = control.iter().filter(|&&(i, w)| w == init[0].0[i]).count();
    assert!(
        same < control.len() / 100,
        "{same} of {} kept their initial values",
        control.len()
    );
}

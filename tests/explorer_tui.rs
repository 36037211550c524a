//! The explorer end to end without a terminal: the controller trains a baseline on the
//! fixture in the background, takes key actions, shows what the engine computed, exports a
//! re-runnable experiment and a `.dcz` file, and quits.

mod common;

use std::sync::Arc;

use dcx::experiment::Experiment;
use dcx::explore::{Session, WorkerOptions};
use dcx::format::dcz;
use dcx::model::ModelKind;
use dcx::model::train::TrainConfig;
use dcx::tui::app::Mode;
use dcx::tui::controller::{Controller, Setup, render_buffer};
use dcx::tui::keys::Action;
use dcx::tui::view::Accuracy;

#[test]
fn explore_scrub_export_undo_and_quit() {
    let cache = tempfile::tempdir().unwrap();
    let exports = tempfile::tempdir().unwrap();
    let train = TrainConfig {
        epochs: 1,
        seed: 3,
        ..TrainConfig::default()
    };
    let mut ctl = Controller::start(Setup {
        data: Arc::new(common::fixture()),
        template: Session::default_experiment(&ModelKind::Lenet300100.arch(), train),
        cache_dir: cache.path().to_path_buf(),
        export_root: exports.path().to_path_buf(),
        runs: Vec::new(),
        lecture: false,
        worker: WorkerOptions::default(),
        lessons_dir: std::path::PathBuf::from("lessons"),
        lesson_start: None,
        lesson: None,
    })
    .unwrap();

    // Without a checkpoint the baseline trains first, on the training screen.
    common::pump_until(&mut ctl, "the baseline", |c| c.session().is_some());
    assert!(ctl.app.training.is_none(), "training screen closes");
    assert_eq!(ctl.app.view.layers.len(), 3);
    assert_eq!(ctl.app.view.curves.training[0].label, "baseline");
    assert_eq!(ctl.app.view.curves.training[0].points.len(), 1);
    common::pump_until(&mut ctl, "the first evaluation", common::exact);
    let Accuracy::Exact(start) = ctl.app.view.accuracy else {
        unreachable!()
    };
    assert!(start > 0.5, "a trained network: {start}");
    assert_eq!(ctl.app.view.layers[1].kept, 1.0);

    // Shift+right on fc2 prunes 10% of it; the table shows the engine's result.
    ctl.act(Action::Down);
    ctl.act(Action::Scrub {
        dir: 1,
        coarse: true,
    });
    common::pump_until(&mut ctl, "the scrubbed plan's accuracy", common::exact);
    let row = &ctl.app.view.layers[1];
    assert!((row.kept - 0.90).abs() < 0.005, "kept {}", row.kept);
    // The context line says in words what the change did.
    let message = ctl.app.message().unwrap().to_string();
    assert!(
        message.starts_with("fc2 now keeps 90.0% of its 30,000 weights: the file ")
            && message.contains("accuracy"),
        "{message}"
    );
    assert!(row.threshold > 0.0);
    assert!(ctl.last_latency.is_some());
    let session = ctl.session().unwrap();
    let fc2 = session.layer(1).unwrap();
    assert_eq!(ctl.app.view.histogram.threshold, fc2.threshold);
    assert_eq!(
        ctl.app.view.totals.file_bytes,
        session.sizes().unwrap().file_bytes
    );

    // Fewer bits for the selected layer only.
    let bits = ctl.app.view.layers[1].bits;
    let bits0 = ctl.app.view.layers[0].bits;
    ctl.act(Action::Bits(-1));
    assert_eq!(ctl.app.view.layers[1].bits, bits - 1);
    assert_eq!(ctl.app.view.layers[0].bits, bits0);
    common::pump_until(&mut ctl, "the 4-bit plan's accuracy", common::exact);

    // Export: a new folder whose experiment re-creates the plan and whose file holds it.
    ctl.act(Action::Export);
    common::pump_until(&mut ctl, "the export", |c| {
        c.app
            .message()
            .is_some_and(|m| m.starts_with("exported model.dcz"))
    });
    let dirs: Vec<_> = std::fs::read_dir(exports.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let exp = Experiment::load(&dirs[0].join("experiment.toml")).unwrap();
    assert_eq!(exp.model, ModelKind::Lenet300100.into());
    assert_eq!(exp.layer_plans()[1].bits, bits - 1);
    let file = dcz::load(&dirs[0].join("model.dcz")).unwrap();
    let bytes = std::fs::metadata(dirs[0].join("model.dcz")).unwrap().len();
    assert_eq!(bytes, ctl.app.view.totals.file_bytes);
    assert_eq!(file.model.layers[1].bits, bits - 1);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dirs[0].join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["sizes"]["file_bytes"].as_u64(), Some(bytes));
    let md = std::fs::read_to_string(dirs[0].join("report.md")).unwrap();
    assert!(
        md.contains(" ms. ") && !md.contains("Wall time: 0.0 s"),
        "an export takes milliseconds: {md}"
    );
    // The figures follow in the background, from the same results.
    common::pump_until(&mut ctl, "the export's figures", |c| {
        c.app
            .message()
            .is_some_and(|m| m.contains("figures") && !m.contains("drawing"))
    });
    let message = ctl.app.message().unwrap().to_string();
    let expected = format!("figures done: {} in", dcx::plot::FIGURES.len());
    assert!(message.starts_with(&expected), "{message}");
    assert!(dirs[0].join("figures/sizes.png").exists());
    // Drawn whole: the note that says they are not is gone.
    assert!(!dirs[0].join("FIGURES-NOT-DRAWN-YET.txt").exists());
    assert!(dirs[0].join("figures/figures.json").exists());

    // Undo twice: back to the unpruned plan, answered from what the session already knows.
    ctl.act(Action::Undo);
    ctl.act(Action::Undo);
    assert_eq!(ctl.app.view.layers[1].bits, bits);
    common::pump_until(&mut ctl, "the undone plan", |c| {
        c.app.view.layers[1].kept == 1.0 && common::exact(c)
    });

    // With "apply to all", one scrub key edits every layer and is one undo step.
    let before = ctl.session().unwrap().plan().to_vec();
    ctl.act(Action::ToggleApplyAll);
    ctl.act(Action::Scrub {
        dir: 1,
        coarse: true,
    });
    let after = ctl.session().unwrap().plan().to_vec();
    assert!(before.iter().zip(&after).all(|(b, a)| b != a));
    ctl.act(Action::Undo);
    assert_eq!(ctl.session().unwrap().plan(), &before[..]);
    ctl.act(Action::ToggleApplyAll);

    // P saves the screen as a PNG for slides, a new file each time.
    let mut shots = Vec::new();
    for _ in 0..2 {
        ctl.act(Action::Screenshot);
        let message = ctl.app.message().unwrap().to_string();
        let png = message
            .strip_prefix("screen saved to ")
            .expect(&message)
            .to_string();
        assert!(png.ends_with(".png"), "{png}");
        assert_eq!(&std::fs::read(&png).unwrap()[1..4], b"PNG");
        shots.push(png);
    }
    assert_ne!(shots[0], shots[1]);

    // The screen draws from the controller's state at any size.
    let text: String = render_buffer(&ctl.app, 120, 40)
        .unwrap()
        .content()
        .iter()
        .map(|c| c.symbol())
        .collect();
    assert!(text.contains("fc2"), "{text}");

    // Background work settles: every layer measured alone, the sweep done and shown.
    common::pump_until(&mut ctl, "every layer measured alone and the sweep", |c| {
        c.app.view.layers.iter().all(|r| r.solo_drop.is_some())
            && c.app.view.curves.sensitivity.is_some()
            && c.app.view.job.is_none()
    });

    // Keys that change nothing say why.
    ctl.act(Action::Sweep);
    let message = ctl.app.message().unwrap().to_string();
    assert!(
        message.contains("sweep of this checkpoint is done"),
        "{message}"
    );
    for _ in 0..9 {
        ctl.act(Action::Bits(1));
    }
    let message = ctl.app.message().unwrap().to_string();
    assert!(message.contains("8 bits is the widest"), "{message}");
    ctl.act(Action::Undo);
    let message = ctl.app.message().unwrap().to_string();
    let name = ctl.app.view.layers[ctl.app.selected].name.clone();
    assert!(
        message.starts_with("undid: ") && message.contains(&name),
        "{message}"
    );
    ctl.act(Action::Redo);
    let message = ctl.app.message().unwrap().to_string();
    assert!(message.starts_with("redid: "), "{message}");
    ctl.act(Action::Undo);

    // Masked retraining, then centroid fine-tuning, in the background; each adopts its weights.
    // Fine-tuning asked for while the retraining runs waits for it, then starts from its
    // weights.
    ctl.act(Action::Retrain);
    assert_eq!(ctl.app.view.job.as_ref().unwrap().label, "retrain");
    ctl.act(Action::Finetune);
    assert!(
        ctl.app
            .message()
            .unwrap()
            .contains("when the retrain is done"),
        "{:?}",
        ctl.app.message()
    );
    // The status line names the waiting step beside the running one.
    let job = ctl.app.view.job.clone().unwrap();
    assert!(
        job.label == "retrain" && job.then == ["fine-tune"],
        "{job:?}"
    );
    common::pump_until(&mut ctl, "the retraining", |c| {
        c.app
            .view
            .job
            .as_ref()
            .is_some_and(|j| j.label == "fine-tune")
    });
    assert!(ctl.app.view.layers.iter().all(|r| r.finetuned));
    common::pump_until(&mut ctl, "the fine-tuning", |c| c.app.view.job.is_none());
    assert!(
        ctl.app
            .message_log
            .iter()
            .any(|(_, m)| m.contains("fine-tune done")),
        "{:?}",
        ctl.app.message_log
    );
    // Once its accuracy is in, the context line says what the fine-tuning did.
    common::pump_until(&mut ctl, "the fine-tuned plan's accuracy", common::exact);
    common::pump_until(&mut ctl, "the explanation", |c| {
        c.app
            .message()
            .is_some_and(|m| m.starts_with("after fine-tuning: "))
    });
    let curves: Vec<&str> = ctl
        .app
        .view
        .curves
        .training
        .iter()
        .map(|c| c.label.as_str())
        .collect();
    assert_eq!(curves, ["baseline", "retrain #1", "fine-tune #2"]);
    // One timeline: the baseline's epoch, then the retraining's, then the fine-tuning's.
    let xs: Vec<f64> = ctl
        .app
        .view
        .curves
        .training
        .iter()
        .map(|c| c.points[0].0)
        .collect();
    assert_eq!(xs, [1.0, 2.0, 3.0]);
    common::pump_until(&mut ctl, "the fine-tuned plan's accuracy", common::exact);

    // Quit: asks while the sensitivity sweep or other work still runs, quits on 'y'.
    ctl.act(Action::Back);
    if ctl.app.mode == Mode::ConfirmQuit {
        ctl.act(Action::Char('y'));
    }
    assert!(ctl.app.should_quit);
}

#[test]
fn a_missing_experiment_file_is_an_error_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcx"))
        .args(["--experiment", "no/such/plan.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no/such/plan.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

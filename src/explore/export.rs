//! Writes a session's current plan as a folder a report can be built from: the experiment
//! (re-runnable with `dcx compress`), the `.dcz` file of the plan, and `report.json` /
//! `report.md` with the same tables `dcx compress` writes. Every number comes from the
//! session's own results and evaluation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{ExploreError, Session};
use crate::format::dcz;
use crate::fsutil::{FolderWriter, write_atomic};
use crate::model::train::{EpochStats, Evaluation};
use crate::pipeline::{CompressionReport, LayerSharing, StageEval};
use crate::pipeline::{report, size};

/// What the session alone does not hold.
#[derive(Clone, Debug, Default)]
pub struct ExportContext {
    /// The checkpoint's own accuracy (the report's first stage).
    pub baseline: Option<Evaluation>,
    pub retrain_history: Vec<EpochStats>,
    pub finetune_history: Vec<EpochStats>,
}

/// What was written.
#[derive(Clone, Debug)]
pub struct Exported {
    pub dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub report: CompressionReport,
}

/// The first `root/NAME-NNN` folder that does not exist yet.
pub(crate) fn next_folder(root: &Path, name: &str) -> PathBuf {
    next_free(root, name, "")
}

/// The first `root/NAME-NNNsuffix` path that does not exist yet (`suffix` e.g. `.png`).
pub(crate) fn next_free(root: &Path, name: &str, suffix: &str) -> PathBuf {
    (1..)
        .map(|i| root.join(format!("{name}-{i:03}{suffix}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExploreError + '_ {
    move |source| ExploreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes the current plan into a new folder under `root`. The plan must have been evaluated
/// on the full test set (the report states its accuracy).
pub fn export(
    session: &mut Session,
    root: &Path,
    ctx: &ExportContext,
) -> Result<Exported, ExploreError> {
    let started = Instant::now();
    if session.mixed_sources() {
        return Err(ExploreError::Invalid(
            "some layers use retrained weights and others the checkpoint's; an experiment cannot \
             say that (retrain all layers with p, or undo with u)"
                .into(),
        ));
    }
    if session.rewound() {
        return Err(ExploreError::Invalid(
            "the weights come from a lottery-ticket rewind, which an experiment's [[step]] \
             recipe cannot say (an experiment's [lottery] section can); undo past the \
             rewind with u to export"
                .into(),
        ));
    }
    let evaluation = session.evaluation().ok_or_else(|| {
        ExploreError::Invalid("the current plan has not been evaluated yet".into())
    })?;
    let results = session.results_now()?;
    let model = super::plan::compressed_model(session.model(), &session.to_toml(), &results);
    let encoded: Vec<_> = results.iter().map(|r| r.encoded()).collect();
    let (bytes, layout) = dcz::to_bytes(&model, &encoded);
    let sizes = size::size_report(&model, &encoded, &layout);
    let (kept, total) = results
        .iter()
        .fold((0, 0), |(k, t), r| (k + r.kept(), t + r.total()));
    let mut stages = Vec::new();
    if let Some(b) = ctx.baseline.or_else(|| session.baseline()) {
        stages.push(StageEval {
            stage: "baseline".into(),
            accuracy: b.accuracy,
            loss: b.loss,
            kept: 1.0,
            file_bytes: None,
            activation_bits: None,
        });
    }
    // The explorer evaluates with f32 activations; the experiment written beside keeps the
    // template's [activations], which `dcx compress` of it applies (and stores in its file).
    let stage = match session.template().activations {
        Some(a) => format!(
            "explored plan (f32 activations; dcx compress of experiment.toml quantizes them to {} bits)",
            a.bits
        ),
        None => "explored plan".into(),
    };
    stages.push(StageEval {
        stage,
        accuracy: evaluation.accuracy,
        loss: evaluation.loss,
        kept: kept as f64 / total.max(1) as f64,
        file_bytes: Some(layout.total() as u64),
        activation_bits: None,
    });
    let experiment = session.to_experiment();
    let report = CompressionReport {
        experiment: experiment.name.clone(),
        model: session.model().name.clone(),
        stages,
        thresholds: results.iter().map(|r| r.threshold).collect(),
        sharing: results
            .iter()
            .zip(&model.layers)
            .map(|(r, l)| LayerSharing::of(&l.name, &r.sharing, &r.setting.plan))
            .collect(),
        sizes,
        cost: crate::pipeline::cost::CostReport::of(&model),
        latency: None,
        retrain_history: ctx.retrain_history.clone(),
        finetune_history: ctx.finetune_history.clone(),
        baseline_checkpoint: session
            .checkpoint()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        seconds: 0.0,
        activations: None,
    };

    let dir = next_folder(root, &experiment.name);
    // Written under a temporary name and renamed into place whole, so a failed or killed
    // export leaves no numbered folder with half its files.
    let folder = FolderWriter::create(&dir).map_err(io(&dir))?;
    let tmp = folder.path().to_path_buf();
    let names = ["model.dcz", "experiment.toml", "report.json", "report.md"];
    dcz::save_checked(&tmp.join(names[0]), &bytes, &model)
        .map_err(|e| ExploreError::Invalid(e.to_string()))?;
    let write = |name: &str, content: &[u8]| -> Result<(), ExploreError> {
        let p = tmp.join(name);
        write_atomic(&p, content).map_err(io(&dir.join(name)))
    };
    write(names[1], experiment.to_toml().as_bytes())?;

    let report = CompressionReport {
        seconds: started.elapsed().as_secs_f64(),
        ..report
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| ExploreError::Invalid(format!("report.json: {e}")))?;
    write(names[2], json.as_bytes())?;
    write(
        names[3],
        report::markdown(&report, session.model().builtin).as_bytes(),
    )?;
    folder.commit().map_err(io(&dir))?;
    let files = names.iter().map(|n| dir.join(n)).collect();
    Ok(Exported { dir, files, report })
}

//! Finished runs of the same network found on disk (`dcx compress` folders, explorer exports):
//! each one's `report.json` gives a labelled point of accuracy against compression and its
//! training curve, so the explorer can set what the user is trying beside what was run
//! (a lottery ticket, a distilled student, a slimmed network...).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::pipeline::CompressionReport;

/// One finished run, as the explorer shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// The experiment's name (the report's), which the chart's legend shows.
    pub label: String,
    pub folder: PathBuf,
    /// Dense bytes over the written `.dcz`'s bytes.
    pub ratio: f64,
    pub file_bytes: u64,
    /// Test accuracy of the file's network, 0..=1 (the report's last stage).
    pub accuracy: f64,
    /// Test accuracy (%) after each epoch of its retraining and fine-tuning, in order: (epoch
    /// number counted across the run, accuracy).
    pub training: Vec<(f64, f64)>,
}

/// Runs kept at most, the newest first: a legend has room for a few.
pub const MAX_RUNS: usize = 6;

/// The runs of network `model` in the folders directly under each of `roots` (a folder
/// with a readable `report.json` of that network), newest first, at most [`MAX_RUNS`].
/// Unreadable or foreign folders are skipped: they are not the explorer's to judge.
pub fn scan(roots: &[&Path], model: &str) -> Vec<Run> {
    let mut found: Vec<(SystemTime, Run)> = Vec::new();
    for root in roots {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten().take(1000) {
            let folder = entry.path();
            let path = folder.join("report.json");
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.len() > 16 << 20 {
                continue;
            }
            let Ok(text) = std::fs::read(&path) else {
                continue;
            };
            let Ok(report) = serde_json::from_slice::<CompressionReport>(&text) else {
                continue;
            };
            if report.model != model || report.check().is_err() || report.sizes.file_bytes == 0 {
                continue;
            }
            let when = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((when, Run::of(&report, folder)));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.folder.cmp(&b.1.folder)));
    found.into_iter().take(MAX_RUNS).map(|(_, r)| r).collect()
}

impl Run {
    fn of(report: &CompressionReport, folder: PathBuf) -> Run {
        let training = report
            .retrain_history
            .iter()
            .chain(&report.finetune_history)
            .enumerate()
            .map(|(i, e)| ((i + 1) as f64, 100.0 * e.test_accuracy))
            .collect();
        Run {
            label: report.experiment.clone(),
            folder,
            ratio: report.sizes.ratio(),
            file_bytes: report.sizes.file_bytes,
            accuracy: report.last().accuracy,
            training,
        }
    }
}

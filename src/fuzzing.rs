//! What each coverage-guided fuzz target does with its input: the calls dcx makes on a file
//! it reads, from the bytes on. Built only for the fuzz crate (`fuzz/`, where `cargo fuzz`
//! sets `cfg(fuzzing)`) and for the unit tests, which feed every committed seed
//! (`fuzz/seeds/TARGET/`) through the same functions: a case that once failed stays fixed.
//!
//! Each function returns normally for any input; a panic is the finding.

use sha2::{Digest, Sha256};

use crate::analysis::ReportData;
use crate::compress::encode;
use crate::experiment::Experiment;
use crate::format::dcz;
use crate::pipeline::run::CompressionReport;
use crate::pipeline::{report, size};

/// What a fuzz target does with one input.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/NAME.rs` and `fuzz/seeds/NAME/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("idx", idx),
    ("dcz", dcz),
    ("experiment", experiment),
    ("figures_json", figures_json),
    ("report_json", report_json),
    ("lesson", lesson),
];

/// An MNIST IDX file, raw or gzip.
pub fn idx(bytes: &[u8]) {
    let _ = crate::data::idx::parse_idx(bytes, "fuzz");
}

/// A `.dcz` file's body (everything before the checksum, which is added here so that mutated
/// bytes reach the parser instead of failing the checksum), then what `dcx inspect` and
/// `dcx eval` do with a file that reads: re-encode and size each layer, rebuild the network.
pub fn dcz(body: &[u8]) {
    let mut file = body.to_vec();
    file.extend_from_slice(&Sha256::digest(body)[..dcz::TRAILER]);
    let Ok(read) = dcz::from_bytes(&file) else {
        return;
    };
    let max_code_len =
        Experiment::parse(&read.model.experiment, "fuzz").map_or(24, |e| e.max_code_len);
    let encoded = read
        .model
        .layers
        .iter()
        .map(|l| encode::encode_layer(l, max_code_len))
        .collect::<Result<Vec<_>, _>>();
    if let Ok(encoded) = encoded {
        let sizes = size::size_report(&read.model, &encoded, &read.layout);
        let _ = report::layer_table(&sizes, None);
    }
    let _ = read.model.to_net();
}

/// An experiment file; one that parses is also written back (what an export does) and must
/// read again as the same experiment.
pub fn experiment(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(exp) = Experiment::parse(text, "fuzz.toml") else {
        return;
    };
    let _ = exp.recipe();
    let again = Experiment::parse(&exp.to_toml(), "written back")
        .unwrap_or_else(|e| panic!("an accepted experiment does not read back: {e}"));
    assert!(again == exp, "an experiment changed when written back");
}

/// The `figures.json` that `dcx plot DIR` reads and checks before drawing.
pub fn figures_json(bytes: &[u8]) {
    if let Ok(data) = serde_json::from_slice::<ReportData>(bytes) {
        let _ = data.check();
    }
}

/// The `report.json` of an output folder, read and checked as `dcx plot DIR` does.
pub fn report_json(bytes: &[u8]) {
    if let Ok(report) = serde_json::from_slice::<CompressionReport>(bytes) {
        let _ = report.check();
    }
}

/// A lesson file; one that parses is written back and must read again unchanged, its layer
/// names are checked against LeNet-5's, and each step's panel is drawn as the explorer would.
pub fn lesson(bytes: &[u8]) {
    use crate::explore::lesson::Lesson;
    use crate::tui::view::LessonPanel;
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(lesson) = Lesson::parse(text, "fuzz.toml") else {
        return;
    };
    let again = Lesson::parse(&lesson.to_toml(), "written back")
        .unwrap_or_else(|e| panic!("an accepted lesson does not read back: {e}"));
    assert!(again == lesson, "a lesson changed when written back");
    let layers = ["conv1", "conv2", "fc1", "fc2"].map(String::from);
    let _ = lesson.check_layers("fuzz.toml", &layers);
    let area = ratatui::layout::Rect::new(0, 0, 40, 12);
    for (i, step) in lesson.steps.iter().enumerate() {
        let panel = LessonPanel {
            lesson: lesson.title.clone(),
            step: i + 1,
            steps: lesson.steps.len(),
            title: step.title.clone(),
            text: step.text.clone(),
            checks: step
                .checks
                .iter()
                .map(|c| crate::tui::view::PanelCheck {
                    label: c.label(),
                    measured: String::new(),
                    met: None,
                })
                .collect(),
            state: String::new(),
            live: true,
        };
        let mut buf = ratatui::buffer::Buffer::empty(area);
        crate::tui::ui::lesson::render_panel(
            &panel,
            area,
            &mut buf,
            crate::tui::theme::Colors::On,
            false,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn every_committed_seed_reads_without_a_panic() {
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
        for (name, target) in super::TARGETS {
            let dir = seeds.join(name);
            let mut fed = 0;
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let ran = std::panic::catch_unwind(|| target(&bytes));
                assert!(ran.is_ok(), "{name}: {} panics", path.display());
                fed += 1;
            }
            assert!(fed > 0, "no seeds in {}", dir.display());
        }
    }
}

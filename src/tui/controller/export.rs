//! Export and the figure thread behind it: an export waits for the exact accuracy, writes its
//! folder at once and draws the figures in the background, which `pump` polls; screenshots
//! go to the same folder.

use std::sync::Arc;
use std::time::Instant;

use super::{Controller, render_buffer};
use crate::explore::export::{self, ExportContext};
use crate::tui::figures::FigureJob;

impl Controller {
    /// Polls the figures of the last export; returns whether their progress changed.
    pub(super) fn poll_figures(&mut self) -> bool {
        let mut any = false;
        if let Some(job) = self.figures.as_mut() {
            let (stage, fraction) = (job.stage.clone(), job.fraction);
            let done = job.poll();
            any |= done.is_some() || job.stage != stage || job.fraction != fraction;
            if let Some(outcome) = done {
                let dir = job.dir.display().to_string();
                self.app.say(match outcome {
                    Ok(files) => format!("figures done: {} in {dir}/figures", files.len()),
                    Err(e) => {
                        self.failure = Some(format!("figures failed: {e}"));
                        format!("exported to {dir}; the figures failed: {e}")
                    }
                });
                self.figures = None;
            }
        }
        any
    }

    pub(super) fn try_export(&mut self) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.evaluation().is_none() {
            self.app
                .say("export: waiting for the exact accuracy…".into());
            // An evaluation of this plan is on its way unless nothing asked for one yet.
            if self.changed_at.is_none() {
                self.worker.submit(session.eval_job());
                self.changed_at = Some(Instant::now());
            }
            return;
        }
        self.export_pending = false;
        let ctx = ExportContext {
            baseline: session.baseline().or(self.baseline_eval),
            retrain_history: self.retrain_history.clone(),
            finetune_history: self.finetune_history.clone(),
        };
        match export::export(session, &self.export_root, &ctx) {
            Ok(done) => {
                let names: Vec<String> = done
                    .files
                    .iter()
                    .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect();
                self.app.say(format!(
                    "exported {} ({} B) to {}; drawing the figures…",
                    names.join(", "),
                    done.report.sizes.file_bytes,
                    done.dir.display()
                ));
                if let Some(old) = self.figures.take() {
                    old.cancel();
                }
                self.figures = Some(FigureJob::spawn(
                    done.dir,
                    session.to_experiment(),
                    done.report,
                    Arc::clone(&self.data),
                ));
            }
            Err(e) => self.app.say(format!("export failed: {e}")),
        }
    }

    /// Saves the screen as it is now as a PNG (cells drawn with the embedded font, in their
    /// colours), for slides.
    pub(super) fn screenshot(&mut self) -> anyhow::Result<()> {
        let (w, h) = self.size_hint();
        let buffer = render_buffer(&self.app, w, h)?;
        std::fs::create_dir_all(&self.export_root).map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot create the folder: {e}",
                self.export_root.display()
            )
        })?;
        let path = export::next_free(&self.export_root, "screen", ".png");
        crate::plot::buffer_to_png(&buffer, &path, &crate::plot::ScreenshotOptions::default())?;
        self.app.say(format!("screen saved to {}", path.display()));
        Ok(())
    }

    fn size_hint(&self) -> (u16, u16) {
        ratatui::crossterm::terminal::size().unwrap_or((160, 48))
    }
}

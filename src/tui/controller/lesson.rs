//! What a lesson (`dcx lesson`) asks of the explorer beyond keys: exact values instead of key
//! steps, training for a given number of epochs, and the screen with the lesson's panel.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;

use super::{Controller, render_buffer};
use crate::explore::worker::JobKind;
use crate::explore::{ExploreError, Session};
use crate::tui::app::App;
use crate::tui::ui::lesson::{LessonPanel, render_panel};

impl Controller {
    /// A plan edit by value, as the matching key would make it: the new plan is evaluated
    /// and the screen follows. `Ok(false)`: the plan already was so.
    pub fn edit_plan(
        &mut self,
        edit: impl FnOnce(&mut Session) -> Result<bool, ExploreError>,
    ) -> anyhow::Result<bool> {
        let Some(session) = self.session.as_mut() else {
            anyhow::bail!("the baseline is not ready yet");
        };
        let changed = edit(session)?;
        if changed {
            self.scrub_target.iter_mut().for_each(|s| *s = None);
            self.dirty = true;
            self.plan_changed(None);
        }
        self.refresh();
        Ok(changed)
    }

    /// Masked retraining or centroid fine-tuning (`p` / `f`) for `epochs` (`None`: the
    /// recipe's).
    pub fn train(&mut self, kind: JobKind, epochs: Option<usize>) {
        self.dirty = true;
        self.start_training_for(kind, epochs);
        self.refresh();
    }
}

/// The explorer's screen at `cols` x `rows` cells with `panel` in a column of `panel_cols`
/// cells at its right: one slide of a lesson.
pub fn render_slide(
    app: &App,
    panel: &LessonPanel,
    cols: u16,
    rows: u16,
    panel_cols: u16,
) -> anyhow::Result<Buffer> {
    let mut screen = render_buffer(app, cols, rows)?;
    let area = Rect::new(cols, 0, panel_cols, rows);
    let mut side = Buffer::empty(area);
    render_panel(panel, area, &mut side, app.colors, app.lecture);
    screen.merge(&side);
    Ok(screen)
}

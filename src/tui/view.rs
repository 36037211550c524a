//! What the screen shows, as plain data. `App` rebuilds it from the explore session after
//! every change; drawing only reads it, so rendering never computes and snapshot tests can
//! build one by hand.

/// One row of the layer table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerRow {
    pub name: String,
    pub shape: String,
    pub params: usize,
    pub threshold: f32,
    /// Pruned at random (no magnitude threshold).
    pub random: bool,
    /// Fraction of weights kept, 0..=1.
    pub kept: f64,
    /// Output units (filters, neurons) kept by structured pruning, of how many.
    pub units: (usize, usize),
    pub bits: u8,
    pub init: String,
    pub index_bits: u8,
    pub dense_bytes: u64,
    pub pruned_bytes: u64,
    pub shared_bytes: u64,
    pub file_bytes: u64,
    /// Accuracy change when this layer alone is compressed as set (None until measured).
    pub solo_drop: Option<f64>,
    /// `solo_drop` was read off the sensitivity sweep (pruning only), not measured yet.
    pub solo_estimated: bool,
    /// Bits per surviving weight after Huffman: cluster indices and gaps; their entropies.
    pub weight_bits_h: f64,
    pub index_bits_h: f64,
    pub weight_entropy: f64,
    pub index_entropy: f64,
    pub empty_clusters: usize,
    /// The layer is on a fixed grid: its unused codes are levels no weight is near, not
    /// k-means clusters that emptied.
    pub grid: bool,
    pub fillers: usize,
    pub finetuned: bool,
}

impl LayerRow {
    pub fn ratio(&self) -> f64 {
        crate::pipeline::size::ratio(self.dense_bytes, self.file_bytes)
    }
}

/// Totals across layers plus the file's own overhead.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub params: usize,
    pub kept: f64,
    pub dense_bytes: u64,
    pub pruned_bytes: u64,
    pub shared_bytes: u64,
    /// Bytes of the `.dcz` file this plan would write, header included.
    pub file_bytes: u64,
}

impl Totals {
    pub fn ratio(&self) -> f64 {
        crate::pipeline::size::ratio(self.dense_bytes, self.file_bytes)
    }
}

/// The selected layer's weight distribution.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramView {
    pub layer: String,
    /// The drawn range: the middle 99% of the nonzero weights.
    pub min: f32,
    pub max: f32,
    /// Nonzero weights in `[min, max]`, in equal bins.
    pub counts: Vec<u64>,
    /// Nonzero weights beyond the drawn range, below and above it: counted, not drawn.
    pub below: u64,
    pub above: u64,
    /// Weights exactly zero (what pruning leaves after retraining): counted, not drawn.
    pub zeros: u64,
    /// Every weight of the layer.
    pub total: u64,
    /// Weights with |w| < threshold are pruned: the band shown shaded.
    pub threshold: f32,
    /// Pruned at random: no band.
    pub random: bool,
    pub centroids: Vec<f32>,
    /// What the markers are: "32 centroids", "16 uniform levels", "2 levels per channel".
    pub markers: String,
    pub sse: f64,
}

/// A line on a chart: (x, y) points.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CurvesView {
    /// Training / fine-tuning: test accuracy per epoch (x = epoch).
    pub training: Vec<Curve>,
    /// Selected layer: accuracy when it alone is pruned to a kept fraction (x = kept %).
    pub sensitivity: Option<Curve>,
    /// Selected layer: accuracy when it alone loses whole units (x = units kept %).
    pub sensitivity_units: Option<Curve>,
    /// The selected layer's current kept %, and its accuracy if known.
    pub sensitivity_marker: Option<(f64, f64)>,
    /// Every evaluated plan: (compression ratio, accuracy %).
    pub history: Vec<(f64, f64)>,
    pub pareto: Vec<(f64, f64)>,
    /// The paper's (ratio, accuracy %), when it has one for this network.
    pub paper: Option<(f64, f64)>,
    /// Finished runs of this network (`dcx compress` folders, exports): label and (ratio,
    /// accuracy %).
    pub runs: Vec<(String, (f64, f64))>,
    /// Those runs' training curves (accuracy % per epoch of retraining and fine-tuning).
    pub run_training: Vec<Curve>,
    /// The plan search's candidates (`a`): (compression ratio, accuracy %). Their accuracy is
    /// on held-out training images, not the test set, so they are a series of their own and
    /// no part of the Pareto front of tried plans.
    pub tune: Vec<(f64, f64)>,
    /// The candidate the search chose, once it is done.
    pub tune_chosen: Option<(f64, f64)>,
}

/// Accuracy of the current plan as the engine refines it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Accuracy {
    Unknown,
    /// From a stratified subset: value and standard error.
    Estimate(f64, f64),
    Exact(f64),
}

/// A background job as the status line shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub label: String,
    /// 0..=1
    pub fraction: f64,
    pub detail: String,
    /// Training steps waiting for this one, in order ("retrain", "fine-tune").
    pub then: Vec<String>,
}

/// Training in progress (first start without a checkpoint).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainingView {
    pub model: String,
    pub epoch: usize,
    pub epochs: usize,
    pub batch: usize,
    pub batches: usize,
    /// Running training loss against fractional epoch.
    pub loss: Vec<(f64, f64)>,
    /// Test accuracy (%) after each epoch.
    pub accuracy: Vec<(f64, f64)>,
    pub images_per_sec: f64,
    pub eta_secs: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ViewModel {
    pub model: String,
    pub layers: Vec<LayerRow>,
    pub totals: Totals,
    pub histogram: HistogramView,
    pub curves: CurvesView,
    pub baseline: f64,
    pub accuracy: Accuracy,
    pub job: Option<JobView>,
    /// The width the plan's `[activations]` quantizes layer inputs to. The explorer's own
    /// evaluation runs them in f32, and the table says so.
    pub activation_bits: Option<u8>,
    /// The plan's measured batch-1 speed against dense (`None`: not measured yet).
    pub speed: Option<SpeedView>,
    /// A plan search runs: Esc stops it rather than asking to quit.
    pub searching: bool,
}

/// Batch-1 latency of the plan's network, measured in the background.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeedView {
    pub dense_ms: f64,
    /// Each faster way to run it: its name and speedup against dense.
    pub paths: Vec<(String, f64)>,
    /// Measured on the current plan (false: an earlier plan's, shown until the new one is in).
    pub fresh: bool,
}

impl Default for ViewModel {
    fn default() -> Self {
        ViewModel {
            model: String::new(),
            layers: Vec::new(),
            totals: Totals::default(),
            histogram: HistogramView::default(),
            curves: CurvesView::default(),
            baseline: 0.0,
            accuracy: Accuracy::Unknown,
            job: None,
            activation_bits: None,
            speed: None,
            searching: false,
        }
    }
}

/// One check of a lesson step as its panel shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct PanelCheck {
    pub label: String,
    pub measured: String,
    /// `None` while the plan is being measured.
    pub met: Option<bool>,
}

/// What a lesson's panel shows of one step: beside the live explorer (`dcx lesson`, `o`)
/// and on a slide.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LessonPanel {
    pub lesson: String,
    /// 1-based.
    pub step: usize,
    pub steps: usize,
    pub title: String,
    pub text: String,
    pub checks: Vec<PanelCheck>,
    /// Where the step stands in the live explorer ("applying 2 of 3: retrain", "changed
    /// since prepared: x returns to it"); empty on a slide.
    pub state: String,
    /// Beside the live explorer: the panel names the lesson's keys.
    pub live: bool,
}

/// A lesson file the picker (`o`) offers.
#[derive(Clone, Debug, PartialEq)]
pub struct LessonChoice {
    pub path: std::path::PathBuf,
    /// The lesson's title, or why the file cannot be opened.
    pub title: Result<String, String>,
}

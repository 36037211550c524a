//! Measured inference speed: the ways dcx can run one network (dense f32, sparse over the
//! nonzero weights, int8, and for a network thinned by structured pruning the thinned one),
//! timed alternately in one process so every path sees the same machine load. `dcx bench
//! infer` prints all of it; reports and the explorer quote the batch latencies.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Net;
use super::int8::Int8Net;
use super::sparse::SparseNet;

/// One way of running the network.
pub(crate) enum Path {
    /// dcx's f32 kernels on every weight, zeros included, as `dcx eval` runs them.
    Dense(Net),
    /// The nonzero weights only, as compressed sparse rows.
    Sparse(SparseNet),
    Int8(Int8Net),
    /// The network with structured pruning's cut units removed: smaller dense layers.
    Thinned(Net),
    /// The thinned network's nonzero weights as compressed sparse rows.
    ThinnedSparse(SparseNet),
}

impl Path {
    pub fn name(&self) -> &'static str {
        match self {
            Path::Dense(_) => "f32",
            Path::Sparse(_) => "f32 sparse (CSR)",
            Path::Int8(_) => "int8",
            Path::Thinned(_) => "f32 thinned",
            Path::ThinnedSparse(_) => "thinned sparse",
        }
    }

    /// A short stable name (JSON keys, report columns).
    pub fn key(&self) -> &'static str {
        match self {
            Path::Dense(_) => "dense",
            Path::Sparse(_) => "sparse",
            Path::Int8(_) => "int8",
            Path::Thinned(_) => "thinned",
            Path::ThinnedSparse(_) => "thinned_sparse",
        }
    }

    /// Predicted classes of `n` images.
    pub fn predict(&self, images: &[f32], n: usize) -> candle_core::Result<Vec<usize>> {
        Ok(match self {
            Path::Dense(net) | Path::Thinned(net) => {
                let x = net.input(images.to_vec(), n)?;
                let p: Vec<u32> = net.forward(&x)?.argmax(1)?.to_vec1()?;
                p.into_iter().map(|c| c as usize).collect()
            }
            Path::Sparse(net) | Path::ThinnedSparse(net) => net.predict(images, n),
            Path::Int8(net) => net.predict(images, n),
        })
    }
}

/// One path at one batch size.
#[derive(Clone, Debug, Default)]
pub(crate) struct Measured {
    /// Per full batch, seconds.
    pub batch_secs: Vec<f64>,
    /// Per pass over the images, seconds.
    pub pass_secs: Vec<f64>,
    pub correct: usize,
}

impl Measured {
    /// Median latency of one batch, milliseconds.
    pub fn batch_ms(&self) -> f64 {
        median(&self.batch_secs) * 1e3
    }

    pub fn images_per_sec(&self, images: usize) -> f64 {
        images as f64 / median(&self.pass_secs)
    }
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Times every path over `images` (`labels` score them) in batches of `batch`: a warm-up,
/// then `repeats` passes per path, the paths rotating which goes first so none always
/// follows the same one.
pub(crate) fn measure(
    paths: &[Path],
    images: &[f32],
    labels: &[u8],
    batch: usize,
    repeats: usize,
) -> candle_core::Result<Vec<Measured>> {
    let mut rows = vec![Measured::default(); paths.len()];
    let n = batch.min(labels.len());
    for path in paths {
        path.predict(&images[..n * 784], n)?;
    }
    for rep in 0..repeats {
        for i in 0..paths.len() {
            let p = (i + rep) % paths.len();
            pass(&paths[p], images, labels, batch, &mut rows[p])?;
        }
    }
    Ok(rows)
}

/// One pass over the images in batches of `batch`: each full batch's latency, the pass's
/// time, and the correct count.
fn pass(
    path: &Path,
    images: &[f32],
    labels: &[u8],
    batch: usize,
    m: &mut Measured,
) -> candle_core::Result<()> {
    let mut correct = 0;
    let start = Instant::now();
    for (images, labels) in images.chunks(batch * 784).zip(labels.chunks(batch)) {
        let t = Instant::now();
        let predicted = path.predict(images, labels.len())?;
        if labels.len() == batch || m.batch_secs.is_empty() {
            m.batch_secs.push(t.elapsed().as_secs_f64());
        }
        correct += predicted
            .iter()
            .zip(labels)
            .filter(|&(&p, &y)| p == y as usize)
            .count();
    }
    m.pass_secs.push(start.elapsed().as_secs_f64());
    m.correct = correct;
    Ok(())
}

/// What a report quotes: per batch size, the dense network's batch latency and each other
/// path's, measured alternately.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    pub threads: usize,
    /// Images timed per pass, and passes per path.
    pub images: usize,
    pub repeats: usize,
    pub rows: Vec<LatencyRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyRow {
    pub batch: usize,
    pub dense_ms: f64,
    pub paths: Vec<PathLatency>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PathLatency {
    /// [`Path::key`].
    pub path: String,
    pub ms: f64,
    /// Dense batch latency over this path's.
    pub speedup: f64,
}

impl LatencyReport {
    /// Measures the dense `net`, its sparse form and, when given, the `thinned` network dense
    /// and sparse, at each batch size over `images` (flattened 28x28, normalised; at least
    /// one full batch of each size), `repeats` passes per path.
    pub fn measure(
        net: Net,
        thinned: Option<Net>,
        images: &[f32],
        batches: &[usize],
        repeats: usize,
    ) -> candle_core::Result<LatencyReport> {
        let sparse = SparseNet::new(&net)?;
        let mut paths = vec![Path::Dense(net), Path::Sparse(sparse)];
        if let Some(t) = thinned {
            let sparse = SparseNet::new(&t)?;
            paths.push(Path::Thinned(t));
            paths.push(Path::ThinnedSparse(sparse));
        }
        let count = images.len() / 784;
        // Latency does not depend on what the images show: no labels are needed.
        let labels = vec![0u8; count];
        let mut rows = Vec::with_capacity(batches.len());
        for &batch in batches {
            let measured = measure(&paths, images, &labels, batch, repeats)?;
            let dense_ms = measured[0].batch_ms();
            rows.push(LatencyRow {
                batch,
                dense_ms,
                paths: paths
                    .iter()
                    .zip(&measured)
                    .skip(1)
                    .map(|(p, m)| PathLatency {
                        path: p.key().to_string(),
                        ms: m.batch_ms(),
                        speedup: dense_ms / m.batch_ms(),
                    })
                    .collect(),
            });
        }
        Ok(LatencyReport {
            threads: rayon::current_num_threads(),
            images: count,
            repeats,
            rows,
        })
    }
}

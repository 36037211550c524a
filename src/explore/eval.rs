//! Fast, incremental test-set evaluation of a plan.
//!
//! The [`Evaluator`] owns the test set in the tile layout of [`super::kernels`] and a cache of
//! the activations entering every layer, keyed by the fingerprints of the layers before it.
//! Evaluating a plan starts from the deepest cached boundary that matches the plan, so a change
//! to layer `L` recomputes only layers `>= L`; the outputs it produces on the way are cached in
//! turn (within a byte budget, least recently used first out), so scrubbing one layer and then
//! another stays incremental.
//!
//! The layers themselves run in [`super::forward`]: sparse, dense or Winograd by density, with
//! the same sums as Candle's forward pass up to float rounding.
//!
//! Answers are progressive: the test set is reordered so that a fixed stratified subset (by
//! class, proportional allocation) comes first; that part is evaluated first and reported as an
//! [`Estimate`] with its standard error, then the rest completes the exact full-set figure. No
//! work is repeated between the two.

use std::sync::Arc;

use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use rayon::prelude::*;

use super::ExploreError;
pub use super::fingerprint;
use super::forward::pad_tile;
pub use super::forward::{DENSE_FROM, LayerGeom, PreparedLayer, geometry};
use super::kernels::TILE;
use crate::data::Split;
use crate::model::Arch;
use crate::model::train::Evaluation;

/// Settings of an [`Evaluator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// Images in the stratified subset behind the first estimate (clamped to the test set).
    pub subset: usize,
    /// Bytes the evaluator may hold for the test images plus cached activations.
    pub cache_budget: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            subset: 1000,
            cache_budget: 768 << 20,
        }
    }
}

/// What an evaluation request wants besides the full-set result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalMode {
    /// Evaluate the stratified subset first and report an [`Estimate`].
    pub estimate: bool,
    /// Keep the activations this request computes for later requests. One-off evaluations
    /// (sensitivity sweeps) say no, so they do not push the interactive plan's entries out.
    pub store: bool,
}

impl EvalMode {
    pub const INTERACTIVE: EvalMode = EvalMode {
        estimate: true,
        store: true,
    };
    pub(crate) const ONE_OFF: EvalMode = EvalMode {
        estimate: false,
        store: false,
    };
}

/// Accuracy on the stratified subset, as an estimate of the full test set's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Stratified estimate of the full test set's accuracy (class-weighted subset accuracy).
    pub accuracy: f64,
    /// Its standard error (finite-population corrected); 0 when the subset is the whole set.
    pub stderr: f64,
    /// Stratified estimate of the mean cross-entropy.
    pub loss: f64,
    /// Correct predictions within the subset.
    pub correct: usize,
    /// Images in the subset.
    pub images: usize,
}

/// One class's share of the test set and of the subset.
#[derive(Clone, Copy, Debug)]
struct Stratum {
    population: usize,
    sampled: usize,
}

/// Cached activations entering `boundary` (the input of layer `boundary`; the last boundary
/// holds the logits) for the plan prefix `prefix` (fingerprints of layers `0..boundary`).
struct Entry {
    id: u64,
    boundary: usize,
    prefix: Vec<u64>,
    data: Vec<f32>,
    /// Tiles `0..valid` hold results.
    valid: usize,
    used: u64,
}

/// Figures about the activation cache, for reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Bytes of the test images in tile layout.
    pub input_bytes: usize,
    /// Bytes of cached activations (entries with results).
    pub entry_bytes: usize,
    /// Bytes of buffers kept for reuse (freed activations; reusing them avoids page faults).
    pub pool_bytes: usize,
    pub entries: usize,
    /// Highest `input + entries + pool` seen.
    pub peak_bytes: usize,
    /// Idle-time warm-up has nothing left to do ([`Evaluator::warm_step`]).
    pub warm: bool,
}

/// Where a phase writes one boundary's activations.
enum Dest {
    Entry(u64),
    Scratch,
}

/// Evaluates plans of one network on one test set, incrementally. See the module docs.
pub struct Evaluator {
    model: Arch,
    geoms: Vec<LayerGeom>,
    n: usize,
    tiles: usize,
    subset: usize,
    subset_tiles: usize,
    /// Labels in evaluation order (the subset first).
    labels: Vec<u8>,
    strata: Vec<Stratum>,
    input: Vec<f32>,
    entries: Vec<Entry>,
    pool: Vec<Vec<f32>>,
    /// A buffer being faulted in by [`Evaluator::warm_step`], for a boundary.
    warming: Option<(usize, Vec<f32>)>,
    budget: usize,
    clock: u64,
    next_id: u64,
    peak: usize,
}

/// Per-thread buffers of one tile's pass.
#[derive(Default)]
struct Scratch {
    pad: Vec<f32>,
    acc: Vec<f32>,
    bufs: Vec<Vec<f32>>,
}

impl Evaluator {
    pub fn new(model: &Arch, test: &Split, opts: EvalOptions) -> Result<Evaluator, ExploreError> {
        let geoms = geometry(model)?;
        let n = test.len;
        if n == 0 || test.labels.len() != n || test.images.len() != n * 784 {
            return Err(ExploreError::Invalid(format!(
                "test set of {n} images with {} labels and {} pixels",
                test.labels.len(),
                test.images.len()
            )));
        }
        let classes = geoms[geoms.len() - 1].out_features();
        if let Some(&bad) = test.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(ExploreError::Invalid(format!(
                "label {bad} in a test set for a {classes}-class network"
            )));
        }
        let subset = opts.subset.clamp(1, n);
        let (order, strata) = stratified_order(&test.labels, subset);
        let tiles = n.div_ceil(TILE);
        let mut input = vec![0.0f32; tiles * 784 * TILE];
        for (r, &i) in order.iter().enumerate() {
            let tile = &mut input[(r / TILE) * 784 * TILE..][..784 * TILE];
            for (p, &v) in test.image(i).iter().enumerate() {
                tile[p * TILE + r % TILE] = v;
            }
        }
        let labels = order.iter().map(|&i| test.labels[i]).collect();
        let mut e = Evaluator {
            model: model.clone(),
            geoms,
            n,
            tiles,
            subset,
            subset_tiles: subset.div_ceil(TILE),
            labels,
            strata,
            input,
            entries: Vec::new(),
            pool: Vec::new(),
            warming: None,
            budget: opts.cache_budget,
            clock: 0,
            next_id: 0,
            peak: 0,
        };
        e.peak = e.bytes();
        Ok(e)
    }

    pub fn model(&self) -> &Arch {
        &self.model
    }

    pub fn geometry(&self) -> &[LayerGeom] {
        &self.geoms
    }

    /// Images in the test set and in the stratified subset.
    pub fn images(&self) -> (usize, usize) {
        (self.n, self.subset)
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            input_bytes: 4 * self.input.len(),
            entry_bytes: self.entries.iter().map(|e| 4 * e.data.capacity()).sum(),
            pool_bytes: self.pool.iter().map(|v| 4 * v.capacity()).sum::<usize>()
                + self.warming.as_ref().map_or(0, |(_, v)| 4 * v.capacity()),
            entries: self.entries.len(),
            peak_bytes: self.peak,
            warm: self.warming.is_none() && self.warm_target().is_none(),
        }
    }

    fn bytes(&self) -> usize {
        4 * (self.input.len()
            + self
                .entries
                .iter()
                .map(|e| e.data.capacity())
                .sum::<usize>()
            + self.pool.iter().map(Vec::capacity).sum::<usize>()
            + self.warming.as_ref().map_or(0, |(_, v)| v.capacity()))
    }

    /// Drops every cached activation (the test images stay).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.pool.clear();
        self.warming = None;
    }

    /// Evaluates the plan whose layers are `layers` (one per network layer, in order).
    /// `on_estimate` hears the subset estimate first (when `mode.estimate`); `stop` is polled
    /// between tiles, and a stop returns `Ok(None)` with nothing half-written left in the cache.
    pub fn evaluate(
        &mut self,
        layers: &[Arc<PreparedLayer>],
        mode: EvalMode,
        on_estimate: &mut dyn FnMut(&Estimate),
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Option<Evaluation>, ExploreError> {
        let nl = self.geoms.len();
        if layers.len() != nl {
            return Err(ExploreError::Invalid(format!(
                "{} prepared layers for a {}-layer network",
                layers.len(),
                nl
            )));
        }
        for (l, (p, g)) in layers.iter().zip(&self.geoms).enumerate() {
            if !p.fits(l, g) {
                return Err(ExploreError::Invalid(format!(
                    "prepared layer {} does not fit layer {l} of {}",
                    p.layer, self.model
                )));
            }
        }
        let fps: Vec<u64> = layers.iter().map(|p| p.fingerprint).collect();
        let classes = self.geoms[nl - 1].out_features();
        let mut logits = vec![0.0f32; self.tiles * classes * TILE];
        let phases: Vec<(usize, usize)> = if mode.estimate && self.subset_tiles < self.tiles {
            vec![(0, self.subset_tiles), (self.subset_tiles, self.tiles)]
        } else {
            vec![(0, self.tiles)]
        };
        for &(t0, t1) in &phases {
            if stop() || !self.run_phase(layers, &fps, t0, t1, mode.store, &mut logits, stop) {
                return Ok(None);
            }
            if mode.estimate && t0 == 0 {
                on_estimate(&self.estimate(&logits, classes));
            }
        }
        let (correct, loss) = self.score(&logits, classes, 0..self.n);
        Ok(Some(Evaluation {
            accuracy: correct as f64 / self.n as f64,
            loss: (loss / self.n as f64) as f32,
            correct,
            total: self.n,
        }))
    }

    fn find(&self, boundary: usize, prefix: &[u64]) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.boundary == boundary && e.prefix == prefix)
    }

    fn features(&self, boundary: usize) -> usize {
        if boundary < self.geoms.len() {
            self.geoms[boundary].in_features()
        } else {
            self.geoms[boundary - 1].out_features()
        }
    }

    /// Computes tiles `t0..t1` of the plan and copies their logits into `logits`; false when
    /// stopped.
    #[allow(clippy::too_many_arguments)]
    fn run_phase(
        &mut self,
        layers: &[Arc<PreparedLayer>],
        fps: &[u64],
        t0: usize,
        t1: usize,
        store: bool,
        logits: &mut [f32],
        stop: &(dyn Fn() -> bool + Sync),
    ) -> bool {
        let nl = self.geoms.len();
        self.clock += 1;
        let clock = self.clock;
        // Deepest boundary already holding these tiles for this prefix.
        let mut start = 0;
        let mut src_id = None;
        for b in (1..=nl).rev() {
            if let Some(e) = self.find(b, &fps[..b])
                && e.valid >= t1
            {
                (start, src_id) = (b, Some(e.id));
                break;
            }
        }
        let mut pinned: Vec<u64> = src_id.into_iter().collect();
        let mut dests = Vec::with_capacity(nl - start);
        for b in start + 1..=nl {
            let dest = match self.find(b, &fps[..b]) {
                // An entry with tiles 0..t0 is extended in place.
                Some(e) if e.valid == t0 => Dest::Entry(e.id),
                Some(_) => Dest::Scratch,
                None if store && t0 == 0 => {
                    let len = self.tiles * self.features(b) * TILE;
                    match self.take_buffer(b, len, &pinned) {
                        Some(data) => {
                            let id = self.next_id;
                            self.next_id += 1;
                            self.entries.push(Entry {
                                id,
                                boundary: b,
                                prefix: fps[..b].to_vec(),
                                data,
                                valid: 0,
                                used: clock,
                            });
                            Dest::Entry(id)
                        }
                        None => Dest::Scratch,
                    }
                }
                None => Dest::Scratch,
            };
            if let Dest::Entry(id) = dest {
                pinned.push(id);
            }
            dests.push(dest);
        }
        self.peak = self.peak.max(self.bytes());
        for e in self.entries.iter_mut() {
            if pinned.contains(&e.id) {
                e.used = clock;
            }
        }

        let classes = self.features(nl);
        let stopped = if start == nl {
            false
        } else {
            // Move the destination buffers out so the source can be borrowed alongside them.
            let mut bufs: Vec<Option<Vec<f32>>> = dests
                .iter()
                .map(|d| match d {
                    Dest::Entry(id) => {
                        let e = self
                            .entries
                            .iter_mut()
                            .find(|e| e.id == *id)
                            .expect("pinned");
                        Some(std::mem::take(&mut e.data))
                    }
                    Dest::Scratch => None,
                })
                .collect();
            let src: &[f32] = match src_id {
                Some(id) => {
                    &self
                        .entries
                        .iter()
                        .find(|e| e.id == id)
                        .expect("pinned")
                        .data
                }
                None => &self.input,
            };
            let stopped = run_tiles(
                &self.geoms,
                layers,
                start,
                src,
                &mut bufs,
                logits,
                t0,
                t1,
                stop,
            );
            for (d, buf) in dests.iter().zip(bufs) {
                if let (Dest::Entry(id), Some(data)) = (d, buf) {
                    let e = self
                        .entries
                        .iter_mut()
                        .find(|e| e.id == *id)
                        .expect("pinned");
                    e.data = data;
                    if !stopped {
                        e.valid = t1;
                    }
                }
            }
            stopped
        };
        if !stopped && matches!(dests.last(), Some(Dest::Entry(_))) || start == nl {
            // The logits came from (or went to) an entry: copy them into the request's buffer.
            let e = self.find(nl, fps).expect("logits entry");
            let span = classes * TILE;
            logits[t0 * span..t1 * span].copy_from_slice(&e.data[t0 * span..t1 * span]);
        }
        // Entries that never got a result are freed for reuse.
        let (dead, live): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.valid == 0);
        self.entries = live;
        self.pool.extend(dead.into_iter().map(|e| e.data));
        !stopped
    }

    /// Most entries kept for `boundary`: a quarter of the budget's worth, 2..=16. Beyond it the
    /// least recently used entry of the boundary is recycled, buffer and all, so a long scrub
    /// reuses memory it has already touched instead of faulting in fresh pages (first touch
    /// costs ten times a write on a VM).
    fn cap(&self, boundary: usize) -> usize {
        let bytes = 4 * self.tiles * self.features(boundary) * TILE;
        (self.budget.saturating_sub(4 * self.input.len()) / (4 * bytes.max(1))).clamp(2, 16)
    }

    /// A buffer of `len` floats for a new entry of `boundary`, within the budget: a pooled one
    /// of that size, else the boundary's least recently used entry once it has `cap` of them,
    /// else a fresh one, evicting pooled buffers and then least recently used entries (never
    /// `pinned`) to make room.
    fn take_buffer(&mut self, boundary: usize, len: usize, pinned: &[u64]) -> Option<Vec<f32>> {
        if let Some(i) = self.pool.iter().position(|v| v.len() == len) {
            return Some(self.pool.swap_remove(i));
        }
        let lru = |entries: &[Entry], same_boundary: bool| {
            entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    !pinned.contains(&e.id) && (!same_boundary || e.boundary == boundary)
                })
                // Among equally old entries, one of the right size saves an allocation.
                .min_by_key(|(_, e)| (e.used, e.data.len() != len))
                .map(|(i, _)| i)
        };
        let mine = self
            .entries
            .iter()
            .filter(|e| e.boundary == boundary)
            .count();
        if mine >= self.cap(boundary)
            && let Some(i) = lru(&self.entries, true)
        {
            return Some(self.entries.swap_remove(i).data);
        }
        loop {
            if self.bytes() + 4 * len <= self.budget {
                return Some(vec![0.0; len]);
            }
            if let Some(i) = (0..self.pool.len()).max_by_key(|&i| self.pool[i].len()) {
                self.pool.swap_remove(i);
                continue;
            }
            let e = self.entries.swap_remove(lru(&self.entries, false)?);
            if e.data.len() == len {
                return Some(e.data);
            }
        }
    }

    /// One step of idle-time warm-up: touches (up to 8 MiB of) a buffer each boundary will
    /// want, until every boundary has its [`cap`](Self::cap) of entries and pooled buffers.
    /// Returns false when there is nothing left to do. Call it when there is no other work: the
    /// first evaluations after it find their memory already faulted in.
    pub fn warm_step(&mut self) -> bool {
        const STEP: usize = 2 << 20;
        if let Some((boundary, mut v)) = self.warming.take() {
            let len = self.tiles * self.features(boundary) * TILE;
            let add = (len - v.len()).min(STEP);
            v.resize(v.len() + add, 0.0);
            if v.len() == len {
                self.pool.push(v);
            } else {
                self.warming = Some((boundary, v));
            }
            self.peak = self.peak.max(self.bytes());
            return true;
        }
        match self.warm_target() {
            Some(b) => {
                let len = self.tiles * self.features(b) * TILE;
                self.warming = Some((b, Vec::with_capacity(len)));
                true
            }
            None => false,
        }
    }

    /// A boundary short of its cap of entries and pooled buffers, with room in the budget.
    fn warm_target(&self) -> Option<usize> {
        (1..=self.geoms.len()).find(|&b| {
            let len = self.tiles * self.features(b) * TILE;
            let have = self.entries.iter().filter(|e| e.boundary == b).count()
                + self.pool.iter().filter(|v| v.len() == len).count();
            have < self.cap(b) && self.bytes() + 4 * len <= self.budget
        })
    }

    /// Correct predictions and summed cross-entropy (f64) over evaluation rows `rows`, a tile
    /// at a time in parallel (the exponentials are a visible share of a cheap evaluation).
    fn score(&self, logits: &[f32], classes: usize, rows: std::ops::Range<usize>) -> (usize, f64) {
        let chunks: Vec<std::ops::Range<usize>> = rows
            .clone()
            .step_by(TILE)
            .map(|a| a..(a + TILE).min(rows.end))
            .collect();
        let parts: Vec<(usize, f64)> = chunks
            .into_par_iter()
            .map(|chunk| {
                chunk.fold((0, 0.0), |(c, l), r| {
                    let (ok, loss) = self.score_one(logits, classes, r);
                    (c + ok as usize, l + loss)
                })
            })
            .collect();
        // Summed in tile order, so the loss does not depend on thread scheduling.
        parts
            .iter()
            .fold((0, 0.0), |(c, l), &(pc, pl)| (c + pc, l + pl))
    }

    fn score_one(&self, logits: &[f32], classes: usize, r: usize) -> (bool, f64) {
        let tile = &logits[(r / TILE) * classes * TILE..][..classes * TILE];
        let j = r % TILE;
        let z = |c: usize| tile[c * TILE + j];
        let mut best = 0;
        for c in 1..classes {
            if z(c) > z(best) {
                best = c;
            }
        }
        let max = z(best) as f64;
        let sum: f64 = (0..classes).map(|c| (z(c) as f64 - max).exp()).sum();
        let label = self.labels[r] as usize;
        (best == label, max + sum.ln() - z(label) as f64)
    }

    /// The stratified estimate from the subset rows `0..subset`.
    fn estimate(&self, logits: &[f32], classes: usize) -> Estimate {
        let mut correct = vec![0usize; self.strata.len()];
        let mut loss = vec![0.0f64; self.strata.len()];
        for r in 0..self.subset {
            let (c, l) = self.score_one(logits, classes, r);
            let h = self.labels[r] as usize;
            correct[h] += c as usize;
            loss[h] += l;
        }
        let (mut acc, mut var, mut mean_loss) = (0.0, 0.0, 0.0);
        for (h, s) in self.strata.iter().enumerate() {
            if s.sampled == 0 {
                continue;
            }
            let w = s.population as f64 / self.n as f64;
            let p = correct[h] as f64 / s.sampled as f64;
            acc += w * p;
            mean_loss += w * loss[h] / s.sampled as f64;
            if s.sampled > 1 {
                // Unbiased within-stratum variance, finite-population corrected.
                let s2 = p * (1.0 - p) * s.sampled as f64 / (s.sampled - 1) as f64;
                let fpc = 1.0 - s.sampled as f64 / s.population as f64;
                var += w * w * fpc * s2 / s.sampled as f64;
            }
        }
        Estimate {
            accuracy: acc,
            stderr: var.sqrt(),
            loss: mean_loss,
            correct: correct.iter().sum(),
            images: self.subset,
        }
    }
}

/// Runs tiles `t0..t1` from boundary `start` (`src` holds it for all tiles) through the last
/// layer; `bufs[i]` receives boundary `start + 1 + i` when present, and the logits always land
/// in `logits` too when their buffer is scratch. Returns whether `stop` cut it short.
#[allow(clippy::too_many_arguments)]
fn run_tiles(
    geoms: &[LayerGeom],
    layers: &[Arc<PreparedLayer>],
    start: usize,
    src: &[f32],
    bufs: &mut [Option<Vec<f32>>],
    logits: &mut [f32],
    t0: usize,
    t1: usize,
    stop: &(dyn Fn() -> bool + Sync),
) -> bool {
    let nl = geoms.len();
    let feats = |b: usize| {
        if b < nl {
            geoms[b].in_features()
        } else {
            geoms[nl - 1].out_features()
        }
    };
    let src_len = feats(start) * TILE;
    let count = t1 - t0;
    let mut per_tile: Vec<Vec<Option<&mut [f32]>>> = (0..count).map(|_| Vec::new()).collect();
    let last = bufs.len() - 1;
    let mut logits = Some(logits);
    for (i, buf) in bufs.iter_mut().enumerate() {
        let len = feats(start + 1 + i) * TILE;
        match buf {
            Some(data) => {
                for (slot, chunk) in per_tile
                    .iter_mut()
                    .zip(data[t0 * len..t1 * len].chunks_mut(len))
                {
                    slot.push(Some(chunk));
                }
            }
            None if i == last => {
                let logits = logits.take().expect("one logits boundary");
                for (slot, chunk) in per_tile
                    .iter_mut()
                    .zip(logits[t0 * len..t1 * len].chunks_mut(len))
                {
                    slot.push(Some(chunk));
                }
            }
            None => per_tile.iter_mut().for_each(|slot| slot.push(None)),
        }
    }
    let stopped = std::sync::atomic::AtomicBool::new(false);
    per_tile.into_par_iter().enumerate().for_each_init(
        Scratch::default,
        |scratch, (i, mut outs)| {
            if stopped.load(std::sync::atomic::Ordering::Relaxed) || stop() {
                stopped.store(true, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let t = t0 + i;
            let tile_src = &src[t * src_len..(t + 1) * src_len];
            let Scratch { pad, acc, bufs } = scratch;
            if bufs.len() < nl + 1 {
                bufs.resize_with(nl + 1, Vec::new);
            }
            for l in start..nl {
                let j = l - start;
                let g = &geoms[l];
                let (before, after) = outs.split_at_mut(j);
                let (lo, hi) = bufs.split_at_mut(l + 1);
                let input: &[f32] = if j == 0 {
                    tile_src
                } else {
                    match &before[j - 1] {
                        Some(s) => s,
                        None => &lo[l],
                    }
                };
                let input: &[f32] = if g.pad > 0 {
                    pad_tile(g, input, pad);
                    pad
                } else {
                    input
                };
                let out: &mut [f32] = match &mut after[0] {
                    Some(s) => s,
                    None => {
                        let v = &mut hi[0];
                        v.resize(feats(l + 1) * TILE, 0.0);
                        v
                    }
                };
                layers[l].forward(g, input, out, acc);
            }
        },
    );
    stopped.into_inner()
}

/// Evaluation order: a fixed stratified subset of `subset` images (classes in proportion to
/// the test set, largest remainders, seeded choice within a class) first, then the rest in
/// their original order.
fn stratified_order(labels: &[u8], subset: usize) -> (Vec<usize>, Vec<Stratum>) {
    let n = labels.len();
    let classes = labels.iter().map(|&l| l as usize + 1).max().unwrap_or(1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(i);
    }
    let quota: Vec<f64> = by_class
        .iter()
        .map(|c| subset as f64 * c.len() as f64 / n as f64)
        .collect();
    let mut take: Vec<usize> = quota.iter().map(|q| q.floor() as usize).collect();
    let mut short = subset - take.iter().sum::<usize>();
    let mut by_remainder: Vec<usize> = (0..classes).collect();
    by_remainder.sort_by(|&a, &b| {
        (quota[b] - quota[b].floor())
            .total_cmp(&(quota[a] - quota[a].floor()))
            .then(a.cmp(&b))
    });
    for &h in by_remainder.iter().cycle().take(classes * 2) {
        if short == 0 {
            break;
        }
        if take[h] < by_class[h].len() {
            take[h] += 1;
            short -= 1;
        }
    }
    let mut rng = StdRng::seed_from_u64(0x005e_ed5a_b5e7);
    let mut chosen = vec![false; n];
    for (h, members) in by_class.iter().enumerate() {
        let mut m = members.clone();
        m.shuffle(&mut rng);
        for &i in &m[..take[h]] {
            chosen[i] = true;
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| chosen[i]).collect();
    order.extend((0..n).filter(|&i| !chosen[i]));
    let strata = by_class
        .iter()
        .zip(&take)
        .map(|(c, &t)| Stratum {
            population: c.len(),
            sampled: t,
        })
        .collect();
    (order, strata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_subset_is_proportional_and_first() {
        let labels: Vec<u8> = (0..1000)
            .map(|i| if i % 10 < 7 { 0 } else { (i % 3) as u8 + 1 })
            .collect();
        let (order, strata) = stratified_order(&labels, 100);
        assert_eq!(order.len(), 1000);
        let mut seen = order.clone();
        seen.sort();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert_eq!(strata.iter().map(|s| s.sampled).sum::<usize>(), 100);
        assert_eq!(strata[0].sampled, 70);
        let zeros = order[..100].iter().filter(|&&i| labels[i] == 0).count();
        assert_eq!(zeros, 70);
    }
}

//! Fixed-grid quantizers: uniform INT-n (affine or symmetric), binary and ternary weights.
//!
//! One function ([`quantize`]) fits a grid to a layer's kept weights and gives each weight its
//! code; [`Fitted::value`] turns a code back into a weight. The codec stores what it fits
//! (scales and zero points, or the binary/ternary alpha), the training loop's fake-quantize
//! pass ([`fake_quantize`]) calls the very same function every step, so the weights a
//! quantization-aware step trains against are the weights the file will hold. It lives below
//! the codec because the optimiser needs it.
//!
//! A grid is fitted per group: the whole tensor (one group) or each output channel (the
//! weights are laid out `[out, ...]`, so a group is a contiguous run).

/// The kind of grid and its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grid {
    /// `2^bits` evenly spaced levels from `min(0, lowest)` to `max(0, highest)`: value =
    /// `scale * (code - zero_point)`, zero exactly representable (code = zero point).
    Affine { bits: u8 },
    /// Levels `-q..=q` times `scale` with `q = 2^(bits-1) - 1` and `scale = max|w| / q`; the
    /// code is `level + 2^(bits-1)` (code 0 unused), so zero is the code `2^(bits-1)`.
    Symmetric { bits: u8 },
    /// `sign(w) * alpha`, alpha = mean `|w|` of the group's kept weights (XNOR-Net's scaling of
    /// BinaryConnect's deterministic binarisation): code 1 = `+alpha`, 0 = `-alpha`.
    Binary,
    /// Ternary Weight Networks: `|w| <= 0.7 * mean|w|` is pruned (zero), the rest become
    /// `sign(w) * alpha` with alpha the mean `|w|` of those that stay. Codes as for binary.
    Ternary,
}

/// TWN's threshold factor: `delta = 0.7 * mean|w|` approximates the optimal ternary cut for
/// weights spread uniformly or normally.
pub const TERNARY_DELTA: f32 = 0.7;

/// Binary and ternary training clip the real-valued (shadow) weights to this, and their
/// straight-through gradient is zero outside it (BinaryConnect).
pub const SIGN_CLIP: f32 = 1.0;

impl Grid {
    /// Codes one group can hold.
    pub fn levels(self) -> usize {
        match self {
            Grid::Affine { bits } | Grid::Symmetric { bits } => 1 << bits,
            Grid::Binary | Grid::Ternary => 2,
        }
    }
}

/// What a fit stores: per group, an affine scale and zero point, or a sign grid's alpha.
#[derive(Clone, Debug, PartialEq)]
pub enum GridParams {
    Affine {
        scales: Vec<f32>,
        zero_points: Vec<u8>,
    },
    Sign {
        alphas: Vec<f32>,
    },
}

impl GridParams {
    pub fn groups(&self) -> usize {
        match self {
            GridParams::Affine { scales, .. } => scales.len(),
            GridParams::Sign { alphas } => alphas.len(),
        }
    }

    /// The weight `code` stands for in `group`. Writer, reader and training all decode
    /// through here, so a file's values are bit-for-bit the trained ones.
    #[inline]
    pub fn value(&self, group: usize, code: u8) -> f32 {
        match self {
            GridParams::Affine {
                scales,
                zero_points,
            } => scales[group] * (code as i32 - zero_points[group] as i32) as f32,
            GridParams::Sign { alphas } => {
                if code == 1 {
                    alphas[group]
                } else {
                    -alphas[group]
                }
            }
        }
    }

    /// These parameters (one group per kept output) spread over every output of a layer
    /// whose `kept` outputs are marked: a cut output's group gets what `grid` fits to no
    /// weights, as it did before the layer was thinned.
    pub fn spread(&self, kept: &[bool], grid: Grid) -> GridParams {
        let (blank, _) = fit(grid, 1, &[0.0], &[false]);
        let mut next = 0;
        let source: Vec<(&GridParams, usize)> = kept
            .iter()
            .map(|&k| {
                if k {
                    next += 1;
                    (self, next - 1)
                } else {
                    (&blank, 0)
                }
            })
            .collect();
        match self {
            GridParams::Affine { .. } => GridParams::Affine {
                scales: source.iter().map(|&(p, g)| p.affine(g).0).collect(),
                zero_points: source.iter().map(|&(p, g)| p.affine(g).1).collect(),
            },
            GridParams::Sign { .. } => GridParams::Sign {
                alphas: source.iter().map(|&(p, g)| p.alpha(g)).collect(),
            },
        }
    }

    fn affine(&self, g: usize) -> (f32, u8) {
        match self {
            GridParams::Affine {
                scales,
                zero_points,
            } => (scales[g], zero_points[g]),
            GridParams::Sign { .. } => (1.0, 0),
        }
    }

    fn alpha(&self, g: usize) -> f32 {
        match self {
            GridParams::Sign { alphas } => alphas[g],
            GridParams::Affine { .. } => 0.0,
        }
    }

    /// Every group's value of every code: `levels` entries per group, group 0 first.
    pub fn table(&self, levels: usize) -> Vec<f32> {
        (0..self.groups())
            .flat_map(|g| (0..levels).map(move |c| (g, c as u8)))
            .map(|(g, c)| self.value(g, c))
            .collect()
    }
}

/// A grid fitted to one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Fitted {
    pub params: GridParams,
    /// One code per weight (meaningful where `kept`).
    pub codes: Vec<u8>,
    /// The weights that survive: the given mask, less what a ternary grid sets to zero.
    pub kept: Vec<bool>,
}

impl Fitted {
    /// The dense tensor the fit stands for (zero where not kept).
    pub fn dequantized(&self) -> Vec<f32> {
        let group_len = self.codes.len() / self.params.groups().max(1);
        self.codes
            .iter()
            .zip(&self.kept)
            .enumerate()
            .map(|(i, (&c, &k))| {
                if k {
                    self.params.value(i / group_len.max(1), c)
                } else {
                    0.0
                }
            })
            .collect()
    }
}

/// Fits `grid` to the kept weights of each of `groups` equal runs of `weights` and codes every
/// weight. `groups` must divide the length (1 = per tensor, output channels = per channel).
pub fn quantize(grid: Grid, groups: usize, weights: &[f32], kept: &[bool]) -> Fitted {
    let (params, narrowed) = fit(grid, groups, weights, kept);
    let group_len = weights.len() / groups.max(1);
    let codes = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| code(grid, &params, i / group_len.max(1), w))
        .collect();
    Fitted {
        params,
        codes,
        kept: narrowed.unwrap_or_else(|| kept.to_vec()),
    }
}

/// Each group's parameters, and for a ternary grid the mask narrowed by its zeros (`None`:
/// the mask as given).
fn fit(
    grid: Grid,
    groups: usize,
    weights: &[f32],
    kept: &[bool],
) -> (GridParams, Option<Vec<bool>>) {
    assert_eq!(weights.len(), kept.len(), "one mask entry per weight");
    let groups = groups.max(1);
    assert_eq!(weights.len() % groups, 0, "groups divide the tensor");
    let group_len = weights.len() / groups;
    let run = |g: usize| g * group_len..(g + 1) * group_len;
    match grid {
        Grid::Affine { bits } | Grid::Symmetric { bits } => {
            let (scales, zero_points) = (0..groups)
                .map(|g| affine_fit(grid, bits, &weights[run(g)], &kept[run(g)]))
                .unzip();
            (
                GridParams::Affine {
                    scales,
                    zero_points,
                },
                None,
            )
        }
        Grid::Binary => {
            let alphas = (0..groups)
                .map(|g| mean_abs(&weights[run(g)], &kept[run(g)]))
                .collect();
            (GridParams::Sign { alphas }, None)
        }
        Grid::Ternary => {
            let mut kept = kept.to_vec();
            let alphas = (0..groups)
                .map(|g| {
                    let (w, k) = (&weights[run(g)], &mut kept[run(g)]);
                    let delta = TERNARY_DELTA * mean_abs(w, k);
                    for (keep, &x) in k.iter_mut().zip(w) {
                        *keep &= x.abs() > delta;
                    }
                    mean_abs(w, k)
                })
                .collect();
            (GridParams::Sign { alphas }, Some(kept))
        }
    }
}

/// The code of weight `w` of `group` under fitted `params`.
#[inline]
pub fn code(grid: Grid, params: &GridParams, group: usize, w: f32) -> u8 {
    match params {
        GridParams::Affine {
            scales,
            zero_points,
        } => affine_code(grid, w, scales[group], zero_points[group]),
        GridParams::Sign { .. } => u8::from(w >= 0.0),
    }
}

/// Mean `|w|` over the kept weights (0 when none is kept).
fn mean_abs(w: &[f32], kept: &[bool]) -> f32 {
    let (sum, n) = w
        .iter()
        .zip(kept)
        .filter(|&(_, &k)| k)
        .fold((0.0f64, 0usize), |(s, n), (&x, _)| {
            (s + x.abs() as f64, n + 1)
        });
    if n == 0 { 0.0 } else { (sum / n as f64) as f32 }
}

/// Scale and zero point of one group. A group with nothing but zeros kept gets scale 1 (any
/// scale decodes its zeros exactly).
fn affine_fit(grid: Grid, bits: u8, w: &[f32], kept: &[bool]) -> (f32, u8) {
    let (lo, hi) = w
        .iter()
        .zip(kept)
        .filter(|&(_, &k)| k)
        .fold((0.0f32, 0.0f32), |(lo, hi), (&x, _)| (lo.min(x), hi.max(x)));
    match grid {
        Grid::Symmetric { .. } => {
            let q = ((1u32 << (bits - 1)) - 1).max(1) as f32;
            let m = lo.abs().max(hi);
            let scale = if m > 0.0 { m / q } else { 1.0 };
            (scale, 1u8 << (bits - 1))
        }
        _ => {
            let top = ((1u32 << bits) - 1) as f32;
            let span = hi - lo;
            if span <= 0.0 {
                return (1.0, 0);
            }
            let zero = (-lo / (span / top)).round().clamp(0.0, top);
            // Rounding the zero point shifts the grid by up to half a step: widen the step
            // so both ends stay on it (a zero point at an end leaves that end within half a
            // step of zero anyway).
            let mut scale = span / top;
            if zero > 0.0 {
                scale = scale.max(-lo / zero);
            }
            if zero < top {
                scale = scale.max(hi / (top - zero));
            }
            (scale, zero as u8)
        }
    }
}

/// The nearest code to `w` on an affine grid, clamped to the grid (a symmetric grid does not
/// use code 0, so its levels mirror each other).
#[inline]
fn affine_code(grid: Grid, w: f32, scale: f32, zero: u8) -> u8 {
    let top = (grid.levels() - 1) as f32;
    let bottom = if matches!(grid, Grid::Symmetric { .. }) {
        1.0
    } else {
        0.0
    };
    ((w / scale).round() + zero as f32).clamp(bottom, top) as u8
}

/// Fake quantization for quantization-aware training: `out` = the values `shadow` would be
/// stored as under `grid` (zero where not kept), exactly as [`quantize`] then
/// [`Fitted::dequantized`] give them.
///
/// Runs every training step, so it writes `out` directly rather than building the codes.
pub fn fake_quantize(grid: Grid, groups: usize, shadow: &[f32], kept: &[bool], out: &mut [f32]) {
    let (params, narrowed) = fit(grid, groups, shadow, kept);
    let kept = narrowed.as_deref().unwrap_or(kept);
    let group_len = (shadow.len() / groups.max(1)).max(1);
    for (i, ((o, &w), &k)) in out.iter_mut().zip(shadow).zip(kept).enumerate() {
        let g = i / group_len;
        *o = if k {
            params.value(g, code(grid, &params, g, w))
        } else {
            0.0
        };
    }
}

/// Whether the straight-through estimator passes a gradient to a shadow weight of this value:
/// inside the grid's clip range the quantizer counts as the identity; outside it the gradient
/// is zero (BinaryConnect's `1_{|w| <= 1}`). Affine grids span every kept weight, so nothing
/// kept is outside them.
#[inline]
pub fn passes_gradient(grid: Grid, shadow: f32) -> bool {
    match grid {
        Grid::Affine { .. } | Grid::Symmetric { .. } => true,
        Grid::Binary | Grid::Ternary => shadow.abs() <= SIGN_CLIP,
    }
}

/// Where training keeps shadow weights of a sign grid after an update (BinaryConnect clips
/// them so they cannot drift beyond where the straight-through gradient reaches).
#[inline]
pub fn clip_shadow(grid: Grid, shadow: f32) -> f32 {
    match grid {
        Grid::Affine { .. } | Grid::Symmetric { .. } => shadow,
        Grid::Binary | Grid::Ternary => shadow.clamp(-SIGN_CLIP, SIGN_CLIP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(n: usize) -> Vec<bool> {
        vec![true; n]
    }

    #[test]
    fn affine_zero_is_exactly_representable_and_pruned_weights_decode_to_zero() {
        let w = [-0.3f32, 0.0, 0.11, 0.7, -0.05, 0.2];
        let kept = [true, false, true, true, true, false];
        for grid in [
            Grid::Affine { bits: 3 },
            Grid::Symmetric { bits: 3 },
            Grid::Affine { bits: 8 },
        ] {
            let f = quantize(grid, 1, &w, &kept);
            let GridParams::Affine { zero_points, .. } = &f.params else {
                panic!("affine params")
            };
            assert_eq!(f.params.value(0, zero_points[0]), 0.0, "{grid:?}");
            let d = f.dequantized();
            assert_eq!(d[1], 0.0);
            assert_eq!(d[5], 0.0);
        }
    }

    #[test]
    fn symmetric_levels_are_symmetric_and_never_use_code_zero() {
        let w = [-1.0f32, -0.5, 0.25, 0.9];
        let f = quantize(Grid::Symmetric { bits: 2 }, 1, &w, &all(4));
        assert!(f.codes.iter().all(|&c| (1..=3).contains(&c)));
        assert_eq!(f.params.value(0, 1), -f.params.value(0, 3));
        assert_eq!(f.dequantized(), vec![-1.0, -1.0, 0.0, 1.0]);
    }

    #[test]
    fn binary_is_sign_times_mean_magnitude_per_group() {
        let w = [0.2f32, -0.4, 0.6, -1.0, 3.0, 1.0];
        let f = quantize(Grid::Binary, 2, &w, &all(6));
        assert_eq!(
            f.params,
            GridParams::Sign {
                alphas: vec![0.4, 5.0 / 3.0]
            }
        );
        assert_eq!(f.dequantized()[..3], [0.4, -0.4, 0.4]);
        assert!(f.kept.iter().all(|&k| k));
    }

    #[test]
    fn ternary_prunes_below_seven_tenths_of_the_mean_magnitude() {
        // mean |w| = 0.5, delta = 0.35: 0.1 and -0.3 go to zero, alpha = mean(0.6, 0.9, 0.6).
        let w = [0.1f32, -0.3, 0.6, -0.9, 0.6, 0.0];
        let kept = [true, true, true, true, true, false];
        let f = quantize(Grid::Ternary, 1, &w, &kept);
        assert_eq!(f.kept, vec![false, false, true, true, true, false]);
        let GridParams::Sign { alphas } = &f.params else {
            panic!()
        };
        assert!((alphas[0] - 0.7).abs() < 1e-6);
        let d = f.dequantized();
        assert_eq!(d[0], 0.0);
        assert_eq!(d[3], -alphas[0]);
    }

    #[test]
    fn straight_through_is_identity_inside_the_clip_range_and_zero_outside() {
        for g in [Grid::Binary, Grid::Ternary] {
            assert!(passes_gradient(g, 0.0));
            assert!(passes_gradient(g, -SIGN_CLIP));
            assert!(passes_gradient(g, 0.999));
            assert!(!passes_gradient(g, 1.001));
            assert!(!passes_gradient(g, -7.0));
            assert_eq!(clip_shadow(g, 3.0), SIGN_CLIP);
        }
        assert!(passes_gradient(Grid::Affine { bits: 4 }, 50.0));
        assert_eq!(clip_shadow(Grid::Symmetric { bits: 4 }, 50.0), 50.0);
    }

    #[test]
    fn empty_and_all_zero_groups_decode_to_zero() {
        let w = [0.0f32; 4];
        for grid in [
            Grid::Affine { bits: 4 },
            Grid::Symmetric { bits: 4 },
            Grid::Binary,
            Grid::Ternary,
        ] {
            let f = quantize(grid, 2, &w, &all(4));
            assert!(f.dequantized().iter().all(|&v| v == 0.0), "{grid:?}");
            let none = quantize(grid, 1, &w, &[false; 4]);
            assert!(none.dequantized().iter().all(|&v| v == 0.0));
        }
    }

    proptest! {
        /// The error of a uniform grid is at most half a step for every kept weight (the grid
        /// spans them all), for either kind, per tensor or per channel.
        #[test]
        fn uniform_error_is_at_most_half_a_step(
            w in proptest::collection::vec(-5.0f32..5.0, 1..64),
            bits in 2u8..=8,
            symmetric in any::<bool>(),
            per_group in any::<bool>(),
        ) {
            let groups = if per_group && w.len() % 2 == 0 { 2 } else { 1 };
            let grid = if symmetric { Grid::Symmetric { bits } } else { Grid::Affine { bits } };
            let f = quantize(grid, groups, &w, &all(w.len()));
            let GridParams::Affine { scales, .. } = &f.params else { panic!() };
            let d = f.dequantized();
            let group_len = w.len() / groups;
            for (i, (&x, &y)) in w.iter().zip(&d).enumerate() {
                let step = scales[i / group_len];
                prop_assert!((x - y).abs() <= 0.5 * step * (1.0 + 1e-5) + 1e-7,
                    "w {x} -> {y}, step {step}");
            }
        }

        /// Training's fake quantization gives bit for bit the values the codec stores.
        #[test]
        fn fake_quantize_is_the_stored_values(
            w in proptest::collection::vec(-2.0f32..2.0, 2..64),
            kind in 0usize..4,
            bits in 2u8..=8,
            per_group in any::<bool>(),
        ) {
            let grid = [Grid::Affine { bits }, Grid::Symmetric { bits }, Grid::Binary, Grid::Ternary][kind];
            let groups = if per_group && w.len() % 2 == 0 { 2 } else { 1 };
            let kept: Vec<bool> = (0..w.len()).map(|i| i % 5 != 0).collect();
            let mut out = vec![f32::NAN; w.len()];
            fake_quantize(grid, groups, &w, &kept, &mut out);
            let stored = quantize(grid, groups, &w, &kept).dequantized();
            prop_assert!(out.iter().zip(&stored).all(|(a, b)| a.to_bits() == b.to_bits()));
        }

        /// Binary and ternary: the error is at most `|w| + alpha` and the decoded sign follows
        /// the weight's wherever a weight is kept.
        #[test]
        fn sign_grids_keep_the_sign(
            w in proptest::collection::vec(-2.0f32..2.0, 1..64),
            ternary in any::<bool>(),
        ) {
            let grid = if ternary { Grid::Ternary } else { Grid::Binary };
            let f = quantize(grid, 1, &w, &all(w.len()));
            for ((&x, &y), &k) in w.iter().zip(&f.dequantized()).zip(&f.kept) {
                if k && x != 0.0 {
                    prop_assert_eq!(x > 0.0, y > 0.0);
                }
                if !k {
                    prop_assert_eq!(y, 0.0);
                }
            }
        }
    }
}

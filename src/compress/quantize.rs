//! The quantizers a layer's surviving weights can be stored with: k-means weight sharing (the
//! paper, its codebook initialisation is [`super::kmeans::Init`]), uniform INT-n grids (affine
//! or symmetric), and binary and ternary weights. The fixed grids' arithmetic is in
//! [`crate::model::quant`], shared with quantization-aware training. A new quantizer is a
//! variant here, its arm in `pipeline::layer::LayerState::share`, its file section if a
//! reader needs other parameters than a codebook, and its label (see `docs/architecture.md`).

use serde::{Deserialize, Serialize};

use crate::model::quant::Grid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantizer {
    /// 1-D k-means over the layer's survivors: `2^bits` shared values, a codebook index per
    /// weight (Han et al.'s weight sharing).
    #[default]
    #[serde(rename = "kmeans")]
    KMeans,
    /// `2^bits` evenly spaced levels from the lowest to the highest weight, zero among them
    /// (linear "INT-n" quantization with a scale and a zero point).
    #[serde(rename = "uniform")]
    Uniform,
    /// Evenly spaced levels symmetric about zero (`-q..=q` times a scale; zero point fixed).
    #[serde(rename = "symmetric")]
    Symmetric,
    /// `sign(w) * alpha`: one bit per survivor.
    #[serde(rename = "binary")]
    Binary,
    /// `{-alpha, 0, +alpha}`: weights near zero are pruned, the rest keep one bit of sign.
    #[serde(rename = "ternary")]
    Ternary,
}

impl Quantizer {
    pub const ALL: [Quantizer; 5] = [
        Quantizer::KMeans,
        Quantizer::Uniform,
        Quantizer::Symmetric,
        Quantizer::Binary,
        Quantizer::Ternary,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Quantizer::KMeans => "kmeans",
            Quantizer::Uniform => "uniform",
            Quantizer::Symmetric => "symmetric",
            Quantizer::Binary => "binary",
            Quantizer::Ternary => "ternary",
        }
    }

    /// The fixed grid this quantizer fits at `bits` (`None`: k-means, whose levels are learnt).
    pub fn grid(self, bits: u8) -> Option<Grid> {
        match self {
            Quantizer::KMeans => None,
            Quantizer::Uniform => Some(Grid::Affine { bits }),
            Quantizer::Symmetric => Some(Grid::Symmetric { bits }),
            Quantizer::Binary => Some(Grid::Binary),
            Quantizer::Ternary => Some(Grid::Ternary),
        }
    }

    /// The bit widths a plan may give it.
    pub fn bits_range(self) -> std::ops::RangeInclusive<u8> {
        match self {
            Quantizer::KMeans => 1..=8,
            Quantizer::Uniform | Quantizer::Symmetric => 2..=8,
            Quantizer::Binary | Quantizer::Ternary => 1..=1,
        }
    }

    /// The one width a sign quantizer stores (one bit of sign per survivor).
    pub fn fixed_bits(self) -> Option<u8> {
        let r = self.bits_range();
        (r.start() == r.end()).then_some(*r.start())
    }

    /// Whether a plan may fit it per output channel (k-means shares one codebook per layer).
    pub fn allows_per_channel(self) -> bool {
        self != Quantizer::KMeans
    }

    /// The next quantizer in [`Quantizer::ALL`], for a key that cycles through them.
    pub fn next(self) -> Quantizer {
        let i = Quantizer::ALL.iter().position(|&q| q == self).unwrap_or(0);
        Quantizer::ALL[(i + 1) % Quantizer::ALL.len()]
    }
}

impl std::str::FromStr for Quantizer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Quantizer::ALL
            .into_iter()
            .find(|q| q.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Quantizer::ALL.iter().map(|q| q.name()).collect();
                format!(
                    "unknown quantizer '{s}' (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_toml_spelling() {
        #[derive(Serialize, Deserialize)]
        struct T {
            q: Quantizer,
        }
        for q in Quantizer::ALL {
            let text = toml::to_string(&T { q }).unwrap();
            assert_eq!(text.trim(), format!("q = \"{}\"", q.name()));
            assert_eq!(q.name().parse::<Quantizer>(), Ok(q));
        }
        assert!(toml::from_str::<T>("q = \"int8\"").is_err());
        assert!("int8".parse::<Quantizer>().unwrap_err().contains("uniform"));
    }

    #[test]
    fn cycling_visits_every_quantizer_once() {
        let mut q = Quantizer::KMeans;
        let mut seen = vec![];
        for _ in 0..Quantizer::ALL.len() {
            seen.push(q);
            q = q.next();
        }
        assert_eq!(q, Quantizer::KMeans);
        assert_eq!(seen, Quantizer::ALL);
        assert_eq!(Quantizer::Binary.fixed_bits(), Some(1));
        assert_eq!(Quantizer::Uniform.fixed_bits(), None);
    }
}

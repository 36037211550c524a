//! The quantizers a layer's surviving weights can be stored with. Today one: k-means weight
//! sharing (the paper), whose codebook initialisation is [`super::kmeans::Init`]. A new
//! quantizer is a variant here, its arm in `pipeline::layer::LayerState::share`, and its label
//! (see `docs/architecture.md`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantizer {
    /// 1-D k-means over the layer's survivors: `2^bits` shared values, a codebook index per
    /// weight (Han et al.'s weight sharing).
    #[default]
    #[serde(rename = "kmeans")]
    KMeans,
}

impl Quantizer {
    pub fn name(self) -> &'static str {
        match self {
            Quantizer::KMeans => "kmeans",
        }
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
        let text = toml::to_string(&T {
            q: Quantizer::KMeans,
        })
        .unwrap();
        assert_eq!(text.trim(), format!("q = \"{}\"", Quantizer::KMeans.name()));
        assert!(toml::from_str::<T>("q = \"uniform\"").is_err());
    }
}

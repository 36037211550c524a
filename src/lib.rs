//! dcx — Deep Compression Explorer.
//!
//! Train small MNIST networks with Candle, then prune, weight-share and Huffman-code them
//! (Han, Mao & Dally, ICLR 2016) and see what each choice costs and saves.

pub mod analysis;
pub mod commands;
pub mod compress;
pub mod data;
pub mod experiment;
pub mod explore;
pub mod format;
pub mod fsutil;
pub mod model;
pub mod palette;
pub mod pipeline;
pub mod plot;
pub mod tui;

/// Cases for the parsers' fuzz properties: `default` in ordinary runs (CI), or
/// `PROPTEST_CASES` for a long run (`PROPTEST_CASES=1000000 cargo test --release --lib
/// never_panic`).
#[cfg(test)]
pub(crate) fn fuzz_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
/// The fuzz targets' entry points: built for `cargo fuzz` (`fuzz/`) and the unit tests only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod model;
pub mod palette;
pub mod pipeline;
pub mod plot;
pub mod tui;

#[cfg(test)]
mod testing;

//! The relative sparse index: the positions of a pruned layer's surviving weights (indices into
//! the flattened weight tensor) stored as gaps of `b` bits, with filler entries for gaps too
//! large for `b` bits.
//!
//! With index width `b` (1..=16; the paper uses 8 for conv and 5 for fc layers), gap symbols
//! are `0..2^b`, and `M = 2^b - 1` is the largest gap one symbol can express:
//!
//! - walk the surviving positions in increasing order, starting from `prev = -1`;
//! - for each position `p`, let `d = p - prev` (at least 1);
//! - while `d > M`, emit the filler symbol 0 — "advance M positions, no weight here" — and
//!   subtract M from `d`;
//! - emit `d` (now 1..=M) and set `prev = p`.
//!
//! Example, `b = 2` (`M = 3`), positions `[0, 5, 6]`: 0 is 1 past -1 → `1`; 5 is 5 past 0 →
//! filler `0` (advance 3) then `2`; 6 is 1 past 5 → `1`. Symbols `[1, 0, 2, 1]`, one filler.
//!
//! Fillers live only in the gap stream: the weight stream (cluster indices) has exactly one
//! entry per surviving weight, where the paper stores a zero weight for every filler. So a
//! gap stream of `s` symbols with `f` fillers describes `s - f` weights. A stream never ends
//! with a filler, and each filler must leave room for the entry that follows it; the decoder
//! rejects streams that break either rule, which makes the encoding of a position list unique.
//!
//! Callers choose `b`; nothing here searches for the best one.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SparseIndexError {
    #[error("index bits {0} out of range 1..=16")]
    Bits(u8),
    #[error("positions must be strictly increasing (entry {0} is not)")]
    NotIncreasing(usize),
    #[error("gap symbol {symbol} at {index} out of range for {bits}-bit gaps")]
    Symbol { index: usize, symbol: u16, bits: u8 },
    #[error("gaps lead to position {position}, past the layer's {len} weights")]
    PastEnd { position: u64, len: usize },
    #[error("gap stream ends with a filler")]
    TrailingFiller,
    #[error("a layer of {0} weights has positions beyond u32")]
    LayerTooLarge(usize),
}

/// The widest index this module supports: gap symbols must fit a `u16`.
pub(crate) const MAX_INDEX_BITS: u8 = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GapStream {
    /// Gap symbols, fillers (0) included.
    pub symbols: Vec<u16>,
    /// How many of `symbols` are fillers.
    pub fillers: usize,
}

impl GapStream {
    /// Surviving weights described: symbols that are not fillers.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        // Saturating: the fields are public, so a hand-built stream may be inconsistent.
        self.symbols.len().saturating_sub(self.fillers)
    }

    /// Appends gap `d` (>= 1) to the stream, fillers first.
    fn push_gap(&mut self, mut d: u64, m: u64) {
        // Whole runs of fillers at once: a b = 1 index over a long empty stretch has many.
        let fillers = (d - 1) / m;
        if fillers > 0 {
            self.symbols
                .resize(self.symbols.len() + fillers as usize, 0);
            self.fillers += fillers as usize;
            d -= fillers * m;
        }
        self.symbols.push(d as u16);
    }
}

/// `M`, the largest gap one symbol expresses.
fn max_gap(index_bits: u8) -> Result<u64, SparseIndexError> {
    if !(1..=MAX_INDEX_BITS).contains(&index_bits) {
        return Err(SparseIndexError::Bits(index_bits));
    }
    Ok((1u64 << index_bits) - 1)
}

#[cfg(test)]
fn checked_max_gap(index_bits: u8) -> u64 {
    match max_gap(index_bits) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    }
}

/// Gap symbols for strictly increasing `positions` with `index_bits`-bit gaps.
pub(crate) fn encode_positions(
    positions: &[u32],
    index_bits: u8,
) -> Result<GapStream, SparseIndexError> {
    let m = max_gap(index_bits)?;
    let mut stream = GapStream {
        symbols: Vec::with_capacity(positions.len()),
        fillers: 0,
    };
    // prev + 1, so that prev = -1 needs no signed arithmetic.
    let mut next = 0u64;
    for (i, &p) in positions.iter().enumerate() {
        let p = u64::from(p);
        if p < next {
            return Err(SparseIndexError::NotIncreasing(i));
        }
        stream.push_gap(p + 1 - next, m);
        next = p + 1;
    }
    Ok(stream)
}

/// Gap symbols for the `true` entries of a dense mask (position = index in the mask).
///
/// # Panics
/// If `index_bits` is outside 1..=16: it is the caller's choice, not data.
#[cfg(test)]
pub(crate) fn encode_mask(mask: &[bool], index_bits: u8) -> GapStream {
    let m = checked_max_gap(index_bits);
    let mut stream = GapStream::default();
    let mut next = 0u64;
    for (p, _) in mask.iter().enumerate().filter(|&(_, &keep)| keep) {
        let p = p as u64;
        stream.push_gap(p + 1 - next, m);
        next = p + 1;
    }
    stream
}

/// Positions from gap symbols, for a layer of `len` weights. Errors — never panics — on a
/// symbol outside `0..2^index_bits`, a position (or a filler's landing point) at or past
/// `len`, a trailing filler, or `len` beyond what `u32` positions can address. Allocates at
/// most one `u32` per symbol given.
pub(crate) fn decode_positions(
    symbols: &[u16],
    index_bits: u8,
    len: usize,
) -> Result<Vec<u32>, SparseIndexError> {
    let m = max_gap(index_bits)?;
    if len as u64 > 1u64 << 32 {
        return Err(SparseIndexError::LayerTooLarge(len));
    }
    if symbols.last() == Some(&0) {
        return Err(SparseIndexError::TrailingFiller);
    }
    let limit = len as u64;
    let mut positions = Vec::with_capacity(symbols.len().min(len));
    // prev + 1: the lowest position the next entry may take. Stays <= 2^32 + M, no overflow.
    let mut next = 0u64;
    for (index, &symbol) in symbols.iter().enumerate() {
        let s = u64::from(symbol);
        if s > m {
            return Err(SparseIndexError::Symbol {
                index,
                symbol,
                bits: index_bits,
            });
        }
        if s == 0 {
            next += m;
            // The entry this filler leads to could be no earlier than `next`.
            if next >= limit {
                return Err(SparseIndexError::PastEnd {
                    position: next,
                    len,
                });
            }
        } else {
            let p = next + s - 1;
            if p >= limit {
                return Err(SparseIndexError::PastEnd { position: p, len });
            }
            positions.push(p as u32);
            next = p + 1;
        }
    }
    Ok(positions)
}

/// Fillers [`encode_mask`] would emit, without allocating: cheap enough to call on every
/// scrub of the index width in the UI.
///
/// # Panics
/// If `index_bits` is outside 1..=16.
#[cfg(test)]
pub(crate) fn count_fillers(mask: &[bool], index_bits: u8) -> usize {
    let m = checked_max_gap(index_bits);
    let mut next = 0u64;
    let mut fillers = 0u64;
    for (p, _) in mask.iter().enumerate().filter(|&(_, &keep)| keep) {
        let p = p as u64;
        fillers += (p - next) / m;
        next = p + 1;
    }
    fillers as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn positions_of(mask: &[bool]) -> Vec<u32> {
        (0..mask.len() as u32)
            .filter(|&i| mask[i as usize])
            .collect()
    }

    #[test]
    fn hand_checked_examples() {
        // b = 2, M = 3: 0 -> d = 1; 5 -> d = 5 = 3 (filler) + 2; 6 -> d = 1.
        let g = encode_positions(&[0, 5, 6], 2).unwrap();
        assert_eq!(g.symbols, vec![1, 0, 2, 1]);
        assert_eq!(g.fillers, 1);
        assert_eq!(g.entries(), 3);
        assert_eq!(decode_positions(&g.symbols, 2, 7).unwrap(), vec![0, 5, 6]);
        assert_eq!(
            decode_positions(&g.symbols, 2, 6),
            Err(SparseIndexError::PastEnd {
                position: 6,
                len: 6
            })
        );
        let mask = [true, false, false, false, false, true, true];
        assert_eq!(encode_mask(&mask, 2), g);
        assert_eq!(count_fillers(&mask, 2), 1);

        // Exactly M apart needs no filler; M + 1 needs one.
        assert_eq!(encode_positions(&[2], 2).unwrap().symbols, vec![3]);
        assert_eq!(encode_positions(&[3], 2).unwrap().symbols, vec![0, 1]);
        // b = 3, M = 7: 20 is 21 past -1 = 7 + 7 + 7.
        let g = encode_positions(&[20], 3).unwrap();
        assert_eq!(g.symbols, vec![0, 0, 7]);
        assert_eq!(g.fillers, 2);
        assert_eq!(decode_positions(&g.symbols, 3, 21).unwrap(), vec![20]);
        // b = 1, M = 1: every skipped position is a filler.
        let g = encode_positions(&[0, 3], 1).unwrap();
        assert_eq!(g.symbols, vec![1, 0, 0, 1]);
        assert_eq!(decode_positions(&g.symbols, 1, 4).unwrap(), vec![0, 3]);
        // b = 16: the full u16 range is in use.
        let g = encode_positions(&[65534, 65535 + 65534 + 65535], 16).unwrap();
        assert_eq!(g.symbols, vec![65535, 0, 65535]);
        assert_eq!(
            decode_positions(&g.symbols, 16, 200_000).unwrap(),
            vec![65534, 196_604]
        );

        assert_eq!(encode_positions(&[], 5).unwrap(), GapStream::default());
        assert_eq!(decode_positions(&[], 5, 0), Ok(vec![]));
        assert_eq!(count_fillers(&[], 5), 0);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            encode_positions(&[3, 3], 4),
            Err(SparseIndexError::NotIncreasing(1))
        );
        assert_eq!(
            encode_positions(&[0, 9, 4], 4),
            Err(SparseIndexError::NotIncreasing(2))
        );
        assert_eq!(encode_positions(&[1], 0), Err(SparseIndexError::Bits(0)));
        assert_eq!(encode_positions(&[1], 17), Err(SparseIndexError::Bits(17)));

        assert_eq!(
            decode_positions(&[1, 8], 3, 100),
            Err(SparseIndexError::Symbol {
                index: 1,
                symbol: 8,
                bits: 3
            })
        );
        assert_eq!(
            decode_positions(&[1], 0, 100),
            Err(SparseIndexError::Bits(0))
        );
        assert!(matches!(
            decode_positions(&[5, 5], 3, 8),
            Err(SparseIndexError::PastEnd { position: 9, .. })
        ));
        assert_eq!(
            decode_positions(&[1, 0], 3, 100),
            Err(SparseIndexError::TrailingFiller)
        );
        // A filler that leaves no room for the entry after it.
        assert_eq!(
            decode_positions(&[0, 1], 2, 3),
            Err(SparseIndexError::PastEnd {
                position: 3,
                len: 3
            })
        );
        assert_eq!(decode_positions(&[0, 1], 2, 4), Ok(vec![3]));
        if let Ok(len) = usize::try_from((1u64 << 32) + 1) {
            assert_eq!(
                decode_positions(&[1], 8, len),
                Err(SparseIndexError::LayerTooLarge(len))
            );
        }
        if let Ok(len) = usize::try_from(1u64 << 32) {
            let g = encode_positions(&[u32::MAX], 16).unwrap();
            assert_eq!(decode_positions(&g.symbols, 16, len), Ok(vec![u32::MAX]));
        }
    }

    #[test]
    #[should_panic(expected = "index bits 0")]
    fn encode_mask_rejects_a_zero_width() {
        encode_mask(&[true], 0);
    }

    proptest! {
        #[test]
        fn masks_round_trip_and_fillers_agree(
            density in 1u32..=100,
            raw in proptest::collection::vec(0u32..1000, 0..4000),
            bits in 1u8..=8,
        ) {
            // Low densities give long zero runs and several fillers in a row.
            let mask: Vec<bool> = raw.iter().map(|&r| r < density * 5).collect();
            let positions = positions_of(&mask);
            let g = encode_mask(&mask, bits);
            prop_assert_eq!(&g, &encode_positions(&positions, bits).unwrap());
            prop_assert_eq!(g.entries(), positions.len());
            prop_assert_eq!(g.fillers, count_fillers(&mask, bits));
            prop_assert_eq!(g.symbols.iter().filter(|&&s| s == 0).count(), g.fillers);
            prop_assert!(g.symbols.iter().all(|&s| u32::from(s) < 1 << bits));
            prop_assert_eq!(decode_positions(&g.symbols, bits, mask.len()).unwrap(), positions.clone());
            // The stream is tight: the layer can end right after the last survivor.
            if let Some(&last) = positions.last() {
                prop_assert!(decode_positions(&g.symbols, bits, last as usize + 1).is_ok());
                prop_assert!(decode_positions(&g.symbols, bits, last as usize).is_err());
            }
        }

        #[test]
        fn long_runs_and_a_late_first_position(
            first in 0u32..100_000,
            gaps in proptest::collection::vec(1u32..20_000, 0..20),
            bits in 1u8..=16,
        ) {
            let mut positions = vec![first];
            for g in gaps {
                positions.push(positions.last().unwrap() + g);
            }
            let g = encode_positions(&positions, bits).unwrap();
            let m = (1u64 << bits) - 1;
            let expected: u64 = positions
                .iter()
                .scan(-1i64, |prev, &p| {
                    let d = (i64::from(p) - *prev) as u64;
                    *prev = i64::from(p);
                    Some((d - 1) / m)
                })
                .sum();
            prop_assert_eq!(g.fillers as u64, expected);
            let len = *positions.last().unwrap() as usize + 1;
            prop_assert_eq!(decode_positions(&g.symbols, bits, len).unwrap(), positions);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn decoding_garbage_never_panics(
            symbols in proptest::collection::vec(prop_oneof![any::<u16>(), 0u16..4], 0..200),
            bits in 0u8..20,
            len in 0usize..2000,
        ) {
            if let Ok(positions) = decode_positions(&symbols, bits, len) {
                prop_assert_eq!(positions.len(), symbols.iter().filter(|&&s| s != 0).count());
                prop_assert!(positions.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(positions.iter().all(|&p| (p as usize) < len));
                prop_assert_eq!(encode_positions(&positions, bits).unwrap().symbols, symbols);
            }
        }
    }
}

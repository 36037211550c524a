//! The relative sparse index: surviving positions stored as gaps of `b` bits.
//!
//! With `M = 2^b - 1`, walk the surviving positions in increasing order from `prev = -1`; for
//! each position `p` let `d = p - prev`. While `d > M`, emit the filler symbol 0 ("advance M
//! positions, no weight here") and subtract M; then emit `d` (1..=M). Fillers live only in the
//! gap stream: the weight stream has exactly one entry per surviving weight, where the paper
//! stores a zero weight for every filler.

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SparseIndexError {
    #[error("index bits {0} out of range 1..=16")]
    Bits(u8),
    #[error("positions must be strictly increasing (at entry {0})")]
    NotIncreasing(usize),
    #[error("gap symbol {symbol} out of range for {bits}-bit gaps")]
    Symbol { symbol: u16, bits: u8 },
    #[error("gaps lead to position {position}, past the layer's {len} weights")]
    PastEnd { position: u64, len: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GapStream {
    pub symbols: Vec<u16>,
    pub fillers: usize,
}

fn max_gap(index_bits: u8) -> Result<u64, SparseIndexError> {
    if !(1..=16).contains(&index_bits) {
        return Err(SparseIndexError::Bits(index_bits));
    }
    Ok((1u64 << index_bits) - 1)
}

pub fn encode_positions(positions: &[u32], index_bits: u8) -> Result<GapStream, SparseIndexError> {
    let m = max_gap(index_bits)?;
    let mut symbols = Vec::with_capacity(positions.len());
    let mut fillers = 0;
    let mut prev: i64 = -1;
    for (i, &p) in positions.iter().enumerate() {
        if p as i64 <= prev {
            return Err(SparseIndexError::NotIncreasing(i));
        }
        let mut d = (p as i64 - prev) as u64;
        while d > m {
            symbols.push(0);
            fillers += 1;
            d -= m;
        }
        symbols.push(d as u16);
        prev = p as i64;
    }
    Ok(GapStream { symbols, fillers })
}

/// Gap stream of the `true` entries of a dense mask.
pub fn encode_mask(mask: &[bool], index_bits: u8) -> Result<GapStream, SparseIndexError> {
    let positions: Vec<u32> = (0..mask.len() as u32)
        .filter(|&i| mask[i as usize])
        .collect();
    encode_positions(&positions, index_bits)
}

pub fn decode_positions(
    symbols: &[u16],
    index_bits: u8,
    len: usize,
) -> Result<Vec<u32>, SparseIndexError> {
    let m = max_gap(index_bits)?;
    let mut positions = Vec::with_capacity(symbols.len().min(len));
    let mut prev: i64 = -1;
    for &s in symbols {
        if s as u64 > m {
            return Err(SparseIndexError::Symbol {
                symbol: s,
                bits: index_bits,
            });
        }
        let step = if s == 0 { m } else { s as u64 };
        let at = prev + step as i64;
        // A filler may not carry past the end either: the next entry would be out of range.
        if at as u64 >= len as u64 {
            return Err(SparseIndexError::PastEnd {
                position: at as u64,
                len,
            });
        }
        prev = at;
        if s != 0 {
            positions.push(at as u32);
        }
    }
    Ok(positions)
}

/// Fillers `encode_mask` would insert, without allocating: cheap enough to call on every
/// scrub of the index width.
pub fn count_fillers(mask: &[bool], index_bits: u8) -> usize {
    let Ok(m) = max_gap(index_bits) else {
        return 0;
    };
    let mut prev: i64 = -1;
    let mut fillers = 0;
    for (i, &keep) in mask.iter().enumerate() {
        if keep {
            let d = (i as i64 - prev) as u64;
            fillers += ((d - 1) / m) as usize;
            prev = i as i64;
        }
    }
    fillers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_checked_example() {
        // b = 2, M = 3: 0 -> d=1; 5 -> d=5 = 3 (filler) + 2; 6 -> d=1.
        let g = encode_positions(&[0, 5, 6], 2).unwrap();
        assert_eq!(g.symbols, vec![1, 0, 2, 1]);
        assert_eq!(g.fillers, 1);
        assert_eq!(decode_positions(&g.symbols, 2, 7).unwrap(), vec![0, 5, 6]);
        // Exactly M apart needs no filler; M + 1 needs one.
        assert_eq!(encode_positions(&[2], 2).unwrap().symbols, vec![3]);
        assert_eq!(encode_positions(&[3], 2).unwrap().symbols, vec![0, 1]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(
            encode_positions(&[3, 3], 4),
            Err(SparseIndexError::NotIncreasing(1))
        );
        assert_eq!(encode_positions(&[1], 0), Err(SparseIndexError::Bits(0)));
        assert!(matches!(
            decode_positions(&[9], 3, 100),
            Err(SparseIndexError::Symbol { .. })
        ));
        assert!(matches!(
            decode_positions(&[5, 5], 3, 8),
            Err(SparseIndexError::PastEnd { .. })
        ));
        assert!(decode_positions(&[0, 0, 0], 1, 2).is_err());
    }

    proptest! {
        #[test]
        fn round_trip_and_filler_count(
            mask in proptest::collection::vec(prop_oneof![9 => Just(false), 1 => Just(true)], 0..3000),
            bits in 1u8..=8,
        ) {
            let g = encode_mask(&mask, bits).unwrap();
            let positions: Vec<u32> = (0..mask.len() as u32).filter(|&i| mask[i as usize]).collect();
            prop_assert_eq!(g.symbols.len(), positions.len() + g.fillers);
            prop_assert_eq!(g.fillers, count_fillers(&mask, bits));
            prop_assert_eq!(g.symbols.iter().filter(|&&s| s == 0).count(), g.fillers);
            prop_assert_eq!(decode_positions(&g.symbols, bits, mask.len()).unwrap(), positions);
        }

        #[test]
        fn long_runs_of_zeros(first in 0u32..5000, gaps in proptest::collection::vec(1u32..2000, 0..20), bits in 1u8..=6) {
            let mut positions = vec![first];
            for g in gaps {
                positions.push(positions.last().unwrap() + g);
            }
            let g = encode_positions(&positions, bits).unwrap();
            let len = *positions.last().unwrap() as usize + 1;
            prop_assert_eq!(decode_positions(&g.symbols, bits, len).unwrap(), positions);
        }

        #[test]
        fn decoding_garbage_never_panics(symbols in proptest::collection::vec(any::<u16>(), 0..100), bits in 0u8..20, len in 0usize..1000) {
            let _ = decode_positions(&symbols, bits, len);
        }
    }
}

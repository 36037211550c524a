//! Canonical, length-limited Huffman codes over small alphabets (cluster indices, gap symbols).
//!
//! Code lengths come from the package-merge algorithm, which gives the optimal prefix code
//! under a length limit (plain Huffman when the limit does not bind). Codes are canonical —
//! assigned in order of (length, symbol) — so a code is fully described by its lengths.

use super::bits::{BitReader, BitWriter, BitsError};

/// Largest alphabet a code (and a serialised table) may have.
pub const MAX_ALPHABET: usize = 4096;
/// Longest code a table may declare.
pub const MAX_CODE_LEN: u8 = 24;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("symbol {0} has no code")]
    NoCode(u16),
    #[error("invalid code lengths: {0}")]
    BadLengths(String),
    #[error("invalid code in the stream at symbol {0}")]
    BadCode(usize),
    #[error("{0}")]
    Bits(#[from] BitsError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HuffmanCode {
    lengths: Vec<u8>,
    /// Code of each symbol (valid where its length is non-zero), right-aligned.
    codes: Vec<u32>,
    /// Canonical decoding tables, indexed by length: the first code of that length, how many
    /// codes have it, and where its symbols start in `sorted`.
    first_code: Vec<u32>,
    count: Vec<u32>,
    first_index: Vec<u32>,
    sorted: Vec<u16>,
}

impl HuffmanCode {
    /// The optimal code with no length above `max_len` for these symbol counts. Symbols with
    /// count 0 get no code; a lone used symbol gets a 1-bit code. `max_len` is raised if it is
    /// too small to give every used symbol a code.
    pub fn from_frequencies(freqs: &[u64], max_len: u8) -> HuffmanCode {
        let lengths = package_merge(freqs, max_len.clamp(1, MAX_CODE_LEN));
        HuffmanCode::from_lengths(&lengths).expect("package-merge lengths are a valid code")
    }

    /// Rebuilds a code from its lengths (0 = unused symbol), rejecting over-subscribed sets.
    pub fn from_lengths(lengths: &[u8]) -> Result<HuffmanCode, HuffmanError> {
        if lengths.len() > MAX_ALPHABET {
            return Err(HuffmanError::BadLengths(format!(
                "alphabet of {} symbols exceeds {MAX_ALPHABET}",
                lengths.len()
            )));
        }
        if let Some(&l) = lengths.iter().find(|&&l| l > MAX_CODE_LEN) {
            return Err(HuffmanError::BadLengths(format!(
                "length {l} exceeds {MAX_CODE_LEN}"
            )));
        }
        let max = lengths.iter().copied().max().unwrap_or(0) as usize;
        // Kraft: sum of 2^-l must not exceed 1; in units of 2^-MAX_CODE_LEN.
        let kraft: u64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (MAX_CODE_LEN - l))
            .sum();
        if kraft > 1u64 << MAX_CODE_LEN {
            return Err(HuffmanError::BadLengths(
                "over-subscribed (Kraft sum above 1)".into(),
            ));
        }
        let mut count = vec![0u32; max + 1];
        for &l in lengths.iter().filter(|&&l| l > 0) {
            count[l as usize] += 1;
        }
        // DEFLATE's canonical assignment: codes of each length follow on from the last code of
        // the length before, shifted left.
        let mut first_code = vec![0u32; max + 1];
        let mut first_index = vec![0u32; max + 1];
        let mut code = 0u32;
        let mut index = 0u32;
        for l in 1..=max {
            code = (code + count[l - 1]) << 1;
            first_code[l] = code;
            first_index[l] = index;
            index += count[l];
        }
        let mut next = first_code.clone();
        let mut sorted: Vec<u16> = (0..lengths.len() as u16)
            .filter(|&s| lengths[s as usize] > 0)
            .collect();
        sorted.sort_by_key(|&s| (lengths[s as usize], s));
        let mut codes = vec![0u32; lengths.len()];
        for &s in &sorted {
            let l = lengths[s as usize] as usize;
            codes[s as usize] = next[l];
            next[l] += 1;
        }
        Ok(HuffmanCode {
            lengths: lengths.to_vec(),
            codes,
            first_code,
            count,
            first_index,
            sorted,
        })
    }

    pub fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    pub fn max_len(&self) -> u8 {
        self.lengths.iter().copied().max().unwrap_or(0)
    }

    /// The code of `symbol` as (bits, length), if it has one.
    pub fn code(&self, symbol: u16) -> Option<(u32, u8)> {
        match self.lengths.get(symbol as usize) {
            Some(&l) if l > 0 => Some((self.codes[symbol as usize], l)),
            _ => None,
        }
    }

    pub fn encode(&self, symbols: &[u16], out: &mut BitWriter) -> Result<(), HuffmanError> {
        for &s in symbols {
            let (code, len) = self.code(s).ok_or(HuffmanError::NoCode(s))?;
            out.push(code, len as u32);
        }
        Ok(())
    }

    pub fn decode(&self, input: &mut BitReader, count: usize) -> Result<Vec<u16>, HuffmanError> {
        // Each symbol takes at least one bit, which bounds what hostile counts can allocate.
        let mut out = Vec::with_capacity(count.min(input.bits_left() as usize));
        let max = self.count.len().saturating_sub(1);
        for i in 0..count {
            let mut code = 0u32;
            let mut found = None;
            for l in 1..=max {
                code = (code << 1) | input.read_bit()?;
                let offset = code.wrapping_sub(self.first_code[l]);
                if code >= self.first_code[l] && offset < self.count[l] {
                    found = Some(self.sorted[(self.first_index[l] + offset) as usize]);
                    break;
                }
            }
            out.push(found.ok_or(HuffmanError::BadCode(i))?);
        }
        Ok(out)
    }

    /// Total bits `freqs` would take with this code (without encoding).
    pub fn encoded_bits(&self, freqs: &[u64]) -> u64 {
        freqs
            .iter()
            .zip(&self.lengths)
            .map(|(&f, &l)| f * l as u64)
            .sum()
    }

    /// Table layout: 13 bits `n` = alphabet size up to the last used symbol (0..=4096), then
    /// `n` code lengths of 5 bits each (0 = unused).
    pub fn write_table(&self, out: &mut BitWriter) {
        let n = self
            .lengths
            .iter()
            .rposition(|&l| l > 0)
            .map_or(0, |i| i + 1);
        out.push(n as u32, 13);
        for &l in &self.lengths[..n] {
            out.push(l as u32, 5);
        }
    }

    pub fn read_table(input: &mut BitReader) -> Result<HuffmanCode, HuffmanError> {
        let n = input.read(13)? as usize;
        if n > MAX_ALPHABET {
            return Err(HuffmanError::BadLengths(format!(
                "table declares {n} symbols, more than {MAX_ALPHABET}"
            )));
        }
        let mut lengths = Vec::with_capacity(n);
        for _ in 0..n {
            lengths.push(input.read(5)? as u8);
        }
        HuffmanCode::from_lengths(&lengths)
    }

    pub fn table_bits(&self) -> u64 {
        let n = self
            .lengths
            .iter()
            .rposition(|&l| l > 0)
            .map_or(0, |i| i + 1);
        13 + 5 * n as u64
    }
}

pub fn frequencies(symbols: &[u16], alphabet: usize) -> Vec<u64> {
    let top = symbols.iter().map(|&s| s as usize + 1).max().unwrap_or(0);
    let mut f = vec![0u64; alphabet.max(top)];
    for &s in symbols {
        f[s as usize] += 1;
    }
    f
}

/// Shannon entropy of the distribution times the number of symbols: the lower bound, in bits,
/// for coding them one at a time.
pub fn entropy_bits(freqs: &[u64]) -> f64 {
    let total: u64 = freqs.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    freqs
        .iter()
        .filter(|&&f| f > 0)
        .map(|&f| {
            let p = f as f64 / n;
            -(f as f64) * p.log2()
        })
        .sum()
}

enum Item {
    Leaf(usize),
    /// Two items of the previous level.
    Package(usize, usize),
}

/// Optimal length-limited code lengths (Larmore & Hirschberg's package-merge).
fn package_merge(freqs: &[u64], max_len: u8) -> Vec<u8> {
    let mut lengths = vec![0u8; freqs.len()];
    let mut leaves: Vec<(u64, usize)> = freqs
        .iter()
        .enumerate()
        .filter(|&(_, &f)| f > 0)
        .map(|(s, &f)| (f, s))
        .collect();
    match leaves.len() {
        0 => return lengths,
        1 => {
            lengths[leaves[0].1] = 1;
            return lengths;
        }
        _ => {}
    }
    leaves.sort();
    let n = leaves.len();
    let mut max_len = max_len as usize;
    while (1usize << max_len) < n {
        max_len += 1;
    }
    // levels[0] holds the leaves; each later level merges the leaves with packages of pairs
    // from the level before, in order of weight.
    let mut levels: Vec<Vec<(u64, Item)>> = Vec::with_capacity(max_len);
    levels.push(leaves.iter().map(|&(w, s)| (w, Item::Leaf(s))).collect());
    for _ in 1..max_len {
        let prev = levels.last().expect("level 0 exists");
        let packages: Vec<(u64, Item)> = (0..prev.len() / 2)
            .map(|i| {
                (
                    prev[2 * i].0 + prev[2 * i + 1].0,
                    Item::Package(2 * i, 2 * i + 1),
                )
            })
            .collect();
        let mut merged = Vec::with_capacity(n + packages.len());
        let mut p = packages.into_iter().peekable();
        for &(w, s) in &leaves {
            while let Some(pk) = p.next_if(|pk| pk.0 < w) {
                merged.push(pk);
            }
            merged.push((w, Item::Leaf(s)));
        }
        merged.extend(p);
        levels.push(merged);
    }
    // The 2n-2 cheapest items of the last level; a symbol's length is how many times its leaf
    // occurs inside them.
    let mut chosen: Vec<usize> = (0..2 * n - 2).collect();
    for level in levels.iter().rev() {
        let mut below = Vec::new();
        for &i in &chosen {
            match level[i].1 {
                Item::Leaf(s) => lengths[s] += 1,
                Item::Package(a, b) => {
                    below.push(a);
                    below.push(b);
                }
            }
        }
        chosen = below;
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Textbook Huffman total cost, for comparison.
    fn heap_huffman_bits(freqs: &[u64]) -> u64 {
        let mut heap: BinaryHeap<Reverse<u64>> = freqs
            .iter()
            .filter(|&&f| f > 0)
            .map(|&f| Reverse(f))
            .collect();
        if heap.len() == 1 {
            return heap.pop().unwrap().0;
        }
        let mut cost = 0;
        while heap.len() > 1 {
            let a = heap.pop().unwrap().0;
            let b = heap.pop().unwrap().0;
            cost += a + b;
            heap.push(Reverse(a + b));
        }
        cost
    }

    fn round_trip(symbols: &[u16], alphabet: usize, max_len: u8) -> HuffmanCode {
        let code = HuffmanCode::from_frequencies(&frequencies(symbols, alphabet), max_len);
        let mut w = BitWriter::new();
        code.encode(symbols, &mut w).unwrap();
        let bytes = w.into_bytes();
        let back = code
            .decode(&mut BitReader::new(&bytes), symbols.len())
            .unwrap();
        assert_eq!(back, symbols);
        code
    }

    #[test]
    fn canonical_codes_for_a_known_distribution() {
        // Lengths 1, 2, 3, 3 -> codes 0, 10, 110, 111.
        let code = HuffmanCode::from_frequencies(&[8, 4, 2, 2], 16);
        assert_eq!(code.lengths(), &[1, 2, 3, 3]);
        assert_eq!(code.code(0), Some((0b0, 1)));
        assert_eq!(code.code(1), Some((0b10, 2)));
        assert_eq!(code.code(2), Some((0b110, 3)));
        assert_eq!(code.code(3), Some((0b111, 3)));
    }

    #[test]
    fn length_limit_binds_on_fibonacci_counts() {
        let mut fib = vec![1u64, 1];
        for i in 2..20 {
            fib.push(fib[i - 1] + fib[i - 2]);
        }
        let free = HuffmanCode::from_frequencies(&fib, 24);
        assert_eq!(free.max_len(), 19);
        let limited = HuffmanCode::from_frequencies(&fib, 7);
        assert_eq!(limited.max_len(), 7);
        assert!(limited.encoded_bits(&fib) >= free.encoded_bits(&fib));
        let symbols: Vec<u16> = (0..20u16)
            .flat_map(|s| vec![s; (s as usize % 5) + 1])
            .collect();
        round_trip(&symbols, 20, 4);
    }

    #[test]
    fn single_and_empty_alphabets() {
        let code = round_trip(&[3, 3, 3], 8, 16);
        assert_eq!(code.code(3), Some((0, 1)));
        let empty = HuffmanCode::from_frequencies(&[0, 0], 16);
        assert_eq!(empty.max_len(), 0);
        assert!(
            empty
                .decode(&mut BitReader::new(&[]), 0)
                .unwrap()
                .is_empty()
        );
        assert!(empty.decode(&mut BitReader::new(&[0xFF]), 1).is_err());
    }

    #[test]
    fn oversubscribed_lengths_are_rejected() {
        assert!(HuffmanCode::from_lengths(&[1, 1, 1]).is_err());
        assert!(HuffmanCode::from_lengths(&[1, 2, 2]).is_ok());
        assert!(HuffmanCode::from_lengths(&[25]).is_err());
    }

    #[test]
    fn symbols_without_a_code_are_an_error() {
        let code = HuffmanCode::from_frequencies(&[1, 0, 1], 16);
        assert_eq!(
            code.encode(&[1], &mut BitWriter::new()),
            Err(HuffmanError::NoCode(1))
        );
    }

    #[test]
    fn entropy_of_a_uniform_source() {
        assert!((entropy_bits(&[5, 5, 5, 5]) - 40.0).abs() < 1e-9);
        assert_eq!(entropy_bits(&[]), 0.0);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            symbols in proptest::collection::vec(0u16..300, 0..2000),
            max_len in 9u8..=24,
        ) {
            round_trip(&symbols, 300, max_len);
        }

        #[test]
        fn codes_are_prefix_free_within_the_limit_and_optimal(
            freqs in proptest::collection::vec(0u64..10_000, 1..200),
            max_len in 1u8..=16,
        ) {
            let code = HuffmanCode::from_frequencies(&freqs, max_len);
            let used: Vec<(u32, u8)> = (0..freqs.len() as u16).filter_map(|s| code.code(s)).collect();
            let needed = (usize::BITS - (used.len().max(1) - 1).leading_zeros()) as u8;
            prop_assert!(code.max_len() <= max_len.max(needed).max(1));
            for (i, &(a, la)) in used.iter().enumerate() {
                for &(b, lb) in &used[i + 1..] {
                    let l = la.min(lb);
                    prop_assert!((a >> (la - l)) != (b >> (lb - l)), "prefix clash");
                }
            }
            let unlimited = HuffmanCode::from_frequencies(&freqs, 24);
            let bits = unlimited.encoded_bits(&freqs);
            prop_assert_eq!(bits, heap_huffman_bits(&freqs));
            let h = entropy_bits(&freqs);
            let total: u64 = freqs.iter().sum();
            prop_assert!(bits as f64 >= h - 1e-6);
            prop_assert!((bits as f64) < h + total as f64 + 1e-6);
        }

        #[test]
        fn table_round_trip(freqs in proptest::collection::vec(0u64..1000, 0..300)) {
            let code = HuffmanCode::from_frequencies(&freqs, 16);
            let mut w = BitWriter::new();
            code.write_table(&mut w);
            prop_assert_eq!(w.len_bits(), code.table_bits());
            let bytes = w.into_bytes();
            let back = HuffmanCode::read_table(&mut BitReader::new(&bytes)).unwrap();
            let n = code.table_bits() as usize / 5;
            prop_assert_eq!(back.lengths(), &code.lengths()[..back.lengths().len()]);
            prop_assert!(back.lengths().len() <= n);
            prop_assert!(code.lengths()[back.lengths().len()..].iter().all(|&l| l == 0));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), count in 0usize..5000) {
            let mut r = BitReader::new(&bytes);
            if let Ok(code) = HuffmanCode::read_table(&mut r) {
                let _ = code.decode(&mut r, count);
            }
        }
    }
}

//! Canonical, length-limited Huffman codes over small alphabets (cluster indices, gap symbols).
//!
//! Code lengths come from the package-merge algorithm (Larmore & Hirschberg), which gives the
//! optimal prefix code under a length limit, and plain Huffman's optimum whenever the limit
//! does not bind. Codes are canonical — assigned in order of (length, symbol), DEFLATE style —
//! so a code is fully described by its lengths, and that is all a file stores.
//!
//! Decoding reads untrusted streams: it looks up the next [`LOOKUP_BITS`] bits in a table,
//! falls back to the canonical first-code-per-length test for longer codes, and reports
//! invalid codes, truncated streams and impossible symbol counts as errors.

use super::bits::{BitReader, BitWriter, BitsError};

/// Largest alphabet a code may have: every `u16` is a symbol.
pub(crate) const MAX_ALPHABET: usize = 1 << 16;
/// Longest code length a code may use (a code must fit one 32-bit `BitWriter::push`).
pub(crate) const MAX_CODE_LEN: u8 = 32;
/// Width of the decoding lookup table. 2^11 entries (8 KiB) cover every code of the length
/// limits this project uses for its <= 256-symbol alphabets in one step, yet cost little to
/// build for each layer on file load.
pub(crate) const LOOKUP_BITS: u8 = 11;

/// Widest possible alphabet-size field in a serialised table: 65536 takes 17 bits.
const SIZE_FIELD_MAX: u32 = 17;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HuffmanError {
    #[error("symbol {0} has no code")]
    NoCode(u16),
    #[error("alphabet of {0} symbols exceeds {MAX_ALPHABET}")]
    AlphabetTooLarge(usize),
    #[error("code length {length} of symbol {symbol} exceeds {MAX_CODE_LEN}")]
    LengthTooLong { symbol: usize, length: u8 },
    #[error("code lengths are over-subscribed (Kraft sum above 1)")]
    Oversubscribed,
    #[error("malformed code table: {0}")]
    BadTable(&'static str),
    #[error("symbols requested from an empty code")]
    EmptyCode,
    #[error("{count} symbols need at least {min_bits} bits, only {bits_left} left")]
    TooShort {
        count: usize,
        min_bits: u64,
        bits_left: u64,
    },
    #[error("no code matches the stream at symbol {0}")]
    BadCode(usize),
    #[error("bit stream ended after {decoded} of {count} symbols")]
    Truncated { decoded: usize, count: usize },
    #[error(transparent)]
    Bits(#[from] BitsError),
}

#[derive(Clone)]
pub struct HuffmanCode {
    /// Per symbol; 0 = no code.
    lengths: Vec<u8>,
    /// Code of each symbol, right-aligned (meaningful where its length is non-zero).
    codes: Vec<u32>,
    /// Canonical decoding state, indexed by code length: the first code of that length, how
    /// many codes have it, and where its symbols start in `sorted`. u64 because the "next
    /// first code" past a full set of 32-bit codes is 2^32.
    first_code: [u64; MAX_CODE_LEN as usize + 1],
    count: [u64; MAX_CODE_LEN as usize + 1],
    first_index: [u64; MAX_CODE_LEN as usize + 1],
    /// Used symbols in canonical order.
    sorted: Vec<u16>,
    max_len: u8,
    min_len: u8,
    /// `min(max_len, LOOKUP_BITS)`.
    lookup_bits: u8,
    /// Indexed by the next `lookup_bits` bits: `symbol << 8 | length` of the code they start
    /// with, or 0 when that code is longer than `lookup_bits` (or absent).
    lookup: Vec<u32>,
}

/// Codes are equal when they give the same symbols the same codes; trailing unused symbols
/// (which a serialised table drops) do not count.
impl PartialEq for HuffmanCode {
    fn eq(&self, other: &Self) -> bool {
        self.lengths[..self.used_len()] == other.lengths[..other.used_len()]
    }
}

impl Eq for HuffmanCode {}

/// The lengths say everything; the derived tables would bury them in test failures.
impl std::fmt::Debug for HuffmanCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuffmanCode")
            .field("lengths", &self.lengths)
            .finish_non_exhaustive()
    }
}

impl HuffmanCode {
    /// The optimal code with no length above `max_len` for these symbol counts (indexed by
    /// symbol). Symbols with count 0 get no code; a lone used symbol gets a 1-bit code; all
    /// zero counts give the empty code. `max_len` is clamped to 1..=32 and, if still too small
    /// to give every used symbol a code (2^max_len < used symbols), raised to the smallest
    /// limit that can.
    ///
    /// # Panics
    /// If a symbol at or beyond [`MAX_ALPHABET`] has a non-zero count (it could not be a
    /// `u16`); trailing zero counts there are ignored.
    pub(crate) fn from_frequencies(freqs: &[u64], max_len: u8) -> HuffmanCode {
        let (freqs, beyond) = freqs.split_at(freqs.len().min(MAX_ALPHABET));
        assert!(
            beyond.iter().all(|&f| f == 0),
            "frequencies for symbols beyond the u16 range"
        );
        let lengths = package_merge(freqs, max_len.clamp(1, MAX_CODE_LEN));
        HuffmanCode::build(lengths)
    }

    /// Rebuilds a code from its lengths per symbol (0 = unused), as read from a file. Rejects
    /// alphabets over [`MAX_ALPHABET`], lengths over [`MAX_CODE_LEN`] and over-subscribed
    /// sets (Kraft sum above 1). Incomplete sets are accepted: their unused codes are decode
    /// errors.
    pub(crate) fn from_lengths(lengths: &[u8]) -> Result<HuffmanCode, HuffmanError> {
        if lengths.len() > MAX_ALPHABET {
            return Err(HuffmanError::AlphabetTooLarge(lengths.len()));
        }
        if let Some((symbol, &length)) =
            lengths.iter().enumerate().find(|&(_, &l)| l > MAX_CODE_LEN)
        {
            return Err(HuffmanError::LengthTooLong { symbol, length });
        }
        // In units of 2^-32: at most 2^16 * 2^31, far from overflowing.
        let kraft: u64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u64 << (MAX_CODE_LEN - l))
            .sum();
        if kraft > 1u64 << MAX_CODE_LEN {
            return Err(HuffmanError::Oversubscribed);
        }
        Ok(HuffmanCode::build(lengths.to_vec()))
    }

    /// Assigns canonical codes and decoding tables. `lengths` must already be valid (alphabet,
    /// length limit, Kraft), which is what keeps the table filling below in bounds.
    fn build(lengths: Vec<u8>) -> HuffmanCode {
        const SLOTS: usize = MAX_CODE_LEN as usize + 1;
        let mut count = [0u64; SLOTS];
        for &l in lengths.iter().filter(|&&l| l > 0) {
            count[l as usize] += 1;
        }
        let max_len = (1..SLOTS).rev().find(|&l| count[l] > 0).unwrap_or(0) as u8;
        let min_len = (1..SLOTS).find(|&l| count[l] > 0).unwrap_or(0) as u8;
        // Codes of each length follow on from the last code of the length before, shifted
        // left: this is what makes the lengths alone determine the code.
        let mut first_code = [0u64; SLOTS];
        let mut first_index = [0u64; SLOTS];
        let (mut code, mut index) = (0u64, 0u64);
        for l in 1..SLOTS {
            code = (code + count[l - 1]) << 1;
            first_code[l] = code;
            first_index[l] = index;
            index += count[l];
        }
        let mut next_index = first_index;
        let mut sorted = vec![0u16; index as usize];
        let mut codes = vec![0u32; lengths.len()];
        // Visiting symbols in order keeps each length's symbols sorted, as canonical order
        // requires.
        for (s, &l) in lengths.iter().enumerate().filter(|&(_, &l)| l > 0) {
            let l = l as usize;
            let at = next_index[l];
            next_index[l] += 1;
            sorted[at as usize] = s as u16;
            codes[s] = (first_code[l] + (at - first_index[l])) as u32;
        }
        let lookup_bits = max_len.min(LOOKUP_BITS);
        let mut lookup = vec![0u32; 1usize << lookup_bits];
        for (s, &l) in lengths.iter().enumerate() {
            if l == 0 || l > lookup_bits {
                continue;
            }
            let spare = lookup_bits - l;
            let start = (codes[s] as usize) << spare;
            lookup[start..start + (1usize << spare)].fill(((s as u32) << 8) | u32::from(l));
        }
        HuffmanCode {
            lengths,
            codes,
            first_code,
            count,
            first_index,
            sorted,
            max_len,
            min_len,
            lookup_bits,
            lookup,
        }
    }

    /// Code length per symbol (0 = no code), as long as the alphabet the code was built from;
    /// a code read back with [`HuffmanCode::read_table`] ends at its last used symbol.
    #[cfg(test)]
    pub(crate) fn lengths(&self) -> &[u8] {
        &self.lengths
    }

    /// The longest code length (0 for the empty code).
    #[cfg(test)]
    pub(crate) fn max_len(&self) -> u8 {
        self.max_len
    }

    /// True when no symbol has a code.
    pub fn is_empty(&self) -> bool {
        self.max_len == 0
    }

    /// The code of `symbol` as (bits right-aligned, length), if it has one.
    pub fn code(&self, symbol: u16) -> Option<(u32, u8)> {
        match self.lengths.get(symbol as usize) {
            Some(&l) if l > 0 => Some((self.codes[symbol as usize], l)),
            _ => None,
        }
    }

    /// One past the last symbol with a code.
    fn used_len(&self) -> usize {
        self.lengths
            .iter()
            .rposition(|&l| l > 0)
            .map_or(0, |i| i + 1)
    }

    /// Appends the codes of `symbols`; errors (having written the symbols before it) at the
    /// first symbol without a code.
    pub(crate) fn encode(&self, symbols: &[u16], out: &mut BitWriter) -> Result<(), HuffmanError> {
        for &s in symbols {
            let (code, len) = self.code(s).ok_or(HuffmanError::NoCode(s))?;
            out.push(code, u32::from(len));
        }
        Ok(())
    }

    /// Decodes exactly `count` symbols. Bits after the last symbol are left unread (a stream's
    /// zero padding included). Errors on a bit pattern that is no code (possible with an
    /// incomplete code), on running out of bits, and up front — before allocating anything —
    /// when `count` symbols could not fit in the bits left even at the shortest code length.
    pub(crate) fn decode(
        &self,
        input: &mut BitReader,
        count: usize,
    ) -> Result<Vec<u16>, HuffmanError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if self.is_empty() {
            return Err(HuffmanError::EmptyCode);
        }
        let min_bits = (count as u64).saturating_mul(u64::from(self.min_len));
        if min_bits > input.bits_left() {
            return Err(HuffmanError::TooShort {
                count,
                min_bits,
                bits_left: input.bits_left(),
            });
        }
        // Bounded by the input: count <= bits_left / min_len.
        let mut out = Vec::with_capacity(count);
        let shift = 32 - u32::from(self.lookup_bits);
        for decoded in 0..count {
            let window = input.peek(32);
            let entry = self
                .lookup
                .get((window >> shift) as usize)
                .copied()
                .unwrap_or(0);
            let (symbol, len) = if entry != 0 {
                ((entry >> 8) as u16, entry & 0xFF)
            } else {
                self.decode_long(window)
                    .ok_or(HuffmanError::BadCode(decoded))?
            };
            // The window is zero-padded past the end; this is where a code that runs off the
            // end is caught.
            input
                .skip(len)
                .map_err(|_| HuffmanError::Truncated { decoded, count })?;
            out.push(symbol);
        }
        Ok(out)
    }

    /// Canonical decoding of a code longer than the lookup table: the first length whose
    /// range of codes holds the window's prefix of that length (prefix-freeness makes it the
    /// only one).
    #[cold]
    fn decode_long(&self, window: u32) -> Option<(u16, u32)> {
        for l in u32::from(self.lookup_bits) + 1..=u32::from(self.max_len) {
            let l_idx = l as usize;
            let prefix = u64::from(window) >> (32 - l);
            let offset = prefix.wrapping_sub(self.first_code[l_idx]);
            if prefix >= self.first_code[l_idx] && offset < self.count[l_idx] {
                let at = (self.first_index[l_idx] + offset) as usize;
                return self.sorted.get(at).map(|&s| (s, l));
            }
        }
        None
    }

    /// Total bits `freqs` (indexed by symbol) would take with this code, without encoding.
    /// Symbols without a code count 0 bits: `encode` would reject them.
    #[cfg(test)]
    pub(crate) fn encoded_bits(&self, freqs: &[u64]) -> u64 {
        freqs.iter().zip(&self.lengths).fold(0u64, |sum, (&f, &l)| {
            sum.saturating_add(f.saturating_mul(u64::from(l)))
        })
    }

    /// Serialises the code lengths. Layout, MSB first:
    ///
    /// ```text
    /// 5 bits   a      bit length of n (0..=17)
    /// a bits   n      symbols described: one past the last symbol with a code (0..=65536);
    ///                 0 = the empty code, and nothing follows
    /// 1 bit    mode   0 = plain, 1 = delta
    /// 3 bits   w - 1  w = bit length of the longest code length (1..=6)
    /// then n lengths (0 = no code), symbol 0 first:
    ///   plain: w bits each
    ///   delta: relative to the previous symbol's length (0 before symbol 0):
    ///          0          same
    ///          10         one longer
    ///          110        one shorter
    ///          111 + w    literal length
    /// ```
    ///
    /// The writer picks whichever mode is smaller (plain on a tie). Neighbouring symbols have
    /// similar lengths here (gaps d and d+1, clusters next to each other on the weight axis), so
    /// delta mode often costs under 2 bits a symbol. [`HuffmanCode::read_table`] accepts only
    /// this canonical form: minimal `a` and `w`, and a used last symbol.
    pub(crate) fn write_table(&self, out: &mut BitWriter) {
        let plan = self.table_plan();
        out.push(plan.size_width, 5);
        out.push(plan.n as u32, plan.size_width);
        if plan.n == 0 {
            return;
        }
        out.push(u32::from(plan.delta), 1);
        out.push(plan.width - 1, 3);
        let lengths = &self.lengths[..plan.n];
        if !plan.delta {
            for &l in lengths {
                out.push(u32::from(l), plan.width);
            }
            return;
        }
        let mut prev = 0u8;
        for &l in lengths {
            match delta_token(prev, l) {
                Delta::Same => out.push(0b0, 1),
                Delta::Up => out.push(0b10, 2),
                Delta::Down => out.push(0b110, 3),
                Delta::Literal => {
                    out.push(0b111, 3);
                    out.push(u32::from(l), plan.width);
                }
            }
            prev = l;
        }
    }

    /// Reads a table written by [`HuffmanCode::write_table`]; the code's alphabet ends at its
    /// last used symbol. Never allocates more than the bits left could describe.
    pub(crate) fn read_table(input: &mut BitReader) -> Result<HuffmanCode, HuffmanError> {
        let size_width = input.read(5)?;
        if size_width > SIZE_FIELD_MAX {
            return Err(HuffmanError::BadTable(
                "alphabet size field wider than 17 bits",
            ));
        }
        let n = input.read(size_width)? as usize;
        if size_width > 0 && n >> (size_width - 1) != 1 {
            return Err(HuffmanError::BadTable(
                "alphabet size not minimally encoded",
            ));
        }
        if n > MAX_ALPHABET {
            return Err(HuffmanError::AlphabetTooLarge(n));
        }
        if n == 0 {
            return Ok(HuffmanCode::build(Vec::new()));
        }
        let delta = input.read(1)? == 1;
        let width = input.read(3)? + 1;
        if width > bit_length(u32::from(MAX_CODE_LEN)) {
            return Err(HuffmanError::BadTable("length field wider than 6 bits"));
        }
        // Every length takes at least one bit in either mode.
        if n as u64 > input.bits_left() {
            return Err(HuffmanError::BadTable("table ends before its lengths"));
        }
        let mut lengths = Vec::with_capacity(n);
        let mut prev = 0u8;
        for _ in 0..n {
            let l = if !delta {
                input.read(width)?
            } else if input.read(1)? == 0 {
                u32::from(prev)
            } else if input.read(1)? == 0 {
                u32::from(prev) + 1
            } else if input.read(1)? == 0 {
                u32::from(prev)
                    .checked_sub(1)
                    .ok_or(HuffmanError::BadTable("length below zero"))?
            } else {
                input.read(width)?
            };
            // Checked again by `from_lengths`; this keeps `prev + 1` from growing unchecked.
            if l > u32::from(MAX_CODE_LEN) {
                return Err(HuffmanError::LengthTooLong {
                    symbol: lengths.len(),
                    length: l.min(u32::from(u8::MAX)) as u8,
                });
            }
            prev = l as u8;
            lengths.push(prev);
        }
        if lengths.last() == Some(&0) {
            return Err(HuffmanError::BadTable("last symbol has no code"));
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if bit_length(u32::from(longest)) != width {
            return Err(HuffmanError::BadTable("length field not minimally sized"));
        }
        HuffmanCode::from_lengths(&lengths)
    }

    /// Bits [`HuffmanCode::write_table`] writes.
    #[cfg(test)]
    pub(crate) fn table_bits(&self) -> u64 {
        self.table_plan().bits
    }

    fn table_plan(&self) -> TablePlan {
        let n = self.used_len();
        let size_width = bit_length(n as u32);
        let header = 5 + u64::from(size_width);
        if n == 0 {
            return TablePlan {
                n,
                size_width,
                width: 0,
                delta: false,
                bits: header,
            };
        }
        let width = bit_length(u32::from(self.max_len));
        let lengths = &self.lengths[..n];
        let plain = n as u64 * u64::from(width);
        let mut delta = 0u64;
        let mut prev = 0u8;
        for &l in lengths {
            delta += match delta_token(prev, l) {
                Delta::Same => 1,
                Delta::Up => 2,
                Delta::Down => 3,
                Delta::Literal => 3 + u64::from(width),
            };
            prev = l;
        }
        TablePlan {
            n,
            size_width,
            width,
            delta: delta < plain,
            bits: header + 4 + plain.min(delta),
        }
    }
}

struct TablePlan {
    n: usize,
    size_width: u32,
    width: u32,
    delta: bool,
    /// Bits the table takes; only the tests read it, to hold the writer to it.
    #[cfg_attr(not(test), expect(dead_code))]
    bits: u64,
}

enum Delta {
    Same,
    Up,
    Down,
    Literal,
}

fn delta_token(prev: u8, l: u8) -> Delta {
    if l == prev {
        Delta::Same
    } else if l == prev + 1 {
        Delta::Up
    } else if prev > 0 && l == prev - 1 {
        Delta::Down
    } else {
        Delta::Literal
    }
}

/// Bits needed to write `v` (0 for 0).
fn bit_length(v: u32) -> u32 {
    u32::BITS - v.leading_zeros()
}

/// Symbol counts over an alphabet of at least `alphabet` symbols (more if a symbol is larger).
pub(crate) fn frequencies(symbols: &[u16], alphabet: usize) -> Vec<u64> {
    let top = symbols.iter().map(|&s| s as usize + 1).max().unwrap_or(0);
    let mut f = vec![0u64; alphabet.max(top)];
    for &s in symbols {
        f[s as usize] += 1;
    }
    f
}

/// Shannon entropy of the distribution times the number of symbols: the lower bound, in bits,
/// for coding them one at a time.
pub(crate) fn entropy_bits(freqs: &[u64]) -> f64 {
    let total: u64 = freqs.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let n = total as f64;
    freqs
        .iter()
        .filter(|&&f| f > 0)
        .map(|&f| {
            let f = f as f64;
            -f * (f / n).log2()
        })
        .sum::<f64>()
        // One certain symbol sums to -0.0, which would print as "-0.00".
        + 0.0
}

/// Optimal code lengths with none above `limit` (package-merge).
///
/// Level 0 lists the leaves (used symbols) by weight; each further level merges the leaves
/// with packages of consecutive pairs from the level below. The cheapest 2n - 2 items of the
/// top level are the optimal selection, and a symbol's length is how many times its leaf is
/// selected, directly or inside chosen packages. Because leaves enter every level in the same
/// sorted order and package i of a level is items 2i and 2i+1 of the level below, recording
/// only which items are packages is enough to walk the selection back down: among the first k
/// items of a level, the leaves are the k - p lightest ones, and the p packages select the
/// first 2p items of the level below.
fn package_merge(freqs: &[u64], limit: u8) -> Vec<u8> {
    let mut lengths = vec![0u8; freqs.len()];
    let mut leaves: Vec<(u64, usize)> = freqs
        .iter()
        .enumerate()
        .filter(|&(_, &f)| f > 0)
        .map(|(s, &f)| (f, s))
        .collect();
    match leaves.as_slice() {
        [] => return lengths,
        &[(_, s)] => {
            lengths[s] = 1;
            return lengths;
        }
        _ => {}
    }
    // Ties broken by symbol, so the code depends only on the counts.
    leaves.sort_unstable();
    let n = leaves.len();
    let mut levels = u32::from(limit);
    while (1usize << levels) < n {
        levels += 1;
    }
    // u128: package weights sum up to levels * total count, which could overflow u64 for
    // absurd counts, and a wrapped weight would silently break the ordering.
    let mut weights: Vec<u128> = leaves.iter().map(|&(f, _)| u128::from(f)).collect();
    let mut is_package: Vec<Vec<bool>> = Vec::with_capacity(levels as usize);
    is_package.push(vec![false; n]);
    for _ in 1..levels {
        let mut next_weights = Vec::with_capacity(n + weights.len() / 2);
        let mut kinds = Vec::with_capacity(n + weights.len() / 2);
        let mut packages = weights.chunks_exact(2).map(|p| p[0] + p[1]).peekable();
        for &(f, _) in &leaves {
            let f = u128::from(f);
            while let Some(p) = packages.next_if(|&p| p < f) {
                next_weights.push(p);
                kinds.push(true);
            }
            next_weights.push(f);
            kinds.push(false);
        }
        for p in packages {
            next_weights.push(p);
            kinds.push(true);
        }
        weights = next_weights;
        is_package.push(kinds);
    }
    let mut take = 2 * n - 2;
    for kinds in is_package.iter().rev() {
        debug_assert!(take <= kinds.len(), "package-merge level too short");
        let chosen = &kinds[..take.min(kinds.len())];
        let packages = chosen.iter().filter(|&&p| p).count();
        for &(_, s) in &leaves[..chosen.len() - packages] {
            lengths[s] += 1;
        }
        take = 2 * packages;
    }
    debug_assert_eq!(
        lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 1u128 << (128 - u32::from(l)) >> 64)
            .sum::<u128>(),
        1u128 << 64,
        "package-merge lengths must form a complete code"
    );
    lengths
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// Textbook Huffman total cost (sum of the merged weights), for comparison.
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

    /// Cheapest cost over every length assignment in 1..=limit satisfying Kraft.
    fn brute_force_limited_bits(freqs: &[u64], limit: u8) -> u64 {
        fn go(freqs: &[u64], limit: u8, kraft_left: u64, cost: u64, best: &mut u64) {
            let Some((&f, rest)) = freqs.split_first() else {
                *best = (*best).min(cost);
                return;
            };
            for l in 1..=limit {
                let share = 1u64 << (limit - l);
                if share <= kraft_left {
                    go(
                        rest,
                        limit,
                        kraft_left - share,
                        cost + f * u64::from(l),
                        best,
                    );
                }
            }
        }
        let used: Vec<u64> = freqs.iter().copied().filter(|&f| f > 0).collect();
        if used.len() == 1 {
            return used[0];
        }
        let mut best = u64::MAX;
        go(&used, limit, 1u64 << limit, 0, &mut best);
        best
    }

    fn round_trip(symbols: &[u16], alphabet: usize, max_len: u8) -> HuffmanCode {
        let freqs = frequencies(symbols, alphabet);
        let code = HuffmanCode::from_frequencies(&freqs, max_len);
        let mut w = BitWriter::new();
        code.encode(symbols, &mut w).unwrap();
        assert_eq!(w.len_bits(), code.encoded_bits(&freqs));
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        let back = code.decode(&mut r, symbols.len()).unwrap();
        assert_eq!(back, symbols);
        assert!(r.bits_left() < 8, "decode consumed exactly the codes");
        code
    }

    fn table_round_trip(code: &HuffmanCode) -> Vec<u8> {
        let mut w = BitWriter::new();
        code.write_table(&mut w);
        assert_eq!(w.len_bits(), code.table_bits());
        // Something after the table must be left for the next reader.
        w.push(0b101, 3);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        let back = HuffmanCode::read_table(&mut r).unwrap();
        assert_eq!(&back, code);
        assert_eq!(back.lengths(), &code.lengths()[..back.lengths().len()]);
        assert_eq!(r.read(3).unwrap(), 0b101);
        bytes
    }

    fn fibonacci(n: usize) -> Vec<u64> {
        let mut fib = vec![1u64, 1];
        while fib.len() < n {
            fib.push(fib[fib.len() - 1] + fib[fib.len() - 2]);
        }
        fib
    }

    #[test]
    fn canonical_codes_for_a_known_distribution() {
        // Lengths 1, 2, 3, 3 -> codes 0, 10, 110, 111.
        let code = HuffmanCode::from_frequencies(&[8, 4, 2, 2], 32);
        assert_eq!(code.lengths(), &[1, 2, 3, 3]);
        assert_eq!(code.code(0), Some((0b0, 1)));
        assert_eq!(code.code(1), Some((0b10, 2)));
        assert_eq!(code.code(2), Some((0b110, 3)));
        assert_eq!(code.code(3), Some((0b111, 3)));
        // Canonical order is (length, symbol), not symbol alone.
        let code = HuffmanCode::from_lengths(&[3, 1, 3, 2]).unwrap();
        assert_eq!(code.code(1), Some((0b0, 1)));
        assert_eq!(code.code(3), Some((0b10, 2)));
        assert_eq!(code.code(0), Some((0b110, 3)));
        assert_eq!(code.code(2), Some((0b111, 3)));
    }

    #[test]
    fn length_limit_binds_on_fibonacci_counts() {
        let fib = fibonacci(30);
        let free = HuffmanCode::from_frequencies(&fib, 32);
        assert_eq!(free.max_len(), 29);
        assert_eq!(free.encoded_bits(&fib), heap_huffman_bits(&fib));
        for limit in [5u8, 7, 12, 20] {
            let limited = HuffmanCode::from_frequencies(&fib, limit);
            assert_eq!(limited.max_len(), limit);
            assert!(limited.encoded_bits(&fib) > free.encoded_bits(&fib));
        }
        let fib = fibonacci(8);
        for limit in 3u8..=7 {
            let limited = HuffmanCode::from_frequencies(&fib, limit);
            assert_eq!(
                limited.encoded_bits(&fib),
                brute_force_limited_bits(&fib, limit)
            );
        }
        let symbols: Vec<u16> = (0..20u16)
            .flat_map(|s| vec![s; (s as usize % 5) + 1])
            .collect();
        let code = round_trip(&symbols, 20, 5);
        assert!(code.max_len() <= 5);
    }

    #[test]
    fn a_limit_too_small_for_the_alphabet_is_raised() {
        let code = HuffmanCode::from_frequencies(&[1; 5], 2);
        assert_eq!(code.max_len(), 3);
        assert_eq!(HuffmanCode::from_frequencies(&[3, 1], 0).lengths(), &[1, 1]);
    }

    #[test]
    fn codes_of_32_bits_use_the_slow_path() {
        let mut lengths: Vec<u8> = (1..=32).collect();
        lengths.push(32);
        let code = HuffmanCode::from_lengths(&lengths).unwrap();
        assert_eq!(code.code(32), Some((u32::MAX, 32)));
        assert_eq!(code.code(31), Some((u32::MAX - 1, 32)));
        let symbols: Vec<u16> = (0..33u16).chain([32, 0, 31, 20, 11, 12, 10]).collect();
        let mut w = BitWriter::new();
        code.encode(&symbols, &mut w).unwrap();
        let bytes = w.into_bytes();
        assert_eq!(
            code.decode(&mut BitReader::new(&bytes), symbols.len()),
            Ok(symbols)
        );
        table_round_trip(&code);
    }

    #[test]
    fn single_and_empty_alphabets() {
        let code = round_trip(&[3, 3, 3], 8, 16);
        assert_eq!(code.lengths(), &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(code.code(3), Some((0, 1)));
        // The lone code is "0"; a "1" matches nothing.
        assert_eq!(
            code.decode(&mut BitReader::new(&[0b0100_0000]), 3),
            Err(HuffmanError::BadCode(1))
        );
        table_round_trip(&code);

        let empty = HuffmanCode::from_frequencies(&[0, 0], 16);
        assert!(empty.is_empty());
        assert_eq!(empty.max_len(), 0);
        assert_eq!(empty.decode(&mut BitReader::new(&[]), 0), Ok(vec![]));
        assert_eq!(
            empty.decode(&mut BitReader::new(&[0xFF]), 1),
            Err(HuffmanError::EmptyCode)
        );
        assert_eq!(
            empty.encode(&[0], &mut BitWriter::new()),
            Err(HuffmanError::NoCode(0))
        );
        assert_eq!(table_round_trip(&empty), vec![0b0000_0101]);
        assert_eq!(empty.table_bits(), 5);
        assert!(HuffmanCode::from_frequencies(&[], 8).is_empty());
        round_trip(&[], 0, 8);
    }

    #[test]
    fn table_layout_by_hand() {
        // n = 4 (a = 3), lengths 1 2 3 3, w = 2. Plain: 4 * 2 = 8 bits. Delta: 10 (0->1),
        // 10 (1->2), 10 (2->3), 0 (3->3) = 7 bits, so delta wins.
        let code = HuffmanCode::from_lengths(&[1, 2, 3, 3, 0, 0]).unwrap();
        let mut w = BitWriter::new();
        code.write_table(&mut w);
        assert_eq!(code.table_bits(), 5 + 3 + 1 + 3 + 7);
        assert_eq!(
            w.into_bytes(),
            // 00011 100 1 001 10 10 10 0 (+ padding)
            vec![0b0001_1100, 0b1001_1010, 0b1000_0000]
        );
        // Lengths 2 0 3 3 0 0 0 1 -> n = 8 (a = 4), w = 2. Plain: 16 bits. Delta: 111+10,
        // 111+00, 111+11, 0, 111+00, 0, 0, 10 = 25 bits, so plain wins.
        let code = HuffmanCode::from_lengths(&[2, 0, 3, 3, 0, 0, 0, 1]).unwrap();
        let mut w = BitWriter::new();
        code.write_table(&mut w);
        assert_eq!(code.table_bits(), 5 + 4 + 1 + 3 + 16);
        assert_eq!(
            w.into_bytes(),
            // 00100 1000 0 001 10 00 11 11 00 00 00 01 (+ padding)
            vec![0b0010_0100, 0b0000_1100, 0b0111_1000, 0b0000_1000]
        );
    }

    #[test]
    fn malformed_tables_are_rejected() {
        let read = |bits: &[(u32, u32)]| {
            let mut w = BitWriter::new();
            for &(v, n) in bits {
                w.push(v, n);
            }
            let bytes = w.into_bytes();
            HuffmanCode::read_table(&mut BitReader::new(&bytes))
        };
        // Good: n = 2, plain, w = 1, lengths 1 1.
        assert!(read(&[(2, 5), (2, 2), (0, 1), (0, 3), (1, 1), (1, 1)]).is_ok());
        // Size field wider than 17 bits.
        assert!(matches!(read(&[(18, 5)]), Err(HuffmanError::BadTable(_))));
        // Size field not minimal: n = 2 in 3 bits.
        assert!(matches!(
            read(&[(3, 5), (2, 3), (0, 1), (0, 3), (1, 1), (1, 1)]),
            Err(HuffmanError::BadTable(_))
        ));
        // n = 65537.
        assert_eq!(
            read(&[(17, 5), (65537, 17)]),
            Err(HuffmanError::AlphabetTooLarge(65537))
        );
        // Width 7.
        assert!(matches!(
            read(&[(2, 5), (2, 2), (0, 1), (6, 3), (1, 7), (1, 7)]),
            Err(HuffmanError::BadTable(_))
        ));
        // Width 2 where 1 suffices.
        assert!(matches!(
            read(&[(2, 5), (2, 2), (0, 1), (1, 3), (1, 2), (1, 2)]),
            Err(HuffmanError::BadTable(_))
        ));
        // Over-subscribed: three 1-bit codes.
        assert_eq!(
            read(&[(2, 5), (3, 2), (0, 1), (0, 3), (1, 1), (1, 1), (1, 1)]),
            Err(HuffmanError::Oversubscribed)
        );
        // Last symbol unused.
        assert!(matches!(
            read(&[(2, 5), (3, 2), (0, 1), (0, 3), (1, 1), (1, 1), (0, 1)]),
            Err(HuffmanError::BadTable(_))
        ));
        // Delta below zero, then a length of 33 (w = 6).
        assert!(matches!(
            read(&[(2, 5), (2, 2), (1, 1), (0, 3), (0b110, 3)]),
            Err(HuffmanError::BadTable(_))
        ));
        assert!(matches!(
            read(&[(1, 5), (1, 1), (1, 1), (5, 3), (0b111, 3), (33, 6)]),
            Err(HuffmanError::LengthTooLong { .. })
        ));
        // Lengths promised but missing.
        assert!(read(&[(4, 5), (15, 4), (0, 1), (2, 3)]).is_err());
    }

    #[test]
    fn bad_lengths_are_rejected() {
        assert_eq!(
            HuffmanCode::from_lengths(&[1, 1, 1]),
            Err(HuffmanError::Oversubscribed)
        );
        assert_eq!(
            HuffmanCode::from_lengths(&[2, 2, 2, 2, 3]),
            Err(HuffmanError::Oversubscribed)
        );
        assert!(HuffmanCode::from_lengths(&[1, 2, 2]).is_ok());
        assert!(
            HuffmanCode::from_lengths(&[1, 2]).is_ok(),
            "incomplete is fine"
        );
        assert_eq!(
            HuffmanCode::from_lengths(&[1, 33]),
            Err(HuffmanError::LengthTooLong {
                symbol: 1,
                length: 33
            })
        );
        assert_eq!(
            HuffmanCode::from_lengths(&vec![0; MAX_ALPHABET + 1]),
            Err(HuffmanError::AlphabetTooLarge(MAX_ALPHABET + 1))
        );
    }

    #[test]
    fn full_u16_alphabet() {
        let mut freqs = vec![0u64; MAX_ALPHABET];
        for (s, f) in freqs.iter_mut().enumerate().step_by(7) {
            *f = 1 + (s as u64 % 13);
        }
        freqs[MAX_ALPHABET - 1] = 5;
        let code = HuffmanCode::from_frequencies(&freqs, 16);
        assert!(code.max_len() <= 16);
        table_round_trip(&code);
        let symbols: Vec<u16> = vec![0, 65535, 7, 14, 65535];
        let mut w = BitWriter::new();
        code.encode(&symbols, &mut w).unwrap();
        let bytes = w.into_bytes();
        assert_eq!(code.decode(&mut BitReader::new(&bytes), 5), Ok(symbols));
    }

    #[test]
    fn hostile_counts_fail_before_allocating() {
        let code = HuffmanCode::from_frequencies(&[1, 1, 1, 1], 8);
        assert!(matches!(
            code.decode(&mut BitReader::new(&[0; 16]), usize::MAX),
            Err(HuffmanError::TooShort { .. })
        ));
        // 64 two-bit codes fit in 16 bytes; 65 cannot.
        assert_eq!(
            code.decode(&mut BitReader::new(&[0; 16]), 64)
                .unwrap()
                .len(),
            64
        );
        assert!(matches!(
            code.decode(&mut BitReader::new(&[0; 16]), 65),
            Err(HuffmanError::TooShort { .. })
        ));
        // Variable lengths pass the up-front check but run out mid-stream.
        let code = HuffmanCode::from_lengths(&[1, 2, 2]).unwrap();
        assert_eq!(
            code.decode(&mut BitReader::new(&[0xFF]), 6),
            Err(HuffmanError::Truncated {
                decoded: 4,
                count: 6
            })
        );
    }

    #[test]
    fn symbols_without_a_code_are_an_error() {
        let code = HuffmanCode::from_frequencies(&[1, 0, 1], 16);
        assert_eq!(
            code.encode(&[1], &mut BitWriter::new()),
            Err(HuffmanError::NoCode(1))
        );
        assert_eq!(
            code.encode(&[9], &mut BitWriter::new()),
            Err(HuffmanError::NoCode(9))
        );
    }

    #[test]
    fn entropy_of_known_sources() {
        assert!((entropy_bits(&[5, 5, 5, 5]) - 40.0).abs() < 1e-9);
        assert!((entropy_bits(&[2, 1, 1, 0]) - 6.0).abs() < 1e-9);
        assert_eq!(entropy_bits(&[7]), 0.0);
        assert_eq!(entropy_bits(&[]), 0.0);
        assert_eq!(frequencies(&[1, 1, 4], 3), vec![0, 2, 0, 0, 1]);
        assert_eq!(frequencies(&[], 3), vec![0, 0, 0]);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            alphabet in 1usize..=300,
            raw in proptest::collection::vec(any::<u16>(), 0..3000),
            skew in 0u32..4,
            max_len in 1u8..=32,
        ) {
            // Skewed streams push some codes past the lookup table.
            let symbols: Vec<u16> = raw
                .iter()
                .map(|&r| ((r as usize % alphabet) >> (skew * (u32::from(r) % 3))) as u16)
                .collect();
            round_trip(&symbols, alphabet, max_len);
        }

        #[test]
        fn codes_are_prefix_free_limited_and_optimal(
            freqs in proptest::collection::vec(prop_oneof![1 => Just(0u64), 3 => 1u64..1000], 1..64),
            max_len in 1u8..=16,
        ) {
            let code = HuffmanCode::from_frequencies(&freqs, max_len);
            let used: Vec<(u32, u8)> = (0..freqs.len() as u16).filter_map(|s| code.code(s)).collect();
            prop_assert_eq!(used.len(), freqs.iter().filter(|&&f| f > 0).count());
            // 63 symbols need up to 6 bits whatever the limit.
            let needed = bit_length(used.len().saturating_sub(1) as u32) as u8;
            prop_assert!(code.max_len() <= max_len.max(needed).max(1));
            for (i, &(a, la)) in used.iter().enumerate() {
                for &(b, lb) in &used[i + 1..] {
                    let l = la.min(lb);
                    prop_assert!((a >> (la - l)) != (b >> (lb - l)), "prefix clash");
                }
            }
            // Totals below 64k keep unlimited Huffman trees far shallower than 32.
            let unlimited = HuffmanCode::from_frequencies(&freqs, 32);
            let bits = unlimited.encoded_bits(&freqs);
            prop_assert_eq!(bits, heap_huffman_bits(&freqs));
            prop_assert!(code.encoded_bits(&freqs) >= bits);
            let h = entropy_bits(&freqs);
            let total: u64 = freqs.iter().sum();
            prop_assert!(bits as f64 >= h - 1e-6);
            if used.len() >= 2 {
                prop_assert!((bits as f64) < h + total as f64);
            } else {
                // One symbol has zero entropy yet still costs a bit per occurrence.
                prop_assert_eq!(bits, total);
            }
        }

        #[test]
        fn length_limited_codes_match_brute_force(
            freqs in proptest::collection::vec(1u64..500, 2..=6),
            extra in 0u8..3,
        ) {
            let limit = bit_length(freqs.len() as u32 - 1) as u8 + extra;
            let code = HuffmanCode::from_frequencies(&freqs, limit);
            prop_assert_eq!(code.encoded_bits(&freqs), brute_force_limited_bits(&freqs, limit));
        }

        #[test]
        fn tables_round_trip(
            freqs in proptest::collection::vec(prop_oneof![1 => Just(0u64), 2 => 1u64..1000], 0..300),
            max_len in 1u8..=32,
        ) {
            let code = HuffmanCode::from_frequencies(&freqs, max_len);
            table_round_trip(&code);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn garbage_tables_and_streams_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
            count in 0usize..5000,
        ) {
            let mut r = BitReader::new(&bytes);
            if let Ok(code) = HuffmanCode::read_table(&mut r) {
                let _ = code.decode(&mut r, count);
            }
        }

        #[test]
        fn garbage_streams_under_valid_codes_never_panic(
            freqs in proptest::collection::vec(0u64..50, 1..40),
            max_len in 1u8..=32,
            drop_symbol in any::<prop::sample::Index>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            count in 0usize..2000,
        ) {
            // Dropping a symbol's code from a complete code leaves a hole the garbage can hit.
            let mut lengths = HuffmanCode::from_frequencies(&freqs, max_len).lengths().to_vec();
            let i = drop_symbol.index(lengths.len());
            lengths[i] = 0;
            let code = HuffmanCode::from_lengths(&lengths).unwrap();
            let mut r = BitReader::new(&bytes);
            if let Ok(symbols) = code.decode(&mut r, count) {
                prop_assert_eq!(symbols.len(), count);
                prop_assert!(symbols.iter().all(|&s| code.code(s).is_some()));
            }
        }

        #[test]
        fn corrupted_files_never_panic(
            symbols in proptest::collection::vec(0u16..64, 1..500),
            max_len in 1u8..=16,
            flips in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
            keep in any::<prop::sample::Index>(),
            extra in 0usize..50,
        ) {
            // A valid table and stream, then a few flipped bits and a truncation: this reaches
            // deeper into `read_table` and `decode` than uniformly random bytes do.
            let code = HuffmanCode::from_frequencies(&frequencies(&symbols, 64), max_len);
            let mut w = BitWriter::new();
            code.write_table(&mut w);
            code.encode(&symbols, &mut w).unwrap();
            let mut bytes = w.into_bytes();
            for flip in &flips {
                let bit = flip.index(bytes.len() * 8);
                bytes[bit / 8] ^= 0x80 >> (bit % 8);
            }
            bytes.truncate(keep.index(bytes.len() + 1));
            let mut r = BitReader::new(&bytes);
            if let Ok(read) = HuffmanCode::read_table(&mut r) {
                let count = symbols.len() + extra;
                if let Ok(back) = read.decode(&mut r, count) {
                    prop_assert_eq!(back.len(), count);
                }
            }
        }
    }
}

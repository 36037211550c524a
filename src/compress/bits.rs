//! MSB-first bit streams, the carrier of every Huffman-coded stream in a `.dcz` file.
//!
//! Bits are packed from the most significant bit of each byte down, and a value of `n` bits is
//! written most significant bit first, so a stream reads like one long binary number. The
//! reader takes untrusted bytes: every read is bounds-checked and reports running out as an
//! error rather than panicking.

/// Widest value one `push`, `read` or `peek` handles.
pub(crate) const MAX_WIDTH: u32 = 32;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BitsError {
    #[error("unexpected end of bit stream: wanted {wanted} bits, {left} left")]
    End { wanted: u32, left: u64 },
    #[error("cannot read {0} bits at once (at most {MAX_WIDTH})")]
    TooWide(u32),
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, right-aligned; fewer than 32 between calls, so one more 32-bit push
    /// still fits in the 64-bit accumulator.
    acc: u64,
    pending: u32,
}

impl BitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the low `n` bits of `value`, most significant first; higher bits are ignored.
    ///
    /// # Panics
    /// If `n > 32`: widths come from our own encoders, never from input data, so a wider one
    /// is a bug worth stopping on rather than a stream to silently corrupt.
    #[inline]
    pub fn push(&mut self, value: u32, n: u32) {
        assert!(n <= MAX_WIDTH, "BitWriter::push of {n} bits");
        if n == 0 {
            return;
        }
        let v = u64::from(value) & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.pending += n;
        if self.pending >= 32 {
            self.pending -= 32;
            // Flushing whole 32-bit words keeps the per-symbol cost to one branch.
            self.bytes
                .extend_from_slice(&((self.acc >> self.pending) as u32).to_be_bytes());
            self.acc &= (1u64 << self.pending) - 1;
        }
    }

    pub(crate) fn len_bits(&self) -> u64 {
        self.bytes.len() as u64 * 8 + u64::from(self.pending)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len_bits() == 0
    }

    /// The stream, its last byte padded with zero bits.
    pub(crate) fn into_bytes(mut self) -> Vec<u8> {
        let mut left = self.pending;
        while left >= 8 {
            left -= 8;
            self.bytes.push((self.acc >> left) as u8);
        }
        if left > 0 {
            self.bytes.push((self.acc << (8 - left)) as u8);
        }
        self.bytes
    }
}

#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Bits consumed so far; never more than `total`.
    at: u64,
    total: u64,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            at: 0,
            total: (bytes.len() as u64).saturating_mul(8),
        }
    }

    #[inline]
    pub(crate) fn bits_left(&self) -> u64 {
        self.total - self.at
    }

    /// Bits consumed so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.at
    }

    /// `Err` unless what is left is the zero padding of the last byte: a stream of exactly
    /// the bytes its symbols need, padded with zeros, as the format says.
    pub(crate) fn expect_padding_only(&mut self) -> Result<(), String> {
        let left = self.bits_left();
        if left >= 8 {
            return Err(format!("{} bytes after the last symbol", left / 8));
        }
        match self.read(left as u32) {
            Ok(0) => Ok(()),
            Ok(_) => Err("padding bits after the last symbol are not zero".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next bits left-aligned in a u64: at least 57 of them are real (fewer only near the
    /// end, where missing bits read as zero). One unaligned 8-byte load serves every width up
    /// to 32, which is what makes table-driven Huffman decoding cheap.
    #[inline]
    fn window(&self) -> u64 {
        let byte = (self.at / 8) as usize;
        let word = match self.bytes.get(byte..).and_then(|s| s.first_chunk::<8>()) {
            Some(chunk) => u64::from_be_bytes(*chunk),
            None => {
                let mut buf = [0u8; 8];
                let tail = self.bytes.get(byte..).unwrap_or(&[]);
                buf[..tail.len()].copy_from_slice(tail);
                u64::from_be_bytes(buf)
            }
        };
        word << (self.at % 8)
    }

    #[inline]
    #[cfg(test)]
    pub(crate) fn read_bit(&mut self) -> Result<u32, BitsError> {
        self.read(1)
    }

    /// Reads `n` bits (n <= 32), most significant first. On error nothing is consumed.
    #[inline]
    pub fn read(&mut self, n: u32) -> Result<u32, BitsError> {
        if n > MAX_WIDTH {
            return Err(BitsError::TooWide(n));
        }
        if u64::from(n) > self.bits_left() {
            return Err(BitsError::End {
                wanted: n,
                left: self.bits_left(),
            });
        }
        if n == 0 {
            return Ok(0);
        }
        let v = (self.window() >> (64 - n)) as u32;
        self.at += u64::from(n);
        Ok(v)
    }

    /// The next `n` bits (`n` is capped at 32) without consuming them, right-aligned; bits
    /// past the end read as zero, so a decoder can look ahead a full code length near the end
    /// of a stream and check what it actually consumes with `skip`.
    #[inline]
    pub(crate) fn peek(&self, n: u32) -> u32 {
        let n = n.min(MAX_WIDTH);
        if n == 0 {
            return 0;
        }
        (self.window() >> (64 - n)) as u32
    }

    /// Skips `n` bits; errors (consuming nothing) if fewer are left.
    #[inline]
    pub(crate) fn skip(&mut self, n: u32) -> Result<(), BitsError> {
        if u64::from(n) > self.bits_left() {
            return Err(BitsError::End {
                wanted: n,
                left: self.bits_left(),
            });
        }
        self.at += u64::from(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn msb_first_layout_and_padding() {
        let mut w = BitWriter::new();
        assert!(w.is_empty());
        w.push(0b1, 1);
        w.push(0b011, 3);
        w.push(0xABC, 12);
        w.push(0b11, 2);
        assert_eq!(w.len_bits(), 18);
        assert_eq!(w.into_bytes(), vec![0b1011_1010, 0b1011_1100, 0b1100_0000]);
    }

    #[test]
    fn high_bits_of_the_value_are_ignored() {
        let mut w = BitWriter::new();
        w.push(0xFFFF_FFF5, 4);
        w.push(u32::MAX, 0);
        assert_eq!(w.into_bytes(), vec![0b0101_0000]);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xFF]);
        assert_eq!(r.read(5).unwrap(), 0b11111);
        assert_eq!(r.read(4), Err(BitsError::End { wanted: 4, left: 3 }));
        assert_eq!(r.bits_left(), 3, "a failed read consumes nothing");
        assert_eq!(r.read(3).unwrap(), 0b111);
        assert!(r.read_bit().is_err());
        assert_eq!(r.read(0), Ok(0));
        assert!(r.skip(1).is_err());
        assert!(BitReader::new(&[]).read(1).is_err());
        assert_eq!(
            BitReader::new(&[0; 8]).read(33),
            Err(BitsError::TooWide(33))
        );
    }

    #[test]
    fn peek_pads_with_zeros_and_consumes_nothing() {
        let mut r = BitReader::new(&[0b1010_0000, 0xFF]);
        r.skip(12).unwrap();
        assert_eq!(r.peek(8), 0b1111_0000);
        assert_eq!(r.peek(40), 0xF000_0000);
        assert_eq!(r.bits_left(), 4);
        assert_eq!(r.position(), 12);
    }

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec((any::<u32>(), 0u32..=32), 0..300)) {
            let mut w = BitWriter::new();
            for &(v, n) in &items {
                w.push(v, n);
            }
            let total = w.len_bits();
            prop_assert_eq!(total, items.iter().map(|&(_, n)| u64::from(n)).sum::<u64>());
            let bytes = w.into_bytes();
            prop_assert_eq!(bytes.len() as u64, total.div_ceil(8));
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &items {
                let mask = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
                prop_assert_eq!(r.peek(n), v & mask);
                prop_assert_eq!(r.read(n).unwrap(), v & mask);
            }
            prop_assert_eq!(r.position(), total);
            prop_assert!(r.bits_left() < 8);
            // Padding is zeros, and reading beyond it fails.
            let pad = r.bits_left() as u32;
            prop_assert_eq!(r.read(pad).unwrap(), 0);
            prop_assert!(r.read_bit().is_err());
        }

        #[test]
        fn bit_at_a_time_matches_wide_reads(bytes in proptest::collection::vec(any::<u8>(), 0..40), n in 1u32..=32) {
            let mut wide = BitReader::new(&bytes);
            let mut narrow = BitReader::new(&bytes);
            while let Ok(v) = wide.read(n) {
                let mut u = 0u32;
                for _ in 0..n {
                    u = (u << 1) | narrow.read_bit().unwrap();
                }
                prop_assert_eq!(u, v);
            }
            prop_assert!(wide.bits_left() < u64::from(n));
            prop_assert_eq!(wide.bits_left(), narrow.bits_left());
        }
    }
}

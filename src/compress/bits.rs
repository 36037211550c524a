//! MSB-first bit streams, the carrier of every Huffman-coded stream in a `.dcz` file.

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BitsError {
    #[error("unexpected end of bit stream: wanted {wanted} bits, {left} left")]
    End { wanted: u32, left: u64 },
}

#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, right-aligned; fewer than 8 after every `push`.
    acc: u64,
    pending: u32,
}

impl BitWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the low `n` bits of `value` (n <= 32), most significant first.
    pub fn push(&mut self, value: u32, n: u32) {
        debug_assert!(n <= 32);
        if n == 0 {
            return;
        }
        let v = (value as u64) & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.bytes.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u64 << self.pending) - 1;
    }

    pub fn len_bits(&self) -> u64 {
        self.bytes.len() as u64 * 8 + self.pending as u64
    }

    /// The stream, its last byte padded with zero bits.
    pub fn into_bytes(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.bytes.push((self.acc << (8 - self.pending)) as u8);
        }
        self.bytes
    }
}

#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Position in bits from the start.
    at: u64,
}

impl<'a> BitReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, at: 0 }
    }

    pub fn bits_left(&self) -> u64 {
        self.bytes.len() as u64 * 8 - self.at
    }

    pub fn read_bit(&mut self) -> Result<u32, BitsError> {
        if self.at >= self.bytes.len() as u64 * 8 {
            return Err(BitsError::End { wanted: 1, left: 0 });
        }
        let byte = self.bytes[(self.at / 8) as usize];
        let bit = (byte >> (7 - (self.at % 8))) & 1;
        self.at += 1;
        Ok(bit as u32)
    }

    /// Reads `n` bits (n <= 32), most significant first.
    pub fn read(&mut self, n: u32) -> Result<u32, BitsError> {
        debug_assert!(n <= 32);
        if (n as u64) > self.bits_left() {
            return Err(BitsError::End {
                wanted: n,
                left: self.bits_left(),
            });
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | self.read_bit()? as u64;
        }
        Ok(v as u32)
    }

    /// The next up-to-`n` bits without consuming them, left-aligned in an `n`-bit window
    /// (missing bits past the end read as zero); used by table-driven decoding.
    pub fn peek(&self, n: u32) -> u32 {
        let mut v = 0u32;
        let total = self.bytes.len() as u64 * 8;
        for i in 0..n as u64 {
            let at = self.at + i;
            let bit = if at < total {
                (self.bytes[(at / 8) as usize] >> (7 - (at % 8))) & 1
            } else {
                0
            };
            v = (v << 1) | bit as u32;
        }
        v
    }

    /// Skips `n` bits; errors (consuming nothing) if fewer are left.
    pub fn skip(&mut self, n: u32) -> Result<(), BitsError> {
        if (n as u64) > self.bits_left() {
            return Err(BitsError::End {
                wanted: n,
                left: self.bits_left(),
            });
        }
        self.at += n as u64;
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
        w.push(0b1, 1);
        w.push(0b011, 3);
        w.push(0xABC, 12);
        w.push(0b11, 2);
        assert_eq!(w.len_bits(), 18);
        assert_eq!(w.into_bytes(), vec![0b1011_1010, 0b1011_1100, 0b1100_0000]);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xFF]);
        assert_eq!(r.read(5).unwrap(), 0b11111);
        assert!(r.read(4).is_err());
        assert_eq!(r.read(3).unwrap(), 0b111);
        assert!(r.read_bit().is_err());
        assert!(BitReader::new(&[]).read(1).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(items in proptest::collection::vec((any::<u32>(), 0u32..=32), 0..200)) {
            let mut w = BitWriter::new();
            for &(v, n) in &items {
                w.push(v, n);
            }
            let total = w.len_bits();
            prop_assert_eq!(total, items.iter().map(|&(_, n)| n as u64).sum::<u64>());
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes);
            for &(v, n) in &items {
                let mask = if n == 32 { u32::MAX } else { (1u32 << n) - 1 };
                prop_assert_eq!(r.peek(n), v & mask);
                prop_assert_eq!(r.read(n).unwrap(), v & mask);
            }
            prop_assert!(r.bits_left() < 8);
        }
    }
}

//! 64-bit fingerprints of weight sets, so equal weights share cached activations whatever
//! settings produced them. Not cryptographic; a domain tag and the lengths go in first so
//! different encodings of a layer never collide by construction.

use crate::compress::model::CompressedLayer;

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[derive(Clone, Copy)]
pub(crate) struct Hasher(u64);

impl Hasher {
    pub fn new(tag: u64) -> Self {
        Hasher(tag.wrapping_mul(K) ^ 0x243F_6A88_85A3_08D3)
    }
    #[inline]
    pub(crate) fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(26) ^ w).wrapping_mul(K);
    }
    pub(crate) fn f32s(&mut self, v: &[f32]) {
        self.word(v.len() as u64);
        let mut it = v.chunks_exact(2);
        for c in &mut it {
            self.word(u64::from(c[0].to_bits()) | u64::from(c[1].to_bits()) << 32);
        }
        for &x in it.remainder() {
            self.word(u64::from(x.to_bits()));
        }
    }
    pub(crate) fn u32s(&mut self, v: &[u32]) {
        self.word(v.len() as u64);
        let mut it = v.chunks_exact(2);
        for c in &mut it {
            self.word(u64::from(c[0]) | u64::from(c[1]) << 32);
        }
        for &x in it.remainder() {
            self.word(u64::from(x));
        }
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.word(v.len() as u64);
        let mut it = v.chunks_exact(8);
        for c in &mut it {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..it.remainder().len()].copy_from_slice(it.remainder());
        self.word(u64::from_le_bytes(last));
    }
    /// Final avalanche (splitmix64's), so nearby states give unrelated outputs.
    pub fn finish(self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Fingerprint of a compressed layer's effective weights and biases.
pub fn compressed(layer: usize, c: &CompressedLayer) -> u64 {
    let mut h = Hasher::new(1 + ((layer as u64) << 8));
    h.u32s(&c.positions);
    h.bytes(&c.assignments);
    h.f32s(&c.codebook);
    h.f32s(&c.bias);
    h.finish()
}

/// Fingerprint of dense weights and biases.
pub fn dense(layer: usize, weights: &[f32], bias: &[f32]) -> u64 {
    let mut h = Hasher::new(2 + ((layer as u64) << 8));
    h.f32s(weights);
    h.f32s(bias);
    h.finish()
}

//! The IDX format (LeCun's MNIST container), raw or gzip-compressed, unsigned bytes only.
//!
//! Layout: `00 00 <type> <ndims>`, then `ndims` big-endian u32 dimensions, then the elements.
//! Every length check happens before the allocation it would justify, so a hostile or corrupt
//! header cannot make us reserve more than [`MAX_ELEMENTS`] bytes.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::DataError;

/// Largest payload we accept. MNIST's biggest file has 47M elements; the margin allows
/// similar datasets (EMNIST, Fashion-MNIST) without letting a header ask for gigabytes.
pub(crate) const MAX_ELEMENTS: usize = 100_000_000;

/// The only element type MNIST uses.
const TYPE_U8: u8 = 0x08;

/// deflate cannot expand data by more than about 1032:1, so a gzip input of `n` bytes can
/// never justify reserving more than this many times `n`.
const GZIP_MAX_RATIO: usize = 1032;

/// How far past the declared payload we read to report how much extra data there is; beyond
/// this we only say "at least", to keep a gzip bomb from costing minutes.
const TRAILING_SCAN_LIMIT: u64 = 64 << 20;

#[derive(Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

impl IdxArray {
    /// `10000x28x28`, the form used in error messages.
    pub fn shape(&self) -> String {
        shape_string(&self.dims)
    }

    /// Serialises as raw (uncompressed) IDX. Used for fixtures; panics if a dimension does not
    /// fit the format's u32 or there are more than 255 of them, which no caller produces.
    #[cfg(test)]
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let ndims = u8::try_from(self.dims.len()).expect("IDX allows at most 255 dimensions");
        let mut out = Vec::with_capacity(4 + 4 * self.dims.len() + self.data.len());
        out.extend_from_slice(&[0, 0, TYPE_U8, ndims]);
        for &d in &self.dims {
            let d = u32::try_from(d).expect("IDX dimensions are u32");
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(&self.data);
        out
    }
}

// Printing tens of megabytes of pixels in a panic message helps nobody.
impl fmt::Debug for IdxArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdxArray")
            .field("dims", &self.dims)
            .field("data", &format_args!("[{} bytes]", self.data.len()))
            .finish()
    }
}

/// What is wrong with a file that is not valid IDX; [`DataError::Idx`] pairs it with the name.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum IdxProblem {
    #[error("too short for an IDX header: need {needed} bytes, found {found}")]
    ShortHeader { needed: usize, found: usize },

    #[error("not an IDX file: it starts {0:02x} {1:02x}, IDX files start 00 00")]
    BadMagic(u8, u8),

    #[error("unsupported IDX element type 0x{0:02x}: only 0x08 (unsigned byte) is supported")]
    UnsupportedType(u8),

    #[error("IDX header declares zero dimensions")]
    NoDimensions,

    #[error("header says {shape} elements, more than the limit of {limit}")]
    TooLarge { shape: String, limit: usize },

    #[error("truncated: header says {shape} = {expected} bytes of data, found {found}")]
    Truncated {
        shape: String,
        expected: usize,
        found: usize,
    },

    #[error(
        "trailing data: header says {shape} = {expected} bytes of data, found {}{found}",
        if *.at_least { "at least " } else { "" }
    )]
    Trailing {
        shape: String,
        expected: usize,
        found: u64,
        at_least: bool,
    },

    #[error("corrupt gzip data after {decoded} uncompressed bytes: {message}")]
    Gzip { decoded: u64, message: String },
}

/// Parses IDX bytes, gzip-compressed or not (told apart by the gzip magic `1f 8b`, since
/// files get renamed). `name` only labels errors.
#[cfg(any(test, fuzzing))]
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<IdxArray, DataError> {
    parse(bytes, name, false).map(|(array, _)| array)
}

/// Reads and parses an IDX file, also returning the sha256 of its uncompressed bytes: that is
/// what identifies a dataset, because mirrors compress the same data differently.
pub fn read_idx(path: &Path) -> Result<(IdxArray, [u8; 32]), DataError> {
    let name = path.display().to_string();
    let len = fs::metadata(path)
        .map_err(|e| DataError::io(path, e))?
        .len();
    // Neither a raw nor a compressed file of an acceptable array can be this big, so refuse
    // before reading it into memory.
    let max_len = 2 * MAX_ELEMENTS as u64 + 4096;
    if len > max_len {
        return Err(DataError::Invalid {
            name,
            reason: format!("file is {len} bytes, too large to be an accepted IDX file"),
        });
    }
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let (array, digest) = parse(&bytes, &name, true)?;
    Ok((array, digest.expect("digest was requested")))
}

/// sha256 of the uncompressed content of `bytes` (gzip or raw), without parsing it. Used to
/// check downloads and files already in place.
pub(crate) fn sha256_uncompressed(bytes: &[u8]) -> io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    if is_gzip(bytes) {
        let mut buf = vec![0u8; 1 << 16];
        let mut decoder = MultiGzDecoder::new(bytes);
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    } else {
        hasher.update(bytes);
    }
    Ok(hasher.finalize().into())
}

pub(crate) fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

fn shape_string(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn parse(bytes: &[u8], name: &str, hash: bool) -> Result<(IdxArray, Option<[u8; 32]>), DataError> {
    let fail = |problem| DataError::Idx {
        name: name.to_string(),
        problem,
    };
    if is_gzip(bytes) {
        let capacity_bound = bytes.len().saturating_mul(GZIP_MAX_RATIO);
        let reader = Hashing::new(MultiGzDecoder::new(bytes), hash);
        parse_stream(reader, capacity_bound).map_err(fail)
    } else {
        let reader = Hashing::new(bytes, hash);
        parse_stream(reader, bytes.len()).map_err(fail)
    }
}

/// `capacity_bound` is the most payload the input could possibly hold, so a header claiming
/// more is caught as truncation without first reserving what it claims.
fn parse_stream<R: Read>(
    mut reader: Hashing<R>,
    capacity_bound: usize,
) -> Result<(IdxArray, Option<[u8; 32]>), IdxProblem> {
    let mut head = [0u8; 4];
    let found = read_full(&mut reader, &mut head)?;
    if found < 4 {
        return Err(IdxProblem::ShortHeader { needed: 4, found });
    }
    let [m0, m1, ty, ndims] = head;
    if (m0, m1) != (0, 0) {
        return Err(IdxProblem::BadMagic(m0, m1));
    }
    if ty != TYPE_U8 {
        return Err(IdxProblem::UnsupportedType(ty));
    }
    if ndims == 0 {
        return Err(IdxProblem::NoDimensions);
    }

    let mut dim_bytes = vec![0u8; 4 * ndims as usize];
    let found = read_full(&mut reader, &mut dim_bytes)?;
    if found < dim_bytes.len() {
        return Err(IdxProblem::ShortHeader {
            needed: 4 + dim_bytes.len(),
            found: 4 + found,
        });
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let shape = shape_string(&dims);
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| IdxProblem::TooLarge {
            shape: shape.clone(),
            limit: MAX_ELEMENTS,
        })?;

    let mut data = Vec::with_capacity(expected.min(capacity_bound));
    (&mut reader)
        .take(expected as u64)
        .read_to_end(&mut data)
        .map_err(|e| gzip_problem(&reader, e))?;
    if data.len() < expected {
        return Err(IdxProblem::Truncated {
            shape,
            expected,
            found: data.len(),
        });
    }

    // Reading to the end also makes the gzip decoder check its CRC, so corruption in the
    // compressed stream is reported even when the sizes happen to line up.
    let extra = io::copy(
        &mut (&mut reader).take(TRAILING_SCAN_LIMIT),
        &mut io::sink(),
    )
    .map_err(|e| gzip_problem(&reader, e))?;
    if extra > 0 {
        return Err(IdxProblem::Trailing {
            shape,
            expected,
            found: expected as u64 + extra,
            at_least: extra == TRAILING_SCAN_LIMIT,
        });
    }

    let digest = reader.hasher.map(|h| h.finalize().into());
    Ok((IdxArray { dims, data }, digest))
}

/// Reading from memory only fails inside the gzip decoder, so every I/O error is a gzip one.
fn gzip_problem<R>(reader: &Hashing<R>, e: io::Error) -> IdxProblem {
    IdxProblem::Gzip {
        decoded: reader.count,
        message: e.to_string(),
    }
}

/// Like `read_exact`, but reports how much it got instead of failing at end of input, so the
/// error can say how short the header was.
fn read_full<R: Read>(reader: &mut Hashing<R>, buf: &mut [u8]) -> Result<usize, IdxProblem> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(gzip_problem(reader, e)),
        }
    }
    Ok(filled)
}

/// Hashes the uncompressed bytes as they stream past, saving a second pass over ~47 MB.
struct Hashing<R> {
    inner: R,
    hasher: Option<Sha256>,
    count: u64,
}

impl<R> Hashing<R> {
    fn new(inner: R, hash: bool) -> Self {
        Hashing {
            inner,
            hasher: hash.then(Sha256::new),
            count: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![3, 2, 2],
            data: (0..12).collect(),
        }
    }

    fn problem(result: Result<IdxArray, DataError>) -> IdxProblem {
        match result {
            Err(DataError::Idx { problem, .. }) => problem,
            other => panic!("expected an IDX error, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_raw_and_gzip() {
        let raw = sample().to_bytes();
        assert_eq!(parse_idx(&raw, "raw").unwrap(), sample());
        assert_eq!(parse_idx(&gzip(&raw), "gz").unwrap(), sample());
    }

    #[test]
    fn read_idx_hashes_uncompressed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = sample().to_bytes();
        let want: [u8; 32] = Sha256::digest(&raw).into();
        // The extension is deliberately misleading: detection is by content.
        let gz_path = dir.path().join("a.raw");
        let raw_path = dir.path().join("b.gz");
        fs::write(&gz_path, gzip(&raw)).unwrap();
        fs::write(&raw_path, &raw).unwrap();
        for path in [&gz_path, &raw_path] {
            let (array, digest) = read_idx(path).unwrap();
            assert_eq!(array, sample());
            assert_eq!(digest, want);
        }
        assert_eq!(sha256_uncompressed(&gzip(&raw)).unwrap(), want);
    }

    #[test]
    fn truncated_message_names_file_and_sizes() {
        let raw = IdxArray {
            dims: vec![10, 28, 28],
            data: vec![0; 7840],
        }
        .to_bytes();
        let cut = &raw[..raw.len() - 40];
        for bytes in [cut.to_vec(), gzip(cut)] {
            let err = parse_idx(&bytes, "t10k-images-idx3-ubyte.gz").unwrap_err();
            assert_eq!(
                err.to_string(),
                "t10k-images-idx3-ubyte.gz: truncated: header says 10x28x28 = 7840 bytes of \
                 data, found 7800"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut raw = sample().to_bytes();
        raw.extend_from_slice(&[1, 2, 3]);
        for bytes in [raw.clone(), gzip(&raw)] {
            assert_eq!(
                problem(parse_idx(&bytes, "x")),
                IdxProblem::Trailing {
                    shape: "3x2x2".into(),
                    expected: 12,
                    found: 15,
                    at_least: false
                }
            );
        }
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            problem(parse_idx(&[0, 0], "x")),
            IdxProblem::ShortHeader {
                needed: 4,
                found: 2
            }
        );
        assert_eq!(
            problem(parse_idx(&[0, 0, 8, 2, 0, 0, 0, 1], "x")),
            IdxProblem::ShortHeader {
                needed: 12,
                found: 8
            }
        );
        assert_eq!(
            problem(parse_idx(&[1, 0, 8, 1, 0, 0, 0, 0], "x")),
            IdxProblem::BadMagic(1, 0)
        );
        assert_eq!(
            problem(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "x")),
            IdxProblem::UnsupportedType(0x0d)
        );
        assert_eq!(
            problem(parse_idx(&[0, 0, 8, 0], "x")),
            IdxProblem::NoDimensions
        );
        let err = parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1], "train.gz").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("train.gz: unsupported IDX element type 0x0d")
        );
    }

    #[test]
    fn hostile_dimensions_are_refused_before_allocating() {
        // Product overflows usize.
        let mut overflow = vec![0, 0, 8, 4];
        for _ in 0..4 {
            overflow.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        assert!(matches!(
            problem(parse_idx(&overflow, "x")),
            IdxProblem::TooLarge { .. }
        ));
        // Fits usize but is over the cap.
        let mut big = vec![0, 0, 8, 2];
        big.extend_from_slice(&100_000u32.to_be_bytes());
        big.extend_from_slice(&100_000u32.to_be_bytes());
        let err = parse_idx(&big, "big").unwrap_err();
        assert_eq!(
            err.to_string(),
            "big: header says 100000x100000 elements, more than the limit of 100000000"
        );
        // Under the cap with almost no data: reported as truncated, from a tiny gzip input.
        let mut near = vec![0, 0, 8, 1];
        near.extend_from_slice(&(MAX_ELEMENTS as u32).to_be_bytes());
        assert!(matches!(
            problem(parse_idx(&gzip(&near), "x")),
            IdxProblem::Truncated { found: 0, .. }
        ));
    }

    #[test]
    fn corrupt_gzip_is_reported_as_gzip() {
        let raw = IdxArray {
            dims: vec![1000],
            data: (0..1000).map(|i| (i * 7 % 251) as u8).collect(),
        }
        .to_bytes();
        let mut gz = gzip(&raw);
        // Flip a byte in the CRC trailer: the sizes still match, only the checksum catches it.
        let crc_at = gz.len() - 8;
        gz[crc_at] ^= 0xff;
        assert!(matches!(
            problem(parse_idx(&gz, "x")),
            IdxProblem::Gzip { .. }
        ));
    }

    #[test]
    fn zero_sized_dimension_is_an_empty_array() {
        let empty = IdxArray {
            dims: vec![0, 28, 28],
            data: vec![],
        };
        assert_eq!(parse_idx(&empty.to_bytes(), "x").unwrap(), empty);
    }

    fn arb_idx() -> impl Strategy<Value = IdxArray> {
        prop::collection::vec(0usize..5, 1..4).prop_flat_map(|dims| {
            let n: usize = dims.iter().product();
            prop::collection::vec(any::<u8>(), n).prop_map(move |data| IdxArray {
                dims: dims.clone(),
                data,
            })
        })
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(usize),
        Flip(usize, u8),
        Append(Vec<u8>),
        Overwrite(usize, Vec<u8>),
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1u8..).prop_map(|(i, x)| Mutation::Flip(i, x)),
            prop::collection::vec(any::<u8>(), 1..16).prop_map(Mutation::Append),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
                .prop_map(|(i, b)| Mutation::Overwrite(i, b)),
        ]
    }

    fn apply(mut bytes: Vec<u8>, m: &Mutation) -> Vec<u8> {
        match m {
            Mutation::Truncate(i) => bytes.truncate(i % (bytes.len() + 1)),
            Mutation::Flip(i, x) => {
                let i = i % bytes.len();
                bytes[i] ^= x;
            }
            Mutation::Append(extra) => bytes.extend_from_slice(extra),
            Mutation::Overwrite(i, patch) => {
                let start = i % bytes.len();
                for (dst, src) in bytes[start..].iter_mut().zip(patch) {
                    *dst = *src;
                }
            }
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::testing::fuzz_cases(256)))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_idx(&bytes, "fuzz");
        }

        #[test]
        fn arbitrary_gzip_payload_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_idx(&gzip(&bytes), "fuzz");
        }

        #[test]
        fn valid_files_round_trip(array in arb_idx(), compress in any::<bool>()) {
            let raw = array.to_bytes();
            let bytes = if compress { gzip(&raw) } else { raw };
            prop_assert_eq!(parse_idx(&bytes, "ok").unwrap(), array);
        }

        #[test]
        fn mutated_files_never_panic(
            array in arb_idx(),
            compress in any::<bool>(),
            mutation in arb_mutation(),
        ) {
            let raw = array.to_bytes();
            let bytes = if compress { gzip(&raw) } else { raw.clone() };
            let mutated = apply(bytes, &mutation);
            let result = parse_idx(&mutated, "fuzz");
            // Length changes to a raw file can never go unnoticed.
            if !compress && mutated.len() != raw.len() && mutated.starts_with(&raw[..4 + 4 * array.dims.len()]) {
                prop_assert!(result.is_err());
            }
            if let Ok(parsed) = result {
                let n: usize = parsed.dims.iter().product();
                prop_assert_eq!(parsed.data.len(), n);
            }
        }
    }
}

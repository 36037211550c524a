//! The MNIST dataset: loading the four IDX files, normalising, and finding where they live.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use sha2::{Digest, Sha256};

use super::DataError;
use super::idx::{IdxArray, read_idx};

/// The usual MNIST normalisation constants (mean and standard deviation of the training pixels
/// scaled to [0, 1]); every model in the crate expects inputs normalised with them.
pub const MEAN: f32 = 0.1307;
pub const STD: f32 = 0.3081;

pub const ROWS: usize = 28;
pub const COLS: usize = 28;
pub const PIXELS: usize = ROWS * COLS;

/// Environment variable naming a directory that holds the four files.
pub(crate) const DATA_ENV: &str = "DCX_DATA";

/// One of the four MNIST files as published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MnistFile {
    /// File name without `.gz`; both `stem` and `stem.gz` are accepted on disk.
    pub stem: &'static str,
    /// Shape of the original file, used to recognise when a checksum must match.
    pub dims: &'static [usize],
    /// sha256 of the uncompressed bytes, hex. Compressed bytes differ between mirrors.
    pub sha256: &'static str,
}

impl MnistFile {
    pub(crate) fn gz_name(&self) -> String {
        format!("{}.gz", self.stem)
    }

    /// The `.gz` name wins when both exist: it is what `dcx data fetch` writes. A name the OS
    /// will not let dcx look at is an error, not a missing file.
    pub(crate) fn find_in(&self, dir: &Path) -> Result<Option<PathBuf>, FolderProblem> {
        let mut not_a_file = None;
        for path in [dir.join(self.gz_name()), dir.join(self.stem)] {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => return Ok(Some(path)),
                Ok(_) => not_a_file = Some(path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(FolderProblem::Unreadable {
                        path,
                        error,
                        folder: false,
                    });
                }
            }
        }
        match not_a_file {
            // A folder, a pipe or a device under the file's name: said as such, not "missing".
            Some(path) => Err(FolderProblem::Missing(format!(
                "{} is not a regular file (a folder, a device or a pipe)",
                path.display()
            ))),
            None => Ok(None),
        }
    }
}

/// In this order: train images, train labels, test images, test labels.
pub const FILES: [MnistFile; 4] = [
    MnistFile {
        stem: "train-images-idx3-ubyte",
        dims: &[60000, 28, 28],
        sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    MnistFile {
        stem: "train-labels-idx1-ubyte",
        dims: &[60000],
        sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    MnistFile {
        stem: "t10k-images-idx3-ubyte",
        dims: &[10000, 28, 28],
        sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    MnistFile {
        stem: "t10k-labels-idx1-ubyte",
        dims: &[10000],
        sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
];

#[derive(Clone, PartialEq)]
pub struct Split {
    /// `len * PIXELS` values, row-major per image, normalised as `(x / 255 - MEAN) / STD`.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
    pub len: usize,
}

impl Split {
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    fn prefix(&self, n: usize) -> Split {
        let n = n.min(self.len);
        Split {
            images: self.images[..n * PIXELS].to_vec(),
            labels: self.labels[..n].to_vec(),
            len: n,
        }
    }
}

impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Split {{ len: {} }}", self.len)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
    /// 16 hex digits derived from the four files' uncompressed sha256 (and the subset sizes,
    /// for a subset); identical data gives an identical fingerprint, so it keys caches.
    pub fingerprint: String,
}

impl Mnist {
    /// Loads and checks the four files in `dir`. A file with the shape of the original MNIST
    /// must also have its checksum, because a damaged copy would otherwise silently skew every
    /// figure; files of other shapes (fixtures) cannot be mistaken for it and load as they are.
    pub fn load(dir: &Path) -> Result<Mnist, DataError> {
        load(dir, true)
    }

    /// Like [`Mnist::load`] without the checksum check, for same-shaped stand-ins such as
    /// Fashion-MNIST or hand-made fixtures.
    #[cfg(test)]
    pub(crate) fn load_unverified(dir: &Path) -> Result<Mnist, DataError> {
        load(dir, false)
    }

    /// The first `n_train` training and `n_test` test examples (clamped to what exists).
    pub fn subset(&self, n_train: usize, n_test: usize) -> Mnist {
        let train = self.train.prefix(n_train);
        let test = self.test.prefix(n_test);
        let fingerprint = if train.len == self.train.len && test.len == self.test.len {
            self.fingerprint.clone()
        } else {
            let key = format!("{}:{}:{}", self.fingerprint, train.len, test.len);
            short_hex(&Sha256::digest(key.as_bytes()))
        };
        Mnist {
            train,
            test,
            fingerprint,
        }
    }
}

impl Mnist {
    /// The tuning view: its training set is the first `len - n` training images and its test
    /// set the last `n` (a validation split carved from the training set), so whatever is
    /// selected on it never sees the real test set. Training on the first `len - n` images
    /// is what `train_limit = len - n` does on the full data. `None` when `n` leaves no
    /// training image or is 0.
    pub fn holdout(&self, n: usize) -> Option<Mnist> {
        let kept = self.train.len.checked_sub(n).filter(|&k| k > 0 && n > 0)?;
        let test = Split {
            images: self.train.images[kept * PIXELS..].to_vec(),
            labels: self.train.labels[kept..].to_vec(),
            len: n,
        };
        let key = format!("{}:holdout:{n}", self.fingerprint);
        Some(Mnist {
            train: self.train.prefix(kept),
            test,
            fingerprint: short_hex(&Sha256::digest(key.as_bytes())),
        })
    }
}

fn short_hex(digest: &[u8]) -> String {
    hex::encode(&digest[..8])
}

fn load(dir: &Path, verify: bool) -> Result<Mnist, DataError> {
    let paths = match find_files(dir) {
        Ok(paths) => paths,
        Err(FolderProblem::Missing(what)) => {
            return Err(DataError::NotFound(format!(
                "{}: {what}; to fix, {FIX_HINT}",
                dir.display()
            )));
        }
        Err(unreadable) => return Err(unreadable.into_error("")),
    };

    // Decompressing the training images dominates; reading the files side by side hides
    // the other three behind it.
    let results: Vec<Result<(IdxArray, [u8; 32]), DataError>> = thread::scope(|s| {
        let handles: Vec<_> = paths.iter().map(|p| s.spawn(move || read_idx(p))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("IDX reader thread panicked"))
            .collect()
    });

    let mut arrays = Vec::with_capacity(FILES.len());
    let mut fingerprint = Sha256::new();
    for ((file, path), result) in FILES.iter().zip(&paths).zip(results) {
        let (array, digest) = result?;
        let actual_hex = hex::encode(digest);
        if let Some(other) = FILES
            .iter()
            .find(|o| o.stem != file.stem && o.sha256 == actual_hex)
        {
            // The official bytes of another file: renamed or swapped (train for test would
            // report "test accuracy" on training images).
            return Err(DataError::Invalid {
                name: path.display().to_string(),
                reason: format!(
                    "holds the contents of {} (the files are swapped or renamed)",
                    other.stem
                ),
            });
        }
        if verify && array.dims == file.dims {
            let actual = hex::encode(digest);
            if actual != file.sha256 {
                return Err(DataError::Checksum {
                    name: path.display().to_string(),
                    expected: file.sha256.to_string(),
                    actual,
                });
            }
        }
        fingerprint.update(digest);
        arrays.push(array);
    }

    let mut arrays = arrays.into_iter();
    let mut next = || arrays.next().expect("four arrays");
    let (train_images, train_labels, test_images, test_labels) = (next(), next(), next(), next());
    let (train, test) = thread::scope(|s| {
        let train = s.spawn(|| split(train_images, train_labels, &paths[0], &paths[1]));
        let test = split(test_images, test_labels, &paths[2], &paths[3]);
        (train.join().expect("conversion thread panicked"), test)
    });
    let (train, test) = (train?, test?);
    for (split, path) in [(&train, &paths[0]), (&test, &paths[2])] {
        if split.len == 0 {
            return Err(DataError::Invalid {
                name: path.display().to_string(),
                reason: "holds no images".into(),
            });
        }
    }
    Ok(Mnist {
        train,
        test,
        fingerprint: short_hex(&fingerprint.finalize()),
    })
}

fn split(
    images: IdxArray,
    labels: IdxArray,
    images_path: &Path,
    labels_path: &Path,
) -> Result<Split, DataError> {
    let invalid = |path: &Path, reason: String| DataError::Invalid {
        name: path.display().to_string(),
        reason,
    };
    if images.dims.len() != 3 || images.dims[1..] != [ROWS, COLS] {
        return Err(invalid(
            images_path,
            format!(
                "expected N images of {ROWS}x{COLS} pixels, found shape {}",
                images.shape()
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(invalid(
            labels_path,
            format!(
                "expected a flat list of labels, found shape {}",
                labels.shape()
            ),
        ));
    }
    let n = images.dims[0];
    if labels.dims[0] != n {
        return Err(invalid(
            labels_path,
            format!(
                "has {} labels but {} has {n} images",
                labels.dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some((i, &l)) = labels.data.iter().enumerate().find(|&(_, &l)| l >= 10) {
        return Err(invalid(
            labels_path,
            format!("label {i} is {l}; digits are 0 to 9"),
        ));
    }
    Ok(Split {
        images: normalise(&images.data),
        labels: labels.data,
        len: n,
    })
}

/// A 256-entry table turns normalisation into one lookup per pixel, and computes each value
/// exactly as `(x / 255 - MEAN) / STD` would.
fn normalise(pixels: &[u8]) -> Vec<f32> {
    let mut table = [0f32; 256];
    for (x, v) in table.iter_mut().enumerate() {
        *v = (x as f32 / 255.0 - MEAN) / STD;
    }
    pixels.iter().map(|&p| table[p as usize]).collect()
}

const FIX_HINT: &str = "run `dcx data fetch`, or pass `--data DIR` or set DCX_DATA=DIR \
     to a folder holding the four MNIST IDX files train-images-idx3-ubyte.gz, \
     train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz \
     (gzip-compressed or not, with or without the .gz)";

/// Where `dcx data fetch` puts MNIST by default (e.g. `~/.local/share/dcx/mnist` on Linux);
/// `None` when the platform has no home directory.
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("org", "dcx", "dcx").map(|d| d.data_dir().join("mnist"))
}

/// Finds the MNIST directory: `explicit` (from `--data`), else `$DCX_DATA`, else
/// [`default_data_dir`]; a directory counts when all four files are in it.
///
/// An explicit directory is final: if it lacks the files that is an error, not a reason to
/// quietly train on data from somewhere else than the user asked.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, DataError> {
    let env = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty());
    locate_in(explicit, env, default_data_dir())
}

fn locate_in(
    explicit: Option<&Path>,
    env: Option<OsString>,
    default: Option<PathBuf>,
) -> Result<PathBuf, DataError> {
    if let Some(dir) = explicit {
        return match find_files(dir) {
            Ok(_) => Ok(dir.to_path_buf()),
            Err(FolderProblem::Missing(what)) => Err(DataError::NotFound(format!(
                "MNIST not found in {} (given with --data): {what}; to fix, {FIX_HINT}",
                dir.display()
            ))),
            Err(unreadable) => Err(unreadable.into_error(" (given with --data)")),
        };
    }

    let mut looked = Vec::new();
    let candidates = [
        env.map(|v| (PathBuf::from(v), format!("${DATA_ENV}"))),
        default.map(|d| (d, "default data directory".to_string())),
    ];
    for (dir, source) in candidates.into_iter().flatten() {
        match find_files(&dir) {
            Ok(_) => return Ok(dir),
            Err(problem) => looked.push(format!("  {} ({source}): {problem}", dir.display())),
        }
    }
    if looked.is_empty() {
        looked.push(format!(
            "  nothing: ${DATA_ENV} is unset and this platform has no default data directory"
        ));
    }
    Err(DataError::NotFound(format!(
        "MNIST not found. Looked in:\n{}\nTo fix, {FIX_HINT}",
        looked.join("\n"),
    )))
}

/// Why a folder does not give dcx the four files.
#[derive(Debug)]
pub(crate) enum FolderProblem {
    /// Not there, not a folder, files missing or not regular files, described ("missing
    /// NAME[.gz], ...").
    Missing(String),
    /// The OS will not let dcx look into the folder (or at a file in it): a folder dcx may not
    /// read is not an empty one, and saying "missing" four times would send the user to
    /// download files that are there.
    Unreadable {
        path: PathBuf,
        error: io::Error,
        /// The folder itself, not a file in it.
        folder: bool,
    },
}

impl fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FolderProblem::Missing(what) => f.write_str(what),
            FolderProblem::Unreadable { path, error, .. } => {
                write!(f, "cannot read {}: {error}", path.display())
            }
        }
    }
}

impl FolderProblem {
    /// One error naming what cannot be read and the OS's reason; `context` follows the path.
    fn into_error(self, context: &str) -> DataError {
        match self {
            FolderProblem::Missing(what) => DataError::NotFound(what),
            FolderProblem::Unreadable {
                path,
                error,
                folder,
            } => {
                let what = if folder { "folder" } else { "file" };
                let message = format!("cannot read this MNIST {what}{context}: {error}");
                DataError::io(path, io::Error::new(error.kind(), message))
            }
        }
    }
}

/// The four files in `dir`, in [`FILES`] order, or what keeps dcx from them.
fn find_files(dir: &Path) -> Result<Vec<PathBuf>, FolderProblem> {
    let unreadable = |error| FolderProblem::Unreadable {
        path: dir.to_path_buf(),
        error,
        folder: true,
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FolderProblem::Missing("directory does not exist".into()));
        }
        Err(e) => return Err(unreadable(e)),
        Ok(m) if !m.is_dir() => return Err(FolderProblem::Missing("not a directory".into())),
        Ok(_) => {}
    }
    // Looking a file up needs search permission; listing the folder needs read permission.
    // Without either, every file would look missing.
    std::fs::read_dir(dir).map_err(unreadable)?;
    let mut paths = Vec::with_capacity(FILES.len());
    let mut missing = Vec::new();
    for file in &FILES {
        match file.find_in(dir)? {
            Some(p) => paths.push(p),
            None => missing.push(file.stem),
        }
    }
    if missing.is_empty() {
        Ok(paths)
    } else {
        Err(FolderProblem::Missing(format!(
            "missing {}[.gz]",
            missing.join("[.gz], ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::fs;
    use std::io::Write;
    use std::time::Instant;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A small fake MNIST: image `i` is filled with `i`, label `i % 10`.
    fn write_fixture(dir: &Path, n_train: usize, n_test: usize, compress: bool) {
        for (file, n) in FILES.iter().zip([n_train, n_train, n_test, n_test]) {
            let array = if file.dims.len() == 3 {
                IdxArray {
                    dims: vec![n, ROWS, COLS],
                    data: (0..n).flat_map(|i| [i as u8; PIXELS]).collect(),
                }
            } else {
                IdxArray {
                    dims: vec![n],
                    data: (0..n).map(|i| (i % 10) as u8).collect(),
                }
            };
            write_array(dir, file, &array, compress);
        }
    }

    fn write_array(dir: &Path, file: &MnistFile, array: &IdxArray, compress: bool) {
        let raw = array.to_bytes();
        // Only one of the two names may exist, or the other would shadow the change.
        let _ = fs::remove_file(dir.join(file.gz_name()));
        let _ = fs::remove_file(dir.join(file.stem));
        if compress {
            fs::write(dir.join(file.gz_name()), gzip(&raw)).unwrap();
        } else {
            fs::write(dir.join(file.stem), raw).unwrap();
        }
    }

    #[test]
    fn an_empty_split_is_an_error_not_an_accuracy_of_0_of_0() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 20, 0, false);
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("t10k-images") && err.contains("no images"),
            "{err}"
        );
    }

    #[test]
    fn swapped_official_files_are_refused() {
        // Needs the real files: only their checksums identify them.
        let Some(real) = real_data_dir() else {
            eprintln!("skipping swapped_official_files_are_refused: DCX_DATA is not set");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for (from, to) in [(0, 2), (1, 3), (2, 0), (3, 1)] {
            let src = FILES[from]
                .find_in(&real)
                .ok()
                .flatten()
                .expect("real MNIST has every file");
            let name = src
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(FILES[from].stem, FILES[to].stem);
            #[cfg(unix)]
            std::os::unix::fs::symlink(&src, dir.path().join(name)).unwrap();
            #[cfg(not(unix))]
            fs::copy(&src, dir.path().join(name)).unwrap();
        }
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("swapped or renamed"), "{err}");
    }

    fn real_data_dir() -> Option<PathBuf> {
        match std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
            Some(d) => Some(PathBuf::from(d)),
            None => {
                eprintln!(
                    "skipping: set {DATA_ENV}=/path/to/mnist (the folder with the four IDX \
                     files, e.g. ../shared/datasets/mnist) to run"
                );
                None
            }
        }
    }

    #[test]
    fn loads_fixture_gz_and_raw() {
        for compress in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            write_fixture(dir.path(), 12, 5, compress);
            let m = Mnist::load(dir.path()).unwrap();
            assert_eq!((m.train.len, m.test.len), (12, 5));
            assert_eq!(m.train.images.len(), 12 * PIXELS);
            assert_eq!(m.test.labels, vec![0, 1, 2, 3, 4]);
            assert_eq!(m.train.image(3)[0], (3.0 / 255.0 - MEAN) / STD);
            assert_eq!(m.train.image(0)[0], -MEAN / STD);
            assert_eq!(m.fingerprint.len(), 16);
        }
    }

    #[test]
    fn fingerprint_follows_content_not_compression() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write_fixture(a.path(), 10, 4, true);
        write_fixture(b.path(), 10, 4, false);
        let fa = Mnist::load(a.path()).unwrap().fingerprint;
        assert_eq!(fa, Mnist::load(b.path()).unwrap().fingerprint);
        write_fixture(b.path(), 10, 5, false);
        assert_ne!(fa, Mnist::load(b.path()).unwrap().fingerprint);
    }

    #[test]
    fn subset_takes_prefixes_and_changes_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 20, 8, true);
        let m = Mnist::load(dir.path()).unwrap();
        let s = m.subset(7, 3);
        assert_eq!((s.train.len, s.test.len), (7, 3));
        assert_eq!(s.train.images, m.train.images[..7 * PIXELS]);
        assert_eq!(s.test.labels, m.test.labels[..3]);
        assert_ne!(s.fingerprint, m.fingerprint);
        assert_eq!(s.fingerprint, m.subset(7, 3).fingerprint);
        let all = m.subset(100, 100);
        assert_eq!(all, m);
    }

    #[test]
    fn holdout_splits_the_training_set_and_never_holds_a_test_image() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 20, 8, true);
        let m = Mnist::load(dir.path()).unwrap();
        let h = m.holdout(5).unwrap();
        assert_eq!((h.train.len, h.test.len), (15, 5));
        assert_eq!(h.train.images, m.train.images[..15 * PIXELS]);
        assert_eq!(h.test.images, m.train.images[15 * PIXELS..]);
        assert_eq!(h.test.labels, m.train.labels[15..]);
        assert_ne!(h.fingerprint, m.fingerprint);
        assert_ne!(h.fingerprint, m.subset(15, 5).fingerprint);
        assert_ne!(h.fingerprint, m.holdout(6).unwrap().fingerprint);
        assert_eq!(h.fingerprint, m.holdout(5).unwrap().fingerprint);
        assert_eq!(m.holdout(0), None);
        assert_eq!(m.holdout(20), None);
        assert_eq!(m.holdout(21), None);
    }

    #[test]
    fn rejects_bad_shapes_counts_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 6, 4, true);

        write_array(
            dir.path(),
            &FILES[2],
            &IdxArray {
                dims: vec![4, 28, 27],
                data: vec![0; 4 * 28 * 27],
            },
            true,
        );
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("t10k-images-idx3-ubyte.gz"), "{err}");
        assert!(err.contains("found shape 4x28x27"), "{err}");

        write_fixture(dir.path(), 6, 4, true);
        write_array(
            dir.path(),
            &FILES[1],
            &IdxArray {
                dims: vec![5],
                data: vec![1; 5],
            },
            false,
        );
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-labels-idx1-ubyte: has 5 labels"),
            "{err}"
        );
        assert!(err.contains("has 6 images"), "{err}");

        write_fixture(dir.path(), 6, 4, true);
        write_array(
            dir.path(),
            &FILES[3],
            &IdxArray {
                dims: vec![4],
                data: vec![1, 2, 10, 3],
            },
            true,
        );
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("label 2 is 10"), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 3, 3, true);
        fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
        let err = Mnist::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("missing t10k-labels-idx1-ubyte"), "{err}");
        assert!(err.contains("dcx data fetch"), "{err}");
    }

    #[test]
    fn real_shaped_file_with_wrong_checksum_is_refused_unless_unverified() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 4, 3, true);
        // Same shape as the real test labels, different content.
        write_array(
            dir.path(),
            &FILES[3],
            &IdxArray {
                dims: vec![10000],
                data: vec![7; 10000],
            },
            true,
        );
        write_array(
            dir.path(),
            &FILES[2],
            &IdxArray {
                dims: vec![10000, 28, 28],
                data: vec![0; 10000 * PIXELS],
            },
            true,
        );
        let err = Mnist::load(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("t10k-images-idx3-ubyte.gz: checksum mismatch"),
            "{msg}"
        );
        assert!(msg.contains(FILES[2].sha256), "{msg}");
        let m = Mnist::load_unverified(dir.path()).unwrap();
        assert_eq!(m.test.len, 10000);
    }

    #[test]
    fn locate_prefers_explicit_then_env_then_default() {
        let good = tempfile::tempdir().unwrap();
        write_fixture(good.path(), 1, 1, true);
        let other = tempfile::tempdir().unwrap();
        write_fixture(other.path(), 1, 1, false);
        let empty = tempfile::tempdir().unwrap();
        let g = good.path().to_path_buf();
        let o = other.path().to_path_buf();

        assert_eq!(
            locate_in(Some(&g), Some(o.clone().into()), Some(o.clone())).unwrap(),
            g
        );
        assert_eq!(
            locate_in(None, Some(g.clone().into()), Some(o.clone())).unwrap(),
            g
        );
        assert_eq!(locate_in(None, None, Some(g.clone())).unwrap(), g);
        // A useless $DCX_DATA falls through to the default directory...
        assert_eq!(
            locate_in(None, Some(empty.path().into()), Some(g.clone())).unwrap(),
            g
        );
        // ...but an explicit --data never does.
        let err = locate_in(Some(empty.path()), Some(g.clone().into()), Some(g.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("given with --data"), "{err}");
        assert!(
            err.contains("missing train-images-idx3-ubyte[.gz]"),
            "{err}"
        );
    }

    #[test]
    fn locate_error_lists_every_place_and_the_fix() {
        let partial = tempfile::tempdir().unwrap();
        write_fixture(partial.path(), 1, 1, true);
        fs::remove_file(partial.path().join("train-labels-idx1-ubyte.gz")).unwrap();
        let nowhere = partial.path().join("does-not-exist");
        let err = locate_in(None, Some(partial.path().into()), Some(nowhere.clone()))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MNIST not found. Looked in:\n"), "{err}");
        assert!(
            err.contains(&format!(
                "{} ($DCX_DATA): missing train-labels-idx1-ubyte[.gz]",
                partial.path().display()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "{} (default data directory): directory does not exist",
                nowhere.display()
            )),
            "{err}"
        );
        assert!(err.contains("\nTo fix, run `dcx data fetch`"), "{err}");
        assert!(err.contains("--data DIR"), "{err}");
        assert!(err.contains("t10k-labels-idx1-ubyte.gz"), "{err}");

        let err = locate_in(None, None, None).unwrap_err().to_string();
        assert!(err.contains("$DCX_DATA is unset"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_that_cannot_be_read_is_one_error_with_the_os_reason() {
        // A symbolic link to itself cannot be opened by anyone, root included.
        let root = tempfile::tempdir().unwrap();
        let loop_dir = root.path().join("mnist");
        std::os::unix::fs::symlink(&loop_dir, &loop_dir).unwrap();
        let err = locate_in(Some(&loop_dir), None, None)
            .unwrap_err()
            .to_string();
        let start = format!(
            "{}: cannot read this MNIST folder (given with --data): ",
            loop_dir.display()
        );
        assert!(err.starts_with(&start), "{err}");
        assert!(err.contains("symbolic links"), "the OS's reason: {err}");
        assert!(!err.contains("missing"), "{err}");
        let err = Mnist::load(&loop_dir).unwrap_err().to_string();
        assert!(err.contains("cannot read this MNIST folder: "), "{err}");
        let err = locate_in(None, Some(loop_dir.clone().into()), None)
            .unwrap_err()
            .to_string();
        let listed = format!("{0} ($DCX_DATA): cannot read {0}: ", loop_dir.display());
        assert!(err.contains(&listed), "{err}");
    }

    #[test]
    fn a_folder_or_a_pipe_under_a_files_name_is_said_to_be_one() {
        let dir = tempfile::tempdir().unwrap();
        write_fixture(dir.path(), 2, 2, true);
        let name = FILES[2].gz_name();
        fs::remove_file(dir.path().join(&name)).unwrap();
        fs::create_dir(dir.path().join(&name)).unwrap();
        let err = locate_in(Some(dir.path()), None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("{name} is not a regular file")),
            "{err}"
        );
        assert!(!err.contains("missing"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_folder_without_permission_is_not_four_missing_files() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("mnist");
        fs::create_dir(&dir).unwrap();
        write_fixture(&dir, 2, 2, true);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
        let denied = fs::read_dir(&dir).is_err();
        let err = locate_in(Some(&dir), None, None)
            .map(|_| ())
            .map_err(|e| e.to_string());
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        if !denied {
            eprintln!(
                "skipping a_folder_without_permission_is_not_four_missing_files: this user \
                 reads a folder of mode 000 (root does), so there is no refusal to report; \
                 a_folder_that_cannot_be_read_is_one_error_with_the_os_reason covers the \
                 message with a link loop"
            );
            return;
        }
        let err = err.unwrap_err();
        assert!(
            err.contains("cannot read this MNIST folder (given with --data): Permission denied"),
            "{err}"
        );
        assert!(!err.contains("missing"), "{err}");
    }

    #[test]
    fn default_dir_ends_in_mnist() {
        if let Some(d) = default_data_dir() {
            assert!(d.ends_with("mnist"));
        }
    }

    #[test]
    fn real_mnist_loads_verified_and_quickly() {
        let Some(dir) = real_data_dir() else { return };
        let start = Instant::now();
        let m = Mnist::load(&dir).unwrap();
        let elapsed = start.elapsed();
        eprintln!("loaded MNIST in {elapsed:?}, fingerprint {}", m.fingerprint);
        assert_eq!((m.train.len, m.test.len), (60000, 10000));
        assert_eq!(m.train.images.len(), 60000 * PIXELS);
        assert_eq!(m.test.images.len(), 10000 * PIXELS);
        // Well-known facts about the data set.
        assert_eq!(&m.train.labels[..8], &[5, 0, 4, 1, 9, 2, 1, 3]);
        assert_eq!(&m.test.labels[..8], &[7, 2, 1, 0, 4, 1, 4, 9]);
        let mean =
            m.train.images.iter().map(|&x| x as f64).sum::<f64>() / m.train.images.len() as f64;
        assert!(mean.abs() < 1e-3, "normalised training mean {mean}");
        let mut counts = [0usize; 10];
        for &l in &m.train.labels {
            counts[l as usize] += 1;
        }
        assert_eq!(counts[1], 6742);
        // Generous: the target is well under a second in release builds on a quiet machine.
        assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
    }
}

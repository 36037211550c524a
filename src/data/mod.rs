//! MNIST on disk: the IDX format, loading and normalising the four files, finding them, and
//! downloading them (`dcx data fetch`).

pub mod fetch;
pub(crate) mod idx;
pub mod mnist;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

pub use fetch::{
    DEFAULT_MIRRORS, FetchOptions, FetchOutcome, FetchReport, FetchedFile, FileSpec, fetch,
    fetch_files,
};
pub(crate) use idx::IdxProblem;
pub use mnist::{
    COLS, FILES, MEAN, Mnist, MnistFile, PIXELS, ROWS, STD, Split, default_data_dir, locate,
};

/// Every message names the file (or URL) it is about and is complete on its own: the CLI prints
/// these to people who need to act on them, so nothing is left to a `source()` chain.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("{}: {error}", .path.display())]
    Io { path: PathBuf, error: io::Error },

    /// The bytes are not a well-formed IDX file.
    #[error("{name}: {problem}")]
    Idx { name: String, problem: IdxProblem },

    /// Well-formed IDX, but not what MNIST needs (shape, label range, counts).
    #[error("{name}: {reason}")]
    Invalid { name: String, reason: String },

    #[error(
        "{name}: checksum mismatch: sha256 of the uncompressed data is {actual}, expected \
         {expected}; the file is corrupt or not the original MNIST (delete it and run \
         `dcx data fetch` again)"
    )]
    Checksum {
        name: String,
        expected: String,
        actual: String,
    },

    /// `locate` found no directory holding the four files; the message lists where it looked
    /// and how to fix it.
    #[error("{0}")]
    NotFound(String),

    /// Every mirror failed for one file; `attempts` is `(url, what went wrong)` in mirror order.
    #[error("{}", fetch::describe_failure(.file, .attempts))]
    Download {
        file: String,
        attempts: Vec<(String, String)>,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error,
        }
    }
}

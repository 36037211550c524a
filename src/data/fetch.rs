//! `dcx data fetch`: download the four MNIST files from public mirrors, verified.
//!
//! A file only ever appears under its final name after its uncompressed sha256 has been
//! checked, by renaming a verified temporary file in the same directory; so an interrupted or
//! bad download can never be mistaken for data later.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ureq::Agent;

use super::DataError;
use super::idx::sha256_uncompressed;
use super::mnist::FILES;

/// Public mirrors of the original files, tried in order. Their gzip bytes differ, which is
/// why verification is on the uncompressed content.
pub const DEFAULT_MIRRORS: &[&str] = &[
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The original train-images file is under 10 MB compressed; a response far beyond that is
/// not MNIST, and reading it would only fill the disk.
const MAX_DOWNLOAD_BYTES: u64 = 256 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    pub dest: PathBuf,
    /// Base URLs; a missing trailing `/` is added.
    pub mirrors: Vec<String>,
    pub show_progress: bool,
}

impl FetchOptions {
    /// [`DEFAULT_MIRRORS`] with progress bars.
    pub fn new(dest: impl Into<PathBuf>) -> Self {
        FetchOptions {
            dest: dest.into(),
            mirrors: DEFAULT_MIRRORS.iter().map(|m| m.to_string()).collect(),
            show_progress: true,
        }
    }
}

/// A file to fetch: its name on the mirrors (and in `dest`) and the hex sha256 of its
/// uncompressed bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSpec<'a> {
    pub name: &'a str,
    pub sha256: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// A valid copy was already in place; nothing was downloaded.
    AlreadyPresent,
    Downloaded {
        /// The mirror base URL that served it.
        mirror: String,
        bytes: u64,
        /// A file of that name was there but failed verification, and has been replaced.
        replaced_invalid: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedFile {
    pub name: String,
    pub path: PathBuf,
    pub outcome: FetchOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    pub dest: PathBuf,
    pub files: Vec<FetchedFile>,
}

impl fmt::Display for FetchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MNIST in {}:", self.dest.display())?;
        for file in &self.files {
            match &file.outcome {
                FetchOutcome::AlreadyPresent => {
                    writeln!(f, "  {}: already present, verified", file.name)?
                }
                FetchOutcome::Downloaded {
                    mirror,
                    bytes,
                    replaced_invalid,
                } => writeln!(
                    f,
                    "  {}: downloaded {bytes} bytes from {mirror}, verified{}",
                    file.name,
                    if *replaced_invalid {
                        " (replaced an invalid copy)"
                    } else {
                        ""
                    }
                )?,
            }
        }
        Ok(())
    }
}

/// Downloads whatever is missing or invalid of the four MNIST `.gz` files into `opts.dest`.
pub fn fetch(opts: &FetchOptions) -> Result<FetchReport, DataError> {
    let names: Vec<String> = FILES.iter().map(|f| f.gz_name()).collect();
    let specs: Vec<FileSpec> = FILES
        .iter()
        .zip(&names)
        .map(|(f, name)| FileSpec {
            name,
            sha256: f.sha256,
        })
        .collect();
    fetch_files(opts, &specs)
}

/// [`fetch`] for any set of files; stops at the first file no mirror could provide (files
/// already completed stay, since they are verified).
pub fn fetch_files(opts: &FetchOptions, files: &[FileSpec]) -> Result<FetchReport, DataError> {
    fs::create_dir_all(&opts.dest).map_err(|e| DataError::io(&opts.dest, e))?;
    let mirrors: Vec<(String, Agent)> = opts
        .mirrors
        .iter()
        .map(|m| {
            let base = if m.ends_with('/') {
                m.clone()
            } else {
                format!("{m}/")
            };
            let agent = agent_for(&base);
            (base, agent)
        })
        .collect();

    let mut report = FetchReport {
        dest: opts.dest.clone(),
        files: Vec::with_capacity(files.len()),
    };
    for spec in files {
        remove_stale_parts(&opts.dest, spec.name);
        let path = opts.dest.join(spec.name);
        let existing = match fs::read(&path) {
            Ok(bytes) => Some(matches_checksum(&bytes, spec.sha256)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(DataError::io(&path, e)),
        };
        if existing == Some(true) {
            report.files.push(FetchedFile {
                name: spec.name.to_string(),
                path,
                outcome: FetchOutcome::AlreadyPresent,
            });
            continue;
        }

        let mut attempts = Vec::new();
        let mut served = None;
        for (i, (base, agent)) in mirrors.iter().enumerate() {
            let url = format!("{base}{}", spec.name);
            match download(agent, &url, &opts.dest, spec, opts.show_progress) {
                Ok((temp, bytes)) => {
                    temp.persist(&path).map_err(|e| DataError::io(&path, e))?;
                    served = Some((base.clone(), bytes));
                    break;
                }
                Err(why) => {
                    // Otherwise a failing mirror is invisible until every mirror has failed.
                    if opts.show_progress && i + 1 < mirrors.len() {
                        eprintln!("{url}: {why}; trying the next mirror");
                    }
                    attempts.push((url, why));
                }
            }
        }
        let Some((mirror, bytes)) = served else {
            return Err(DataError::Download {
                file: spec.name.to_string(),
                attempts,
            });
        };
        report.files.push(FetchedFile {
            name: spec.name.to_string(),
            path,
            outcome: FetchOutcome::Downloaded {
                mirror,
                bytes,
                replaced_invalid: existing == Some(false),
            },
        });
    }
    Ok(report)
}

/// The message of [`DataError::Download`].
pub(crate) fn describe_failure(file: &str, attempts: &[(String, String)]) -> String {
    let mut msg = format!("could not download {file} from any mirror:");
    if attempts.is_empty() {
        msg.push_str("\n  no mirrors were configured");
    }
    for (url, why) in attempts {
        msg.push_str(&format!("\n  {url}: {why}"));
    }
    msg.push_str(
        "\nTo use local files instead, put the four MNIST IDX files (train-images-idx3-ubyte.gz, \
         train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; \
         gzip-compressed or not) in a folder and pass `--data DIR` or set DCX_DATA=DIR.",
    );
    msg
}

fn matches_checksum(bytes: &[u8], want_hex: &str) -> bool {
    sha256_uncompressed(bytes).is_ok_and(|d| hex::encode(d).eq_ignore_ascii_case(want_hex))
}

fn agent_for(base_url: &str) -> Agent {
    let config = Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(30)))
        // A stalled transfer fails over to the next mirror; a slow but moving one may take
        // as long as it needs.
        .timeout_per_read(Some(Duration::from_secs(30)))
        // Statuses are reported with their reason phrase by `download` instead.
        .http_status_as_error(false)
        .user_agent(concat!("dcx/", env!("CARGO_PKG_VERSION")));
    // A proxy from the environment cannot reach this machine's loopback interface, so it would
    // only break local mirrors (including the tests' server).
    let config = if is_loopback(base_url) {
        config.proxy(None)
    } else {
        config
    };
    config.build().into()
}

fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One attempt at one URL. The error is a sentence for the failure list; the temporary file
/// is gone by the time it is returned.
fn download(
    agent: &Agent,
    url: &str,
    dir: &Path,
    spec: &FileSpec,
    show_progress: bool,
) -> Result<(TempFile, u64), String> {
    let response = agent.get(url).call().map_err(|e| e.to_string())?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP status {status}"));
    }
    let (_, body) = response.into_parts();
    let declared = body.content_length();
    if declared.is_some_and(|n| n > MAX_DOWNLOAD_BYTES) {
        return Err(format!(
            "response is {} bytes, more than the {MAX_DOWNLOAD_BYTES} an MNIST file can be",
            declared.unwrap_or_default()
        ));
    }

    let mut temp = TempFile::create(dir, spec.name)?;
    let bar = progress_bar(spec.name, declared, show_progress);
    let mut reader = body.into_reader().take(MAX_DOWNLOAD_BYTES + 1);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let copied = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let of = declared.map_or_else(String::new, |n| format!(" of {n}"));
                break Err(format!("download failed after {received}{of} bytes: {e}"));
            }
        };
        if let Err(e) = temp.file().write_all(&buf[..n]) {
            break Err(format!("writing {}: {e}", temp.path.display()));
        }
        received += n as u64;
        bar.set_position(received);
        if received > MAX_DOWNLOAD_BYTES {
            break Err(format!(
                "response is larger than the {MAX_DOWNLOAD_BYTES} bytes an MNIST file can be"
            ));
        }
    };

    let checked = copied
        .and_then(|()| match declared {
            // ureq normally reports a short body itself; this also covers a server that closes
            // the connection cleanly before sending everything it announced.
            Some(n) if n != received => Err(format!(
                "truncated: Content-Length is {n} bytes, received {received}"
            )),
            _ => Ok(()),
        })
        .and_then(|()| {
            temp.file()
                .sync_all()
                .map_err(|e| format!("writing {}: {e}", temp.path.display()))
        })
        .and_then(|()| {
            let bytes = fs::read(&temp.path)
                .map_err(|e| format!("reading back {}: {e}", temp.path.display()))?;
            let digest = sha256_uncompressed(&bytes)
                .map_err(|e| format!("received {received} bytes that are not valid gzip: {e}"))?;
            let actual = hex::encode(digest);
            if actual.eq_ignore_ascii_case(spec.sha256) {
                Ok(())
            } else {
                Err(format!(
                    "checksum mismatch: sha256 of the uncompressed data is {actual}, expected {}",
                    spec.sha256
                ))
            }
        });
    match checked {
        Ok(()) => {
            bar.finish();
            Ok((temp, received))
        }
        Err(why) => {
            bar.finish_and_clear();
            Err(why)
        }
    }
}

fn progress_bar(name: &str, len: Option<u64>, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(n) => (
            ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
            "{prefix:28} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
        ),
        None => (
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            "{prefix:28} {spinner} {bytes:>10} {bytes_per_sec:>12}",
        ),
    };
    let style = ProgressStyle::with_template(template)
        .expect("progress template is valid")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(name.to_string());
    bar
}

/// Removes the temporary downloads of `name` that fetches killed mid-way left in `dir`
/// (`.NAME.PID-RANDOM.part` of a process that is gone). Names from before the process id was
/// in them (`.NAME.RANDOM.part`) go once a day old: a running download writes at least every
/// 30 seconds (`timeout_per_read`) or fails.
fn remove_stale_parts(dir: &Path, name: &str) {
    let prefix = format!(".{name}.");
    let middle = |entry: &str| -> Option<String> {
        Some(
            entry
                .strip_prefix(&prefix)?
                .strip_suffix(".part")?
                .to_string(),
        )
    };
    crate::fsutil::remove_stale(dir, |entry| middle(entry)?.split_once('-')?.0.parse().ok());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old_style = entry
            .file_name()
            .to_str()
            .and_then(middle)
            .is_some_and(|m| m.len() == 8 && m.bytes().all(|b| b.is_ascii_hexdigit()));
        let day_old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(24 * 3600));
        if old_style && day_old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A file in the destination directory (so the final rename stays on one file system and is
/// atomic) that deletes itself unless persisted.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create(dir: &Path, name: &str) -> Result<TempFile, String> {
        let mut last_err = None;
        // The process id tells a killed fetch's leftover from a running one's
        // (`remove_stale_parts`); the random part keeps two fetches of one process apart.
        for _ in 0..8 {
            let path = dir.join(format!(
                ".{name}.{}-{:08x}.part",
                std::process::id(),
                rand::random::<u32>()
            ));
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => {
                    return Ok(TempFile {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => return Err(format!("creating {}: {e}", path.display())),
            }
        }
        Err(format!(
            "creating a temporary file in {}: {}",
            dir.display(),
            last_err.map_or_else(String::new, |e| e.to_string())
        ))
    }

    fn file(&mut self) -> &mut File {
        self.file
            .as_mut()
            .expect("temporary file is open until persisted")
    }

    fn persist(mut self, to: &Path) -> io::Result<()> {
        // Closed first: Windows cannot rename an open file.
        drop(self.file.take());
        fs::rename(&self.path, to)?;
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use sha2::{Digest, Sha256};
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    use std::thread;

    #[derive(Clone)]
    struct Reply {
        status: u16,
        body: Vec<u8>,
        /// Announced length when it should disagree with the body.
        content_length: Option<usize>,
    }

    impl Reply {
        fn ok(body: Vec<u8>) -> Self {
            Reply {
                status: 200,
                body,
                content_length: None,
            }
        }
    }

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving canned replies by path and counting
    /// requests. Its thread lives until the test process ends.
    struct Server {
        base: String,
        prefix: String,
        hits: Arc<Mutex<HashMap<String, usize>>>,
    }

    impl Server {
        fn start(prefix: &str, routes: Vec<(&str, Reply)>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}/{prefix}/", listener.local_addr().unwrap());
            let routes: HashMap<String, Reply> = routes
                .into_iter()
                .map(|(name, reply)| (format!("/{prefix}/{name}"), reply))
                .collect();
            let hits = Arc::new(Mutex::new(HashMap::new()));
            let counter = Arc::clone(&hits);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let _ = handle(stream, &routes, &counter);
                }
            });
            Server {
                base,
                prefix: prefix.to_string(),
                hits,
            }
        }

        fn hits(&self, name: &str) -> usize {
            let path = format!("/{}/{name}", self.prefix);
            *self.hits.lock().unwrap().get(&path).unwrap_or(&0)
        }
    }

    fn handle(
        mut stream: TcpStream,
        routes: &HashMap<String, Reply>,
        hits: &Mutex<HashMap<String, usize>>,
    ) -> io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let reply = routes.get(&path).cloned().unwrap_or(Reply {
            status: 404,
            body: b"not found".to_vec(),
            content_length: None,
        });
        let reason = if reply.status == 200 {
            "OK"
        } else {
            "Not Found"
        };
        write!(
            stream,
            "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
            reply.status,
            reply.content_length.unwrap_or(reply.body.len())
        )?;
        stream.write_all(&reply.body)?;
        stream.flush()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    /// A small fake IDX file, its gzip form and the hex sha256 of the uncompressed bytes.
    fn fake_file(seed: u8) -> (Vec<u8>, String) {
        let mut raw = vec![0, 0, 8, 1, 0, 0, 0x10, 0];
        raw.extend((0..4096u32).map(|i| (i as u8).wrapping_mul(seed)));
        let sha = hex::encode(Sha256::digest(&raw));
        (gzip(&raw), sha)
    }

    fn options(dest: &Path, mirrors: &[&str]) -> FetchOptions {
        FetchOptions {
            dest: dest.to_path_buf(),
            mirrors: mirrors.iter().map(|m| m.to_string()).collect(),
            show_progress: false,
        }
    }

    fn dir_entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A base URL on which nothing listens, for connection failures.
    fn refusing_mirror() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/mnist/")
    }

    #[test]
    fn downloads_and_verifies_good_file() {
        let (gz, sha) = fake_file(3);
        let server = Server::start("m", vec![("a.gz", Reply::ok(gz.clone()))]);
        let dest = tempfile::tempdir().unwrap();
        let report = fetch_files(
            &options(dest.path(), &[&server.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap();
        assert_eq!(
            report.files[0].outcome,
            FetchOutcome::Downloaded {
                mirror: server.base.clone(),
                bytes: gz.len() as u64,
                replaced_invalid: false
            }
        );
        assert_eq!(report.files[0].path, dest.path().join("a.gz"));
        assert_eq!(fs::read(dest.path().join("a.gz")).unwrap(), gz);
        assert_eq!(dir_entries(dest.path()), vec!["a.gz"]);
        assert!(report.to_string().contains("a.gz: downloaded"));
    }

    #[test]
    fn creates_missing_destination_and_adds_slash_to_mirror() {
        let (gz, sha) = fake_file(5);
        let server = Server::start("m", vec![("a.gz", Reply::ok(gz))]);
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("deep/er");
        let base = server.base.trim_end_matches('/').to_string();
        fetch_files(
            &options(&dest, &[&base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap();
        assert_eq!(dir_entries(&dest), vec!["a.gz"]);
    }

    #[test]
    fn corrupt_file_is_rejected_and_leaves_nothing() {
        let (_, sha) = fake_file(3);
        let (other, _) = fake_file(7);
        let server = Server::start("m", vec![("a.gz", Reply::ok(other))]);
        let dest = tempfile::tempdir().unwrap();
        let err = fetch_files(
            &options(dest.path(), &[&server.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::Download { .. }), "{msg}");
        assert!(msg.contains("checksum mismatch"), "{msg}");
        assert!(msg.contains(&format!("{}a.gz", server.base)), "{msg}");
        assert!(dir_entries(dest.path()).is_empty());
    }

    #[test]
    fn non_gzip_garbage_is_rejected_and_leaves_nothing() {
        let (gz, sha) = fake_file(3);
        let mut broken = gz.clone();
        let mid = broken.len() / 2;
        broken[mid] ^= 0x55;
        let server = Server::start("m", vec![("a.gz", Reply::ok(broken))]);
        let dest = tempfile::tempdir().unwrap();
        let err = fetch_files(
            &options(dest.path(), &[&server.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap_err();
        assert!(matches!(err, DataError::Download { .. }), "{err}");
        assert!(err.to_string().contains("not valid gzip"), "{err}");
        assert!(dir_entries(dest.path()).is_empty());
    }

    #[test]
    fn truncated_body_is_rejected_and_leaves_nothing() {
        let (gz, sha) = fake_file(3);
        let half = gz[..gz.len() / 2].to_vec();
        let reply = Reply {
            status: 200,
            body: half,
            content_length: Some(gz.len()),
        };
        let server = Server::start("m", vec![("a.gz", reply)]);
        let dest = tempfile::tempdir().unwrap();
        let err = fetch_files(
            &options(dest.path(), &[&server.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{}a.gz: ", server.base)), "{msg}");
        assert!(
            msg.contains(&format!("{} of {} bytes", gz.len() / 2, gz.len())),
            "{msg}"
        );
        assert!(dir_entries(dest.path()).is_empty());
    }

    #[test]
    fn falls_back_to_next_mirror_after_404_and_refused_connection() {
        let (gz, sha) = fake_file(3);
        let missing = Server::start("gone", vec![]);
        let good = Server::start("m", vec![("a.gz", Reply::ok(gz.clone()))]);
        let refused = refusing_mirror();
        let dest = tempfile::tempdir().unwrap();
        let report = fetch_files(
            &options(dest.path(), &[&refused, &missing.base, &good.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap();
        assert_eq!(missing.hits("a.gz"), 1);
        assert_eq!(good.hits("a.gz"), 1);
        match &report.files[0].outcome {
            FetchOutcome::Downloaded { mirror, .. } => assert_eq!(mirror, &good.base),
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read(dest.path().join("a.gz")).unwrap(), gz);
        assert_eq!(dir_entries(dest.path()), vec!["a.gz"]);
    }

    #[test]
    fn all_mirrors_failing_lists_each_and_suggests_local_files() {
        let (_, sha) = fake_file(3);
        let missing = Server::start("gone", vec![]);
        let refused = refusing_mirror();
        let dest = tempfile::tempdir().unwrap();
        let msg = fetch_files(
            &options(dest.path(), &[&missing.base, &refused]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.starts_with("could not download a.gz from any mirror:"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{}a.gz: HTTP status 404", missing.base)),
            "{msg}"
        );
        assert!(msg.contains(&format!("{refused}a.gz: ")), "{msg}");
        assert!(msg.contains("--data DIR"), "{msg}");
        assert!(msg.contains("DCX_DATA"), "{msg}");
        assert!(dir_entries(dest.path()).is_empty());

        let msg = fetch_files(
            &options(dest.path(), &[]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("no mirrors were configured"), "{msg}");
    }

    #[test]
    fn valid_file_already_present_is_not_downloaded_again() {
        let (gz_a, sha_a) = fake_file(3);
        let (gz_b, sha_b) = fake_file(9);
        let server = Server::start(
            "m",
            vec![("a.gz", Reply::ok(gz_a.clone())), ("b.gz", Reply::ok(gz_b))],
        );
        let dest = tempfile::tempdir().unwrap();
        // A raw (uncompressed) copy with the right content counts as valid too.
        let raw_a = {
            let mut d = flate2::read::GzDecoder::new(&gz_a[..]);
            let mut v = Vec::new();
            d.read_to_end(&mut v).unwrap();
            v
        };
        fs::write(dest.path().join("a.gz"), &raw_a).unwrap();
        // An invalid copy of b is replaced.
        fs::write(dest.path().join("b.gz"), b"junk").unwrap();
        let specs = [
            FileSpec {
                name: "a.gz",
                sha256: &sha_a,
            },
            FileSpec {
                name: "b.gz",
                sha256: &sha_b,
            },
        ];
        let report = fetch_files(&options(dest.path(), &[&server.base]), &specs).unwrap();
        assert_eq!(server.hits("a.gz"), 0);
        assert_eq!(server.hits("b.gz"), 1);
        assert_eq!(report.files[0].outcome, FetchOutcome::AlreadyPresent);
        assert!(matches!(
            report.files[1].outcome,
            FetchOutcome::Downloaded {
                replaced_invalid: true,
                ..
            }
        ));
        assert_eq!(fs::read(dest.path().join("a.gz")).unwrap(), raw_a);

        // Second run: everything is in place, nothing is requested.
        let report = fetch_files(&options(dest.path(), &[&server.base]), &specs).unwrap();
        assert!(
            report
                .files
                .iter()
                .all(|f| f.outcome == FetchOutcome::AlreadyPresent)
        );
        assert_eq!(server.hits("b.gz"), 1);
        assert_eq!(dir_entries(dest.path()), vec!["a.gz", "b.gz"]);
    }

    #[test]
    fn fetch_downloads_real_mnist_from_a_local_mirror() {
        let Some(dir) = std::env::var_os("DCX_DATA").filter(|v| !v.is_empty()) else {
            eprintln!(
                "skipping: set DCX_DATA=/path/to/mnist (the folder with the four IDX .gz \
                 files) to run"
            );
            return;
        };
        let names: Vec<String> = FILES.iter().map(|f| f.gz_name()).collect();
        let routes = names
            .iter()
            .map(|n| {
                (
                    n.as_str(),
                    Reply::ok(fs::read(Path::new(&dir).join(n)).unwrap()),
                )
            })
            .collect();
        let server = Server::start("mnist", routes);
        let dest = tempfile::tempdir().unwrap();
        let mut opts = FetchOptions::new(dest.path());
        opts.mirrors = vec![server.base.clone()];
        opts.show_progress = false;
        let report = fetch(&opts).unwrap();
        assert_eq!(report.files.len(), 4);
        for (file, name) in report.files.iter().zip(&names) {
            assert_eq!(&file.name, name);
            assert!(matches!(file.outcome, FetchOutcome::Downloaded { .. }));
        }
        assert_eq!(dir_entries(dest.path()), {
            let mut n = names.clone();
            n.sort();
            n
        });
        let m = crate::data::Mnist::load(dest.path()).unwrap();
        assert_eq!((m.train.len, m.test.len), (60000, 10000));

        // Everything in place: a second run needs no mirror at all.
        opts.mirrors = vec![refusing_mirror()];
        let report = fetch(&opts).unwrap();
        assert!(
            report
                .files
                .iter()
                .all(|f| f.outcome == FetchOutcome::AlreadyPresent)
        );
        assert!(names.iter().all(|n| server.hits(n) == 1));
    }

    #[test]
    fn a_killed_fetchs_partial_download_is_removed_and_a_running_ones_is_not() {
        let (gz, sha) = fake_file(3);
        let server = Server::start("m", vec![("a.gz", Reply::ok(gz))]);
        let dest = tempfile::tempdir().unwrap();
        let mut running = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let killed = dest.path().join(".a.gz.999999999-0badf00d.part");
        let live = dest
            .path()
            .join(format!(".a.gz.{}-0000beef.part", running.id()));
        let old_style = dest.path().join(".a.gz.1234abcd.part");
        let new_old_style = dest.path().join(".a.gz.5678abcd.part");
        let other_file = dest.path().join(".b.gz.999999999-0badf00d.part");
        for p in [&killed, &live, &old_style, &new_old_style, &other_file] {
            fs::write(p, b"half a download").unwrap();
        }
        let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(48 * 3600);
        File::options()
            .write(true)
            .open(&old_style)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
        fetch_files(
            &options(dest.path(), &[&server.base]),
            &[FileSpec {
                name: "a.gz",
                sha256: &sha,
            }],
        )
        .unwrap();
        assert!(!killed.exists(), "a killed fetch's download stays");
        assert!(
            !old_style.exists(),
            "a day-old download without a process id stays"
        );
        assert!(live.exists(), "a running fetch's download was removed");
        assert!(
            new_old_style.exists(),
            "a fresh download without a process id was removed"
        );
        assert!(
            other_file.exists(),
            "another file's downloads are its fetch's business"
        );
        let _ = running.kill();
        let _ = running.wait();
    }

    #[test]
    fn progress_templates_are_valid() {
        for len in [Some(100), None] {
            let bar = progress_bar("x.gz", len, true);
            bar.set_position(50);
            bar.finish_and_clear();
        }
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080/x/"));
        assert!(is_loopback("http://localhost/x/"));
        assert!(is_loopback("http://[::1]:80/"));
        assert!(!is_loopback(
            "https://storage.googleapis.com/cvdf-datasets/mnist/"
        ));
        assert!(!is_loopback("http://10.0.0.1/"));
    }
}

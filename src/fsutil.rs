//! File-system helpers shared by every writer.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temporary file beside `path`, syncs it, then renames it into place, so a
/// crash or a full disk never leaves a half-written file where a good one was. The temporary's
/// name carries the process id, so the one a killed writer left is removed by the next writer
/// of the same file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let prefix = format!(".{name}.tmp-");
    remove_stale(dir, |entry| entry.strip_prefix(&prefix)?.parse().ok());
    let tmp = dir.join(format!("{prefix}{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads a whole file of at most `max_bytes`, refusing first what is not a regular file (a
/// folder, a device such as `/dev/zero`, a pipe that would block) and what is larger, so no
/// input makes dcx hang or read without bound. `what` names the kind of file in errors.
pub(crate) fn read_bounded(path: &Path, max_bytes: u64, what: &str) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "not a regular file (a folder, a device or a pipe), so not {what}"
        )));
    }
    if meta.len() > max_bytes {
        return Err(std::io::Error::other(format!(
            "{} bytes, more than {what} can be ({max_bytes} bytes at most)",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(std::io::Error::other(format!(
            "grew past {max_bytes} bytes while being read, more than {what} can be"
        )));
    }
    Ok(bytes)
}

/// [`read_bounded`] as UTF-8 text.
pub(crate) fn read_text_bounded(
    path: &Path,
    max_bytes: u64,
    what: &str,
) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, max_bytes, what)?)
        .map_err(|_| std::io::Error::other(format!("not UTF-8 text, so not {what}")))
}

/// An output folder written as a whole. Files go into a temporary sibling folder
/// (`.NAME.partial-PID`); [`FolderWriter::commit`] puts it in place of the target (the old
/// folder is moved aside, then removed). A run that fails, is cancelled or is killed therefore
/// never leaves a folder that mixes two runs, and the earlier folder stays whole. Dropping an
/// uncommitted writer removes its temporary folder; the leftovers of killed runs are cleaned
/// up by the next writer of the same target.
pub(crate) struct FolderWriter {
    target: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl FolderWriter {
    /// Checks the target can be written (not a file, parent creatable) before any work is
    /// done, and creates the temporary folder.
    pub(crate) fn create(target: &Path) -> std::io::Result<FolderWriter> {
        if target.exists() && !target.is_dir() {
            return Err(std::io::Error::other(format!(
                "{} is a file, not a folder",
                target.display()
            )));
        }
        let (parent, name) = split(target)?;
        std::fs::create_dir_all(&parent)?;
        clean_stale(&parent, &name, target);
        let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir(&tmp)?;
        Ok(FolderWriter {
            target: target.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// Where to write the files.
    pub(crate) fn path(&self) -> &Path {
        &self.tmp
    }

    /// Replaces the target with everything written.
    pub(crate) fn commit(mut self) -> std::io::Result<()> {
        let (parent, name) = split(&self.target)?;
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        let had_old = self.target.exists();
        if had_old {
            std::fs::rename(&self.target, &old)?;
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            if had_old {
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(e);
        }
        self.committed = true;
        if had_old {
            std::fs::remove_dir_all(&old)?;
        }
        Ok(())
    }
}

impl Drop for FolderWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.tmp);
        }
    }
}

fn split(target: &Path) -> std::io::Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::other(format!("{}: not a folder name", target.display())))?;
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Removes the temporary folders of writers of `target` whose process is gone; a folder moved
/// aside by a writer killed between its two renames is put back when the target is missing.
fn clean_stale(parent: &Path, name: &str, target: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file.strip_prefix(&format!(".{name}.")) else {
            continue;
        };
        let Some((kind, pid)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        match kind {
            "old" if !target.exists() => {
                let _ = std::fs::rename(&path, target);
            }
            "old" | "partial" => {
                let _ = std::fs::remove_dir_all(&path);
            }
            _ => {}
        }
    }
}

/// Removes what killed dcx processes left in `dir`: the files and folders whose name
/// `pid_in` reads a process id from, when no process of that id runs. What this process or a
/// live one is writing is never touched (a reused id keeps a leftover, never the reverse).
pub(crate) fn remove_stale(dir: &Path, pid_in: impl Fn(&str) -> Option<u32>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(&pid_in) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// Whether a process of this id runs (or is a zombie not yet reaped). Where that cannot be
/// asked, it is taken to run: a leftover stays rather than another run's work going.
fn process_alive(pid: u32) -> bool {
    use nix::errno::Errno;
    match i32::try_from(pid) {
        // Signal 0 asks whether the process exists without sending anything; EPERM means it
        // exists under another user.
        Ok(pid) if pid > 0 => !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        ),
        // 0 and what does not fit would name process groups, or nothing: no process has it.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn failure_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("target");
        std::fs::create_dir(&p).unwrap(); // renaming a file over a directory fails
        assert!(write_atomic(&p, b"x").is_err());
        assert!(p.is_dir());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_folder_is_replaced_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        // First run.
        let w = FolderWriter::create(&out).unwrap();
        std::fs::write(w.path().join("model.dcz"), b"one").unwrap();
        std::fs::write(w.path().join("report.md"), b"one").unwrap();
        w.commit().unwrap();
        // A run that fails after writing part of its files: the first run's folder is whole.
        {
            let w = FolderWriter::create(&out).unwrap();
            std::fs::write(w.path().join("model.dcz"), b"two").unwrap();
        }
        assert_eq!(std::fs::read(out.join("model.dcz")).unwrap(), b"one");
        assert_eq!(std::fs::read(out.join("report.md")).unwrap(), b"one");
        // A successful run replaces every file, none of the old ones stay.
        let w = FolderWriter::create(&out).unwrap();
        std::fs::write(w.path().join("model.dcz"), b"three").unwrap();
        w.commit().unwrap();
        assert_eq!(std::fs::read(out.join("model.dcz")).unwrap(), b"three");
        assert!(!out.join("report.md").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn leftovers_of_killed_runs_are_cleaned_and_a_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("model.dcz"), b"good").unwrap();
        // A killed run's partial folder (no process has a pid that large).
        let stale = dir.path().join(".out.partial-999999999");
        std::fs::create_dir(&stale).unwrap();
        let w = FolderWriter::create(&out).unwrap();
        assert!(!stale.exists());
        drop(w);
        // Killed between the two renames: the old folder comes back.
        std::fs::rename(&out, dir.path().join(".out.old-999999999")).unwrap();
        let w = FolderWriter::create(&out).unwrap();
        assert_eq!(std::fs::read(out.join("model.dcz")).unwrap(), b"good");
        drop(w);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = FolderWriter::create(&file).err().unwrap().to_string();
        assert!(err.contains("is a file"), "{err}");
    }

    /// A process that runs while the test does, for "a live writer's file".
    fn live_pid() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep runs")
    }

    #[test]
    fn leftovers_of_dead_processes_go_and_live_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = live_pid();
        let names = [
            ".a.tmp-999999999".to_string(),
            format!(".a.tmp-{}", live.id()),
            format!(".a.tmp-{}", std::process::id()),
            ".a.tmp-x".to_string(),
            "a".to_string(),
        ];
        for n in &names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        std::fs::create_dir(dir.path().join(".d.tmp-999999998")).unwrap();
        std::fs::write(dir.path().join(".d.tmp-999999998/f"), b"x").unwrap();
        remove_stale(dir.path(), |n| n.rsplit_once(".tmp-")?.1.parse().ok());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = names[1..].to_vec();
        want.sort();
        assert_eq!(left, want);
        let _ = live.kill();
        let _ = live.wait();
    }

    #[test]
    fn an_atomic_write_removes_the_temporary_a_killed_writer_left() {
        let dir = tempfile::tempdir().unwrap();
        let mut live = live_pid();
        let dead = dir.path().join(".a.bin.tmp-999999999");
        let running = dir.path().join(format!(".a.bin.tmp-{}", live.id()));
        let other = dir.path().join(".b.bin.tmp-999999999");
        for p in [&dead, &running, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_atomic(&dir.path().join("a.bin"), b"whole").unwrap();
        assert!(!dead.exists());
        assert!(running.exists(), "a live writer's temporary was removed");
        assert!(
            other.exists(),
            "only the file being written is its writers' business"
        );
        let _ = live.kill();
        let _ = live.wait();
    }

    #[test]
    fn bounded_reads_refuse_devices_folders_pipes_and_giants() {
        let dir = tempfile::tempdir().unwrap();
        let err = |p: &Path| read_bounded(p, 100, "a test file").unwrap_err().to_string();
        assert!(err(dir.path()).contains("not a regular file"));
        #[cfg(unix)]
        assert!(err(Path::new("/dev/zero")).contains("not a regular file"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; 101]).unwrap();
        assert!(err(&big).contains("101 bytes"));
        let ok = dir.path().join("ok");
        std::fs::write(&ok, b"fine").unwrap();
        assert_eq!(read_bounded(&ok, 100, "x").unwrap(), b"fine");
        #[cfg(unix)]
        {
            let fifo = dir.path().join("fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                assert!(err(&fifo).contains("not a regular file"));
            }
        }
    }
}

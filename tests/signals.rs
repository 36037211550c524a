//! The explorer under a real pseudo-terminal, ended by signals: it must give the terminal back
//! (modes and escape sequences), exit with 128 + the signal, and leave no half-written files.
//! Every wait is bounded, and a child still running at the end is killed.

#![cfg(unix)]

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, kill};
use nix::sys::termios::{LocalFlags, Termios, tcgetattr};
use nix::unistd::Pid;

/// Long enough for the fixture's baseline to train on a slow, busy machine.
const READY: Duration = Duration::from_secs(120);
/// From the signal to the exit: the explorer's own limit for stopping work is 10 s.
const EXIT: Duration = Duration::from_secs(30);

const ENTER_ALT_SCREEN: &str = "\x1b[?1049h";
const LEAVE_ALT_SCREEN: &str = "\x1b[?1049l";
const SHOW_CURSOR: &str = "\x1b[?25h";
const HIDE_CURSOR: &str = "\x1b[?25l";
const MOUSE_ON: &str = "\x1b[?1000h";
/// Normal tracking off: the last of the mouse modes crossterm turns off.
const MOUSE_OFF: &str = "\x1b[?1000l";

/// `dcx` on the fixture, in a terminal of its own (a new session whose controlling terminal
/// is the pty, as under a terminal emulator, so closing the pty hangs it up).
struct Explorer {
    master: Option<OwnedFd>,
    /// Kept open so the terminal's modes can be read after the explorer exits.
    slave: Option<OwnedFd>,
    child: Child,
    /// The terminal's modes before the explorer started.
    initial: Termios,
    output: Vec<u8>,
    _cache: tempfile::TempDir,
    exports: tempfile::TempDir,
}

impl Explorer {
    fn start(cols: u16, rows: u16) -> Explorer {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
        Explorer::start_with(cols, rows, &fixture, false)
    }

    /// As a job-control shell starts a command: dcx in a process group of its own, in the
    /// terminal's foreground, its parent (standing in for the shell, in the same session)
    /// waiting for it and ending as it ends. Only then does SIGTSTP stop dcx: the kernel drops
    /// it for a process group that no shell could continue. `child` is the stand-in;
    /// [`Explorer::job`] is dcx.
    fn start_job(cols: u16, rows: u16) -> Explorer {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
        Explorer::start_with(cols, rows, &fixture, true)
    }

    fn start_with(cols: u16, rows: u16, data: &Path, job_control: bool) -> Explorer {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&size, None).expect("a pseudo-terminal");
        // openpty's descriptors are inherited across exec: the explorer would hold its own
        // terminal's master, and closing ours would not hang it up.
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        }
        let cache = tempfile::tempdir().unwrap();
        let exports = tempfile::tempdir().unwrap();
        let tty = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcx"));
        cmd.arg("--data")
            .arg(data)
            .args(["--model", "lenet-300-100", "--exports"])
            .arg(exports.path())
            .env("DCX_CACHE", cache.path())
            .env("TERM", "xterm-256color")
            // Should a test make dcx download, it fails at once instead of reaching the
            // internet: every request goes to a proxy nothing listens on.
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("ALL_PROXY", "http://127.0.0.1:9")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(tty(&pty.slave))
            .stdout(tty(&pty.slave))
            .stderr(tty(&pty.slave));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl, fork,
        // setpgid, signal, tcsetpgrp, close, waitpid, _exit).
        unsafe {
            cmd.pre_exec(move || {
                use nix::libc;
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if !job_control {
                    return Ok(());
                }
                match libc::fork() {
                    -1 => Err(std::io::Error::last_os_error()),
                    0 => {
                        // dcx: a process group of its own, put in the foreground.
                        libc::setpgid(0, 0);
                        libc::signal(libc::SIGTTOU, libc::SIG_IGN);
                        libc::tcsetpgrp(0, libc::getpid());
                        libc::signal(libc::SIGTTOU, libc::SIG_DFL);
                        Ok(())
                    }
                    job => {
                        // The shell. Every descriptor but the terminal is closed, std's
                        // exec-status pipe among them (spawn waits for it to close).
                        for fd in 3..1024 {
                            libc::close(fd);
                        }
                        let mut status = 0;
                        while libc::waitpid(job, &mut status, 0) == -1
                            && nix::errno::Errno::last() == nix::errno::Errno::EINTR
                        {
                        }
                        libc::_exit(if libc::WIFEXITED(status) {
                            libc::WEXITSTATUS(status)
                        } else {
                            128 + libc::WTERMSIG(status)
                        });
                    }
                }
            });
        }
        let initial = tcgetattr(&pty.slave).unwrap();
        let child = cmd.spawn().expect("dcx starts");
        Explorer {
            master: Some(pty.master),
            slave: Some(pty.slave),
            child,
            initial,
            output: Vec::new(),
            _cache: cache,
            exports,
        }
    }

    /// Reads what the explorer writes until `done` holds (true) or `limit` passes.
    fn read_until(&mut self, limit: Duration, done: impl Fn(&Explorer) -> bool) -> bool {
        let start = Instant::now();
        while !done(self) {
            if start.elapsed() > limit {
                return false;
            }
            self.read_for(Duration::from_millis(50));
        }
        true
    }

    /// Reads for at most `wait`; returns whether anything came.
    fn read_for(&mut self, wait: Duration) -> bool {
        let Some(master) = self.master.as_ref() else {
            return false;
        };
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(wait).unwrap();
        if !matches!(poll(&mut fds, timeout), Ok(n) if n > 0) {
            return false;
        }
        let mut buf = [0u8; 65536];
        match nix::unistd::read(master, &mut buf) {
            Ok(n) if n > 0 => {
                self.output.extend_from_slice(&buf[..n]);
                true
            }
            // EIO once the explorer (the last writer) is gone.
            _ => false,
        }
    }

    /// Waits for `text` on the screen. The screen is drawn as changes, so only text drawn
    /// over blank cells or different letters comes out whole: choose it accordingly.
    fn wait_ready(&mut self, text: &str) {
        let ready = self.read_until(READY, |dcx| {
            let s = String::from_utf8_lossy(&dcx.output);
            s.contains(ENTER_ALT_SCREEN) && visible(&s).contains(text)
        });
        assert!(
            ready,
            "no {text:?} on the explorer's screen in {READY:?}; it wrote:\n{}",
            visible(&String::from_utf8_lossy(&self.output))
        );
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("the explorer is running");
    }

    /// dcx's process under [`Explorer::start_job`]: the terminal's foreground process group,
    /// once it has one of its own.
    fn job(&mut self) -> Pid {
        let shell = Pid::from_raw(self.child.id() as i32);
        let start = Instant::now();
        loop {
            let master = self.master.as_ref().unwrap();
            let group = nix::unistd::tcgetpgrp(master).expect("the terminal's foreground");
            if group != shell {
                return group;
            }
            assert!(start.elapsed() < READY, "dcx never took the foreground");
            self.read_for(Duration::from_millis(20));
        }
    }

    fn type_keys(&self, keys: &str) {
        let master = self.master.as_ref().unwrap();
        nix::unistd::write(master, keys.as_bytes()).unwrap();
    }

    /// Waits for the exit, reading what it writes meanwhile (a full pty would block it).
    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it wrote just before exiting may still be in the pty.
                while self.read_for(Duration::from_millis(100)) {}
                return status;
            }
            if start.elapsed() > EXIT {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "the explorer did not exit within {EXIT:?} of the signal; it wrote:\n{}",
                    visible(&String::from_utf8_lossy(&self.output))
                );
            }
            if !self.read_for(Duration::from_millis(20)) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn modes(&self) -> Termios {
        tcgetattr(self.slave.as_ref().unwrap()).unwrap()
    }
}

/// Whether a process is stopped (Linux: the state letter in /proc/PID/stat).
fn stopped(pid: Pid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
    state.is_some_and(|s| s.starts_with('T'))
}

impl Drop for Explorer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The text of terminal output without its control sequences (a status line's words are
/// split by colour changes).
fn visible(out: &str) -> String {
    let mut text = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            text.push(c);
            continue;
        }
        if chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    text
}

fn last(haystack: &str, needle: &str) -> Option<usize> {
    haystack.rfind(needle)
}

/// Every file and folder under `dir`, as paths relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

#[test]
fn sigterm_gives_the_terminal_back_and_exits_143() {
    ends_cleanly(Signal::SIGTERM, 143);
}

/// The other signals whose default action would end dcx with the terminal in raw mode:
/// SIGINT from another process (Ctrl-C is a key in raw mode), and SIGUSR1/2, which dcx gives
/// no meaning and so ends on, as their default action would.
#[test]
fn every_terminating_signal_gives_the_terminal_back() {
    for (signal, status) in [
        (Signal::SIGHUP, 129),
        (Signal::SIGINT, 130),
        (Signal::SIGQUIT, 131),
        (Signal::SIGUSR1, 138),
        (Signal::SIGUSR2, 140),
    ] {
        ends_cleanly(signal, status);
    }
}

fn ends_cleanly(signal: Signal, code: i32) {
    let mut dcx = Explorer::start(100, 30);
    dcx.wait_ready("dcx lenet-300-100");
    assert!(
        !dcx.modes()
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO),
        "the explorer is in raw mode before the signal"
    );
    let out = String::from_utf8_lossy(&dcx.output).into_owned();
    assert!(out.contains(MOUSE_ON), "mouse reporting was turned on");
    let signalled_at = dcx.output.len();

    dcx.signal(signal);
    let status = dcx.wait_exit();

    assert_eq!(status.code(), Some(code), "128 + {signal}: {status:?}");
    let out = String::from_utf8_lossy(&dcx.output).into_owned();
    let after = String::from_utf8_lossy(&dcx.output[signalled_at..]).into_owned();
    for (what, seq) in [
        ("left the alternate screen", LEAVE_ALT_SCREEN),
        ("showed the cursor", SHOW_CURSOR),
        ("turned mouse reporting off", MOUSE_OFF),
    ] {
        assert!(after.contains(seq), "{what} after the signal: {after:?}");
    }
    assert!(
        last(&out, LEAVE_ALT_SCREEN) > last(&out, ENTER_ALT_SCREEN),
        "the alternate screen is left last"
    );
    assert!(last(&out, MOUSE_OFF) > last(&out, MOUSE_ON));
    assert!(last(&out, SHOW_CURSOR) > last(&out, HIDE_CURSOR));
    let said = format!("dcx: stopped by {signal}");
    assert!(visible(&after).contains(&said), "{after:?}");
    // Raw mode off: the terminal's modes are the ones it had before dcx started.
    let (now, before) = (dcx.modes(), &dcx.initial);
    assert_eq!(now.local_flags, before.local_flags, "echo, canonical input");
    assert_eq!(now.input_flags, before.input_flags);
    assert_eq!(now.output_flags, before.output_flags, "output processing");
}

#[test]
fn closing_the_terminal_during_an_export_leaves_no_half_written_folder() {
    let mut dcx = Explorer::start(200, 50);
    // The layers' shapes show once the baseline is trained and the explorer can export.
    dcx.wait_ready("300x784");
    dcx.type_keys("e");
    // The export's folder is written at once (report.md last), then its figures are drawn
    // in the background.
    let exported = dcx.read_until(READY, |dcx| {
        std::fs::read_dir(dcx.exports.path())
            .unwrap()
            .any(|e| e.unwrap().path().join("report.md").exists())
    });
    assert!(exported, "no export in {READY:?}");
    // Closing the terminal hangs it up: SIGHUP, and every read and write on it fails.
    dcx.master = None;
    dcx.slave = None;
    let status = dcx.wait_exit();
    assert_eq!(status.code(), Some(129), "128 + SIGHUP: {status:?}");

    let files = tree(dcx.exports.path());
    let folders: Vec<_> = files
        .iter()
        .filter(|p| p.components().count() == 1)
        .collect();
    assert_eq!(folders.len(), 1, "one export: {files:?}");
    let folder = folders[0];
    for name in ["model.dcz", "experiment.toml", "report.json", "report.md"] {
        assert!(files.contains(&folder.join(name)), "{name} in {files:?}");
    }
    // The figures were being drawn: either all of them made it, or no figures folder at all
    // and a note in the folder that says so and how to draw them.
    let figures = folder.join("figures");
    let note = folder.join("FIGURES-NOT-DRAWN-YET.txt");
    if files.contains(&figures) {
        let pngs = files
            .iter()
            .filter(|p| p.starts_with(&figures) && p.extension().is_some_and(|e| e == "png"))
            .count();
        assert_eq!(pngs, 9, "a figures folder holds every figure: {files:?}");
        assert!(!files.contains(&note), "{files:?}");
    } else {
        let text = std::fs::read_to_string(dcx.exports.path().join(&note)).unwrap();
        assert!(text.contains("dcx plot"), "{text}");
    }
    let hidden: Vec<_> = files
        .iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    assert!(hidden.is_empty(), "temporary files left: {hidden:?}");
}

/// Ctrl-Z (a key in raw mode) and a `kill -TSTP` give the terminal back and stop dcx as a shell
/// job; `fg` (SIGCONT) takes the terminal again and draws the whole screen. A stop dcx cannot
/// see (SIGSTOP) is put right on SIGCONT too: the whole screen is drawn again.
#[test]
fn ctrl_z_and_sigtstp_give_the_terminal_back_and_fg_takes_it_again() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("skipping: no /proc to see a process stopped");
        return;
    }
    let mut dcx = Explorer::start_job(100, 30);
    dcx.wait_ready("dcx lenet-300-100");
    let job = dcx.job();
    let raw = |dcx: &Explorer| {
        !dcx.modes()
            .local_flags
            .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
    };
    assert!(raw(&dcx), "raw mode before the stop");
    for how in ["Ctrl-Z", "SIGTSTP"] {
        let mark = dcx.output.len();
        if how == "Ctrl-Z" {
            dcx.type_keys("\x1a");
        } else {
            kill(job, Signal::SIGTSTP).unwrap();
        }
        assert!(
            dcx.read_until(EXIT, |_| stopped(job)),
            "{how}: dcx did not stop"
        );
        while dcx.read_for(Duration::from_millis(100)) {}
        let after = String::from_utf8_lossy(&dcx.output[mark..]).into_owned();
        for (what, seq) in [
            ("left the alternate screen", LEAVE_ALT_SCREEN),
            ("showed the cursor", SHOW_CURSOR),
            ("turned mouse reporting off", MOUSE_OFF),
        ] {
            assert!(
                after.contains(seq),
                "{how}: {what} before stopping: {after:?}"
            );
        }
        let (now, before) = (dcx.modes(), &dcx.initial);
        assert_eq!(
            now.local_flags, before.local_flags,
            "{how}: echo, canonical"
        );
        assert_eq!(now.input_flags, before.input_flags, "{how}");
        assert_eq!(now.output_flags, before.output_flags, "{how}");

        let mark = dcx.output.len();
        kill(job, Signal::SIGCONT).unwrap();
        let back = dcx.read_until(EXIT, |dcx| {
            let s = String::from_utf8_lossy(&dcx.output[mark..]);
            s.contains(ENTER_ALT_SCREEN)
                && s.contains(MOUSE_ON)
                && visible(&s).contains("dcx lenet-300-100")
        });
        assert!(
            back,
            "{how}, then SIGCONT: no alternate screen, mouse and whole screen: {:?}",
            String::from_utf8_lossy(&dcx.output[mark..])
        );
        assert!(raw(&dcx), "{how}, then SIGCONT: raw mode again");
    }

    let mark = dcx.output.len();
    kill(job, Signal::SIGSTOP).unwrap();
    assert!(dcx.read_until(EXIT, |_| stopped(job)), "SIGSTOP stops");
    kill(job, Signal::SIGCONT).unwrap();
    let redrawn = dcx.read_until(EXIT, |dcx| {
        visible(&String::from_utf8_lossy(&dcx.output[mark..])).contains("dcx lenet-300-100")
    });
    assert!(
        redrawn,
        "SIGSTOP, then SIGCONT: the whole screen is not drawn again"
    );

    kill(job, Signal::SIGTERM).unwrap();
    let status = dcx.wait_exit();
    assert_eq!(status.code(), Some(143), "{status:?}");
}

/// With no MNIST anywhere, the explorer offers to download it; end of input (Ctrl-D at the
/// start of the line) is no answer, so nothing is downloaded (it once meant yes).
#[test]
fn ctrl_d_at_the_download_prompt_downloads_nothing() {
    let empty = tempfile::tempdir().unwrap();
    let mut dcx = Explorer::start_with(100, 30, empty.path(), false);
    let asked = dcx.read_until(EXIT, |dcx| {
        String::from_utf8_lossy(&dcx.output).contains("[Y/n]")
    });
    assert!(
        asked,
        "no download prompt: {}",
        String::from_utf8_lossy(&dcx.output)
    );
    // The terminal is in its ordinary (canonical) mode at the prompt: ^D ends the input.
    dcx.type_keys("\x04");
    let status = dcx.wait_exit();
    let out = String::from_utf8_lossy(&dcx.output).into_owned();
    assert_eq!(status.code(), Some(1), "{status:?}: {out}");
    assert!(out.contains("no MNIST: run `dcx data fetch`"), "{out}");
    for tried in ["could not download", "mirror", "downloaded"] {
        assert!(!out.contains(tried), "a download was tried: {out}");
    }
    assert_eq!(tree(empty.path()), Vec::<PathBuf>::new(), "{out}");
}

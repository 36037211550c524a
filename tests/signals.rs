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
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mnist-small");
        let tty = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dcx"));
        cmd.arg("--data")
            .arg(&fixture)
            .args(["--model", "lenet-300-100", "--exports"])
            .arg(exports.path())
            .env("DCX_CACHE", cache.path())
            .env("TERM", "xterm-256color")
            .stdin(tty(&pty.slave))
            .stdout(tty(&pty.slave))
            .stderr(tty(&pty.slave));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, ioctl).
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
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
    // The figures were being drawn: either all of them made it, or no figures folder at all.
    let figures = folder.join("figures");
    if files.contains(&figures) {
        let pngs = files
            .iter()
            .filter(|p| p.starts_with(&figures) && p.extension().is_some_and(|e| e == "png"))
            .count();
        assert_eq!(pngs, 9, "a figures folder holds every figure: {files:?}");
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

//! [`PtyRun`]: a command (ctr) on a pseudo-terminal of a chosen size, its output collected, the
//! terminal resizable while it runs (ctr forwards SIGWINCH as `ResizePty`).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::cmd::{excerpt, poll};

/// A command whose stdin, stdout and stderr are the slave of a fresh pty (its controlling
/// terminal, in a new session), the master read in the background.
pub struct PtyRun {
    argv: String,
    child: Child,
    master: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    reader_done: mpsc::Receiver<()>,
    started: Instant,
    finished: bool,
}

/// What a command on a pty printed, and how it ended.
#[derive(Debug)]
pub struct PtyOutput {
    pub argv: String,
    /// `None` when killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Everything read from the master (the terminal's output: `\r\n` line ends).
    pub output: Vec<u8>,
    pub elapsed: Duration,
}

impl PtyOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

impl fmt::Display for PtyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.argv)?;
        match self.status {
            None => writeln!(f, "  result:  TIMED OUT after {:?} (killed)", self.elapsed)?,
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => writeln!(f, "  result:  exit code {c} after {:?}", self.elapsed)?,
                (None, sig) => writeln!(f, "  result:  signal {sig:?} after {:?}", self.elapsed)?,
            },
        }
        write!(
            f,
            "  terminal output ({} bytes): {}",
            self.output.len(),
            excerpt(&self.output)
        )
    }
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a valid, owned descriptor.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// Makes `cmd` start a session of its own whose controlling terminal is its stdin (which must
/// be a terminal's slave side), as a shell on a terminal has it; `ctr run -t` wants one.
pub fn in_own_session_with_stdin_as_terminal(cmd: &mut Command) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl PtyRun {
    /// Starts `cmd` on a new pty of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtyRun {
        let argv: String = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        set_cloexec(&pty.master);
        set_cloexec(&pty.slave);
        let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty slave"));
        cmd.stdin(dup(&pty.slave))
            .stdout(dup(&pty.slave))
            .stderr(dup(&pty.slave));
        in_own_session_with_stdin_as_terminal(&mut cmd);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv}: {e}"));
        // The child has its copies; ours must go so the master sees EIO when the child is done.
        drop(cmd);
        drop(pty.slave);

        let output = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, reader_done) = mpsc::channel();
        let mut reader = File::from(pty.master.try_clone().expect("dup pty master"));
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("pty output lock")
                    .extend_from_slice(&buf[..n]);
            }
            let _ = done_tx.send(());
        });
        PtyRun {
            argv,
            child,
            master: pty.master,
            output,
            reader_done,
            started,
            finished: false,
        }
    }

    /// The terminal output so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("pty output lock")).into_owned()
    }

    /// Waits until the output contains `needle`; false at the deadline or if the command exits
    /// without printing it.
    pub fn wait_for_text(&mut self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || {
            if self.text().contains(needle) {
                return Some(true);
            }
            matches!(self.child.try_wait(), Ok(Some(_))).then_some(false)
        })
        .unwrap_or(false)
    }

    /// Types `bytes` on the terminal (writes them to the master).
    pub fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut master = File::from(self.master.try_clone()?);
        std::io::Write::write_all(&mut master, bytes)
    }

    /// Changes the terminal's size (TIOCSWINSZ on the master); the kernel sends SIGWINCH to
    /// the foreground process group, the command.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits for the command to exit (SIGKILL at the deadline) and for its terminal output.
    pub fn wait(mut self, timeout: Duration) -> PtyOutput {
        let deadline = self.started + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.argv),
            }
        };
        let elapsed = self.started.elapsed();
        self.finished = true;
        // Bounded: only a leftover holder of the slave could delay the EIO.
        let _ = self.reader_done.recv_timeout(Duration::from_secs(5));
        PtyOutput {
            argv: self.argv.clone(),
            status,
            output: self.output.lock().expect("pty output lock").clone(),
            elapsed,
        }
    }
}

impl Drop for PtyRun {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

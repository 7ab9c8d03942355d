//! Running commands with a deadline and capturing everything they print.
//!
//! Every `ctr` call in the harness goes through here: a shim that hangs must turn into a failed
//! assertion with the elapsed time, never into a test run that hangs.

use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for a killed command's output readers after the command is gone. Only a
/// grandchild holding the pipes open could make them wait; ctr has none.
const READER_GRACE: Duration = Duration::from_secs(5);

/// What a finished (or timed out and killed) command did.
#[derive(Debug)]
pub struct CmdOutput {
    pub argv: Vec<String>,
    /// `None` when the command was killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
    pub timeout: Duration,
}

impl CmdOutput {
    pub fn timed_out(&self) -> bool {
        self.status.is_none()
    }

    /// The exit code, `None` if it timed out or died of a signal.
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn success(&self) -> bool {
        self.code() == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Panics with the whole story unless the command exited 0.
    pub fn expect_success(self, what: &str) -> Self {
        if !self.success() {
            panic!("{what} failed:\n{self}");
        }
        self
    }

    /// Panics unless the command finished (with any code) before its deadline.
    pub fn expect_finished(self, what: &str) -> Self {
        if self.timed_out() {
            panic!("{what} did not return within {:?}:\n{self}", self.timeout);
        }
        self
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.argv.join(" "))?;
        match self.status {
            None => writeln!(f, "  result:  TIMED OUT after {:?} (killed)", self.elapsed)?,
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => writeln!(f, "  result:  exit code {c} after {:?}", self.elapsed)?,
                (None, sig) => writeln!(f, "  result:  signal {sig:?} after {:?}", self.elapsed)?,
            },
        }
        writeln!(
            f,
            "  stdout ({} bytes): {}",
            self.stdout.len(),
            excerpt(&self.stdout)
        )?;
        write!(
            f,
            "  stderr ({} bytes): {}",
            self.stderr.len(),
            excerpt(&self.stderr)
        )
    }
}

/// Where two outputs part: the offset of the first differing byte, or which is a prefix.
pub fn first_difference(a: &[u8], b: &[u8]) -> String {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => format!("first difference at byte {i}"),
        None => format!("one is a prefix of the other ({} vs {})", a.len(), b.len()),
    }
}

/// Head and tail of a possibly huge output, so a failure message stays readable.
pub fn excerpt(bytes: &[u8]) -> String {
    const KEEP: usize = 1500;
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= 2 * KEEP {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(KEEP).collect();
    let tail: String = {
        let chars: Vec<char> = text.chars().collect();
        chars[chars.len().saturating_sub(KEEP)..].iter().collect()
    };
    format!(
        "{head:?} ... [{} bytes elided] ... {tail:?}",
        text.len() - 2 * KEEP
    )
}

/// A command running in the background, its output being collected.
pub struct Running {
    argv: Vec<String>,
    child: Child,
    started: Instant,
    stdout: Receiver<Vec<u8>>,
    stderr: Receiver<Vec<u8>>,
    finished: bool,
}

/// Starts `cmd` with piped stdout/stderr and `stdin` (bytes written then closed, or /dev/null).
/// The command gets its own process group so a terminal's ^C reaches the test runner only.
pub fn spawn(mut cmd: Command, stdin: Option<Vec<u8>>) -> Running {
    let argv: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", argv.join(" ")));
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A separate thread: the child may not read stdin before producing output.
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let stdout = collect(child.stdout.take().expect("stdout was piped"));
    let stderr = collect(child.stderr.take().expect("stderr was piped"));
    Running {
        argv,
        child,
        started,
        stdout,
        stderr,
        finished: false,
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has the command exited (without reaping its output)?
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits until the command exits or `timeout` passes; at the deadline it is SIGKILLed (ctr
    /// forwards SIGTERM to the container instead of dying, so nothing gentler works).
    pub fn wait(mut self, timeout: Duration) -> CmdOutput {
        let deadline = self.started + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.argv.join(" ")),
            }
        };
        let elapsed = self.started.elapsed();
        self.finished = true;
        CmdOutput {
            argv: std::mem::take(&mut self.argv),
            status,
            stdout: self.stdout.recv_timeout(READER_GRACE).unwrap_or_default(),
            stderr: self.stderr.recv_timeout(READER_GRACE).unwrap_or_default(),
            elapsed,
            timeout,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A test that panicked before waiting must not leave the command behind.
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion or to its deadline.
pub fn run(cmd: Command, stdin: Option<Vec<u8>>, timeout: Duration) -> CmdOutput {
    spawn(cmd, stdin).wait(timeout)
}

/// Finds `needle` in `haystack` (for checking that a whole payload arrived intact).
pub fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Polls `probe` every 100 ms until it returns `Some` or `timeout` passes.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The error ctr printed: everything from its `ctr: ` line on (the process's own stderr, which
/// ctr copies before failing, comes earlier).
pub fn ctr_error(out: &CmdOutput) -> String {
    let text = out.stderr_str();
    match text.find("ctr: ") {
        Some(i) if i == 0 || text[..i].ends_with('\n') => text[i..].to_string(),
        _ => text
            .match_indices("\nctr: ")
            .next()
            .map(|(i, _)| text[i + 1..].to_string())
            .unwrap_or_default(),
    }
}

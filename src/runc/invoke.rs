//! The one place that runs runc.
//!
//! Every call: runc in its own process group; every pipe runc can write to is already being
//! read when it starts (our capture pipes here, the process's pipes by `io/` for create and
//! exec); its exit awaited from the reaper together with a deadline; on the deadline the whole
//! group (runc and any `runc init` it left) is killed. Output is kept to a bounded size.

use std::{
    ffi::OsString,
    io::{Read, Seek, SeekFrom},
    os::{fd::OwnedFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use log::{debug, warn};
use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{io::AsyncReadExt, net::unix::pipe as tpipe};

use super::error::{last_log_error, RuncError, Words};
use crate::{reaper, tail::Tail};

/// The most of runc's stdout kept for parsing (`state`, `ps`).
const STDOUT_CAP: usize = 4 * 1024 * 1024;
/// How long the captured pipes may stay open after runc exited (a hook's child holding them).
const EOF_GRACE: Duration = Duration::from_millis(500);
/// How long to wait for the killed process group to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where runc's stdio goes.
pub enum CallStdio {
    /// The shim reads runc's stdout and stderr itself.
    Capture,
    /// runc's stdio are the container process's pipes (create and exec without a terminal);
    /// `io/` is already reading them and records stderr in `tail`.
    Process {
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
        tail: Arc<Tail>,
    },
}

/// One runc invocation.
pub struct Call {
    pub verb: &'static str,
    pub container: String,
    pub binary: PathBuf,
    /// Global flags and the verb's own arguments, in order.
    pub args: Vec<OsString>,
    pub stdio: CallStdio,
    /// `--log` file of this call, read for the last error.
    pub log: Option<PathBuf>,
    pub deadline: Duration,
    /// Called once if the call passes half its deadline.
    pub on_slow: Option<Box<dyn FnOnce(Duration) + Send>>,
}

/// Runs `call` to its end; returns runc's stdout on success.
pub async fn run(call: Call) -> Result<Vec<u8>, RuncError> {
    let Call {
        verb,
        container,
        binary,
        args,
        stdio,
        log,
        deadline,
        on_slow,
    } = call;
    let prepare = |reason: String| RuncError::Prepare {
        verb,
        container: container.clone(),
        reason,
    };
    let log_offset = log.as_deref().map(file_len).unwrap_or(0);

    let mut cmd = Command::new(&binary);
    cmd.args(&args).process_group(0);
    environment(&mut cmd);
    let (tail, capture) = match stdio {
        CallStdio::Capture => {
            let out = crate::io::pipe::output().map_err(|e| prepare(e.to_string()))?;
            let err = crate::io::pipe::output().map_err(|e| prepare(e.to_string()))?;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::from(out.child))
                .stderr(Stdio::from(err.child));
            let tail = Arc::new(Tail::default());
            let out_rx =
                tpipe::Receiver::from_owned_fd(out.ours).map_err(|e| prepare(e.to_string()))?;
            let err_rx =
                tpipe::Receiver::from_owned_fd(err.ours).map_err(|e| prepare(e.to_string()))?;
            // Readers run before runc does: nothing runc writes can fill a pipe.
            let stdout = tokio::spawn(read_capped(out_rx, STDOUT_CAP));
            let stderr = tokio::spawn(read_into_tail(err_rx, tail.clone()));
            (tail, Some((stdout, stderr)))
        }
        CallStdio::Process {
            stdin,
            stdout,
            stderr,
            tail,
        } => {
            cmd.stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null))
                .stdout(Stdio::from(stdout))
                .stderr(Stdio::from(stderr));
            (tail, None)
        }
    };

    let started = Instant::now();
    debug!("runc {verb} {container}: {} {:?}", binary.display(), args);
    let spawned = reaper::spawn_watched(&mut cmd);
    // The parent's copies of the child ends close here, so EOF comes when runc's side closes.
    drop(cmd);
    let (child, exit) = spawned.map_err(|source| RuncError::Spawn {
        verb,
        container: container.clone(),
        binary: binary.display().to_string(),
        source,
    })?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    drop(child);

    let mut exit = Box::pin(exit.wait());
    let half = deadline / 2;
    let mut on_slow = on_slow;
    let status = loop {
        let wait_for =
            if on_slow.is_some() { half } else { deadline }.saturating_sub(started.elapsed());
        tokio::select! {
            e = &mut exit => break Some(e.status),
            _ = tokio::time::sleep(wait_for) => {
                if let Some(cb) = on_slow.take() {
                    cb(started.elapsed());
                    continue;
                }
                break None;
            }
        }
    };

    let status = match status {
        Some(s) => s,
        None => {
            warn!("runc {verb} {container}: deadline of {deadline:?} passed; killing process group {pid}");
            // runc is the group leader; `runc init` and anything else it forked stay in the group
            // unless they made their own session.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            if tokio::time::timeout(KILL_GRACE, &mut exit).await.is_err() {
                warn!("runc {verb} {container}: pid {pid} not reaped {KILL_GRACE:?} after SIGKILL");
            }
            // Children reparented to the shim are reaped by the reaper; give the group's
            // stragglers one more signal in case they were still starting.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let out = finish_capture(capture).await;
            drop(out);
            return Err(RuncError::Timeout {
                verb,
                container,
                elapsed: started.elapsed(),
                words: words(&tail, log.as_deref(), log_offset),
            });
        }
    };
    let process_pipes = capture.is_none();
    let stdout = finish_capture(capture).await;
    let elapsed = started.elapsed();
    debug!("runc {verb} {container}: exit status {status} after {elapsed:?}");
    if status != 0 {
        if process_pipes {
            // io/ reads the process's pipes in its own task: let it catch up with what runc
            // wrote just before it died, so that the error has runc's last words.
            settle(&tail).await;
        }
        return Err(RuncError::Failed {
            verb,
            container,
            status,
            elapsed,
            words: words(&tail, log.as_deref(), log_offset),
        });
    }
    Ok(stdout)
}

/// Variables of the shim's own environment that runc must not see.
///
/// `NOTIFY_SOCKET`: containerd started by systemd as a `Type=notify` unit passes it to every
/// shim; runc that sees it proxies the socket into the container and makes `runc start` wait
/// for the container's own `READY=1`, which an ordinary process never sends, so every detached
/// start would hang until the deadline. go-runc drops it for the same reason
/// (`command_linux.go`); the stock shim passes nothing else differently.
pub(super) const WITHHELD_FROM_RUNC: &[&str] = &["NOTIFY_SOCKET"];

/// runc inherits the shim's environment, less [`WITHHELD_FROM_RUNC`].
pub(super) fn environment(cmd: &mut Command) {
    for name in WITHHELD_FROM_RUNC {
        cmd.env_remove(name);
    }
}

/// Waits until `tail` stops growing (bounded), for a reader in another task to catch up.
async fn settle(tail: &Tail) {
    const STEP: Duration = Duration::from_millis(20);
    let mut last = tail.total();
    for _ in 0..15 {
        tokio::time::sleep(STEP).await;
        let now = tail.total();
        // Nothing yet may mean the reader has not run: only a quiet non-empty tail is settled.
        if now == last && now > 0 {
            return;
        }
        last = now;
    }
}

type Readers = (
    tokio::task::JoinHandle<Vec<u8>>,
    tokio::task::JoinHandle<()>,
);

async fn finish_capture(capture: Option<Readers>) -> Vec<u8> {
    let Some((mut stdout, mut stderr)) = capture else {
        return Vec::new();
    };
    let both = async {
        let out = (&mut stdout).await.unwrap_or_default();
        let _ = (&mut stderr).await;
        out
    };
    match tokio::time::timeout(EOF_GRACE, both).await {
        Ok(out) => out,
        Err(_) => {
            // Someone runc started still holds the pipes; stop reading, keep what we have.
            stdout.abort();
            stderr.abort();
            stdout.await.unwrap_or_default()
        }
    }
}

async fn read_capped(mut rx: tpipe::Receiver, cap: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buf[..room]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

async fn read_into_tail(mut rx: tpipe::Receiver, tail: Arc<Tail>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => tail.push(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

fn words(tail: &Tail, log: Option<&Path>, offset: u64) -> Words {
    Words {
        log_error: log
            .and_then(|p| read_from(p, offset))
            .and_then(|t| last_log_error(&t)),
        output: tail.render(),
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// What was appended to `path` after `offset`, at most 1 MiB of it.
fn read_from(path: &Path, offset: u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(1024 * 1024));
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut s = String::new();
    f.take(1024 * 1024).read_to_string(&mut s).ok()?;
    Some(s)
}

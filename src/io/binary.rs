//! `binary://` logging: a logger process that reads the container's output.
//!
//! As with containerd's Go shim, the logger gets the stdout stream on fd 3, stderr on fd 4 and a
//! readiness pipe on fd 5 that it closes when it is ready; its environment is only
//! `CONTAINER_ID` and `CONTAINER_NAMESPACE`. Unlike the Go shim, the logger does not read the
//! process's own pipes: the shim copies into the logger's pipes, so a slow or dead logger never
//! blocks runc or the container (the copier buffers, then discards).

use std::{
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tokio::io::AsyncReadExt;

use super::{pipe, IoError};
use crate::reaper;

/// How long the logger may take to close its readiness pipe.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A started logger: the write ends of its stdout and stderr pipes.
pub struct Logger {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn err(path: &Path, what: &str, e: impl std::fmt::Display) -> IoError {
    IoError::Logger(format!("{}: {what}: {e}", path.display()))
}

/// Starts the logger at `path` and waits until it says it is ready.
pub async fn start(
    path: &Path,
    args: &[String],
    container_id: &str,
    namespace: &str,
) -> Result<Logger, IoError> {
    let out = pipe::output().map_err(|e| err(path, "pipe", e))?;
    let errp = pipe::output().map_err(|e| err(path, "pipe", e))?;
    let ready = pipe::output().map_err(|e| err(path, "pipe", e))?;
    // The logger reads what the process writes: its ends are our pipes' read ends.
    let (out_r, out_w) = (out.ours, out.child);
    let (err_r, err_w) = (errp.ours, errp.child);
    let (ready_r, ready_w) = (ready.ours, ready.child);
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];

    let mut cmd = Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", container_id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: between fork and exec only fcntl and dup2 run, both async-signal-safe. The fds
    // are first moved above 5 so that placing one on 3..=5 cannot clobber another.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let (child, exit) = reaper::spawn_watched(&mut cmd).map_err(|e| err(path, "start", e))?;
    drop(cmd);
    drop((out_r, err_r, ready_w));
    let pid = child.id();
    drop(child);
    // The exit is reaped by the reaper; nobody needs its status.
    tokio::spawn(async move {
        let e = exit.wait().await;
        log::debug!("logging binary (pid {pid}) exited with status {}", e.status);
    });

    let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r)
        .map_err(|e| err(path, "readiness pipe", e))?;
    let mut sink = Vec::new();
    match tokio::time::timeout(READY_TIMEOUT, ready.read_to_end(&mut sink)).await {
        Ok(Ok(_)) => Ok(Logger {
            stdout: out_w,
            stderr: err_w,
        }),
        Ok(Err(e)) => Err(err(path, "readiness pipe", e)),
        Err(_) => Err(err(
            path,
            "not ready",
            format!("fd 5 still open after {READY_TIMEOUT:?}"),
        )),
    }
}

//! The stdio of one container process: pipes between the process and the shim, and the copies
//! between those pipes and containerd's FIFOs.
//!
//! Everything here is running before runc is spawned: the process's output is being read from
//! the moment the pipes exist, so neither runc nor `runc init` nor the process can block on a full
//! pipe while the shim waits for runc (DESIGN.md, the invariant). This module knows nothing of
//! RPCs or runc; it hands out the child ends of the pipes and a [`Tail`] of stderr.

pub mod binary;
pub mod copier;
pub mod fifo;
pub mod pipe;
pub mod stdin;
pub mod uri;

use std::{os::fd::OwnedFd, path::PathBuf, sync::Arc, time::Duration};

use tokio::net::unix::pipe as tpipe;

use crate::tail::Tail;
pub use copier::{OutputCopier, Sink};
pub use stdin::StdinCopier;

/// Paths containerd gave for one process; empty means "not wanted".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// The ends runc hands to the process.
pub struct ChildStdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The shim's side of one process's stdio.
pub struct ProcessIo {
    stdout: OutputCopier,
    stderr: OutputCopier,
    stdin: Option<StdinCopier>,
    tail: Arc<Tail>,
}

#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("cannot create the {stream} pipe: {source}")]
    Pipe {
        stream: &'static str,
        source: std::io::Error,
    },
    #[error("unsupported stdio {0:?}: expected a FIFO path, file:// or binary://")]
    Unsupported(String),
    #[error("logging binary {0}")]
    Logger(String),
    #[error("cannot give the pipes to uid {uid} gid {gid}: {source}")]
    Chown {
        uid: u32,
        gid: u32,
        source: std::io::Error,
    },
}

/// Who the process is, for `binary://` loggers and pipe ownership.
#[derive(Debug, Clone, Default)]
pub struct IoContext {
    pub container_id: String,
    pub namespace: String,
    /// Owner of the pipes (runc `IoUid`/`IoGid`), for processes running as another user.
    pub uid: u32,
    pub gid: u32,
}

/// The sinks of stdout and stderr; a `binary://` logger is started here.
async fn sinks(paths: &StdioPaths, ctx: &IoContext) -> Result<(Sink, Sink), IoError> {
    let out = uri::parse(&paths.stdout)?;
    let err = uri::parse(&paths.stderr)?;
    let logger = [&out, &err].into_iter().find_map(|t| match t {
        uri::Target::Binary { path, args } => Some((path.clone(), args.clone())),
        _ => None,
    });
    let Some((path, args)) = logger else {
        return Ok((plain(out), plain(err)));
    };
    // One logger takes both streams; an end it is not given is closed (EOF at once).
    let l = binary::start(&path, &args, &ctx.container_id, &ctx.namespace).await?;
    let pick = |t: uri::Target, fd| match t {
        uri::Target::Binary { .. } => Sink::Pipe(fd),
        other => plain(other),
    };
    Ok((pick(out, l.stdout), pick(err, l.stderr)))
}

fn plain(t: uri::Target) -> Sink {
    match t {
        uri::Target::Fifo(p) => Sink::Fifo(p),
        uri::Target::File(p) => Sink::File(p),
        uri::Target::Null | uri::Target::Binary { .. } => Sink::Null,
    }
}

fn chown(fds: &[&OwnedFd], ctx: &IoContext) -> Result<(), IoError> {
    if ctx.uid == 0 && ctx.gid == 0 {
        return Ok(());
    }
    for fd in fds {
        nix::unistd::fchown(
            *fd,
            Some(nix::unistd::Uid::from_raw(ctx.uid)),
            Some(nix::unistd::Gid::from_raw(ctx.gid)),
        )
        .map_err(|e| IoError::Chown {
            uid: ctx.uid,
            gid: ctx.gid,
            source: e.into(),
        })?;
    }
    Ok(())
}

impl ProcessIo {
    /// Creates the pipes and starts copying; `name` (container and exec ID) labels the log.
    pub async fn start(
        name: &str,
        paths: &StdioPaths,
        ctx: &IoContext,
    ) -> Result<(ProcessIo, ChildStdio), IoError> {
        let (stdout_sink, stderr_sink) = sinks(paths, ctx).await?;
        let pipe_err = |stream| move |source| IoError::Pipe { stream, source };
        let out = pipe::output().map_err(pipe_err("stdout"))?;
        let err = pipe::output().map_err(pipe_err("stderr"))?;
        let input = if paths.stdin.is_empty() {
            None
        } else {
            Some(pipe::input().map_err(pipe_err("stdin"))?)
        };
        let mut ends = vec![&out.child, &out.ours, &err.child, &err.ours];
        if let Some(p) = &input {
            ends.extend([&p.child, &p.ours]);
        }
        chown(&ends, ctx)?;
        let out_rx = tpipe::Receiver::from_owned_fd(out.ours).map_err(pipe_err("stdout"))?;
        let err_rx = tpipe::Receiver::from_owned_fd(err.ours).map_err(pipe_err("stderr"))?;
        let tail = Arc::new(Tail::default());
        let stdout = OutputCopier::start(format!("{name} stdout"), out_rx, stdout_sink, None);
        let stderr = OutputCopier::start(
            format!("{name} stderr"),
            err_rx,
            stderr_sink,
            Some(tail.clone()),
        );
        let (stdin, child_stdin) = match input {
            Some(p) => {
                let tx = tpipe::Sender::from_owned_fd(p.ours).map_err(pipe_err("stdin"))?;
                let copier =
                    StdinCopier::start(format!("{name} stdin"), PathBuf::from(&paths.stdin), tx);
                (Some(copier), Some(p.child))
            }
            None => (None, None),
        };
        Ok((
            ProcessIo {
                stdout,
                stderr,
                stdin,
                tail,
            },
            ChildStdio {
                stdin: child_stdin,
                stdout: out.child,
                stderr: err.child,
            },
        ))
    }

    /// What runc (and `runc init`) wrote to the process's stderr while it ran.
    pub fn runc_tail(&self) -> Arc<Tail> {
        self.tail.clone()
    }

    /// runc has returned; the process's own output keeps the stock shim's flow control.
    pub fn end_runc_phase(&self) {
        self.stdout.end_runc_phase();
        self.stderr.end_runc_phase();
    }

    pub fn close_stdin(&self) {
        if let Some(s) = &self.stdin {
            s.close();
        }
    }

    /// Waits up to `limit` for the output to be fully delivered; returns whether it was.
    pub async fn wait_delivered(&self, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            self.stdout.wait().await;
            self.stderr.wait().await;
        })
        .await
        .is_ok()
    }

    /// The process is gone for good: stop delivering, release stdin.
    pub fn shutdown(&self) {
        self.stdout.abandon();
        self.stderr.abandon();
        self.close_stdin();
    }
}

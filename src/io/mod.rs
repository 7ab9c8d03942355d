//! The stdio of one container process: pipes between the process and the shim, and the copies
//! between those pipes and containerd's FIFOs.
//!
//! Everything here is running before runc is spawned: the process's output is being read from
//! the moment the pipes exist, so neither runc nor `runc init` nor the process can block on a full
//! pipe while the shim waits for runc (DESIGN.md, the invariant). This module knows nothing of
//! RPCs or runc; it hands out the child ends of the pipes and a [`Tail`] of stderr.

pub mod binary;
pub mod console;
pub mod copier;
pub mod fifo;
pub mod pipe;
pub mod splice;
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
    /// None with a terminal: the pty merges both streams.
    stderr: Option<OutputCopier>,
    stdin: Option<StdinCopier>,
    tail: Arc<Tail>,
    /// The pty master, for resizing.
    console: Option<OwnedFd>,
}

/// A terminal process whose pty runc has not sent yet.
pub struct PendingTerminal {
    name: String,
    paths: StdioPaths,
    socket: console::ConsoleSocket,
}

impl PendingTerminal {
    /// The `--console-socket` to give runc.
    pub fn socket_path(&self) -> &std::path::Path {
        self.socket.path()
    }

    /// Takes the pty master runc sent and starts copying between it and the FIFOs.
    pub async fn finish(self) -> Result<ProcessIo, IoError> {
        let term = |e: std::io::Error| IoError::Terminal(e.to_string());
        let master = self.socket.master().await.map_err(term)?;
        let reader = console::Pty::new(master.try_clone().map_err(term)?).map_err(term)?;
        let stdout = OutputCopier::start(
            format!("{} terminal", self.name),
            copier::Source::Other(Box::new(reader)),
            plain(uri::parse(&self.paths.stdout)?),
            None,
        );
        // runc is done: the terminal's output has the stock flow control from the start.
        stdout.end_runc_phase();
        let stdin = if self.paths.stdin.is_empty() {
            None
        } else {
            let writer = console::Pty::new(master.try_clone().map_err(term)?).map_err(term)?;
            Some(StdinCopier::start(
                format!("{} stdin", self.name),
                PathBuf::from(&self.paths.stdin),
                writer,
            ))
        };
        Ok(ProcessIo {
            stdout,
            stderr: None,
            stdin,
            tail: Arc::new(Tail::default()),
            console: Some(master),
        })
    }
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
    #[error("terminal: {0}")]
    Terminal(String),
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

/// A pipe below the default 16 pages means the owner's `fs.pipe-user-pages-soft` budget is
/// spent: the condition of the case study. sluice copes, but the node needs attention.
fn warn_if_small(name: &str, stream: &str, fd: &OwnedFd) {
    if let Some(w) = small_pipe_warning(name, stream, fd) {
        log::warn!("{w}");
    }
}

fn small_pipe_warning(name: &str, stream: &str, fd: &OwnedFd) -> Option<String> {
    const DEFAULT_CAPACITY: i32 = 16 * 4096;
    match nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETPIPE_SZ) {
        Ok(size) if size < DEFAULT_CAPACITY => Some(format!(
            "{name}: the {stream} pipe got {size} bytes instead of {DEFAULT_CAPACITY}: \
             the per-user pipe budget (fs.pipe-user-pages-soft) is spent"
        )),
        _ => None,
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
        for (stream, p) in [("stdout", &out.ours), ("stderr", &err.ours)] {
            warn_if_small(name, stream, p);
        }
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
                stderr: Some(stderr),
                stdin,
                tail,
                console: None,
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
        if let Some(e) = &self.stderr {
            e.end_runc_phase();
        }
    }

    /// Prepares a terminal process: a console socket for runc, copies once the pty arrives.
    pub fn prepare_terminal(name: &str, paths: &StdioPaths) -> Result<PendingTerminal, IoError> {
        if !paths.stderr.is_empty() && paths.stderr != paths.stdout {
            log::debug!("{name}: stderr is merged into stdout on a terminal");
        }
        // Only FIFOs and files make sense for a terminal; fail early on anything else.
        if let uri::Target::Binary { .. } = uri::parse(&paths.stdout)? {
            return Err(IoError::Unsupported(format!(
                "{}: a terminal cannot be given to a logging binary",
                paths.stdout
            )));
        }
        let socket =
            console::ConsoleSocket::bind().map_err(|e| IoError::Terminal(e.to_string()))?;
        Ok(PendingTerminal {
            name: name.to_string(),
            paths: paths.clone(),
            socket,
        })
    }

    /// Sets the terminal's window size; an error if the process has no terminal.
    pub fn resize(&self, width: u16, height: u16) -> Result<(), IoError> {
        match &self.console {
            Some(m) => {
                console::resize(m, width, height).map_err(|e| IoError::Terminal(e.to_string()))
            }
            None => Err(IoError::Terminal("the process has no terminal".into())),
        }
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
            if let Some(e) = &self.stderr {
                e.wait().await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits up to `limit` until what the process wrote so far has reached its reader, EOF or
    /// not (a child may hold the pipes); returns whether it did.
    pub async fn wait_settled(&self, limit: Duration) -> bool {
        let stderr = async {
            match &self.stderr {
                Some(e) => e.wait_settled(limit).await,
                None => true,
            }
        };
        let (out, err) = tokio::join!(self.stdout.wait_settled(limit), stderr);
        out && err
    }

    /// Whether every output pipe reached EOF and its copy is over.
    pub fn finished(&self) -> bool {
        self.stdout.finished() && self.stderr.as_ref().is_none_or(OutputCopier::finished)
    }

    /// Ends the copies now, closing the pipes even if another process still holds them.
    pub fn stop(&self) {
        self.stdout.stop();
        if let Some(e) = &self.stderr {
            e.stop();
        }
    }

    /// The process is gone for good: close the sinks (their readers see EOF), stop delivering,
    /// release stdin. The pipes are still drained until EOF or [`ProcessIo::stop`].
    pub fn shutdown(&self) {
        self.stdout.abandon();
        if let Some(e) = &self.stderr {
            e.abandon();
        }
        if let Some(s) = &self.stdin {
            s.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_page_pipe_is_reported_naming_the_process() {
        let p = pipe::output().expect("pipe");
        assert_eq!(small_pipe_warning("c1/e1", "stderr", &p.ours), None);
        // What the kernel hands out once the user's pipe budget is spent.
        nix::fcntl::fcntl(&p.ours, nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096)).expect("shrink");
        let w = small_pipe_warning("c1/e1", "stderr", &p.ours).expect("warning");
        assert!(
            w.starts_with("c1/e1: the stderr pipe got 4096 bytes instead of 65536"),
            "{w}"
        );
    }
}

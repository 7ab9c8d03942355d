//! The sink end of a copier: opening it, writing to it, waiting for its reader at the end.

use std::{os::fd::OwnedFd, path::PathBuf, sync::Arc};

use log::{debug, warn};
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    net::unix::pipe,
};

/// Where the output goes.
#[derive(Debug)]
pub enum Sink {
    /// A FIFO that containerd (or its client) reads.
    Fifo(PathBuf),
    /// A file, appended to (`file://`).
    File(PathBuf),
    /// The write end of a pipe a logging binary reads (`binary://`).
    Pipe(OwnedFd),
    /// Nowhere: the process was started without this stream.
    Null,
}

/// An open sink. A pipe is shared with the reader, which splices into it when it may.
pub(super) enum Writer {
    Pipe(Arc<pipe::Sender>),
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Writer {
    pub(super) async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        match self {
            Writer::Other(w) => w.write_all(data).await,
            Writer::Pipe(p) => {
                while !data.is_empty() {
                    p.writable().await?;
                    match p.try_write(data) {
                        Ok(n) => data = &data[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
        }
    }

    pub(super) async fn flush(&mut self) {
        if let Writer::Other(w) = self {
            let _ = w.flush().await;
        }
    }

    /// The pipe to splice into, if the sink is one.
    pub(super) fn pipe(&self) -> Option<Arc<pipe::Sender>> {
        match self {
            Writer::Pipe(p) => Some(p.clone()),
            Writer::Other(_) => None,
        }
    }
}

/// Opens `sink`; `None` means everything will be discarded.
pub(super) async fn open(name: &str, sink: Sink, give_up: impl Fn() -> bool) -> Option<Writer> {
    let opened: std::io::Result<Option<Writer>> = match sink {
        Sink::Null => Ok(None),
        Sink::Fifo(path) => match crate::io::fifo::open_writer(&path, give_up).await {
            Ok(Some(w)) => Ok(Some(Writer::Pipe(Arc::new(w)))),
            Ok(None) => {
                debug!("{name}: nobody opened {}; output discarded", path.display());
                Ok(None)
            }
            Err(e) => Err(e),
        },
        Sink::File(path) => {
            if let Some(dir) = path.parent() {
                let _ = tokio::fs::create_dir_all(dir).await;
            }
            tokio::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path)
                .await
                .map(|f| Some(Writer::Other(Box::new(f))))
        }
        Sink::Pipe(fd) => pipe::Sender::from_owned_fd(fd).map(|s| Some(Writer::Pipe(Arc::new(s)))),
    };
    match opened {
        Ok(w) => w,
        Err(e) => {
            warn!("{name}: cannot open the output sink: {e}; discarding output");
            None
        }
    }
}

/// How long the end of a stream waits for its reader to take the bytes still in the sink.
pub const READ_OUT_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits (up to [`READ_OUT_LIMIT`]) until the reader has taken everything out of a pipe sink.
///
/// "Delivered" must mean read, not only written: ctr 1.6 closes its FIFOs as soon as it sees
/// the exit, before it waits for EOF, and whatever is still in the FIFO then is lost (the
/// stock shim is slow enough at telling the exit that this rarely shows with it). The exit is
/// told after this (see `ProcessIo::wait_delivered`).
pub(super) async fn read_out(name: &str, p: &pipe::Sender) {
    use std::os::fd::AsRawFd;
    let deadline = tokio::time::Instant::now() + READ_OUT_LIMIT;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD on a pipe descriptor we hold, into an int we own.
        let rc = unsafe { libc::ioctl(p.as_raw_fd(), libc::FIONREAD, &mut unread) };
        if rc != 0 || unread == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            debug!("{name}: {unread} bytes still unread in the sink at close");
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

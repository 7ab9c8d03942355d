//! Copies containerd's stdin FIFO into the process's stdin pipe, and closes it on EOF or CloseIO.

use std::{io, path::PathBuf, sync::Arc};

use log::{debug, warn};
use tokio::{
    io::{AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::unix::pipe,
    sync::Notify,
};

/// A running stdin copy.
pub struct StdinCopier {
    close: Arc<Notify>,
}

impl StdinCopier {
    pub fn start(
        name: String,
        path: PathBuf,
        target: impl AsyncWrite + Send + Unpin + 'static,
    ) -> StdinCopier {
        let close = Arc::new(Notify::new());
        tokio::spawn(copy(name, path, target, close.clone()));
        StdinCopier { close }
    }

    /// CloseIO: deliver what the client already wrote, then close the process's stdin.
    pub fn close(&self) {
        self.close.notify_one();
    }
}

async fn copy(
    name: String,
    path: PathBuf,
    mut target: impl AsyncWrite + Unpin,
    close: Arc<Notify>,
) {
    let mut source = match super::fifo::open_reader(&path) {
        Ok(s) => s,
        Err(e) => {
            warn!("{name}: cannot open stdin {}: {e}", path.display());
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        tokio::select! {
            r = source.read(&mut buf) => match r {
                Ok(0) => break,
                Ok(n) => {
                    if let Err(e) = target.write_all(&buf[..n]).await {
                        debug!("{name}: stdin closed by the process: {e}");
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("{name}: reading stdin failed: {e}");
                    break;
                }
            },
            _ = close.notified() => {
                // The client wrote everything before it asked to close: take what is buffered.
                drain_ready(&name, &mut source, &mut target, &mut buf).await;
                break;
            }
        }
    }
    debug!("{name}: stdin closed");
}

async fn drain_ready(
    name: &str,
    source: &mut pipe::Receiver,
    target: &mut (impl AsyncWrite + Unpin),
    buf: &mut [u8],
) {
    loop {
        match source.try_read(buf) {
            Ok(0) => return,
            Ok(n) => {
                if let Err(e) = target.write_all(&buf[..n]).await {
                    debug!("{name}: stdin closed by the process: {e}");
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

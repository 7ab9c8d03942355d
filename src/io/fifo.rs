//! Opening containerd's FIFOs without ever blocking the runtime.

use std::{io, path::Path, time::Duration};

use tokio::net::unix::pipe;

/// How often to retry opening a FIFO whose reader has not opened it yet.
const OPEN_RETRY: Duration = Duration::from_millis(20);

/// Opens `path` for writing once a reader is there. Returns `Ok(None)` if the FIFO is gone.
///
/// A non-blocking open fails with ENXIO while nobody reads; retrying keeps the runtime free,
/// and the copier that calls this keeps draining the process meanwhile.
pub async fn open_writer(path: &Path) -> io::Result<Option<pipe::Sender>> {
    loop {
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                tokio::time::sleep(OPEN_RETRY).await
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Opens `path` for reading, waiting until a writer has opened it.
///
/// A non-blocking read end would report EOF before the client had its chance to connect, and
/// the process would lose its stdin; the blocking open runs on the blocking pool instead. If
/// no writer ever comes, [`release_reader`] unblocks it.
pub async fn open_reader(path: &Path) -> io::Result<pipe::Receiver> {
    let p = path.to_owned();
    let file = tokio::task::spawn_blocking(move || std::fs::File::open(p))
        .await
        .map_err(io::Error::other)??;
    pipe::Receiver::from_file(file)
}

/// Unblocks a pending [`open_reader`] on `path` by briefly opening the write side.
pub fn release_reader(path: &Path) {
    if let Ok(s) = pipe::OpenOptions::new().open_sender(path) {
        drop(s);
    }
}

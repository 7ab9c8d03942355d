//! Opening containerd's FIFOs without ever blocking a thread.
//!
//! A blocking open of a FIFO waits for the other side for ever, and if the client removes the
//! FIFO meanwhile nothing can wake it: such a thread would keep the shim alive after its last
//! container. Both sides are therefore opened non-blocking.

use std::{io, path::Path, time::Duration};

use tokio::net::unix::pipe;

/// How often to retry opening a FIFO whose reader has not opened it yet.
const OPEN_RETRY: Duration = Duration::from_millis(20);

/// Opens `path` for writing once a reader is there. Returns `Ok(None)` if the FIFO is gone or
/// `give_up` says the output is no longer wanted.
///
/// A non-blocking open fails with ENXIO while nobody reads; the copier that calls this keeps
/// draining the process meanwhile.
pub async fn open_writer(
    path: &Path,
    give_up: impl Fn() -> bool,
) -> io::Result<Option<pipe::Sender>> {
    loop {
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => return Ok(Some(s)),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if give_up() {
                    return Ok(None);
                }
                tokio::time::sleep(OPEN_RETRY).await
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// Opens `path` for reading at once.
///
/// A FIFO read end opened before any writer is not reported readable (nor hung up) until a
/// writer has come, so the stdin copy waits for the client instead of seeing an early EOF.
pub fn open_reader(path: &Path) -> io::Result<pipe::Receiver> {
    pipe::OpenOptions::new().open_receiver(path)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn reader_opened_before_the_writer_waits_for_its_data_then_sees_eof() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdin");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut rx = open_reader(&path).expect("open reader");
        let p = path.clone();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut tx = pipe::OpenOptions::new()
                .open_sender(&p)
                .expect("open writer");
            tx.write_all(b"late data").await.expect("write");
        });
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert_eq!(got, b"late data");
    }

    #[tokio::test]
    async fn writer_gives_up_when_told() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stdout");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let got = open_writer(&path, || true).await.expect("open");
        assert!(got.is_none());
    }
}

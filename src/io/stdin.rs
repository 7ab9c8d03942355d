//! Copies containerd's stdin FIFO into the process's stdin pipe, and closes the pipe when the
//! client is done with it.
//!
//! When is stdin over? As with the stock shim, a client leaving (a detached `ctr`, a restarting
//! containerd holding a CRI container's stdin) does not end it: the shim then holds a write end
//! of the FIFO itself, so the process keeps its stdin until CloseIO. Two cases do end it:
//! - CloseIO, once what the client wrote has been delivered;
//! - a client that wrote its input and closed the FIFO right away, as `printf x | ctr run ... cat`
//!   does: ctr 1.6 sends no CloseIO when its input ends before the task exists, and the stock
//!   shim leaves such a process waiting for ever.

use std::{
    io,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use log::{debug, warn};
use tokio::{
    io::{AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::unix::pipe,
    sync::Notify,
};

/// A client that closes the FIFO this soon after it started, having written something, has
/// piped a finite input: its close is the end of stdin.
const FINITE_INPUT_WINDOW: Duration = Duration::from_secs(2);
/// After CloseIO, how long to wait for clients that keep the FIFO open before closing anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The most read from the FIFO at once.
const CHUNK: usize = 32 * 1024;

/// A running stdin copy; dropping it stops the copy.
pub struct StdinCopier {
    close: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl StdinCopier {
    pub fn start(
        name: String,
        path: PathBuf,
        target: impl AsyncWrite + Send + Unpin + 'static,
    ) -> StdinCopier {
        let close = Arc::new(Notify::new());
        let task = tokio::spawn(copy(name, path, target, close.clone()));
        StdinCopier { close, task }
    }

    /// CloseIO: deliver what the clients write until they close, then close the process's stdin.
    pub fn close(&self) {
        self.close.notify_one();
    }

    /// The process is gone: stop at once, without CloseIO's grace for clients still writing.
    /// An exec probe's copy (its FIFO, pipe and buffer) would otherwise outlive its delete by
    /// the grace, a few dozen of them at a time on a busy node.
    pub fn abort(&self) {
        self.task.abort();
    }
}

impl Drop for StdinCopier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn copy(
    name: String,
    path: PathBuf,
    mut target: impl AsyncWrite + Unpin,
    close: Arc<Notify>,
) {
    let started = Instant::now();
    let mut source = match super::fifo::open_reader(&path) {
        Ok(s) => s,
        Err(e) => {
            warn!("{name}: cannot open stdin {}: {e}", path.display());
            return;
        }
    };
    // Our own write end, held once a client has left; dropped on CloseIO.
    let mut own_writer: Option<pipe::Sender> = None;
    let mut got_data = false;
    let mut closing: Option<Instant> = None;
    // Allocated while input flows only: most stdins are never written to.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let grace = closing.map(|at| CLOSE_GRACE.saturating_sub(at.elapsed()));
        tokio::select! {
            r = read_ready(&mut source, &mut buf) => match r {
                Ok(0) => {
                    // Every writer has closed the FIFO.
                    if closing.is_some() || (got_data && started.elapsed() < FINITE_INPUT_WINDOW) {
                        break;
                    }
                    match hold_open(&path) {
                        Ok((w, fresh)) => {
                            debug!("{name}: the stdin client left; stdin stays open until CloseIO");
                            own_writer = Some(w);
                            source = fresh;
                        }
                        Err(_) => break,
                    }
                }
                Ok(n) => {
                    got_data = true;
                    if let Err(e) = target.write_all(&buf[..n]).await {
                        debug!("{name}: stdin closed by the process: {e}");
                        return;
                    }
                    if n < CHUNK {
                        // The FIFO is drained for now.
                        buf = Vec::new();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("{name}: reading stdin failed: {e}");
                    break;
                }
            },
            _ = close.notified(), if closing.is_none() => {
                closing = Some(Instant::now());
                own_writer = None;
            }
            _ = tokio::time::sleep(grace.unwrap_or(Duration::MAX)), if grace.is_some() => {
                // A client still holds the FIFO after CloseIO: take what it wrote and close.
                drain_ready(&name, &mut source, &mut target, &mut buf).await;
                break;
            }
        }
    }
    drop(own_writer);
    debug!("{name}: stdin closed");
}

/// Reads what the FIFO holds, allocating `buf` only once there is something to read.
/// Cancel-safe, as the `select!` above needs: nothing is read until the read itself.
async fn read_ready(source: &mut pipe::Receiver, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() == 0 {
        source.readable().await?;
        buf.reserve_exact(CHUNK);
    }
    buf.clear();
    source.read_buf(buf).await
}

/// Takes a write end of the FIFO for the shim (so the process keeps its stdin, as the stock
/// shim's `p.stdin` does in pkg/process/init.go) and a fresh read end to read from.
///
/// The old read end cannot be reused: tokio keeps a hang-up as final readiness (it never clears
/// READ_CLOSED), so once every writer had left, each read on it would return EAGAIN at once
/// and the loop would spin for as long as the process runs. The FIFO's buffer belongs to the
/// inode, so nothing written meanwhile is lost by switching read ends.
///
/// The read end is opened first: the kernel reports a hang-up to a FIFO reader only for writers
/// that opened after it, and CloseIO relies on the hang-up that dropping our writer causes.
fn hold_open(path: &std::path::Path) -> io::Result<(pipe::Sender, pipe::Receiver)> {
    let reader = super::fifo::open_reader(path)?;
    let writer = pipe::OpenOptions::new().open_sender(path)?;
    Ok((writer, reader))
}

async fn drain_ready(
    name: &str,
    source: &mut pipe::Receiver,
    target: &mut (impl AsyncWrite + Unpin),
    buf: &mut Vec<u8>,
) {
    buf.resize(CHUNK, 0);
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

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        fifo: PathBuf,
        copier: StdinCopier,
        process: pipe::Receiver,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("stdin");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let p = crate::io::pipe::input().expect("pipe");
        let to_process = pipe::Sender::from_owned_fd(p.ours).expect("sender");
        let process = pipe::Receiver::from_owned_fd(p.child).expect("receiver");
        let copier = StdinCopier::start("t".into(), fifo.clone(), to_process);
        Fixture {
            _dir: dir,
            fifo,
            copier,
            process,
        }
    }

    async fn read_to_eof(rx: &mut pipe::Receiver, limit: Duration) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        tokio::time::timeout(limit, rx.read_to_end(&mut all))
            .await
            .ok()?
            .ok()?;
        Some(all)
    }

    async fn client(fifo: &PathBuf) -> pipe::Sender {
        // The copier opens its read end as it starts; the client opens after it.
        for _ in 0..100 {
            if let Ok(s) = pipe::OpenOptions::new().open_sender(fifo) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the copier never opened the FIFO");
    }

    #[tokio::test]
    async fn piped_input_then_close_is_the_end_of_stdin() {
        let mut f = fixture();
        let mut c = client(&f.fifo).await;
        c.write_all(b"x").await.expect("write");
        drop(c);
        let got = read_to_eof(&mut f.process, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b"x"[..]));
    }

    #[tokio::test]
    async fn a_client_that_leaves_does_not_end_stdin_but_close_io_does() {
        let mut f = fixture();
        let c = client(&f.fifo).await;
        drop(c);
        // Stays open: the stock shim keeps a detached container's stdin.
        assert!(read_to_eof(&mut f.process, Duration::from_millis(500))
            .await
            .is_none());
        // A new client can still write; CloseIO then ends stdin after its bytes.
        let mut c = client(&f.fifo).await;
        c.write_all(b"later").await.expect("write");
        f.copier.close();
        drop(c);
        let got = read_to_eof(&mut f.process, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b"later"[..]));
    }

    /// CPU time of the calling thread: a current-thread runtime runs the copier on it.
    fn thread_cpu() -> Duration {
        let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage fills the struct it is given.
        let ru = unsafe {
            libc::getrusage(libc::RUSAGE_THREAD, ru.as_mut_ptr());
            ru.assume_init()
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }

    #[tokio::test]
    async fn a_client_that_left_costs_no_cpu_and_close_io_still_ends_stdin() {
        let mut f = fixture();
        drop(client(&f.fifo).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = thread_cpu();
        // A spin on the hung-up read end would burn all of this.
        assert!(read_to_eof(&mut f.process, Duration::from_millis(500))
            .await
            .is_none());
        let used = thread_cpu() - before;
        assert!(
            used < Duration::from_millis(20),
            "the stdin copy used {used:?} of CPU in 500 ms with nobody writing"
        );
        // No client comes back: CloseIO alone ends stdin.
        f.copier.close();
        let got = read_to_eof(&mut f.process, Duration::from_secs(5)).await;
        assert_eq!(got.as_deref(), Some(&b""[..]));
    }

    #[tokio::test]
    async fn close_io_with_a_client_still_attached_closes_after_the_grace() {
        let mut f = fixture();
        let mut c = client(&f.fifo).await;
        c.write_all(b"kept").await.expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        f.copier.close();
        let got = read_to_eof(&mut f.process, CLOSE_GRACE + Duration::from_secs(3)).await;
        assert_eq!(got.as_deref(), Some(&b"kept"[..]));
        drop(c);
    }
}

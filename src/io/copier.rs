//! Copies a process's output pipe to its sink (containerd's FIFO, or nowhere).
//!
//! The reading never waits for runc: while runc runs (the "runc phase"), a sink that is not open
//! yet or not read keeps the reader going: up to [`QUEUE_CAP`] bytes are held, past that bytes are
//! discarded with a warning. After runc has returned, a slow sink slows the reader (and so the
//! writer in the container), as with the stock shim, and nothing is dropped, unless the sink has
//! failed for good: then its bytes are read and discarded so the container never blocks on it.
//!
//! While runc runs, everything read is also recorded in a [`Tail`]: runc and `runc init` write
//! their own failure text into the process's stderr, and that text is the error containerd sees.

use std::{
    collections::VecDeque,
    os::fd::OwnedFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use log::{debug, warn};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::unix::pipe,
    sync::{watch, Notify},
};

use crate::tail::Tail;

/// Bytes held for a sink that does not keep up (read buffer of the copier).
pub const QUEUE_CAP: usize = 4 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

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

/// Where the process's output comes from.
pub enum Source {
    /// A pipe: after runc's phase it can be spliced straight into a pipe sink.
    Pipe(pipe::Receiver),
    /// Anything else (a pty master).
    Other(Box<dyn AsyncRead + Send + Sync + Unpin>),
}

impl From<pipe::Receiver> for Source {
    fn from(r: pipe::Receiver) -> Source {
        Source::Pipe(r)
    }
}

impl AsyncRead for Source {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Source::Pipe(r) => std::pin::Pin::new(r).poll_read(cx, buf),
            Source::Other(r) => std::pin::Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// An open sink. A pipe is shared with the reader, which splices into it when it may.
enum Writer {
    Pipe(Arc<pipe::Sender>),
    Other(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Writer {
    async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
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

    async fn flush(&mut self) {
        if let Writer::Other(w) = self {
            let _ = w.flush().await;
        }
    }
}

/// Opens `sink`; `None` means everything will be discarded.
async fn open(name: &str, sink: Sink, give_up: impl Fn() -> bool) -> Option<Writer> {
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

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    eof: bool,
    /// The sink failed for good: read and discard.
    dead: bool,
    /// The FIFO's reader went away (EPIPE): read and discard until a reader opens it again.
    detached: bool,
    /// The writer holds a chunk it has not finished writing: no splicing past it.
    writing: bool,
    discarded: u64,
}

struct Shared {
    name: String,
    queue: Mutex<Queue>,
    runc_phase: AtomicBool,
    tail: Mutex<Option<Arc<Tail>>>,
    /// The open pipe sink, for splicing.
    splice_to: Mutex<Option<Arc<pipe::Sender>>>,
    space: Notify,
    data: Notify,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_splice_to(&self, to: Option<Arc<pipe::Sender>>) {
        *self.splice_to.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }

    /// Whether the reader may splice: after runc's phase, into a live pipe sink. `Some(false)`:
    /// once the writer has delivered what is queued.
    fn splice_target(&self) -> Option<(Arc<pipe::Sender>, bool)> {
        if self.runc_phase.load(Ordering::SeqCst) {
            return None;
        }
        let to = self
            .splice_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let q = self.queue();
        if q.dead || q.detached {
            return None;
        }
        Some((to, !q.writing && q.chunks.is_empty()))
    }
}

/// A running copy from one pipe to one sink.
pub struct OutputCopier {
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
}

impl OutputCopier {
    /// Starts reading `source` at once, in the runc phase, recording into `tail`.
    /// `name` says whose stream it is, for the log.
    pub fn start(
        name: String,
        source: impl Into<Source>,
        sink: Sink,
        tail: Option<Arc<Tail>>,
    ) -> OutputCopier {
        let source = source.into();
        let shared = Arc::new(Shared {
            name,
            queue: Mutex::new(Queue::default()),
            runc_phase: AtomicBool::new(true),
            tail: Mutex::new(tail),
            splice_to: Mutex::new(None),
            space: Notify::new(),
            data: Notify::new(),
        });
        let (done_tx, done) = watch::channel(false);
        tokio::spawn(read_loop(shared.clone(), source));
        tokio::spawn(write_loop(shared.clone(), sink, done_tx));
        OutputCopier { shared, done }
    }

    /// runc has returned: from now on a slow sink slows the process instead of losing bytes,
    /// and nothing more is recorded for runc's error text.
    pub fn end_runc_phase(&self) {
        self.shared.runc_phase.store(false, Ordering::SeqCst);
        *self.shared.tail.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.shared.space.notify_one();
    }

    /// Stops delivering: everything read from now on is discarded (the process is being
    /// deleted and nobody will read the sink again).
    pub fn abandon(&self) {
        let mut q = self.shared.queue();
        q.dead = true;
        q.chunks.clear();
        q.bytes = 0;
        drop(q);
        self.shared.space.notify_one();
        self.shared.data.notify_one();
    }

    /// Waits until the pipe reached EOF and everything was delivered (or discarded).
    pub async fn wait(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

async fn read_loop(shared: Arc<Shared>, mut source: Source) {
    let mut buf = vec![0u8; CHUNK];
    let mut warned = false;
    loop {
        if let (Source::Pipe(rx), Some((to, now))) = (&source, shared.splice_target()) {
            if !now {
                // Bytes already read go first; splice once the writer has delivered them.
                shared.space.notified().await;
                continue;
            }
            let keep_going = || {
                let q = shared.queue();
                !(q.dead || q.detached)
            };
            match super::splice::forward(rx, &to, keep_going, &shared.space).await {
                super::splice::End::Eof => break,
                super::splice::End::SinkGone => {
                    warn!(
                        "{}: sink failed (broken pipe); discarding output meanwhile",
                        shared.name
                    );
                    shared.set_splice_to(None);
                    shared.queue().detached = true;
                    shared.data.notify_one();
                }
                super::splice::End::Yield => {}
            }
            continue;
        }
        let n = match source.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("{}: read failed: {e}", shared.name);
                break;
            }
        };
        if let Some(tail) = shared
            .tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            tail.push(&buf[..n]);
        }
        loop {
            let queued = {
                let mut q = shared.queue();
                if q.dead || q.detached {
                    q.discarded += n as u64;
                    true
                } else if q.bytes + n <= QUEUE_CAP || q.bytes == 0 {
                    q.bytes += n;
                    q.chunks.push_back(buf[..n].to_vec());
                    shared.data.notify_one();
                    true
                } else if shared.runc_phase.load(Ordering::SeqCst) {
                    q.discarded += n as u64;
                    if !warned {
                        warned = true;
                        warn!(
                            "{}: sink is not reading while runc runs; discarding output past {} bytes",
                            shared.name, QUEUE_CAP
                        );
                    }
                    true
                } else {
                    false
                }
            };
            if queued {
                break;
            }
            shared.space.notified().await;
        }
    }
    shared.queue().eof = true;
    shared.data.notify_one();
}

async fn write_loop(shared: Arc<Shared>, sink: Sink, done: watch::Sender<bool>) {
    let fifo = match &sink {
        Sink::Fifo(path) => Some(path.clone()),
        _ => None,
    };
    let mut writer = open(&shared.name, sink, || {
        // Keep trying while there is something to deliver, until the process is deleted.
        let q = shared.queue();
        q.dead || (q.eof && q.bytes == 0)
    })
    .await;
    if writer.is_none() {
        let mut q = shared.queue();
        q.dead = true;
        q.discarded += q.bytes as u64;
        q.chunks.clear();
        q.bytes = 0;
    }
    offer_splice(&shared, &writer);
    shared.space.notify_one();
    loop {
        if shared.queue().detached {
            writer = None;
            match reattach(&shared, fifo.as_deref()).await {
                Some(w) => writer = Some(w),
                None => break,
            }
            offer_splice(&shared, &writer);
            // A reader that was splicing-blocked rechecks now.
            shared.space.notify_one();
        }
        let next = {
            let mut q = shared.queue();
            match q.chunks.pop_front() {
                Some(c) => {
                    q.bytes -= c.len();
                    q.writing = true;
                    Some(c)
                }
                None if q.eof => break,
                None => None,
            }
        };
        let Some(chunk) = next else {
            shared.data.notified().await;
            continue;
        };
        shared.space.notify_one();
        if let Some(w) = writer.as_mut() {
            let written = w.write_all(&chunk).await;
            shared.queue().writing = false;
            // The reader may splice again once the queue is empty.
            shared.space.notify_one();
            if let Err(e) = written {
                // EPIPE: the reader went away (a client killed, containerd restarting). Keep
                // draining so the process never blocks on a sink nobody reads; a FIFO is
                // reopened when a reader comes back.
                warn!(
                    "{}: sink failed ({e}); discarding output meanwhile",
                    shared.name
                );
                writer = None;
                shared.set_splice_to(None);
                let mut q = shared.queue();
                if fifo.is_some() {
                    q.detached = true;
                } else {
                    q.dead = true;
                }
                q.discarded += (chunk.len() + q.bytes) as u64;
                q.chunks.clear();
                q.bytes = 0;
                drop(q);
                shared.space.notify_one();
            }
        }
    }
    shared.set_splice_to(None);
    if let Some(mut w) = writer {
        w.flush().await;
        if let Writer::Pipe(p) = &w {
            read_out(&shared.name, p).await;
        }
    }
    debug!("{}: output closed", shared.name);
    let _ = done.send(true);
}

/// How long the end of a stream waits for its reader to take the bytes still in the sink.
pub const READ_OUT_LIMIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits (up to [`READ_OUT_LIMIT`]) until the reader has taken everything out of a pipe sink.
///
/// "Delivered" must mean read, not only written: ctr 1.6 closes its FIFOs as soon as it sees
/// the exit, before it waits for EOF, and whatever is still in the FIFO then is lost (the
/// stock shim is slow enough at telling the exit that this rarely shows with it). The exit is
/// told after this (see `ProcessIo::wait_delivered`).
async fn read_out(name: &str, p: &pipe::Sender) {
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

fn offer_splice(shared: &Shared, writer: &Option<Writer>) {
    shared.set_splice_to(match writer {
        Some(Writer::Pipe(p)) => Some(p.clone()),
        _ => None,
    });
}

/// Waits for a reader to open the FIFO again; None if the output ends first.
async fn reattach(shared: &Shared, fifo: Option<&std::path::Path>) -> Option<Writer> {
    const RETRY: std::time::Duration = std::time::Duration::from_millis(200);
    let path = fifo?;
    loop {
        {
            let q = shared.queue();
            if q.dead || q.eof {
                return None;
            }
        }
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => {
                shared.queue().detached = false;
                log::info!("{}: a reader is back; delivering output again", shared.name);
                return Some(Writer::Pipe(Arc::new(s)));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => tokio::time::sleep(RETRY).await,
            Err(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn read_some(rx: &mut pipe::Receiver, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            let n = tokio::time::timeout(Duration::from_secs(5), rx.read(&mut buf))
                .await
                .expect("no output within 5s")
                .expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    }

    /// A process pipe copied to a FIFO that a reader has open, past runc's phase: the
    /// process's end, the reader, the copier (and the directory that must outlive them).
    async fn fifo_copier() -> (
        tempfile::TempDir,
        pipe::Sender,
        pipe::Receiver,
        OutputCopier,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let p = crate::io::pipe::output().expect("pipe");
        let source = pipe::Receiver::from_owned_fd(p.ours).expect("receiver");
        let process = pipe::Sender::from_owned_fd(p.child).expect("sender");
        let reader = pipe::OpenOptions::new()
            .open_receiver(&fifo)
            .expect("reader");
        let copier = OutputCopier::start("t".into(), source, Sink::Fifo(fifo), None);
        copier.end_runc_phase();
        (dir, process, reader, copier)
    }

    #[tokio::test]
    async fn delivered_means_the_reader_took_the_bytes_out_of_the_fifo() {
        let (_dir, mut process, mut reader, copier) = fifo_copier().await;
        process.write_all(&[b'x'; 8192]).await.expect("write");
        drop(process);

        // Written into the FIFO but not read yet: not delivered (a client that closes its
        // FIFO on the exit would lose these bytes).
        let early = tokio::time::timeout(Duration::from_millis(200), copier.wait()).await;
        assert!(early.is_err(), "delivered before the reader read anything");
        assert_eq!(read_some(&mut reader, 8192).await.len(), 8192);
        tokio::time::timeout(Duration::from_secs(2), copier.wait())
            .await
            .expect("delivered once the reader took everything");
    }

    #[tokio::test]
    async fn a_reader_that_never_reads_delays_the_end_only_so_long() {
        let (_dir, mut process, _reader, copier) = fifo_copier().await;
        process.write_all(b"never read\n").await.expect("write");
        drop(process);
        tokio::time::timeout(READ_OUT_LIMIT + Duration::from_secs(2), copier.wait())
            .await
            .expect("the copier ended within its read-out limit");
    }

    #[tokio::test]
    async fn a_client_that_comes_back_gets_the_output_again_and_the_writer_never_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("stdout");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let p = crate::io::pipe::output().expect("pipe");
        let source = pipe::Receiver::from_owned_fd(p.ours).expect("receiver");
        let mut process = pipe::Sender::from_owned_fd(p.child).expect("sender");

        let mut first = pipe::OpenOptions::new()
            .open_receiver(&fifo)
            .expect("reader");
        let copier = OutputCopier::start("t".into(), source, Sink::Fifo(fifo.clone()), None);
        copier.end_runc_phase();
        process.write_all(b"one\n").await.expect("write");
        assert_eq!(read_some(&mut first, 4).await, b"one\n");

        // The client goes away; the process keeps writing far more than any pipe holds.
        drop(first);
        let flood = vec![b'x'; 1024 * 1024];
        tokio::time::timeout(Duration::from_secs(10), process.write_all(&flood))
            .await
            .expect("the process blocked on a sink nobody reads")
            .expect("write");

        // A client reattaches: new output reaches it.
        let mut second = pipe::OpenOptions::new()
            .open_receiver(&fifo)
            .expect("reader");
        tokio::time::sleep(Duration::from_millis(500)).await;
        process.write_all(b"two\n").await.expect("write");
        let got = read_some(&mut second, 4).await;
        assert!(
            got.ends_with(b"two\n"),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
        drop(process);
        tokio::time::timeout(Duration::from_secs(5), copier.wait())
            .await
            .expect("copier finished");
    }
}

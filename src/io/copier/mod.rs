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
//!
//! Two tasks share one [`State`] under one lock: the reader (the only one that reads the source)
//! and the writer (the only one that writes queued chunks to the sink). Which of the above
//! applies is the state's [`Mode`], changed only through [`mode::next`]. The reader splices into
//! a pipe sink itself, but only when the writer is idle (nothing queued, no chunk in flight), so
//! one task writes to the sink at a time.
//!
//! Abandoning a copier (its process is deleted) closes the sink at once, so the client reading
//! the FIFO sees EOF even while another process (a child the process left behind) still holds
//! the pipe open; the reader goes on draining and discarding until the pipe's EOF, counting what
//! it threw away, or until its owner stops it (the container's delete).

mod mode;
mod sink;

use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, RawFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use log::{debug, warn};
use tokio::{
    io::{AsyncRead, AsyncReadExt},
    net::unix::pipe,
    sync::{watch, Notify},
};

use crate::tail::Tail;
use mode::{Admit, Event, Mode};
pub use sink::Sink;
#[cfg(test)]
use sink::READ_OUT_LIMIT;
use sink::{read_out, Writer};

/// Bytes held for a sink that does not keep up (read buffer of the copier).
pub const QUEUE_CAP: usize = 4 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

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

/// Everything the reader and the writer share.
struct State {
    mode: Mode,
    /// Read, not yet given to the sink.
    chunks: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The source is at its end: nothing more will be queued.
    eof: bool,
    /// The writer holds a chunk it has not finished writing: no splicing past it.
    writing: bool,
    discarded: u64,
    /// Records what is read while runc runs; dropped when runc returns.
    tail: Option<Arc<Tail>>,
    /// The open pipe sink, for splicing.
    splice_to: Option<Arc<pipe::Sender>>,
}

impl State {
    fn new(tail: Option<Arc<Tail>>) -> State {
        State {
            mode: Mode::RuncRunning,
            chunks: VecDeque::new(),
            bytes: 0,
            eof: false,
            writing: false,
            discarded: 0,
            tail,
            splice_to: None,
        }
    }

    /// Moves on `event`; whether the mode changed. A mode that discards drops what is queued.
    fn apply(&mut self, event: Event) -> bool {
        let old = self.mode;
        self.mode = mode::next(old, event);
        if self.mode.discards() {
            self.discarded += self.bytes as u64;
            self.chunks.clear();
            self.bytes = 0;
        }
        self.mode != old
    }

    /// Whether the writer has nothing left to do: everything read was delivered or dropped.
    fn drained(&self) -> bool {
        self.eof && self.bytes == 0
    }
}

struct Shared {
    name: String,
    /// The source pipe, to ask how much it holds (`settled`); None for a pty. Valid while the
    /// reader task runs, which is while `eof` is unset.
    source_fd: Option<RawFd>,
    state: Mutex<State>,
    /// Wakes the reader: space in the queue, the writer idle, a change of mode.
    space: Notify,
    /// Wakes the writer: bytes queued, the end of the source, a change of mode.
    data: Notify,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves on `event`; on a change of mode both tasks look again.
    fn apply(&self, event: Event) {
        if self.state().apply(event) {
            self.space.notify_one();
            self.data.notify_one();
        }
    }

    fn set_splice_to(&self, to: Option<Arc<pipe::Sender>>) {
        self.state().splice_to = to;
    }

    /// Whether nothing is in flight: see [`OutputCopier::wait_settled`]. A pty cannot tell.
    fn settled(&self) -> bool {
        let Some(source) = self.source_fd else {
            return false;
        };
        let s = self.state();
        if s.eof || !s.chunks.is_empty() || s.writing || unread(source) != Some(0) {
            return false;
        }
        match (&s.splice_to, s.mode.discards()) {
            (_, true) | (None, false) => true,
            (Some(sink), false) => unread(sink.as_raw_fd()) == Some(0),
        }
    }

    /// Whether the reader may splice: after runc's phase, into a live pipe sink. `Some(false)`:
    /// once the writer has delivered what is queued.
    fn splice_target(&self) -> Option<(Arc<pipe::Sender>, bool)> {
        let s = self.state();
        if !s.mode.may_splice() {
            return None;
        }
        let to = s.splice_to.clone()?;
        Some((to, !s.writing && s.chunks.is_empty()))
    }
}

/// A running copy from one pipe to one sink.
pub struct OutputCopier {
    shared: Arc<Shared>,
    done: watch::Receiver<bool>,
    /// Set by `abandon`: interrupts a write into a sink nobody reads any more.
    abandoned: watch::Sender<bool>,
    tasks: [tokio::task::AbortHandle; 2],
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
        let source_fd = match &source {
            Source::Pipe(r) => Some(r.as_raw_fd()),
            Source::Other(_) => None,
        };
        let shared = Arc::new(Shared {
            name,
            source_fd,
            state: Mutex::new(State::new(tail)),
            space: Notify::new(),
            data: Notify::new(),
        });
        let (done_tx, done) = watch::channel(false);
        let (abandoned, abandoned_rx) = watch::channel(false);
        let reader = tokio::spawn(read_loop(shared.clone(), source)).abort_handle();
        let writer =
            tokio::spawn(write_loop(shared.clone(), sink, done_tx, abandoned_rx)).abort_handle();
        OutputCopier {
            shared,
            done,
            abandoned,
            tasks: [reader, writer],
        }
    }

    /// runc has returned: from now on a slow sink slows the process instead of losing bytes,
    /// and nothing more is recorded for runc's error text.
    pub fn end_runc_phase(&self) {
        self.shared.state().tail = None;
        self.shared.apply(Event::RuncReturned);
        self.shared.space.notify_one();
    }

    /// Stops delivering: the sink is closed now (its reader sees EOF), and everything read
    /// from now on is discarded (the process is being deleted and nobody will read the sink
    /// again). The pipe is still drained until its EOF, so a process that holds it open never
    /// blocks on it.
    pub fn abandon(&self) {
        self.shared.apply(Event::Abandoned);
        self.abandoned.send_replace(true);
        self.shared.space.notify_one();
        self.shared.data.notify_one();
    }

    /// Whether the pipe reached EOF and the copy is over.
    pub fn finished(&self) -> bool {
        *self.done.borrow()
    }

    /// Ends the copy now, EOF or not, closing the pipe (its owner, the container, is deleted).
    pub fn stop(&self) {
        if self.finished() {
            return;
        }
        for t in &self.tasks {
            t.abort();
        }
        let discarded = self.shared.state().discarded;
        warn!(
            "{}: pipe still held open by another process when its container was deleted; \
             closed ({discarded} bytes discarded)",
            self.shared.name
        );
    }

    /// Waits up to `limit` until everything the pipe holds now has been delivered: the pipe
    /// is empty, nothing is queued or being written, and the sink's reader has taken what was
    /// written (or the copy is over). Unlike [`OutputCopier::wait`], a child that keeps the
    /// pipe open without writing does not hold this up. Returns whether it settled.
    pub async fn wait_settled(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.finished() || self.shared.settled() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Waits until the pipe reached EOF and everything was delivered (or discarded).
    pub async fn wait(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|d| *d).await;
    }
}

/// What the reader does next.
enum Step {
    Continue,
    End,
}

async fn read_loop(shared: Arc<Shared>, mut source: Source) {
    // A pipe's read buffer exists only while output flows: most of a node's processes are
    // idle most of the time, and a buffer each for stdout and stderr was most of what an idle
    // container cost a grouped shim. A pty's stays (tokio reads it without a readiness wait).
    let mut buf: Vec<u8> = Vec::new();
    let mut warned = false;
    loop {
        if let (Source::Pipe(rx), Some((to, now))) = (&source, shared.splice_target()) {
            match splice_step(&shared, rx, &to, now).await {
                Step::Continue => continue,
                Step::End => break,
            }
        }
        if buf.capacity() == 0 {
            if let Source::Pipe(rx) = &source {
                if let Err(e) = rx.readable().await {
                    warn!("{}: waiting for output failed: {e}", shared.name);
                    break;
                }
            }
            buf.reserve_exact(CHUNK);
        }
        buf.clear();
        // Into the spare capacity: nothing is zeroed, only the pages read into are touched.
        let n = match source.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("{}: read failed: {e}", shared.name);
                break;
            }
        };
        take_in(&shared, &buf[..n], &mut warned).await;
        if n < CHUNK && matches!(source, Source::Pipe(_)) {
            // The pipe is drained for now.
            buf = Vec::new();
        }
    }
    shared.state().eof = true;
    shared.data.notify_one();
}

/// Splices into the sink while the mode allows it, or waits for the queue to be delivered.
async fn splice_step(shared: &Shared, rx: &pipe::Receiver, to: &pipe::Sender, now: bool) -> Step {
    if !now {
        // Bytes already read go first; splice once the writer has delivered them.
        shared.space.notified().await;
        return Step::Continue;
    }
    let keep_going = || shared.state().mode.may_splice();
    match super::splice::forward(rx, to, keep_going, &shared.space).await {
        super::splice::End::Eof => return Step::End,
        super::splice::End::SinkGone => {
            warn!(
                "{}: sink failed (broken pipe); discarding output meanwhile",
                shared.name
            );
            shared.set_splice_to(None);
            shared.apply(Event::ReaderGone);
            shared.data.notify_one();
        }
        super::splice::End::Yield => {}
    }
    Step::Continue
}

/// Records a chunk just read (while runc runs) and queues it, discards it, or waits for room,
/// as the mode says.
async fn take_in(shared: &Shared, chunk: &[u8], warned: &mut bool) {
    let tail = shared.state().tail.clone();
    if let Some(tail) = tail {
        tail.push(chunk);
    }
    loop {
        let admitted = {
            let mut s = shared.state();
            let admit = mode::admit(s.mode, s.bytes, chunk.len());
            match admit {
                Admit::Queue => {
                    s.bytes += chunk.len();
                    s.chunks.push_back(chunk.to_vec());
                }
                Admit::Discard | Admit::DiscardOverCap => s.discarded += chunk.len() as u64,
                Admit::Wait => {
                    s.apply(Event::QueueFull);
                }
            }
            admit
        };
        match admitted {
            Admit::Queue => {
                shared.data.notify_one();
                return;
            }
            Admit::Discard => return,
            Admit::DiscardOverCap => {
                if !*warned {
                    *warned = true;
                    warn!(
                        "{}: sink is not reading while runc runs; discarding output past {} bytes",
                        shared.name, QUEUE_CAP
                    );
                }
                return;
            }
            // Backpressure: after runc, a slow sink slows the process, as with the stock shim.
            Admit::Wait => shared.space.notified().await,
        }
    }
}

async fn write_loop(
    shared: Arc<Shared>,
    sink: Sink,
    done: watch::Sender<bool>,
    mut abandoned: watch::Receiver<bool>,
) {
    let fifo = match &sink {
        Sink::Fifo(path) => Some(path.clone()),
        _ => None,
    };
    let mut writer = sink::open(&shared.name, sink, || {
        // Keep trying while there is something to deliver, until the process is deleted.
        let s = shared.state();
        s.mode == Mode::Dead || s.drained()
    })
    .await;
    if writer.is_none() {
        shared.apply(Event::SinkFailed);
    }
    offer_splice(&shared, &writer);
    shared.space.notify_one();
    loop {
        if writer.is_some() && shared.state().mode == Mode::Dead {
            // Abandoned: the reader of the sink must see EOF now, not when the pipe ends.
            close_sink(&shared, &mut writer).await;
        }
        if matches!(shared.state().mode, Mode::ReaderDetached { .. }) {
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
            let mut s = shared.state();
            match s.chunks.pop_front() {
                Some(c) => {
                    s.bytes -= c.len();
                    s.writing = true;
                    s.apply(Event::SpaceFreed);
                    Some(c)
                }
                None if s.eof => break,
                None => None,
            }
        };
        let Some(chunk) = next else {
            shared.data.notified().await;
            continue;
        };
        shared.space.notify_one();
        if let Some(w) = writer.as_mut() {
            let delivered = tokio::select! {
                ok = deliver(&shared, w, &chunk, fifo.is_some()) => ok,
                // A write blocked on a sink nobody reads must not keep it open.
                _ = abandoned.wait_for(|a| *a) => {
                    let mut s = shared.state();
                    s.writing = false;
                    s.discarded += chunk.len() as u64;
                    false
                }
            };
            if !delivered {
                writer = None;
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
    let discarded = shared.state().discarded;
    if discarded > 0 {
        warn!(
            "{}: output closed; {discarded} bytes could not be delivered and were discarded",
            shared.name
        );
    } else {
        debug!("{}: output closed", shared.name);
    }
    let _ = done.send(true);
}

/// Closes the sink of an abandoned copy: what is written is flushed, nothing is waited for.
async fn close_sink(shared: &Shared, writer: &mut Option<Writer>) {
    shared.set_splice_to(None);
    if let Some(mut w) = writer.take() {
        w.flush().await;
    }
    debug!("{}: sink closed (process deleted)", shared.name);
}

/// Writes one chunk; false if the sink failed (and the copier now discards).
async fn deliver(shared: &Shared, w: &mut Writer, chunk: &[u8], fifo: bool) -> bool {
    let written = w.write_all(chunk).await;
    shared.state().writing = false;
    // The reader may splice again once the queue is empty.
    shared.space.notify_one();
    let Err(e) = written else {
        return true;
    };
    // EPIPE: the reader went away (a client killed, containerd restarting). Keep
    // draining so the process never blocks on a sink nobody reads; a FIFO is
    // reopened when a reader comes back.
    warn!(
        "{}: sink failed ({e}); discarding output meanwhile",
        shared.name
    );
    {
        let mut s = shared.state();
        s.splice_to = None;
        s.discarded += chunk.len() as u64;
        s.apply(if fifo {
            Event::ReaderGone
        } else {
            Event::SinkFailed
        });
    }
    shared.space.notify_one();
    false
}

/// Bytes waiting in a pipe; None if the kernel does not say.
fn unread(fd: RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe descriptor held by the copier, into an int we own.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    (rc == 0).then_some(n.max(0) as usize)
}

fn offer_splice(shared: &Shared, writer: &Option<Writer>) {
    shared.set_splice_to(writer.as_ref().and_then(Writer::pipe));
}

/// Waits for a reader to open the FIFO again; None if the output ends first.
async fn reattach(shared: &Shared, fifo: Option<&std::path::Path>) -> Option<Writer> {
    const RETRY: std::time::Duration = std::time::Duration::from_millis(200);
    let path = fifo?;
    loop {
        {
            let s = shared.state();
            if s.mode == Mode::Dead || s.eof {
                return None;
            }
        }
        match pipe::OpenOptions::new().open_sender(path) {
            Ok(s) => {
                shared.apply(Event::ReaderBack);
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
    async fn a_pipe_held_open_settles_and_abandoning_it_gives_the_reader_eof_at_once() {
        let (_dir, mut process, mut reader, copier) = fifo_copier().await;
        process.write_all(b"ok\n").await.expect("write");
        assert_eq!(read_some(&mut reader, 3).await, b"ok\n");
        // The pipe is still open (a child holds it) but everything written was taken.
        assert!(copier.wait_settled(Duration::from_secs(2)).await);
        assert!(!copier.finished());

        copier.abandon();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), reader.read_to_end(&mut rest))
            .await
            .expect("the reader saw no EOF after abandon")
            .expect("read");
        assert!(rest.is_empty(), "{rest:?}");

        // Later output is drained and counted; the writer never blocks on it.
        let flood = vec![b'x'; 256 * 1024];
        tokio::time::timeout(Duration::from_secs(5), process.write_all(&flood))
            .await
            .expect("the writer blocked after abandon")
            .expect("write");
        drop(process);
        tokio::time::timeout(Duration::from_secs(5), copier.wait())
            .await
            .expect("the copy ended at the pipe's EOF");
        assert_eq!(copier.shared.state().discarded, flood.len() as u64);
    }

    #[tokio::test]
    async fn stop_closes_a_pipe_that_is_still_held() {
        let (_dir, mut process, _reader, copier) = fifo_copier().await;
        copier.abandon();
        copier.stop();
        // The reader task is gone with the pipe's read end: the next write fails.
        let failed = poll_write_fails(&mut process).await;
        assert!(failed, "the pipe was still read after stop");
    }

    async fn poll_write_fails(process: &mut pipe::Sender) -> bool {
        for _ in 0..100 {
            if process.write_all(b"x").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
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

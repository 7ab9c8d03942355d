//! Zero-copy forwarding from the process's pipe to a pipe sink (a FIFO or a logger's pipe).
//!
//! Used only after runc has returned and only while nothing is queued: then the stock shim's
//! flow control is what we want (a full sink holds the writer back), and the kernel can move the
//! pages itself with `splice(2)` instead of copying every byte through the shim.

use std::{
    io,
    os::fd::{AsRawFd, RawFd},
};

use tokio::net::unix::pipe;

/// Why a splice loop stopped.
pub enum End {
    /// The process's side is closed: the stream is over.
    Eof,
    /// The sink's reader is gone (EPIPE).
    SinkGone,
    /// Something else needs the slow path (the caller rechecks its state).
    Yield,
}

const MAX: usize = 1 << 20;

fn splice_once(from: RawFd, to: RawFd) -> io::Result<usize> {
    // SAFETY: splice(2) on two descriptors we hold, with no offsets (both are pipes).
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            MAX,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Marks "the source pipe is empty" inside an `io::Error`.
#[derive(Debug)]
struct SourceEmpty;

impl std::fmt::Display for SourceEmpty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("source empty")
    }
}

impl std::error::Error for SourceEmpty {}

/// Turns splice's EAGAIN into the side that blocked: WouldBlock for the source (cleared by the
/// source's `try_io`), and for a full sink an error the source passes on untouched, which the
/// sink's `try_io` then sees as WouldBlock.
fn classify(e: io::Error, from: RawFd, to: RawFd) -> io::Error {
    if e.raw_os_error() != Some(libc::EAGAIN) {
        return e;
    }
    let (src, dst) = ready_now(from, to);
    if !src {
        io::ErrorKind::WouldBlock.into()
    } else if !dst {
        io::Error::other(SinkFull)
    } else {
        // Both look ready again: just try once more.
        io::ErrorKind::Interrupted.into()
    }
}

#[derive(Debug)]
struct SinkFull;

impl std::fmt::Display for SinkFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sink full")
    }
}

impl std::error::Error for SinkFull {}

/// Which of the two ends is ready right now: (source readable, sink writable).
fn ready_now(from: RawFd, to: RawFd) -> (bool, bool) {
    let mut fds = [
        libc::pollfd {
            fd: from,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: to,
            events: libc::POLLOUT,
            revents: 0,
        },
    ];
    // SAFETY: poll(2) with a zero timeout on an array we own.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, 0) };
    if rc < 0 {
        return (true, true);
    }
    // Hang-ups count as ready: the next splice reports them.
    let ready = |p: &libc::pollfd| p.revents != 0;
    (ready(&fds[0]), ready(&fds[1]))
}

/// Bytes waiting in a pipe; None if the kernel does not say.
fn unread(fd: RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD on a pipe descriptor we hold, into an int we own.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    (rc == 0).then_some(n.max(0) as usize)
}

/// Splices from `from` to `to` until the stream ends, the sink goes away, or `keep_going`
/// says stop (checked whenever the loop would wait; `wake` interrupts a wait to check it).
pub async fn forward(
    from: &pipe::Receiver,
    to: &pipe::Sender,
    keep_going: impl Fn() -> bool,
    wake: &tokio::sync::Notify,
) -> End {
    let (rfd, wfd) = (from.as_raw_fd(), to.as_raw_fd());
    loop {
        if !keep_going() {
            return End::Yield;
        }
        let ready = async {
            from.readable().await?;
            to.writable().await
        };
        tokio::select! {
            r = ready => if r.is_err() { return End::Yield },
            _ = wake.notified() => continue,
        }
        // Each side's readiness is cleared only through its own `try_io`, with the readiness
        // read before the splice: an event that arrives meanwhile is never lost.
        let mut drained = 0;
        let moved = to.try_io(|| {
            let spliced = from.try_io(|| {
                let n = splice_once(rfd, wfd).map_err(|e| classify(e, rfd, wfd))?;
                // Less than asked for: the source is empty or the sink full. An empty source
                // is told at once by WouldBlock (clearing its readiness) instead of by a second
                // splice's EAGAIN and a poll. A source that still holds data keeps its
                // readiness: the sink took only part, and the next splice tells which side
                // blocks (clearing it here would stall the stream until the next write).
                if n > 0 && n < MAX && unread(rfd) == Some(0) {
                    drained = n;
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(n)
            });
            match spliced {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if drained > 0 {
                        return Ok(drained);
                    }
                    // The source is drained: report it so, without clearing the sink.
                    Err(io::Error::other(SourceEmpty))
                }
                // The sink is full: WouldBlock here clears the sink's readiness.
                Err(e) if e.get_ref().is_some_and(|i| i.is::<SinkFull>()) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            }
        });
        match moved {
            Ok(0) => return End::Eof,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.get_ref().is_some_and(|i| i.is::<SourceEmpty>()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => return End::SinkGone,
            Err(e) => {
                log::debug!("splice failed ({e}); copying instead");
                return End::Yield;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        os::fd::{AsFd, OwnedFd},
        sync::Arc,
    };

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use std::time::Duration;

    use super::*;

    /// A process pipe and a sink pipe with `forward` running between them until EOF.
    struct Rig {
        process: pipe::Sender,
        reader: pipe::Receiver,
        /// The sink's write end, for shrinking it.
        sink: Arc<pipe::Sender>,
        task: tokio::task::JoinHandle<End>,
        source_fd: RawFd,
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        let p = crate::io::pipe::output().expect("pipe");
        (p.ours, p.child)
    }

    fn rig() -> Rig {
        let (src_r, src_w) = pair();
        let (sink_r, sink_w) = pair();
        let source_fd = src_r.as_raw_fd();
        let from = pipe::Receiver::from_owned_fd(src_r).expect("source");
        let sink = Arc::new(pipe::Sender::from_owned_fd(sink_w).expect("sink"));
        let to = sink.clone();
        let task = tokio::spawn(async move {
            let wake = tokio::sync::Notify::new();
            forward(&from, &to, || true, &wake).await
        });
        Rig {
            process: pipe::Sender::from_owned_fd(src_w).expect("process"),
            reader: pipe::Receiver::from_owned_fd(sink_r).expect("reader"),
            sink,
            task,
            source_fd,
        }
    }

    async fn read_exactly(rx: &mut pipe::Receiver, want: usize) -> Vec<u8> {
        let mut got = vec![0u8; want];
        tokio::time::timeout(Duration::from_secs(5), rx.read_exact(&mut got))
            .await
            .expect("not everything arrived within 5 s")
            .expect("read");
        got
    }

    #[tokio::test]
    async fn lines_written_with_pauses_all_arrive_in_order() {
        let mut r = rig();
        let mut reader = r.reader;
        let total = 3000 * 100;
        // The reader stays open to the end, so the end seen is the source's EOF.
        let got = tokio::spawn(async move { (read_exactly(&mut reader, total).await, reader) });
        let mut want = Vec::new();
        for i in 0..3000u32 {
            let line = format!("{i:099}\n");
            r.process.write_all(line.as_bytes()).await.expect("write");
            want.extend_from_slice(line.as_bytes());
            // Bursts, then silences: some lines find the source empty, some do not.
            match i % 500 {
                0 => tokio::time::sleep(Duration::from_millis(3)).await,
                250 => tokio::time::sleep(Duration::from_micros(900)).await,
                _ if i % 7 == 0 => tokio::task::yield_now().await,
                _ => {}
            }
        }
        let (got, _reader) = got.await.expect("join");
        assert!(got == want, "bytes lost or reordered");
        drop(r.process);
        let end = tokio::time::timeout(Duration::from_secs(5), r.task)
            .await
            .expect("no EOF")
            .expect("join");
        assert!(matches!(end, End::Eof));
    }

    #[tokio::test]
    async fn a_source_left_with_data_by_a_partial_sink_keeps_flowing_without_new_writes() {
        let mut r = rig();
        // A one-page sink takes only part of what the source holds.
        nix::fcntl::fcntl(r.sink.as_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096))
            .expect("shrink the sink");
        let data: Vec<u8> = (0..3 * 4096).map(|i| (i % 251) as u8).collect();
        r.process.write_all(&data).await.expect("write");
        // Nothing more is written: what is left in the source must still come through as the
        // reader makes room, or the source's readiness was cleared with data in it.
        let got = read_exactly(&mut r.reader, data.len()).await;
        assert!(got == data);
        assert_eq!(unread(r.source_fd), Some(0));
    }
}

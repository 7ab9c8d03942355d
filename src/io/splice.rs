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
        let moved = to.try_io(|| {
            match from.try_io(|| splice_once(rfd, wfd).map_err(|e| classify(e, rfd, wfd))) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
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

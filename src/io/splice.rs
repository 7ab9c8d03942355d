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
        match splice_once(rfd, wfd) {
            Ok(0) => return End::Eof,
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::EAGAIN) => {
                    // One side only looked ready: clear that side's readiness so the next
                    // wait really waits.
                    let (src, dst) = ready_now(rfd, wfd);
                    if !src {
                        let _ = from.try_io(|| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                    }
                    if !dst {
                        let _ = to.try_io(|| Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                    }
                }
                Some(libc::EINTR) => {}
                Some(libc::EPIPE) => return End::SinkGone,
                _ => {
                    log::debug!("splice failed ({e}); copying instead");
                    return End::Yield;
                }
            },
        }
    }
}

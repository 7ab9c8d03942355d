//! Terminals: the console socket runc sends a pty master through, and async IO on that master.
//!
//! runc creates the pty inside the container and passes the master end over a unix socket
//! (`--console-socket`) with SCM_RIGHTS. The shim accepts on that socket while runc runs (so
//! runc never waits on us), then copies between the master and containerd's FIFOs, and resizes
//! it on `ResizePty`.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
    pin::Pin,
    sync::atomic::{AtomicU64, Ordering},
    task::{ready, Context, Poll},
    time::Duration,
};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::{
    io::{unix::AsyncFd, AsyncRead, AsyncWrite, ReadBuf},
    net::UnixListener,
    task::JoinHandle,
};

/// How long to wait for runc's connection once runc has returned.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A listening console socket and the task accepting on it.
pub struct ConsoleSocket {
    path: PathBuf,
    master: JoinHandle<io::Result<OwnedFd>>,
}

impl ConsoleSocket {
    /// Binds a socket in the temporary directory and starts accepting at once.
    pub fn bind() -> io::Result<ConsoleSocket> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sluice-pty-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let master = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            loop {
                stream.readable().await?;
                match stream.try_io(tokio::io::Interest::READABLE, || {
                    receive_fd(stream.as_raw_fd())
                }) {
                    Ok(fd) => return Ok(fd),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        });
        Ok(ConsoleSocket { path, master })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master runc sent.
    pub async fn master(mut self) -> io::Result<OwnedFd> {
        let path = self.path.clone();
        let got = tokio::time::timeout(RECEIVE_TIMEOUT, &mut self.master).await;
        let _ = std::fs::remove_file(&path);
        match got {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no pty master on {} within {RECEIVE_TIMEOUT:?}",
                    path.display()
                ),
            )),
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        self.master.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut name = [0u8; 4096];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(fd) = fds.first() {
                // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(*fd) });
            }
        }
    }
    if msg.bytes == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "console socket closed without a pty",
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "console socket message carried no descriptor",
    ))
}

/// Sets the window size of the pty.
pub fn resize(master: &OwnedFd, width: u16, height: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer we pass, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One end of the pty master, as a non-blocking async reader and writer.
pub struct Pty(AsyncFd<OwnedFd>);

impl Pty {
    pub fn new(fd: OwnedFd) -> io::Result<Pty> {
        // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: an OwnedFd stays open and names the same description while the AsyncFd owns it.
        Ok(Pty(unsafe { AsyncFd::register(fd) }?))
    }
}

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let res = guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own, of the length we pass.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // EIO: the last holder of the pty's slave side is gone: that is the end.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let res = guard.try_io(|fd| {
                // SAFETY: writing from a buffer we borrow, of the length we pass.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{sendmsg, ControlMessage};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn openpty() -> (OwnedFd, OwnedFd) {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        (pty.master, pty.slave)
    }

    #[tokio::test]
    async fn receives_the_master_runc_sends_and_copies_both_ways() {
        let socket = ConsoleSocket::bind().expect("bind");
        let path = socket.path().to_owned();
        let (master, slave) = openpty();
        // What runc does: connect, send the master with SCM_RIGHTS.
        let sender = std::thread::spawn(move || {
            let s = UnixStream::connect(&path).expect("connect");
            let fds = [master.as_raw_fd()];
            sendmsg::<()>(
                s.as_raw_fd(),
                &[io::IoSlice::new(b"/dev/pts/x")],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            )
            .expect("sendmsg");
        });
        let got = socket.master().await.expect("master");
        sender.join().expect("sender");
        resize(&got, 120, 40).expect("resize");
        let ws = nix::pty::Winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let mut ws = ws;
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we pass.
        unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));

        let mut pty = Pty::new(got).expect("pty");
        let mut slave_file = std::fs::File::from(slave);
        std::io::Write::write_all(&mut slave_file, b"from the container\n").expect("write slave");
        let mut buf = [0u8; 64];
        let n = pty.read(&mut buf).await.expect("read master");
        assert!(String::from_utf8_lossy(&buf[..n]).contains("from the container"));
        pty.write_all(b"typed\n").await.expect("write master");
        let mut line = [0u8; 64];
        let n = std::io::Read::read(&mut slave_file, &mut line).expect("read slave");
        assert_eq!(&line[..n], b"typed\n");
    }

    #[tokio::test]
    async fn no_connection_is_a_timeout_error_not_a_hang() {
        let socket = ConsoleSocket::bind().expect("bind");
        let path = socket.path().to_owned();
        let err = socket.master().await.expect_err("nobody connected");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(!path.exists());
    }
}

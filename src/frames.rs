//! ttrpc messages leave the shim in one write each, and arrive in one read.
//!
//! The ttrpc crate writes a message as five writes: the header's four fields, each flushed,
//! then the payload (`MessageHeader::write_to`). On a unix socket each is a syscall that wakes
//! the peer, so every reply to containerd and every event to it cost five `sendto`s and up to
//! five wake-ups of containerd, which on a two-core node preempt the shim between them (seen
//! in a kernel trace of the benchmark's `share` workload). [`Whole`] holds the 10-byte header
//! until the payload's first bytes come and sends both with one `writev`; a header without a
//! payload goes at the flush that follows it. Reads go through a buffer, so a request's
//! header and payload come in one `recvfrom` rather than two; the buffer ([`Lean`]) exists only
//! while it holds bytes: containerd keeps a connection per task, so a group shim of a pod with
//! 200 containers has 200 of them, idle nearly always.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use containerd_shim::protos::ttrpc::r#async::transport::{Listener, Socket};
use futures_core::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};

/// A ttrpc message header: payload length (u32, big-endian), stream id, type, flags.
const HEADER: usize = 10;
/// Requests and events are small; a larger message is read past the buffer.
const READ_BUFFER: usize = 8 * 1024;

/// A socket whose ttrpc messages are written whole.
pub struct Whole<S> {
    inner: S,
    head: [u8; HEADER],
    /// Header bytes given to us so far, and of those already written.
    filled: usize,
    sent: usize,
    /// Payload bytes of the current message still to come.
    rest: usize,
}

impl<S> Whole<S> {
    pub fn new(inner: S) -> Whole<S> {
        Whole {
            inner,
            head: [0; HEADER],
            filled: 0,
            sent: 0,
            rest: 0,
        }
    }

    fn next_message(&mut self) {
        self.filled = 0;
        self.sent = 0;
        self.rest = 0;
    }
}

impl<S: AsyncWrite + Unpin> Whole<S> {
    /// Writes what is left of a header whose message has no payload.
    fn poll_lone_header(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < HEADER {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.head[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.next_message();
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Whole<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            if me.filled < HEADER {
                let n = (HEADER - me.filled).min(buf.len());
                me.head[me.filled..me.filled + n].copy_from_slice(&buf[..n]);
                me.filled += n;
                if me.filled == HEADER {
                    let len = u32::from_be_bytes([me.head[0], me.head[1], me.head[2], me.head[3]]);
                    me.rest = len as usize;
                }
                return Poll::Ready(Ok(n));
            }
            if me.rest == 0 {
                // A payload-less message never flushed: it goes before these bytes.
                ready!(me.poll_lone_header(cx))?;
                continue;
            }
            let take = me.rest.min(buf.len());
            if me.sent < HEADER {
                let parts = [
                    IoSlice::new(&me.head[me.sent..]),
                    IoSlice::new(&buf[..take]),
                ];
                let n = ready!(Pin::new(&mut me.inner).poll_write_vectored(cx, &parts))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                let of_head = n.min(HEADER - me.sent);
                me.sent += of_head;
                let of_buf = n - of_head;
                if of_buf == 0 {
                    continue;
                }
                me.rest -= of_buf;
                if me.rest == 0 {
                    me.next_message();
                }
                return Poll::Ready(Ok(of_buf));
            }
            let n = ready!(Pin::new(&mut me.inner).poll_write(cx, &buf[..take]))?;
            me.rest -= n.min(me.rest);
            if me.rest == 0 {
                me.next_message();
            }
            return Poll::Ready(Ok(n));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        // A header with a payload to come waits for it: the crate writes it next, unflushed.
        if me.filled == HEADER && me.rest == 0 {
            ready!(me.poll_lone_header(cx))?;
        }
        Pin::new(&mut me.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.as_mut().poll_flush(cx))?;
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Whole<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Reads through a buffer of [`READ_BUFFER`] bytes that is allocated for a read and freed
/// once its bytes are taken (an idle connection holds none); writes pass through.
pub struct Lean<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S> Lean<S> {
    pub fn new(inner: S) -> Lean<S> {
        Lean {
            inner,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// Gives `out` what the buffer holds; frees the buffer once it is empty.
    fn drain_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.buf.len() - self.pos);
        out.put_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Lean<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.pos < me.buf.len() {
            me.drain_into(out);
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= READ_BUFFER {
            return Pin::new(&mut me.inner).poll_read(cx, out);
        }
        // Dropped again if nothing is there (Pending): only a read that returns bytes keeps it.
        let mut buf = vec![0u8; READ_BUFFER];
        let mut rb = ReadBuf::new(&mut buf);
        ready!(Pin::new(&mut me.inner).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n > 0 {
            buf.truncate(n);
            me.buf = buf;
            me.pos = 0;
            me.drain_into(out);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Lean<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `stream` as the ttrpc crate's socket, its messages written whole and read buffered.
pub fn socket(stream: UnixStream) -> Socket {
    Socket::new(Lean::new(Whole::new(stream)))
}

/// A unix socket connected to `fd`, as [`socket`] makes it.
pub fn socket_from_fd(fd: std::os::fd::OwnedFd) -> io::Result<Socket> {
    let std = std::os::unix::net::UnixStream::from(fd);
    std.set_nonblocking(true)?;
    Ok(socket(UnixStream::from_std(std)?))
}

/// The connections `listener` accepts, each as [`socket`] makes it.
pub fn listener(listener: std::os::unix::net::UnixListener) -> io::Result<Listener> {
    listener.set_nonblocking(true)?;
    Ok(Listener::new(Accepted(UnixListener::from_std(listener)?)))
}

struct Accepted(UnixListener);

impl Stream for Accepted {
    type Item = io::Result<Lean<Whole<UnixStream>>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let accepted = ready!(self.0.poll_accept(cx));
        Poll::Ready(Some(accepted.map(|(s, _)| Lean::new(Whole::new(s)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Writes `payload` the way the ttrpc crate does: four header fields, a flush, the payload.
    async fn write_like_ttrpc(w: &mut (impl AsyncWrite + Unpin), stream: u32, payload: &[u8]) {
        w.write_u32(payload.len() as u32).await.expect("len");
        w.write_u32(stream).await.expect("stream");
        w.write_u8(1).await.expect("type");
        w.write_u8(0).await.expect("flags");
        w.flush().await.expect("flush");
        w.write_all(payload).await.expect("payload");
    }

    fn framed(stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// Records each write it is given as one chunk, as a socket makes each one a syscall.
    #[derive(Default)]
    struct Chunks(Vec<Vec<u8>>);

    impl AsyncWrite for Chunks {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().0.push(buf.to_vec());
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let chunk: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            let n = chunk.len();
            self.get_mut().0.push(chunk);
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Each message, a payload-less one included, is one write of header and payload.
    #[tokio::test]
    async fn each_message_is_one_write() {
        let mut w = Whole::new(Chunks::default());
        let messages: [(u32, &[u8]); 4] = [(1, b"hello"), (3, b""), (5, &[7u8; 300]), (7, b"x")];
        for (stream, payload) in messages {
            write_like_ttrpc(&mut w, stream, payload).await;
        }
        let want: Vec<Vec<u8>> = messages.iter().map(|(s, p)| framed(*s, p)).collect();
        assert_eq!(w.inner.0, want);
    }

    /// Across a real socket, large payloads included, every byte arrives in order.
    #[tokio::test]
    async fn messages_arrive_whole_and_in_order() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.expect("read");
            got
        });
        let mut w = Whole::new(a);
        let mut want = Vec::new();
        for (stream, payload) in [
            (1u32, vec![1u8; 70_000]),
            (3, Vec::new()),
            (5, b"y".to_vec()),
        ] {
            write_like_ttrpc(&mut w, stream, &payload).await;
            want.extend(framed(stream, &payload));
        }
        w.shutdown().await.expect("shutdown");
        drop(w);
        assert!(
            reader.await.expect("join") == want,
            "bytes lost, added or reordered"
        );
    }

    /// Small reads of a stream come whole and in order through the buffer, and the buffer is
    /// gone once its bytes are: an idle connection holds nothing (a group shim has one per
    /// container).
    #[tokio::test]
    async fn the_read_buffer_is_there_only_while_it_holds_bytes() {
        let (mut a, b) = UnixStream::pair().expect("pair");
        let mut r = Lean::new(b);
        let sent: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        a.write_all(&sent).await.expect("write");
        let mut got = Vec::new();
        let mut head = [0u8; HEADER];
        while got.len() < sent.len() {
            let n = r.read(&mut head).await.expect("read");
            assert!(n > 0, "early end after {} bytes", got.len());
            got.extend_from_slice(&head[..n]);
            if got.len() < sent.len() {
                assert!(r.buf.capacity() > 0, "the buffer went before its bytes did");
            }
        }
        assert!(got == sent, "bytes lost, added or reordered");
        assert_eq!(r.buf.capacity(), 0, "an idle connection keeps a buffer");
        // A read that finds nothing keeps no buffer either.
        let pending =
            tokio::time::timeout(std::time::Duration::from_millis(50), r.read(&mut head)).await;
        assert!(pending.is_err(), "read returned with nothing sent");
        assert_eq!(r.buf.capacity(), 0, "a pending read keeps a buffer");
        drop(a);
        assert_eq!(r.read(&mut head).await.expect("eof"), 0, "end of stream");
        assert_eq!(r.buf.capacity(), 0, "the end of the stream keeps a buffer");
    }

    /// A header-only message is not held back until the next message: its flush sends it.
    #[tokio::test]
    async fn a_message_without_payload_goes_at_its_flush() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut w = Whole::new(a);
        write_like_ttrpc(&mut w, 9, b"").await;
        let mut got = [0u8; HEADER];
        tokio::time::timeout(std::time::Duration::from_secs(5), b.read_exact(&mut got))
            .await
            .expect("the header never came")
            .expect("read");
        assert_eq!(got.to_vec(), framed(9, b""));
    }
}

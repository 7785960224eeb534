//! Write coalescing for an AMQP connection's byte stream.
//!
//! fe2o3's connection engine writes every frame with `SinkExt::send`, i.e. write + flush: one
//! TLS record and one `sendmsg` per transfer, disposition or flow frame. Under load that is the
//! largest per-message cost on both ends of a connection (syscalls, TLS record overhead, and a
//! wake-up of the peer per frame).
//!
//! [`Coalesce`] buffers what is written and makes `flush` a no-op; the buffer goes out when the
//! connection task next **reads** (it always does when it has nothing else ready: its event loop
//! polls the socket in every `select!`), when it reaches [`Coalesce::LIMIT`], or on shutdown. So
//! frames produced back to back leave in one write, and a lone frame leaves as soon as the task
//! goes idle, without any timer or added latency. Before reading, pending bytes are always
//! written, so two peers can never both wait with unsent data.
//!
//! Coalescing starts switched off ([`Coalesce::new`] returns a [`CoalesceSwitch`]): during the
//! SASL exchange and the Open a peer may write its last frame and hang up without reading again
//! (a refused login), so flushes are real until the connection is open and the caller turns
//! coalescing on.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes are coalesced until the next read (see the module docs).
#[derive(Debug)]
pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed to `inner`.
    sent: usize,
    on: Arc<AtomicBool>,
}

/// Turns coalescing on for a [`Coalesce`] that was handed over to the connection.
#[derive(Debug, Clone)]
pub struct CoalesceSwitch(Arc<AtomicBool>);

impl CoalesceSwitch {
    /// From now on, flushes wait for the next read.
    pub fn enable(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<S> Coalesce<S> {
    /// Buffered bytes beyond which a write first drains the buffer.
    pub const LIMIT: usize = 64 * 1024;

    /// Wraps `inner`, with coalescing off until the switch is enabled.
    pub fn new(inner: S) -> (Self, CoalesceSwitch) {
        let on = Arc::new(AtomicBool::new(false));
        let c = Coalesce {
            inner,
            buf: Vec::with_capacity(16 * 1024),
            sent: 0,
            on: on.clone(),
        };
        (c, CoalesceSwitch(on))
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out and flushes everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() {
            return Poll::Ready(Ok(()));
        }
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Send what is pending before waiting for the peer. If the socket is full, read anyway:
        // the waker is registered for both directions.
        if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() >= Self::LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.on.load(Ordering::Relaxed) {
            // Deferred to the next read (or the limit, or shutdown): see the module docs.
            Poll::Ready(Ok(()))
        } else {
            this.poll_drain(cx)
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_leave_on_read_and_on_shutdown() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (mut c, switch) = Coalesce::new(a);
        // Off: a flush sends.
        c.write_all(b"hi").await.unwrap();
        c.flush().await.unwrap();
        let mut hi = [0u8; 2];
        b.read_exact(&mut hi).await.unwrap();
        switch.enable();
        c.write_all(b"one").await.unwrap();
        c.flush().await.unwrap();
        c.write_all(b"two").await.unwrap();
        c.flush().await.unwrap();
        // Nothing has left yet.
        let mut probe = [0u8; 8];
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut probe)).await;
        assert!(early.is_err(), "bytes left before a read");
        // A read on the coalescing side drains first.
        b.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        c.read_exact(&mut one).await.unwrap();
        let mut got = [0u8; 6];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"onetwo");
        c.write_all(b"end").await.unwrap();
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        b.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"end");
    }

    #[tokio::test]
    async fn a_full_buffer_drains_on_write() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let (mut c, switch) = Coalesce::new(a);
        switch.enable();
        let chunk = vec![7u8; 40 * 1024];
        c.write_all(&chunk).await.unwrap();
        c.write_all(&chunk).await.unwrap();
        c.write_all(b"!").await.unwrap();
        let mut got = vec![0u8; 80 * 1024];
        b.read_exact(&mut got).await.unwrap();
        assert!(got.iter().all(|x| *x == 7));
    }
}

//! A cluster connection's socket read through a buffer, beneath TLS.
//!
//! rustls reads at most 4 KiB at a time from the socket, so a large
//! response (a list of many megabytes) would cost a system call per 4 KiB;
//! through this buffer each call takes up to [`READ_BUFFER`] bytes, and
//! rustls's reads are served from it. Writes pass straight through.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::TryFutureExt;
use http::Uri;
use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Bytes read from the socket at once: a few TLS records.
const READ_BUFFER: usize = 64 * 1024;

/// A connector whose connections read through a buffer.
#[derive(Clone)]
pub(crate) struct ReadBuffering<C>(pub(crate) C);

impl<C> tower::Service<Uri> for ReadBuffering<C>
where
    C: tower::Service<Uri>,
{
    type Response = BufferedRead<C::Response>;
    type Error = C::Error;
    type Future = futures::future::MapOk<C::Future, fn(C::Response) -> BufferedRead<C::Response>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(context)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        self.0.call(uri).map_ok(BufferedRead::new)
    }
}

/// A connection whose reads come through a buffer, filled
/// [`READ_BUFFER`] bytes at a time (allocated on the first read).
pub(crate) struct BufferedRead<T> {
    inner: T,
    buffer: Vec<u8>,
    /// `buffer[start..end]` is read and not yet taken.
    start: usize,
    end: usize,
}

impl<T> BufferedRead<T> {
    fn new(inner: T) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
            start: 0,
            end: 0,
        }
    }
}

impl<T: Read + Unpin> Read for BufferedRead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        mut into: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.start == this.end {
            if into.remaining() >= READ_BUFFER {
                return Pin::new(&mut this.inner).poll_read(context, into);
            }
            if this.buffer.is_empty() {
                this.buffer = vec![0; READ_BUFFER];
            }
            let mut filling = ReadBuf::new(&mut this.buffer);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(context, filling.unfilled()))?;
            this.start = 0;
            this.end = filling.filled().len();
        }
        let taken = into.remaining().min(this.end - this.start);
        into.put_slice(&this.buffer[this.start..this.start + taken]);
        this.start += taken;
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for BufferedRead<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(context, bytes)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(context)
    }

    fn poll_shutdown(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(context)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(context, buffers)
    }
}

impl<T: Connection> Connection for BufferedRead<T> {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Whatever the reader's sizes, the bytes come through whole and in
    /// order, and writes pass through.
    #[tokio::test]
    async fn reads_come_through_the_buffer_whole_and_in_order() {
        let sent: Vec<u8> = (0..300_000u32).map(|index| (index % 251) as u8).collect();
        let (near, far) = tokio::io::duplex(10_000);
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut far = far;
                for piece in sent.chunks(7_777) {
                    far.write_all(piece).await.unwrap();
                }
                let mut echoed = [0u8; 5];
                far.read_exact(&mut echoed).await.unwrap();
                assert_eq!(&echoed, b"hello");
            })
        };
        let mut buffered = TokioIo::new(BufferedRead::new(TokioIo::new(near)));
        let mut received = Vec::new();
        let sizes = [1usize, 4096, 100, READ_BUFFER, 3, READ_BUFFER + 10];
        let mut round = 0;
        while received.len() < sent.len() {
            let mut piece = vec![0; sizes[round % sizes.len()]];
            round += 1;
            let read = buffered.read(&mut piece).await.unwrap();
            assert!(read > 0);
            received.extend_from_slice(&piece[..read]);
        }
        assert_eq!(received, sent);
        buffered.write_all(b"hello").await.unwrap();
        buffered.flush().await.unwrap();
        writer.await.unwrap();
        drop(buffered);
    }
}

//! The bytes of a control connection pass a [`FrameCheck`] on their way to the `redis`
//! crate: what is not RESP2, or a reply beyond [`MAX_CONTROL_REPLY_BYTES`], breaks the
//! connection with a one-line error instead of reaching a parser that would wait for (and
//! buffer) whatever lengths a broken or hostile server announces.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::resp::{FrameCheck, ProtocolError};

/// The longest reply a control connection accepts: 512 MiB, the longest string a Redis
/// server accepts by default (`proto-max-bulk-len`). Values are at most 64 MiB, and verify
/// reads typed keys in chunks that stay well below this.
pub const MAX_CONTROL_REPLY_BYTES: u64 = 512 << 20;

/// A stream whose incoming bytes are checked as RESP2 replies.
pub struct Guarded<S> {
    inner: S,
    check: FrameCheck,
    /// The first error: the stream stays broken after it.
    broken: Option<ProtocolError>,
}

impl<S> Guarded<S> {
    /// Checks the replies read from `inner`.
    pub fn new(inner: S) -> Guarded<S> {
        Guarded {
            inner,
            check: FrameCheck::new(MAX_CONTROL_REPLY_BYTES),
            broken: None,
        }
    }
}

fn invalid(error: &ProtocolError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.clone())
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = &this.broken {
            return Poll::Ready(Err(invalid(error)));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if room && buf.filled().len() == before && this.check.in_reply() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection in the middle of a reply",
            )));
        }
        if let Err(error) = this.check.feed(&buf.filled()[before..]) {
            // Nothing of a reply that broke the rules reaches the reader.
            buf.set_filled(before);
            let failure = invalid(&error);
            this.broken = Some(error);
            return Poll::Ready(Err(failure));
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn read_all(sent: &'static [u8]) -> io::Result<Vec<u8>> {
        let (client, mut server) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let _ = server.write_all(sent).await;
        });
        let mut guarded = Guarded::new(client);
        let mut out = Vec::new();
        guarded.read_to_end(&mut out).await.map(|_| out)
    }

    #[tokio::test]
    async fn replies_pass_unchanged() {
        let sent = b"+OK\r\n$3\r\nabc\r\n*2\r\n:1\r\n$-1\r\n";
        assert_eq!(read_all(sent).await.unwrap(), sent);
    }

    #[tokio::test]
    async fn what_is_not_resp_breaks_the_stream_with_one_line() {
        let error = read_all(b"$-5\r\n").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error
                .to_string()
                .starts_with("the server sent a negative length (-5)"),
            "{error}"
        );
        let error = read_all(b"$10\r\nabc").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            error.to_string(),
            "the server closed the connection in the middle of a reply"
        );
        let error = read_all(b"$9223372036854775807\r\n").await.unwrap_err();
        assert!(
            error.to_string().contains("a reply longer than 512 MiB"),
            "{error}"
        );
    }
}

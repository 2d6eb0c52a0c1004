//! The bytes of a control connection pass a [`FrameCheck`] on their way to the `redis`
//! crate: what is not RESP2, or a reply beyond [`MAX_CONTROL_REPLY_BYTES`], breaks the
//! connection with a one-line error instead of reaching a parser that would wait for (and
//! buffer) whatever lengths a broken or hostile server announces.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::resp::FrameCheck;

/// The longest reply a control connection accepts: 512 MiB, the longest string a Redis
/// server accepts by default (`proto-max-bulk-len`). Values are at most 64 MiB, and verify
/// reads typed keys in chunks that stay well below this.
pub(crate) const MAX_CONTROL_REPLY_BYTES: u64 = 512 << 20;

/// Why a guarded stream broke. The `redis` crate hands the error to one request and tells
/// the others only that the connection is gone; this keeps the reason for all of them.
#[derive(Debug, Clone, Default)]
pub(crate) struct BreakReason(Arc<OnceLock<Break>>);

/// What broke a guarded stream.
#[derive(Debug)]
struct Break {
    reason: String,
    /// A reply that broke the rules of RESP (else the link: closed in the middle of one).
    bad_reply: bool,
}

impl BreakReason {
    fn record(&self, reason: &dyn std::fmt::Display, bad_reply: bool) -> io::Error {
        let _ = self.0.set(Break {
            reason: reason.to_string(),
            bad_reply,
        });
        self.error().unwrap_or_else(|| io::Error::other("broken"))
    }

    fn error(&self) -> Option<io::Error> {
        let broke = self.0.get()?;
        Some(io::Error::new(
            io::ErrorKind::InvalidData,
            broke.reason.clone(),
        ))
    }

    /// Why the stream broke, if it did; else `error` (a refusal, a timeout …).
    pub(crate) fn explain(&self, error: &dyn std::fmt::Display) -> String {
        self.0
            .get()
            .map_or_else(|| error.to_string(), |broke| broke.reason.clone())
    }

    /// True when a reply that broke the rules of RESP broke the stream: reading the same
    /// reply again would break a new one the same way.
    pub(crate) fn bad_reply(&self) -> bool {
        self.0.get().is_some_and(|broke| broke.bad_reply)
    }
}

/// A stream whose incoming bytes are checked as RESP2 replies.
pub(crate) struct Guarded<S> {
    inner: S,
    check: FrameCheck,
    /// Set on the first error: the stream stays broken after it.
    broken: BreakReason,
}

impl<S> Guarded<S> {
    /// Checks the replies read from `inner`.
    pub(crate) fn new(inner: S) -> Guarded<S> {
        Guarded {
            inner,
            check: FrameCheck::new(MAX_CONTROL_REPLY_BYTES),
            broken: BreakReason::default(),
        }
    }

    /// Why the stream broke, readable after the stream has been handed on.
    pub(crate) fn reason(&self) -> BreakReason {
        self.broken.clone()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.broken.error() {
            return Poll::Ready(Err(error));
        }
        let before = buf.filled().len();
        let room = buf.remaining() > 0;
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if room && buf.filled().len() == before && this.check.in_reply() {
            let reason = "the server closed the connection in the middle of a reply";
            return Poll::Ready(Err(this.broken.record(&reason, false)));
        }
        if let Err(error) = this.check.feed(&buf.filled()[before..]) {
            // Nothing of a reply that broke the rules reaches the reader.
            buf.set_filled(before);
            return Poll::Ready(Err(this.broken.record(&error, true)));
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
        let reason = guarded.reason();
        let mut out = Vec::new();
        let read = guarded.read_to_end(&mut out).await.map(|_| out);
        if let Err(error) = &read {
            assert_eq!(reason.explain(&"broken pipe"), error.to_string());
        }
        read
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

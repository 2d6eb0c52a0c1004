//! Reading back what a server acknowledged and writing again what it no longer holds, over
//! one data connection: after a standalone server restarted (its `run_id` changed) it may
//! have lost acknowledged writes.

use crate::fill::error::StageError;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::dataset::Dataset;
use crate::resp::{self, EntryEncoder, Reply};

/// Keys asked about per round trip.
const RECHECK_BATCH: usize = 1000;

/// Asks `EXISTS` for each string entry of `indices` and writes again (with its TTL) each
/// one the server does not hold, waiting for every acknowledgement. Returns the number
/// written again. Errors are one line: a refusal (the user may not run `EXISTS`), a silence
/// of `io_timeout`, a broken connection.
pub(in crate::fill) async fn rewrite_missing<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    dataset: &Dataset,
    indices: impl Iterator<Item = u64>,
    io_timeout: Duration,
) -> Result<u64, StageError> {
    let encoder = EntryEncoder::new(dataset);
    let mut indices = indices.peekable();
    let mut batch = Vec::with_capacity(RECHECK_BATCH);
    let mut commands = Vec::new();
    let mut key = Vec::with_capacity(dataset.key_size());
    let mut rewritten = 0;
    while indices.peek().is_some() {
        batch.clear();
        batch.extend(indices.by_ref().take(RECHECK_BATCH));
        commands.clear();
        for &index in &batch {
            key.clear();
            dataset.push_key(&dataset.entry(index), &mut key);
            resp::push_command(&mut commands, &[b"EXISTS".as_slice(), &key]);
        }
        let mut missing = Vec::new();
        let mut at = 0;
        exchange(stream, &commands, batch.len(), io_timeout, |reply| {
            match reply {
                Reply::Integer(0) => missing.push(batch[at]),
                Reply::Integer(_) => {}
                Reply::Error(line) => {
                    return Err(StageError::Recheck(format!(
                        "EXISTS was refused ({}), so what the server lost cannot be found",
                        String::from_utf8_lossy(line)
                    )));
                }
                Reply::Ok | Reply::Other => {
                    return Err(StageError::Recheck("unexpected reply to EXISTS".into()));
                }
            }
            at += 1;
            Ok(())
        })
        .await?;
        if missing.is_empty() {
            continue;
        }
        commands.clear();
        for &index in &missing {
            encoder.push_set(index, &mut commands);
        }
        write_acknowledged(stream, &commands, missing.len(), io_timeout).await?;
        rewritten += missing.len() as u64;
    }
    Ok(rewritten)
}

/// Sends `commands`, `count` encoded `SET`s of entries written again, and waits until every
/// one of them is acknowledged; the first refusal is the error.
pub(in crate::fill) async fn write_acknowledged<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    commands: &[u8],
    count: usize,
    io_timeout: Duration,
) -> Result<(), StageError> {
    exchange(stream, commands, count, io_timeout, |reply| match reply {
        Reply::Ok => Ok(()),
        Reply::Error(line) => Err(StageError::Recheck(format!(
            "writing a lost entry again was refused: {}",
            String::from_utf8_lossy(line)
        ))),
        Reply::Integer(_) | Reply::Other => {
            Err(StageError::Recheck("unexpected reply to SET".into()))
        }
    })
    .await
}

/// Sends `commands` and hands each of the `count` replies to `answered`, in order; waits at
/// most `io_timeout` for each read.
pub(in crate::fill) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    commands: &[u8],
    count: usize,
    io_timeout: Duration,
    mut answered: impl FnMut(Reply<'_>) -> Result<(), StageError>,
) -> Result<(), StageError> {
    stream
        .write_all(commands)
        .await
        .map_err(|e| StageError::Recheck(format!("the connection broke: {e}")))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut replies = 0;
    while replies < count {
        let n = match tokio::time::timeout(io_timeout, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => {
                return Err(StageError::Recheck(
                    "the server closed the connection".into(),
                ));
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(StageError::Recheck(format!("the connection broke: {e}"))),
            Err(_) => {
                return Err(StageError::Recheck(format!(
                    "no reply for {} (io_timeout)",
                    humantime::format_duration(io_timeout)
                )));
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        while replies < count
            && let Some((reply, used)) =
                resp::parse_reply(&buf[at..]).map_err(|e| StageError::Recheck(e.to_string()))?
        {
            answered(reply)?;
            replies += 1;
            at += used;
        }
        buf.drain(..at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replies handed over in pieces, as a socket may deliver them.
    async fn replies(bytes: &[u8], count: usize) -> Result<Vec<i64>, StageError> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let bytes = bytes.to_vec();
        let serve = async move {
            let mut sink = [0u8; 64];
            let _ = server.read(&mut sink).await;
            for piece in bytes.chunks(3) {
                server.write_all(piece).await.unwrap();
            }
        };
        let mut seen = Vec::new();
        let exchanged = exchange(
            &mut client,
            b"*1\r\n",
            count,
            Duration::from_secs(5),
            |reply| match reply {
                Reply::Integer(n) => {
                    seen.push(n);
                    Ok(())
                }
                Reply::Error(line) => Err(StageError::Server(
                    String::from_utf8_lossy(line).into_owned(),
                )),
                _ => Err(StageError::Server("unexpected".into())),
            },
        );
        let (result, ()) = tokio::join!(exchanged, serve);
        result.map(|()| seen)
    }

    #[tokio::test]
    async fn every_reply_is_handed_over_in_order() {
        assert_eq!(replies(b":1\r\n:0\r\n:1\r\n", 3).await, Ok(vec![1, 0, 1]));
    }

    #[tokio::test]
    async fn a_refusal_or_a_closed_connection_is_an_error() {
        assert_eq!(
            replies(b":1\r\n-NOPERM no EXISTS for you\r\n", 2).await,
            Err(StageError::Server("NOPERM no EXISTS for you".into()))
        );
        assert!(
            replies(b":1\r\n", 2).await.is_err(),
            "closed before the end"
        );
    }

    #[tokio::test]
    async fn silence_is_bounded_by_the_timeout() {
        let (mut client, _server) = tokio::io::duplex(64);
        let result = exchange(&mut client, b"*1\r\n", 1, Duration::from_millis(50), |_| {
            Ok(())
        })
        .await;
        assert_eq!(
            result,
            Err(StageError::Recheck("no reply for 50ms (io_timeout)".into()))
        );
    }
}

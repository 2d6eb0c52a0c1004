//! One session of a data connection: streams pre-encoded commands and reads the replies
//! concurrently, keeping at most `window` entries in flight. Every reply is matched to the
//! entries it answers: acknowledged, refused, or (cluster) redirected.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

use super::batching::{WRITE_BATCH_BYTES, WriterConfig};
use super::feed::Feed;
use super::lock::lock;
use super::socket::ReplyThreshold;
use super::span::{Answered, Span, take_answered};
use super::state::StageState;
use crate::dataset::Dataset;
use crate::resp::{self, EntryEncoder, ErrorReply, Reply};

/// How long a connection may wait for the next reply while commands are in flight.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply a connection accepts.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Why a session ended early.
pub enum SessionEnd {
    /// The connection broke; what was in flight is retried on a new one.
    Lost(String),
    /// The server spoke something that is not RESP: retrying will not help.
    Fatal(String),
}

/// What a connection works on, across its reconnections: the stage, its dataset, how to
/// batch, and where entries come from.
pub struct Job<'a> {
    /// The stage's shared state.
    pub stage: &'a StageState,
    /// The stage's entries.
    pub dataset: &'a Dataset,
    /// Batching, grouping and window.
    pub config: WriterConfig,
    /// Where entries come from.
    pub feed: &'a Feed,
    /// Entries this connection's server acknowledged, across reconnections.
    pub acked_here: &'a AtomicU64,
}

/// One connection's session: what the writing half and the reading half share.
pub struct Session<'a> {
    job: &'a Job<'a>,
    /// Spans sent but not yet answered, in the order sent.
    inflight: Mutex<VecDeque<Span>>,
    /// Permits for the entries that may still be sent before replies come back.
    window: Semaphore,
    wake_reader: Notify,
    /// Entries sent so far.
    sent: AtomicU64,
    /// Set when the writer has nothing more to send.
    done: AtomicBool,
}

impl<'a> Session<'a> {
    /// A session for `job`, nothing in flight yet.
    pub fn new(job: &'a Job<'a>) -> Session<'a> {
        Session {
            job,
            inflight: Mutex::new(VecDeque::new()),
            window: Semaphore::new(job.config.window as usize),
            wake_reader: Notify::new(),
            sent: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }
    }

    /// The spans sent whose replies never came, for the caller to resend.
    pub fn into_unanswered(self) -> VecDeque<Span> {
        // A panic while the lock was held left the queue whole (see `lock`): keep its spans.
        self.inflight
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the connection until the work is done or the connection breaks. Spans of
    /// entries sent but not yet acknowledged stay in flight (see
    /// [`Session::into_unanswered`]); `retry` holds what is to be sent before new entries.
    pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        wake_at: ReplyThreshold,
        retry: &mut VecDeque<Span>,
    ) -> Result<(), SessionEnd> {
        let (reader, writer) = tokio::io::split(stream);
        tokio::try_join!(self.write(writer, retry), self.read(reader, wake_at)).map(|_| ())
    }

    /// The writing half: takes entries (retries first), encodes and sends them, within the
    /// window.
    async fn write<W: AsyncWrite + Unpin>(
        &self,
        mut writer: W,
        retry: &mut VecDeque<Span>,
    ) -> Result<(), SessionEnd> {
        let Job {
            stage,
            dataset,
            config,
            feed,
            ..
        } = *self.job;
        let mut buf = Vec::with_capacity((WRITE_BATCH_BYTES * 2) as usize);
        let encoder = EntryEncoder::new(dataset);
        loop {
            if stage.should_stop() {
                break;
            }
            // Permits first, entries second, and no await between taking entries and
            // recording them in flight: a session dropped at any await loses nothing.
            let batch = config.batch as u32;
            self.window
                .acquire_many(batch)
                .await
                .map_err(|_| SessionEnd::Fatal("internal: window closed".into()))?
                .forget();
            let next = retry.pop_front().or_else(|| feed.next(stage, config.batch));
            let Some(span) = next else {
                self.window.add_permits(batch as usize);
                if feed.wait(stage).await {
                    continue;
                }
                break;
            };
            let (span, rest) = span.split_front(config.batch);
            if let Some(rest) = rest {
                retry.push_front(rest);
            }
            let count = span.len() as u32;
            self.window.add_permits((batch - count) as usize);
            if count == 0 {
                continue;
            }
            buf.clear();
            span.encode(&encoder, config.group, &mut buf);
            lock(&self.inflight).push_back(span);
            self.sent.fetch_add(u64::from(count), Relaxed);
            self.wake_reader.notify_one();
            writer
                .write_all(&buf)
                .await
                .map_err(|e| SessionEnd::Lost(describe_io(&e)))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| SessionEnd::Lost(describe_io(&e)))?;
        self.done.store(true, Relaxed);
        self.wake_reader.notify_one();
        Ok(())
    }

    /// The reading half: reads replies as they come and hands them to
    /// [`Session::consume_replies`], until everything sent is answered.
    async fn read<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        mut wake_at: ReplyThreshold,
    ) -> Result<(), SessionEnd> {
        let config = self.job.config;
        let mut buf = vec![0u8; 64 << 10];
        let mut filled = 0usize;
        let mut received = 0u64;
        loop {
            if received == self.sent.load(Relaxed) {
                if self.done.load(Relaxed) && received == self.sent.load(Relaxed) {
                    return Ok(());
                }
                self.wake_reader.notified().await;
                continue;
            }
            if filled == buf.len() {
                // Replies to SET and MSET are a few bytes; a huge one means a broken peer.
                if buf.len() >= MAX_REPLY_BYTES {
                    return Err(SessionEnd::Fatal(format!(
                        "the server sent a reply longer than {} KiB; is this a Redis server?",
                        MAX_REPLY_BYTES >> 10
                    )));
                }
                buf.resize(buf.len() * 2, 0);
            }
            let outstanding = self.sent.load(Relaxed) - received;
            wake_at.update(
                if filled > 0 {
                    0
                } else {
                    outstanding.div_ceil(config.group)
                },
                &config,
            );
            let n = match tokio::time::timeout(REPLY_TIMEOUT, reader.read(&mut buf[filled..])).await
            {
                Ok(Ok(0)) => {
                    return Err(SessionEnd::Lost("the server closed the connection".into()));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(SessionEnd::Lost(describe_io(&e))),
                Err(_) => {
                    return Err(SessionEnd::Lost(format!(
                        "no reply for {}s with commands in flight",
                        REPLY_TIMEOUT.as_secs()
                    )));
                }
            };
            filled += n;
            let (used, entries) = self.consume_replies(&buf[..filled])?;
            buf.copy_within(used..filled, 0);
            filled -= used;
            received += entries;
            self.window.add_permits(entries as usize);
        }
    }

    /// Matches the complete replies in `buf` to the entries in flight, in order: each reply
    /// answers the next command, which carries up to `group` entries of the front span.
    /// Returns the bytes used and the number of entries answered.
    fn consume_replies(&self, buf: &[u8]) -> Result<(usize, u64), SessionEnd> {
        let Job {
            stage,
            dataset,
            config,
            feed,
            acked_here,
        } = *self.job;
        let mut queue = lock(&self.inflight);
        let (mut at, mut answered, mut acked, mut bytes) = (0usize, 0u64, 0u64, 0u64);
        let mut refused = false;
        // Acknowledgements parsed before a malformed reply still count: `end` keeps the error.
        let end = loop {
            let (reply, used) = match resp::parse_reply(&buf[at..]) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => break Ok(()),
                Err(e) => break Err(SessionEnd::Fatal(e.to_string())),
            };
            at += used;
            let entries = match take_answered(&mut queue, config.group) {
                None => {
                    break Err(SessionEnd::Fatal(
                        "the server sent a reply to a command that was never sent".into(),
                    ));
                }
                Some(Answered::Asking) => continue,
                Some(Answered::Range(entries)) => entries,
            };
            answered += entries.end - entries.start;
            match reply {
                Reply::Ok => {
                    acked += entries.end - entries.start;
                    bytes += entries.map(|i| dataset.payload_bytes(i)).sum::<u64>();
                }
                Reply::Error(line) => {
                    let redirected = match feed {
                        Feed::Node { node, router } => {
                            router.redirect(entries.start, ErrorReply::parse(line), node)
                        }
                        Feed::Stage => false,
                    };
                    if !redirected {
                        stage.record_error(dataset, entries, &String::from_utf8_lossy(line));
                        refused = true;
                    }
                }
                Reply::Other => {
                    stage.record_error(dataset, entries, "unexpected reply");
                    refused = true;
                }
            }
        };
        drop(queue);
        if acked > 0 {
            stage.acked.fetch_add(acked, Relaxed);
            stage.bytes.fetch_add(bytes, Relaxed);
            acked_here.fetch_add(acked, Relaxed);
            if let Feed::Node { node, router } = feed {
                node.keys.fetch_add(acked, Relaxed);
                router.acknowledged();
            }
        }
        if refused && let Feed::Node { router, .. } = feed {
            // The stage stops: wake the connections idle on their feeds so they end too.
            router.wake_all();
        }
        end.map(|()| (at, answered))
    }
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            format!("the server closed the connection ({error})")
        }
        _ => error.to_string(),
    }
}

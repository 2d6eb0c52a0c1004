//! One session of a data connection: streams pre-encoded commands and reads the replies
//! concurrently, keeping at most `window` entries in flight. Every reply is matched to the
//! entries it answers: acknowledged, refused, or (cluster) redirected.

use std::collections::VecDeque;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

use super::batching::{WRITE_BATCH_BYTES, WriterConfig};
use super::feed::Feed;
use super::lock::lock;
use super::restoring::Restoring;
use super::socket::ReplyThreshold;
use super::span::Span;
use super::stall::{ASK_REPLACED_AFTER, STALL_AFTER};
use super::state::StageState;
use crate::dataset::Dataset;
use crate::plan::NodeAddr;
use crate::resp::typed::Chunking;
use crate::resp::{EntryEncoder, MAX_REPLY_BYTES};

mod replies;
mod taking;

use taking::Write;

/// Why a session ended early.
pub(super) enum SessionEnd {
    /// The connection broke; what was in flight is retried on a new one.
    Lost(String),
    /// The server spoke something that is not RESP: retrying will not help.
    Fatal(String),
    /// The user may not run `MSET`: what is unanswered goes again, one `SET` per entry.
    MsetRefused,
    /// The server refused a `RESTORE` payload (why): what is unanswered goes again as
    /// commands, each typed key resumed from what the server holds.
    RestoreRefused(String),
}

/// What a connection works on, across its reconnections: the stage, its dataset, how to
/// batch, and where entries come from.
pub(super) struct Job<'a> {
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
    /// The server this connection writes to.
    pub addr: &'a NodeAddr,
    /// How long the connection may wait for a reply with entries in flight.
    pub io_timeout: Duration,
    /// Typed keys go as `RESTORE` payloads for this server (`None`: as commands).
    pub restore: Option<Restoring>,
}

/// One connection's session: what the writing half and the reading half share.
pub(super) struct Session<'a> {
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
    /// Typed keys to carry on from what the server holds, found by the reader in the
    /// replies to [`Span::Resume`] and [`Span::Restart`] (or refused for a moment); the
    /// writer sends them before anything but the rest of a key.
    resumed: Mutex<VecDeque<Span>>,
    /// Resume and restart requests sent whose replies have not been read yet.
    resuming: AtomicU64,
    wake_writer: Notify,
    /// A typed key whose remaining replies are to be passed over (one of its commands was
    /// refused), or [`NO_KEY`].
    abandoned: AtomicU64,
    /// How typed keys are split into commands.
    chunking: Chunking,
    /// A typed key some of whose commands were acknowledged but not its last, or
    /// [`NO_KEY`]: when the stage stops here, it is left partly written.
    open_key: AtomicU64,
}

/// No key, in [`Session::abandoned`] and [`Session::open_key`].
const NO_KEY: u64 = u64::MAX;

impl<'a> Session<'a> {
    /// A session for `job`, nothing in flight yet.
    pub(super) fn new(job: &'a Job<'a>) -> Session<'a> {
        Session {
            job,
            inflight: Mutex::new(VecDeque::new()),
            window: Semaphore::new(job.config.window as usize),
            wake_reader: Notify::new(),
            sent: AtomicU64::new(0),
            done: AtomicBool::new(false),
            resumed: Mutex::new(VecDeque::new()),
            resuming: AtomicU64::new(0),
            wake_writer: Notify::new(),
            abandoned: AtomicU64::new(NO_KEY),
            open_key: AtomicU64::new(NO_KEY),
            chunking: match job.restore {
                Some(restore) => Chunking::restoring(job.dataset, &restore.server),
                None => Chunking::of(job.dataset),
            },
        }
    }

    /// True for the commands of a key whose other replies are passed over: they are not
    /// sent, nor sent again. A resume of that key is kept: it starts the key afresh.
    fn is_abandoned(&self, span: &Span) -> bool {
        commands_of(span, self.abandoned.load(Relaxed))
    }

    /// The typed key left partly written when this session ended, if any.
    pub(super) fn open_key(&self) -> Option<u64> {
        Some(self.open_key.load(Relaxed)).filter(|&k| k != NO_KEY)
    }

    /// True when the session sent anything (a session stopped before its first write
    /// leaves what was in doubt before it in doubt).
    pub(super) fn sent_any(&self) -> bool {
        self.sent.load(Relaxed) > 0
    }

    /// What to send on the next connection: the spans sent whose replies never came (ready
    /// to be sent again), the keys to resume, then `still_to_send`; never the commands of
    /// the key whose other replies were being passed over.
    pub(super) fn into_unanswered(self, still_to_send: VecDeque<Span>) -> VecDeque<Span> {
        let abandoned = self.abandoned.load(Relaxed);
        // A panic while the lock was held left the queue whole (see `lock`): keep its spans.
        let mut spans: VecDeque<Span> = self
            .inflight
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .into_iter()
            .map(Span::resend)
            .collect();
        spans.extend(
            self.resumed
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        spans.extend(still_to_send);
        spans.retain(|span| !commands_of(span, abandoned));
        if let Feed::Node { router, .. } = self.job.feed
            && spans
                .iter()
                .any(|span| matches!(span, Span::Resume { index } if *index == abandoned))
        {
            // Refused for a moment and to be resumed here, but the replies to its later
            // commands never came: one may have been applied past the refused one.
            router.restart_key(abandoned);
        }
        spans
    }

    /// Runs the connection until the work is done or the connection breaks. Spans of
    /// entries sent but not yet acknowledged stay in flight (see
    /// [`Session::into_unanswered`]); `retry` holds what is to be sent before new entries.
    pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        wake_at: ReplyThreshold,
        retry: &mut VecDeque<Span>,
    ) -> Result<(), SessionEnd> {
        let (reader, writer) = tokio::io::split(stream);
        tokio::try_join!(self.write(writer, retry), self.read(reader, wake_at)).map(|_| ())
    }

    /// The writing half: takes entries (resumed keys first, then retries), encodes and
    /// sends them, within the window; several small spans go out in one write, and the
    /// window, the spans in flight and the reader are updated once per write.
    async fn write<W: AsyncWrite + Unpin>(
        &self,
        mut writer: W,
        retry: &mut VecDeque<Span>,
    ) -> Result<(), SessionEnd> {
        let Job {
            stage,
            dataset,
            config,
            ..
        } = *self.job;
        let mut buf = Vec::with_capacity((WRITE_BATCH_BYTES * 2) as usize);
        let encoder = match self.job.restore {
            Some(restore) => EntryEncoder::restoring(dataset, restore.server),
            None => EntryEncoder::new(dataset),
        };
        debug_assert_eq!(
            encoder.chunking(),
            self.chunking,
            "encoder and reader agree"
        );
        let batch = config.batch as u32;
        let mut write = Write::default();
        loop {
            if stage.should_stop() {
                break;
            }
            // Permits first, entries second, and no await between taking entries and
            // recording them in flight: a session dropped at any await loses nothing.
            self.window
                .acquire_many(batch)
                .await
                .map_err(|_| SessionEnd::Fatal("internal: window closed".into()))?
                .forget();
            write.held = batch;
            buf.clear();
            let mut took = false;
            // More spans into the same write while they are at hand and the window allows.
            while self.take_and_encode(&encoder, retry, &mut write, &mut buf) {
                took = true;
                if buf.len() as u64 >= WRITE_BATCH_BYTES {
                    break;
                }
                if write.held < batch {
                    let Ok(permits) = self.window.try_acquire_many(batch - write.held) else {
                        break;
                    };
                    permits.forget();
                    write.held = batch;
                }
            }
            if write.held > 0 {
                self.window.add_permits(write.held as usize);
            }
            if !took {
                if self.wait_for_work(stage).await {
                    continue;
                }
                break;
            }
            if write.spans.is_empty() {
                continue;
            }
            lock(&self.inflight).extend(write.spans.drain(..));
            self.sent
                .fetch_add(std::mem::take(&mut write.units), Relaxed);
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

    /// Waits until there is something to send; false when there never will be. Keys to
    /// resume come back from the reader (after their count, or a command refused for a
    /// moment), so the session listens for them as well as for its feed, and waits for the
    /// counts it sent.
    async fn wait_for_work(&self, stage: &StageState) -> bool {
        let mut feed_finished = false;
        loop {
            let resumed = self.wake_writer.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if !lock(&self.resumed).is_empty() {
                return true;
            }
            if feed_finished && self.resuming.load(Relaxed) == 0 {
                return false;
            }
            if stage.should_stop() {
                return false;
            }
            if feed_finished {
                resumed.await;
                continue;
            }
            tokio::select! {
                () = &mut resumed => {}
                more = self.job.feed.wait(stage) => {
                    if more {
                        return true;
                    }
                    feed_finished = true;
                }
            }
        }
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
                // A reply longer than the buffer: `parse_reply` refuses it before the buffer
                // grows beyond its bound.
                buf.resize((buf.len() * 2).min(MAX_REPLY_BYTES), 0);
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
            let n = match self
                .read_some(&mut reader, &mut buf[filled..], outstanding)
                .await?
            {
                0 => return Err(SessionEnd::Lost("the server closed the connection".into())),
                n => n,
            };
            filled += n;
            let (used, entries) = self.consume_replies(&buf[..filled])?;
            buf.copy_within(used..filled, 0);
            filled -= used;
            received += entries;
            self.window.add_permits(entries as usize);
        }
    }
}

impl Session<'_> {
    /// Reads what the server sends next, waiting at most `io_timeout` for it: a server
    /// silent that long with `outstanding` entries in flight is taken for broken. A wait
    /// longer than [`STALL_AFTER`] is listed in the stage's stalls for the display.
    async fn read_some<R: AsyncRead + Unpin>(
        &self,
        reader: &mut R,
        buf: &mut [u8],
        outstanding: u64,
    ) -> Result<usize, SessionEnd> {
        let Job {
            stage,
            addr,
            io_timeout,
            ..
        } = *self.job;
        let since = Instant::now();
        let mut stall = None;
        let result = loop {
            let wait = io_timeout.saturating_sub(since.elapsed()).min(STALL_AFTER);
            // `read` is cancel-safe: a timed-out read has taken nothing from the socket.
            match tokio::time::timeout(wait, reader.read(buf)).await {
                Ok(Ok(n)) => break Ok(n),
                Ok(Err(e)) => break Err(SessionEnd::Lost(describe_io(&e))),
                Err(_) if since.elapsed() >= io_timeout => {
                    break Err(SessionEnd::Lost(format!(
                        "no reply for {} with {outstanding} entries in flight (io_timeout)",
                        humantime::format_duration(io_timeout)
                    )));
                }
                Err(_) => {
                    if stall.is_none() {
                        stall = Some(stage.stalls.begin(addr, since));
                    }
                    if since.elapsed() >= ASK_REPLACED_AFTER
                        && let Feed::Node { node, router } = self.job.feed
                        && router.replaced(node).await
                    {
                        break Err(SessionEnd::Lost(format!(
                            "no reply for {}s, and the cluster gave its slots to another node meanwhile",
                            since.elapsed().as_secs()
                        )));
                    }
                }
            }
        };
        if let Some(token) = stall {
            stage.stalls.end(token);
        }
        result
    }
}

/// True when `span` carries commands of typed key `index`.
fn commands_of(span: &Span, index: u64) -> bool {
    matches!(span, Span::Key(key) if key.index == index)
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            format!("the server closed the connection ({error})")
        }
        _ => error.to_string(),
    }
}

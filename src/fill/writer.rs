//! One data connection of a stage: streams pre-encoded `SET`/`MSET` commands and reads the
//! replies concurrently, keeping at most `pipeline` entries in flight. Every entry is
//! acknowledged, counted as refused, redirected (cluster) or resent after a reconnection;
//! none is lost silently.

use std::collections::VecDeque;
use std::io;
use std::ops::Range;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore};

use super::cluster::{NodeFeed, Router};
use super::state::StageState;
use crate::dataset::{Dataset, Entry};
use crate::interrupt;
use crate::plan::NodeAddr;
use crate::resp::{self, Reply};
use crate::server::Connector;

/// How long a connection may wait for the next reply while commands are in flight.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Reconnection attempts in a row, without progress in between, before a stage gives up.
const MAX_RECONNECTS: u32 = 3;
/// Largest reply a connection accepts.
const MAX_REPLY_BYTES: usize = 1 << 20;
/// Bytes encoded per write, about.
const WRITE_BATCH_BYTES: u64 = 64 << 10;

/// How a connection batches, groups and windows its entries.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Entries encoded and written at once.
    pub batch: u64,
    /// Entries per command: 1 writes `SET`, more write `MSET` (one reply per command).
    pub group: u64,
    /// Most entries in flight (the stage's `pipeline`).
    pub window: u32,
}

impl WriterConfig {
    /// Batches of about 64 KiB, at most a quarter of the window so writing never waits for
    /// a whole window to drain. Entries with a TTL need `SET … PX`, so they are never grouped.
    pub fn new(
        pipeline: u32,
        mean_entry_bytes: u64,
        keys_per_command: u32,
        has_ttl: bool,
    ) -> WriterConfig {
        let by_bytes = (WRITE_BATCH_BYTES / mean_entry_bytes.max(1)).max(1);
        // A command never carries more than a batch's worth of bytes (huge values: one each).
        let group = if has_ttl {
            1
        } else {
            u64::from(keys_per_command.min(pipeline).max(1)).min(by_bytes)
        };
        let by_window = u64::from(pipeline / 4).max(1);
        let batch = by_bytes.min(by_window).max(group).min(u64::from(pipeline));
        WriterConfig {
            batch,
            group,
            window: pipeline,
        }
    }
}

/// Entries a connection sends together; the reader matches replies against them in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Span {
    /// Consecutive entries (standalone stages).
    Range(Range<u64>),
    /// Entries routed to one cluster node, from `start` on.
    List { indices: Vec<u64>, start: usize },
    /// One entry a cluster node told us to send elsewhere with `ASKING` first; `asked` once
    /// the reply to ASKING came back.
    Asking { index: u64, asked: bool },
}

impl Span {
    /// Entries not yet answered.
    pub fn len(&self) -> u64 {
        match self {
            Span::Range(r) => r.end - r.start,
            Span::List { indices, start } => (indices.len() - start) as u64,
            Span::Asking { .. } => 1,
        }
    }

    /// Splits off the first `max` entries when there are more.
    fn split_front(self, max: u64) -> (Span, Option<Span>) {
        match self {
            Span::Range(r) if r.end - r.start > max => (
                Span::Range(r.start..r.start + max),
                Some(Span::Range(r.start + max..r.end)),
            ),
            Span::List { mut indices, start } if (indices.len() - start) as u64 > max => {
                let rest = indices.split_off(start + max as usize);
                (
                    Span::List { indices, start },
                    Some(Span::List {
                        indices: rest,
                        start: 0,
                    }),
                )
            }
            span => (span, None),
        }
    }

    /// The span to send again on a new connection (ASKING is sent again too).
    fn resend(self) -> Span {
        match self {
            Span::Asking { index, .. } => Span::Asking {
                index,
                asked: false,
            },
            span => span,
        }
    }
}

/// What one reply answered.
enum Answered {
    /// The reply to ASKING, which answers no entry.
    Asking,
    /// These entries (consecutive ones, or one routed entry).
    Range(Range<u64>),
}

/// Takes the entries the next reply answers from the front of `queue`.
fn take_answered(queue: &mut VecDeque<Span>, group: u64) -> Option<Answered> {
    while queue.front().is_some_and(|span| span.len() == 0) {
        queue.pop_front();
    }
    let span = queue.front_mut()?;
    let answered = match span {
        Span::Range(r) => {
            let first = r.start;
            r.start = (first + group).min(r.end);
            Answered::Range(first..r.start)
        }
        Span::List { indices, start } => {
            let index = indices[*start];
            *start += 1;
            Answered::Range(index..index + 1)
        }
        Span::Asking {
            asked: asked @ false,
            ..
        } => {
            *asked = true;
            return Some(Answered::Asking);
        }
        Span::Asking { index, .. } => Answered::Range(*index..*index + 1),
    };
    if span.len() == 0 || matches!(span, Span::Asking { asked: true, .. }) {
        queue.pop_front();
    }
    Some(answered)
}

/// Where a connection's entries come from.
#[derive(Clone)]
pub enum Feed {
    /// A standalone stage: ranges handed out by the stage.
    Stage,
    /// A cluster stage: the entries routed to one primary.
    Node {
        node: Arc<NodeFeed>,
        router: Arc<Router>,
    },
}

impl Feed {
    /// Up to `max` entries to send now; `None` when there is nothing right now.
    fn next(&self, stage: &StageState, max: u64) -> Option<Span> {
        match self {
            Feed::Stage => stage.take(max).map(Span::Range),
            Feed::Node { node, .. } => node.next(max),
        }
    }

    /// Waits for more entries; false when this feed will never have any again.
    async fn wait(&self, stage: &StageState) -> bool {
        match self {
            Feed::Stage => stage.wait_for_budget().await,
            Feed::Node { node, router } => node.wait(router).await,
        }
    }
}

/// Why a session ended early.
enum SessionEnd {
    /// The connection broke; what was in flight is retried on a new one.
    Lost(String),
    /// The server spoke something that is not RESP: retrying will not help.
    Fatal(String),
}

/// Writes entries from the stage's index range over one connection (reconnecting when it
/// breaks) until the range is used up or the stage stops. `Err` is the stage's failure.
pub async fn connection_worker(
    connector: Arc<Connector>,
    addr: NodeAddr,
    stage: Arc<StageState>,
    dataset: Arc<Dataset>,
    config: WriterConfig,
    feed: Feed,
) -> Result<(), String> {
    let mut retry: VecDeque<Span> = VecDeque::new();
    let mut failures = 0u32;
    let acked_here = std::sync::atomic::AtomicU64::new(0);
    loop {
        let acked_before = acked_here.load(Relaxed);
        let outcome = match connector.data(&addr).await {
            Ok(mut stream) => {
                let inflight = Mutex::new(VecDeque::new());
                let wake_at = ReplyThreshold::for_socket(stream.tcp());
                let job = Job {
                    stage: &stage,
                    dataset: &dataset,
                    config,
                    feed: &feed,
                    acked_here: &acked_here,
                };
                let result = session(&mut stream, &job, wake_at, &mut retry, &inflight).await;
                let unanswered = inflight.into_inner().unwrap_or_default();
                retry.extend(unanswered.into_iter().map(Span::resend));
                result
            }
            Err(e) => Err(SessionEnd::Lost(e.0)),
        };
        match outcome {
            Ok(()) => return Ok(()),
            Err(SessionEnd::Fatal(message)) => return Err(format!("{addr}: {message}")),
            Err(SessionEnd::Lost(reason)) => {
                if let Feed::Node { node, router } = &feed {
                    // Whoever serves this primary next (a new connection, or a replica that
                    // takes over) finds these entries in its feed.
                    router.hand_back(node, retry.drain(..));
                }
                if acked_here.load(Relaxed) > acked_before {
                    failures = 0;
                }
                failures += 1;
                if interrupt::requested() {
                    // Interrupted: the run reports that; a broken connection is no failure.
                    return Ok(());
                }
                if failures > MAX_RECONNECTS || stage.should_stop() {
                    if let Feed::Node { node, router } = &feed {
                        return router.node_unreachable(node, &reason).await;
                    }
                    return Err(format!(
                        "lost the connection to {addr} and could not restore it ({MAX_RECONNECTS} attempts): {reason}"
                    ));
                }
                stage.reconnects.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100 << failures)).await;
            }
        }
    }
}

/// Runs one connection until the work is done or the connection breaks. Spans of entries
/// sent but not yet acknowledged stay in `inflight`, so the caller can resend them.
/// What a connection works on: the stage, its dataset, how to batch, where entries come from.
struct Job<'a> {
    stage: &'a StageState,
    dataset: &'a Dataset,
    config: WriterConfig,
    feed: &'a Feed,
    /// Entries this connection's server acknowledged, across reconnections.
    acked_here: &'a std::sync::atomic::AtomicU64,
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    job: &Job<'_>,
    mut wake_at: ReplyThreshold,
    retry: &mut VecDeque<Span>,
    inflight: &Mutex<VecDeque<Span>>,
) -> Result<(), SessionEnd> {
    let Job {
        stage,
        dataset,
        config,
        feed,
        acked_here,
    } = *job;
    let (mut reader, mut writer) = tokio::io::split(stream);
    let window = Semaphore::new(config.window as usize);
    let wake_reader = Notify::new();
    let sent = std::sync::atomic::AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);

    let write = async {
        let mut buf = Vec::with_capacity((WRITE_BATCH_BYTES * 2) as usize);
        let encoder = Encoder::new(dataset);
        loop {
            if stage.should_stop() {
                break;
            }
            // Permits first, entries second, and no await between taking entries and
            // recording them in flight: a session dropped at any await loses nothing.
            let batch = config.batch as u32;
            window
                .acquire_many(batch)
                .await
                .map_err(|_| SessionEnd::Fatal("internal: window closed".into()))?
                .forget();
            let next = retry.pop_front().or_else(|| feed.next(stage, config.batch));
            let Some(span) = next else {
                window.add_permits(batch as usize);
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
            window.add_permits((batch - count) as usize);
            if count == 0 {
                continue;
            }
            buf.clear();
            encoder.push_span(&span, config.group, &mut buf);
            lock(inflight).push_back(span);
            sent.fetch_add(u64::from(count), Relaxed);
            wake_reader.notify_one();
            writer
                .write_all(&buf)
                .await
                .map_err(|e| SessionEnd::Lost(describe_io(&e)))?;
        }
        writer
            .flush()
            .await
            .map_err(|e| SessionEnd::Lost(describe_io(&e)))?;
        done.store(true, Relaxed);
        wake_reader.notify_one();
        Ok::<(), SessionEnd>(())
    };

    let read = async {
        let mut buf = vec![0u8; 64 << 10];
        let mut filled = 0usize;
        let mut received = 0u64;
        loop {
            if received == sent.load(Relaxed) {
                if done.load(Relaxed) && received == sent.load(Relaxed) {
                    return Ok::<(), SessionEnd>(());
                }
                wake_reader.notified().await;
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
            let outstanding = sent.load(Relaxed) - received;
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
            let (used, entries) = consume_replies(
                &buf[..filled],
                stage,
                dataset,
                config.group,
                feed,
                inflight,
                acked_here,
            )?;
            buf.copy_within(used..filled, 0);
            filled -= used;
            received += entries;
            window.add_permits(entries as usize);
        }
    };

    tokio::try_join!(write, read).map(|_| ())
}

/// Matches the complete replies in `buf` to the entries in flight, in order: each reply
/// answers the next command, which carries up to `group` entries of the front span. Returns
/// the bytes used and the number of entries answered.
fn consume_replies(
    buf: &[u8],
    stage: &StageState,
    dataset: &Dataset,
    group: u64,
    feed: &Feed,
    inflight: &Mutex<VecDeque<Span>>,
    acked_here: &std::sync::atomic::AtomicU64,
) -> Result<(usize, u64), SessionEnd> {
    let mut queue = lock(inflight);
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
        let entries = match take_answered(&mut queue, group) {
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
                    Feed::Node { node, router } => router.redirect(entries.start, line, node),
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

/// When a connection's reader wakes up: not for every few replies, but when at least a
/// quarter window's worth of commands can have been answered. Every reply to SET/MSET is at
/// least 4 bytes, so `SO_RCVLOWAT = 4 × commands` is a lower bound that never waits for a
/// reply that will not come. This cuts the client's wake-ups (and CPU) several-fold.
pub struct ReplyThreshold {
    fd: Option<std::os::fd::RawFd>,
    current: usize,
}

/// The fewest bytes any reply to a write command takes (`:0\r\n`).
const MIN_REPLY_BYTES: u64 = 4;

impl ReplyThreshold {
    /// A threshold for a TCP socket.
    pub fn for_socket(stream: &tokio::net::TcpStream) -> ReplyThreshold {
        use std::os::fd::AsRawFd;
        ReplyThreshold {
            fd: Some(stream.as_raw_fd()),
            current: 1,
        }
    }

    /// Wakes the reader once `commands` replies (at most a quarter window's) could be there;
    /// 0 means "as soon as anything arrives" (a reply is partly read).
    fn update(&mut self, commands: u64, config: &WriterConfig) {
        let Some(fd) = self.fd else { return };
        let quarter = (u64::from(config.window) / config.group / 4).max(1);
        let bytes = (MIN_REPLY_BYTES * commands.min(quarter)).max(1) as usize;
        if bytes == self.current {
            return;
        }
        let value = bytes as libc::c_int;
        // SAFETY: `fd` is the open socket of the stream this session owns, and `value` is a
        // plain int that outlives the call.
        let status = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if status == 0 {
            self.current = bytes;
        } else {
            // Not supported here: wake on every reply, as without it.
            self.fd = None;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn describe_io(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            format!("the server closed the connection ({error})")
        }
        _ => error.to_string(),
    }
}

/// Encodes `SET key value [PX ms]` and `MSET k v k v …` for the entries of one stage,
/// allocating nothing per entry.
struct Encoder<'a> {
    dataset: &'a Dataset,
    key_header: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn new(dataset: &'a Dataset) -> Encoder<'a> {
        let mut key_header = Vec::new();
        resp::push_bulk_header(&mut key_header, dataset.key_size());
        Encoder {
            dataset,
            key_header,
        }
    }

    /// Encodes the entries of `span` as commands of up to `group` entries each, counted from
    /// the span's start (the reader splits the replies the same way).
    fn push_span(&self, span: &Span, group: u64, out: &mut Vec<u8>) {
        let span = match span {
            Span::Range(range) => range.clone(),
            Span::List { indices, start } => {
                for &index in &indices[*start..] {
                    self.push_set(index, out);
                }
                return;
            }
            Span::Asking { index, .. } => {
                resp::push_command(out, &[b"ASKING"]);
                self.push_set(*index, out);
                return;
            }
        };
        let mut start = span.start;
        while start < span.end {
            let end = (start + group).min(span.end);
            if end - start == 1 {
                self.push_set(start, out);
            } else {
                out.push(b'*');
                out.extend_from_slice(itoa::Buffer::new().format(1 + 2 * (end - start)).as_bytes());
                out.extend_from_slice(b"\r\n$4\r\nMSET\r\n");
                for index in start..end {
                    self.push_pair(&self.dataset.entry(index), out);
                }
            }
            start = end;
        }
    }

    #[inline]
    fn push_set(&self, index: u64, out: &mut Vec<u8>) {
        let entry = self.dataset.entry(index);
        out.extend_from_slice(if entry.ttl_ms.is_some() {
            b"*5\r\n$3\r\nSET\r\n"
        } else {
            b"*3\r\n$3\r\nSET\r\n"
        });
        self.push_pair(&entry, out);
        if let Some(ms) = entry.ttl_ms {
            out.extend_from_slice(b"$2\r\nPX\r\n");
            resp::push_bulk(out, itoa::Buffer::new().format(ms).as_bytes());
        }
    }

    /// The key and the value of an entry, as two bulk strings.
    #[inline]
    fn push_pair(&self, entry: &Entry, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key_header);
        self.dataset.push_key(entry, out);
        out.extend_from_slice(b"\r\n");
        resp::push_bulk_header(out, entry.value_len);
        self.dataset.push_value(entry, out);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_to_grouped_ranges_answer_up_to_a_group_each() {
        let mut queue = VecDeque::from([Span::Range(0..5), Span::Range(10..11)]);
        let mut answered = Vec::new();
        while let Some(Answered::Range(r)) = take_answered(&mut queue, 2) {
            answered.push(r);
        }
        assert_eq!(answered, vec![0..2, 2..4, 4..5, 10..11]);
        assert!(queue.is_empty());
    }

    #[test]
    fn lists_answer_one_entry_per_reply_and_asking_takes_two_replies() {
        let mut queue = VecDeque::from([
            Span::List {
                indices: vec![7, 3],
                start: 0,
            },
            Span::Asking {
                index: 9,
                asked: false,
            },
        ]);
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (7..8)));
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (3..4)));
        assert!(matches!(
            take_answered(&mut queue, 16),
            Some(Answered::Asking)
        ));
        assert!(matches!(take_answered(&mut queue, 16), Some(Answered::Range(r)) if r == (9..10)));
        assert!(take_answered(&mut queue, 16).is_none());
    }

    #[test]
    fn resent_asking_spans_ask_again() {
        let span = Span::Asking {
            index: 4,
            asked: true,
        }
        .resend();
        assert_eq!(
            span,
            Span::Asking {
                index: 4,
                asked: false
            }
        );
    }

    #[test]
    fn split_front_keeps_order_and_entries() {
        let (head, rest) = Span::Range(0..10).split_front(4);
        assert_eq!((head, rest), (Span::Range(0..4), Some(Span::Range(4..10))));
        let (head, rest) = Span::List {
            indices: vec![5, 6, 7, 8],
            start: 1,
        }
        .split_front(2);
        assert_eq!(
            head,
            Span::List {
                indices: vec![5, 6, 7],
                start: 1
            }
        );
        assert_eq!(
            rest,
            Some(Span::List {
                indices: vec![8],
                start: 0
            })
        );
        assert_eq!(Span::Range(0..3).split_front(4), (Span::Range(0..3), None));
    }

    #[test]
    fn writer_config_respects_window_group_and_bytes() {
        let serial = WriterConfig::new(1, 544, 16, false);
        assert_eq!((serial.batch, serial.group, serial.window), (1, 1, 1));
        let odd = WriterConfig::new(7, 544, 16, false);
        assert!(odd.group <= 7 && odd.batch <= 7 && odd.batch >= odd.group);
        let ttl = WriterConfig::new(1024, 544, 16, true);
        assert_eq!(ttl.group, 1);
        let huge = WriterConfig::new(1024, 64 << 20, 16, false);
        assert_eq!(
            (huge.group, huge.batch),
            (1, 1),
            "64 MiB values go one per command"
        );
    }
}

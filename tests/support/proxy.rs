//! A fault-injecting TCP proxy the tests put between cachefill and a real server: it
//! forwards both directions and, on command while it runs, delays every chunk, caps the
//! bandwidth, stops forwarding without closing anything (a partition) and heals, resets
//! every connection after a number of bytes, or closes the connections that come right
//! after a reset (a server restarting).
//!
//! Plain threads, two per connection (one per direction): a thread that holds a chunk
//! during a partition stops reading, so the kernel buffers behind it fill up as they would
//! on a dead link.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::Duration;

use super::{RedisServer, TargetBuilder};

/// Largest chunk one direction of a connection reads and forwards at once.
const CHUNK_BYTES: usize = 64 << 10;

/// A proxy on a free loopback port forwarding to one server; its connections are closed
/// when it is dropped.
pub struct Proxy {
    shared: Arc<Shared>,
    /// The port it listens on.
    pub port: u16,
}

/// The controls and counters, shared by the proxy's handle and its threads.
struct Shared {
    upstream: SocketAddr,
    /// Added before every chunk is forwarded, in microseconds.
    delay_micros: AtomicU64,
    /// Bytes per second each direction of each connection may carry; 0: no cap.
    bytes_per_second: AtomicU64,
    /// Bytes a connection forwards to the server before it is reset; 0: never.
    reset_after: AtomicU64,
    /// Connections to close at once after each reset.
    refuse_after_reset: AtomicU64,
    /// Connections still to close at once.
    refusing: AtomicU64,
    refused: AtomicU64,
    partitioned: Mutex<bool>,
    /// Notified when the partition heals, a connection is reset or the proxy closes.
    changed: Condvar,
    accepted: AtomicU64,
    resets: AtomicU64,
    closing: AtomicBool,
    links: Mutex<Vec<Weak<Link>>>,
}

/// One client connection and its connection to the server.
struct Link {
    client: TcpStream,
    server: TcpStream,
    /// Bytes forwarded from the client to the server.
    forwarded: AtomicU64,
    /// Set when the proxy resets the connection: nothing more is forwarded, nor closed
    /// gracefully.
    reset: AtomicBool,
}

impl Proxy {
    /// A proxy to `server`.
    pub fn to(server: &RedisServer) -> Proxy {
        Proxy::start(([127, 0, 0, 1], server.port).into())
    }

    /// A proxy to `upstream`, accepting connections at once.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            delay_micros: AtomicU64::new(0),
            bytes_per_second: AtomicU64::new(0),
            reset_after: AtomicU64::new(0),
            refuse_after_reset: AtomicU64::new(0),
            refusing: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            partitioned: Mutex::new(false),
            changed: Condvar::new(),
            accepted: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            links: Mutex::new(Vec::new()),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept(&accepting, &listener));
        Proxy { shared, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A standalone target `main` on the proxy for a plan.
    pub fn target(&self) -> TargetBuilder {
        TargetBuilder::standalone("main", &self.addr())
    }

    /// Waits `delay` before forwarding each chunk (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_micros.store(micros, SeqCst);
    }

    /// Caps each direction of each connection at `bytes_per_second` (`None`: no cap).
    pub fn set_bandwidth(&self, bytes_per_second: Option<u64>) {
        let cap = bytes_per_second.map_or(0, |b| b.max(1));
        self.shared.bytes_per_second.store(cap, SeqCst);
    }

    /// Resets every connection (RST to both ends) once it has forwarded `bytes` to the
    /// server, the last chunk cut at that byte (`None`: never). New connections count from
    /// zero.
    pub fn reset_after(&self, bytes: Option<u64>) {
        self.shared
            .reset_after
            .store(bytes.map_or(0, |b| b.max(1)), SeqCst);
    }

    /// After each reset, closes the next `connections` connections as soon as they are
    /// accepted (RST), as a restarting server refuses them.
    pub fn refuse_after_reset(&self, connections: u64) {
        self.shared.refuse_after_reset.store(connections, SeqCst);
    }

    /// Stops forwarding in both directions without closing anything: what is read is held,
    /// new connections are accepted but get nothing through.
    pub fn partition(&self) {
        *self.shared.partition_state() = true;
    }

    /// Ends a partition: forwarding resumes, what was held first.
    pub fn heal(&self) {
        *self.shared.partition_state() = false;
        self.shared.changed.notify_all();
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(SeqCst)
    }

    /// Connections reset so far.
    pub fn resets(&self) -> u64 {
        self.shared.resets.load(SeqCst)
    }

    /// Connections closed as soon as accepted so far (see [`Proxy::refuse_after_reset`]).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, SeqCst);
        self.heal();
        for link in self.shared.live_links() {
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.server.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread, which then sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

impl Shared {
    fn partition_state(&self) -> MutexGuard<'_, bool> {
        self.partitioned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live_links(&self) -> Vec<Arc<Link>> {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|link| link.strong_count() > 0);
        links.iter().filter_map(Weak::upgrade).collect()
    }

    /// Waits while the link is partitioned (and neither reset nor closing).
    fn wait_until_healed(&self, link: &Link) {
        let mut partitioned = self.partition_state();
        while *partitioned && !link.reset.load(SeqCst) && !self.closing.load(SeqCst) {
            partitioned = self
                .changed
                .wait(partitioned)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// How much one direction reads at once: small enough under a bandwidth cap that each
    /// pause stays short.
    fn chunk_len(&self) -> usize {
        match self.bytes_per_second.load(SeqCst) {
            0 => CHUNK_BYTES,
            cap => usize::try_from(cap / 50)
                .unwrap_or(CHUNK_BYTES)
                .clamp(1, CHUNK_BYTES),
        }
    }

    /// The link's faults before `bytes` go through: the added delay, and the time the
    /// bandwidth cap gives them.
    fn pace(&self, bytes: usize) {
        let capped = (bytes as u64 * 1_000_000)
            .checked_div(self.bytes_per_second.load(SeqCst))
            .unwrap_or(0);
        let micros = self.delay_micros.load(SeqCst) + capped;
        if micros > 0 {
            thread::sleep(Duration::from_micros(micros));
        }
    }

    /// Resets `link`: both of its sockets are closed with a zero linger time, which sends
    /// RST, once its two threads have let go of it.
    fn reset(&self, link: &Link) {
        self.resets.fetch_add(1, SeqCst);
        self.refusing
            .store(self.refuse_after_reset.load(SeqCst), SeqCst);
        link.reset.store(true, SeqCst);
        for socket in [&link.client, &link.server] {
            zero_linger(socket);
            // Wakes the other direction's thread from its read without sending anything.
            let _ = socket.shutdown(Shutdown::Read);
        }
        self.changed.notify_all();
    }
}

fn accept(shared: &Arc<Shared>, listener: &TcpListener) {
    for client in listener.incoming() {
        if shared.closing.load(SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, SeqCst);
        let refuse = shared
            .refusing
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            shared.refused.fetch_add(1, SeqCst);
            zero_linger(&client);
            continue;
        }
        // A server that is down: the client sees its connection closed.
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let link = Arc::new(Link {
            client,
            server,
            forwarded: AtomicU64::new(0),
            reset: AtomicBool::new(false),
        });
        shared
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&link));
        for to_server in [true, false] {
            let (shared, link) = (Arc::clone(shared), Arc::clone(&link));
            thread::spawn(move || forward(&shared, &link, to_server));
        }
    }
}

/// Forwards one direction of `link` until either end closes it or the proxy resets it.
fn forward(shared: &Shared, link: &Link, to_server: bool) {
    let (mut from, mut to) = if to_server {
        (&link.client, &link.server)
    } else {
        (&link.server, &link.client)
    };
    let mut buf = vec![0u8; CHUNK_BYTES];
    let ended = loop {
        let read = from.read(&mut buf[..shared.chunk_len()]);
        if link.reset.load(SeqCst) || shared.closing.load(SeqCst) {
            return;
        }
        let n = match read {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        shared.wait_until_healed(link);
        if link.reset.load(SeqCst) || shared.closing.load(SeqCst) {
            return;
        }
        shared.pace(n);
        let (len, reset_now) = if to_server {
            cut_at_reset(shared, link, n)
        } else {
            (n, false)
        };
        if let Err(e) = to.write_all(&buf[..len]) {
            break Err(e);
        }
        if reset_now {
            shared.reset(link);
            return;
        }
    };
    match ended {
        // The end closed its side: pass the close on, the other direction goes on.
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        // Broken: break the other end too.
        Err(_) => {
            let _ = link.client.shutdown(Shutdown::Both);
            let _ = link.server.shutdown(Shutdown::Both);
        }
    }
}

/// How much of a chunk of `n` bytes to forward to the server, and whether the connection
/// is to be reset after it.
fn cut_at_reset(shared: &Shared, link: &Link, n: usize) -> (usize, bool) {
    let before = link.forwarded.fetch_add(n as u64, SeqCst);
    match shared.reset_after.load(SeqCst) {
        0 => (n, false),
        limit if before + n as u64 >= limit => {
            let len = usize::try_from(limit.saturating_sub(before)).unwrap_or(n);
            (len.min(n), true)
        }
        _ => (n, false),
    }
}

/// `SO_LINGER` with a zero time: closing the socket sends RST instead of FIN.
fn zero_linger(socket: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this proxy owns, with a pointer to a live `linger` of
    // the size passed.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0, "SO_LINGER: {}", io::Error::last_os_error());
}

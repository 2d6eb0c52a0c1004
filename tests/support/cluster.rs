//! A Redis Cluster of real servers for one test, formed with `redis-cli --cluster create`.

use std::process::Command;
use std::time::Duration;

use super::{RedisServer, TargetBuilder, require, wait_until};

/// A Redis Cluster of real servers; its servers are killed when dropped.
pub struct RedisCluster {
    /// Primaries first (as created), then replicas.
    pub servers: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts `primaries × (1 + replicas)` servers and forms them into a cluster.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        require("redis-cli");
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            // Shorter than the launcher's: the failover tests wait for a replica to take over.
            // Not much shorter: on a busy machine a primary that misses the other nodes'
            // pings for this long is failed over too, losing what it had not replicated.
            "--cluster-node-timeout",
            "5000",
            // No diskless-sync delay: replicas are in sync (and able to take over) at once.
            "--repl-diskless-sync-delay",
            "0",
        ];
        let servers: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| RedisServer::start(&args))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(servers.iter().map(RedisServer::addr))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = RedisCluster { servers };
        wait_until(
            "the cluster is ok on every node",
            Duration::from_secs(30),
            || {
                cluster.servers.iter().all(|s| {
                    let info: String = redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query(&mut s.connect())
                        .unwrap_or_default();
                    info.contains("cluster_state:ok")
                })
            },
        );
        wait_until("every replica is in sync", Duration::from_secs(30), || {
            cluster.servers.iter().all(|s| {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut s.connect())
                    .unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            })
        });
        cluster
    }

    /// A cluster target `main` for a plan, with only the first node as its seed.
    pub fn target(&self) -> TargetBuilder {
        TargetBuilder::cluster("main", &[self.servers[0].addr()])
    }

    /// The servers that are primaries now, with their slot counts.
    pub fn primaries(&self) -> Vec<(&RedisServer, u64)> {
        self.servers
            .iter()
            .filter_map(|s| {
                let mut conn = redis::Client::open(format!("redis://{}/", s.addr()))
                    .ok()?
                    .get_connection()
                    .ok()?;
                let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn).ok()?;
                if !matches!(&role[0], redis::Value::BulkString(b) if b == b"master") {
                    return None;
                }
                let slots = own_slots(&mut conn)?
                    .iter()
                    .map(|(a, b)| u64::from(b - a + 1))
                    .sum();
                Some((s, slots))
            })
            .collect()
    }

    /// The XOR of the primaries' `DEBUG DIGEST`s. Redis XORs the digests of the keys into a
    /// server's digest (after mixing in the database number), so with an odd number of
    /// primaries this equals the digest of one server holding the same keys and values.
    pub fn digest_xor(&self) -> String {
        let primaries = self.primaries();
        assert!(
            primaries.len() % 2 == 1,
            "digest_xor needs an odd number of primaries"
        );
        let mut xor = [0u8; 20];
        for (server, _) in primaries {
            let digest = server.digest();
            for (i, byte) in xor.iter_mut().enumerate() {
                *byte ^= u8::from_str_radix(&digest[2 * i..2 * i + 2], 16).unwrap();
            }
        }
        xor.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Moves `slots` slots from server `from` to server `to` (keys migrate while writes go
    /// on); panics when it fails.
    pub fn reshard(&self, from: usize, to: usize, slots: u32) {
        let addr = |i: usize| self.servers[i].addr();
        reshard(&addr(0), &addr(from), &addr(to), slots);
    }

    /// The index in `servers` of a primary that is not the seed node.
    pub fn a_primary(&self) -> usize {
        let primaries: Vec<u16> = self.primaries().iter().map(|(s, _)| s.port).collect();
        let seed = self.servers[0].port;
        self.servers
            .iter()
            .position(|s| s.port != seed && primaries.contains(&s.port))
            .expect("a primary other than the seed node")
    }

    /// Waits (at most 30 s) until the replica of `servers[primary]` has applied everything
    /// its primary sent it: a primary killed then loses nothing its replica lacks.
    pub fn await_replica_of(&self, primary: usize) {
        let replica = self.replica_of(primary);
        wait_until(
            "the replica holds what its primary holds",
            Duration::from_secs(30),
            || {
                let sent = replication_offset(&self.servers[primary], "master_repl_offset");
                sent.is_some()
                    && sent == replication_offset(&self.servers[replica], "slave_repl_offset")
            },
        );
    }

    /// The index in `servers` of a replica of `servers[primary]`.
    pub fn replica_of(&self, primary: usize) -> usize {
        let port = self.servers[primary].port;
        self.servers
            .iter()
            .position(|s| {
                let role: Vec<redis::Value> = redis::cmd("ROLE")
                    .query(&mut s.connect())
                    .unwrap_or_default();
                matches!(role.as_slice(), [redis::Value::BulkString(r), _, redis::Value::Int(p), ..]
                    if r == b"slave" && *p == i64::from(port))
            })
            .expect("the primary has a replica")
    }

    /// Kills (SIGKILL) a primary that is not the seed node, so that one of its replicas
    /// takes over.
    pub fn kill_a_primary(&mut self) {
        let victim = self.a_primary();
        self.servers[victim].kill();
    }

    /// Empties every primary (`FLUSHALL`), as a test does between rounds on one cluster.
    pub fn flush(&self) {
        for (server, _) in self.primaries() {
            redis::cmd("FLUSHALL").exec(&mut server.connect()).unwrap();
        }
        assert_eq!(self.total_keys(), 0);
    }

    /// Sum of DBSIZE over the primaries.
    pub fn total_keys(&self) -> u64 {
        self.primaries().iter().map(|(s, _)| s.dbsize()).sum()
    }

    /// Where each slot is served now, with a connection to each primary.
    pub fn routes(&self) -> Routes<'_> {
        let mut routes = Routes {
            ranges: Vec::new(),
            primaries: Vec::new(),
        };
        for (server, _) in self.primaries() {
            let mut conn = server.connect();
            for (first, last) in own_slots(&mut conn).unwrap_or_default() {
                routes.ranges.push((first, last, routes.primaries.len()));
            }
            routes.primaries.push((server, conn));
        }
        routes
    }
}

/// The slot map of a cluster at one moment, for reading and breaking keys where they live.
pub struct Routes<'a> {
    /// (first slot, last slot, index into `primaries`).
    ranges: Vec<(u16, u16, usize)>,
    primaries: Vec<(&'a RedisServer, redis::Connection)>,
}

impl Routes<'_> {
    fn index(&self, key: &[u8]) -> usize {
        // The crate's own slot function: the one cachefill routes its writes with.
        let slot = cachefill::__private::slot(key);
        self.ranges
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, i)| *i)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// The primary serving `key`.
    pub fn server_for(&self, key: &[u8]) -> &RedisServer {
        self.primaries[self.index(key)].0
    }

    /// A connection to the primary serving `key`.
    pub fn conn_for(&mut self, key: &[u8]) -> &mut redis::Connection {
        let index = self.index(key);
        &mut self.primaries[index].1
    }

    /// The value of `key`, read from the primary of its slot.
    pub fn get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        redis::cmd("GET")
            .arg(key)
            .query(self.conn_for(key))
            .unwrap()
    }
}

/// Moves `slots` slots from the primary at `from` to the one at `to` with Debian's
/// `redis-cli --cluster reshard` through `seed` (it also drives Redis 6.2 and Valkey 9
/// clusters); panics when it fails.
pub fn reshard(seed: &str, from: &str, to: &str, slots: u32) {
    let id = |addr: &str| -> String {
        let mut conn = redis::Client::open(format!("redis://{addr}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut conn).unwrap()
    };
    reshard_nodes(&[], seed, &id(from), &id(to), slots);
}

/// Moves `slots` slots from node id `from` to node id `to` with `redis-cli --cluster
/// reshard` through `seed`, `cli_args` (e.g. TLS options) first; panics when it fails.
pub fn reshard_nodes(cli_args: &[String], seed: &str, from: &str, to: &str, slots: u32) {
    require("redis-cli");
    let reshard = Command::new("redis-cli")
        .args(cli_args)
        .args(["--cluster", "reshard", seed])
        .args(["--cluster-from", from, "--cluster-to", to])
        .args(["--cluster-slots", &slots.to_string(), "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        reshard.status.success(),
        "reshard failed: {}",
        String::from_utf8_lossy(&reshard.stdout)
    );
}

/// The slot ranges the node behind `conn` serves, from its own line of `CLUSTER NODES`.
pub fn own_slots(conn: &mut redis::Connection) -> Option<Vec<(u16, u16)>> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(conn).ok()?;
    let line = nodes.lines().find(|l| l.contains("myself"))?;
    let ranges = line
        .split_whitespace()
        .skip(8)
        // `[slot->-node]` entries are slots migrating or importing, not served.
        .filter(|r| !r.starts_with('['))
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|s| (s, s)),
        })
        .collect();
    Some(ranges)
}

/// The replication offset `server` has reached (`master_repl_offset` on a primary,
/// `slave_repl_offset` on a replica).
pub fn replication_offset(server: &RedisServer, field: &str) -> Option<u64> {
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut server.connect())
        .ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|offset| offset.trim().parse().ok())
}

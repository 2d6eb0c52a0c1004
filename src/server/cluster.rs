//! Cluster topology: which primary serves which hash slot, read with `CLUSTER SHARDS`
//! (or `CLUSTER SLOTS` on servers before 7.0) from the first seed node that answers, and the
//! wait, after a primary is lost, for the cluster to give its slots to a replica.

use std::time::{Duration, Instant};

use redis::Value;

use super::connector::{Connector, TargetError};
use super::control::is_refusal;
use super::value::{int, items, text};
use crate::plan::NodeAddr;
use crate::slot::SLOTS;

/// One node of a cluster as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClusterNode {
    /// Node id.
    pub id: String,
    /// Where it is reached: its announced connector.
    pub addr: NodeAddr,
}

/// The slot map of a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// The primaries that serve slots.
    pub primaries: Vec<ClusterNode>,
    /// Their replicas (not written to).
    pub replicas: Vec<ClusterNode>,
    /// For each slot, the index of its primary in `primaries`.
    pub owner: Vec<Option<usize>>,
}

impl Topology {
    /// True when every slot is served and `addr` is not among the primaries: a replica (or
    /// another primary) took over what `addr` served.
    pub(crate) fn replaced(&self, addr: &NodeAddr) -> bool {
        self.uncovered().is_none() && !self.primaries.iter().any(|p| p.addr == *addr)
    }

    /// Number of slots primary `index` serves.
    pub(crate) fn slot_count(&self, index: usize) -> u32 {
        self.owner.iter().filter(|o| **o == Some(index)).count() as u32
    }

    /// Slot ranges no primary serves, as "0-5460, 10923".
    pub(crate) fn uncovered(&self) -> Option<String> {
        ranges(self.owner.iter().map(Option::is_none))
    }
}

/// Ranges of the slots for which `flags` is true, e.g. "0-5460, 10923".
pub(crate) fn ranges(flags: impl Iterator<Item = bool>) -> Option<String> {
    let mut out = Vec::new();
    let mut start = None;
    for (slot, set) in flags.chain(std::iter::once(false)).enumerate() {
        match (set, start) {
            (true, None) => start = Some(slot),
            (false, Some(s)) => {
                out.push(if s + 1 == slot {
                    s.to_string()
                } else {
                    format!("{s}-{}", slot - 1)
                });
                start = None;
            }
            _ => {}
        }
    }
    (!out.is_empty()).then(|| out.join(", "))
}

/// How often a wait for a lost primary's successor reads the topology.
const SUCCESSOR_POLL: Duration = Duration::from_millis(250);

/// What became of a primary its connections lost.
pub(crate) enum LostPrimary {
    /// The cluster gave all of its slots to other nodes (a replica took over): the
    /// topology then.
    Replaced(Topology),
    /// It answers again at its address as another process (a new `run_id`) and the
    /// primary of its slots: restarted in place (its supervisor started it again before
    /// the cluster failed it over).
    Back,
}

/// Waits, up to the target's `failover_timeout`, for the cluster to give all of `lost`'s
/// slots to other nodes (a replica took over), reading the topology from `seeds()` every
/// 250 ms: the topology then, or `None` when the time ran out or `stop()` turned true.
/// Verify's wait for a successor.
pub(crate) async fn successor_topology(
    connector: &Connector,
    lost: &NodeAddr,
    seeds: impl FnMut() -> Vec<NodeAddr>,
    stop: impl Fn() -> bool,
) -> Option<Topology> {
    match wait_for_lost(connector, lost, seeds, stop, false).await {
        Some(LostPrimary::Replaced(topology)) => Some(topology),
        _ => None,
    }
}

/// [`successor_topology`], or `lost` itself answering again as the primary of its slots,
/// whichever comes first: the fill's wait for a lost primary.
pub(crate) async fn successor_or_return(
    connector: &Connector,
    lost: &NodeAddr,
    seeds: impl FnMut() -> Vec<NodeAddr>,
    stop: impl Fn() -> bool,
) -> Option<LostPrimary> {
    wait_for_lost(connector, lost, seeds, stop, true).await
}

async fn wait_for_lost(
    connector: &Connector,
    lost: &NodeAddr,
    mut seeds: impl FnMut() -> Vec<NodeAddr>,
    stop: impl Fn() -> bool,
    back_counts: bool,
) -> Option<LostPrimary> {
    let deadline = Instant::now() + connector.failover_timeout;
    loop {
        if stop() {
            return None;
        }
        if let Ok(topology) = discover(connector, &seeds()).await
            && topology.replaced(lost)
        {
            return Some(LostPrimary::Replaced(topology));
        }
        if back_counts && restarted_in_place(connector, lost).await {
            return Some(LostPrimary::Back);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(SUCCESSOR_POLL).await;
    }
}

/// True when `node` answers as another process than the one the stage's data connections
/// met there last (a new `run_id`) and, by its own slot map, is a primary serving slots.
/// The same process answering again is no restart: its connections broke for a reason a
/// reconnection did not cure, and reconnecting for ever is no answer (a server that closes
/// every connection would be tried without end).
async fn restarted_in_place(connector: &Connector, node: &NodeAddr) -> bool {
    let Ok((_, Some(run_id))) = connector.data_identified(node).await else {
        return false;
    };
    if connector
        .known_run_id(node)
        .is_none_or(|known| known == run_id)
    {
        return false;
    }
    matches!(
        discover(connector, std::slice::from_ref(node)).await,
        Ok(topology) if topology
            .primaries
            .iter()
            .position(|p| p.addr == *node)
            .is_some_and(|index| topology.slot_count(index) > 0)
    )
}

/// Reads the topology from the first seed that answers. Seeds that are down are skipped.
pub(crate) async fn discover(
    connector: &Connector,
    seeds: &[NodeAddr],
) -> Result<Topology, TargetError> {
    let mut errors = Vec::new();
    for seed in seeds {
        let mut control = match connector.control(seed).await {
            Ok(control) => control,
            Err(e) => {
                errors.push(e.0);
                continue;
            }
        };
        let shards = control.query(redis::cmd("CLUSTER").arg("SHARDS")).await;
        let parsed = match shards {
            Ok(value) => parse_shards(&value, seed, connector.tls.is_some()),
            // Servers before 7.0 refuse CLUSTER SHARDS; a broken connection is no refusal.
            Err(e) if !is_refusal(&e) => Err(TargetError(format!(
                "CLUSTER SHARDS failed: {}",
                control.explain(&e)
            ))),
            Err(_) => match control.query(redis::cmd("CLUSTER").arg("SLOTS")).await {
                Ok(value) => parse_slots(&value, seed),
                Err(e) => Err(TargetError(format!(
                    "CLUSTER SLOTS failed: {}",
                    control.explain(&e)
                ))),
            },
        };
        match parsed {
            Ok(topology) if !topology.primaries.is_empty() => return Ok(topology),
            Ok(_) => errors.push(format!(
                "target \"{}\" ({seed}): the node serves no slots; is it part of a formed cluster?",
                connector.name
            )),
            Err(e) => errors.push(format!("target \"{}\" ({seed}): {e}", connector.name)),
        }
    }
    Err(TargetError(match errors.len() {
        1 => errors.remove(0),
        _ => format!("no seed node answered: {}", errors.join("; ")),
    }))
}

/// A field of a RESP2 flat key/value array or a RESP3 map.
fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        Value::Array(items) => items
            .chunks(2)
            .find(|pair| pair.len() == 2 && text(&pair[0]).as_deref() == Some(name))
            .map(|pair| &pair[1]),
        _ => None,
    }
}

/// The address a node announces; `?` or empty means "the address you reached me on".
fn announced(host: Option<String>, port: Option<i64>, seed: &NodeAddr) -> Option<NodeAddr> {
    let host = match host {
        Some(h) if !h.is_empty() && h != "?" => h,
        _ => seed.host.clone(),
    };
    let port = u16::try_from(port?).ok().filter(|p| *p != 0)?;
    Some(NodeAddr { host, port })
}

fn parse_shards(value: &Value, seed: &NodeAddr, tls: bool) -> Result<Topology, TargetError> {
    let mut topology = Topology {
        primaries: Vec::new(),
        replicas: Vec::new(),
        owner: vec![None; usize::from(SLOTS)],
    };
    for shard in items(value).unwrap_or_default() {
        let slots: Vec<i64> = field(shard, "slots")
            .and_then(items)
            .unwrap_or(&[])
            .iter()
            .filter_map(int)
            .collect();
        let mut primary = None;
        for node in field(shard, "nodes").and_then(items).unwrap_or(&[]) {
            if field(node, "health")
                .and_then(text)
                .is_some_and(|h| h != "online")
            {
                continue;
            }
            let host = field(node, "endpoint")
                .and_then(text)
                .or_else(|| field(node, "ip").and_then(text));
            let Some(addr) = announced(host, port_of(node, tls), seed) else {
                continue;
            };
            let node_info = ClusterNode {
                id: field(node, "id").and_then(text).unwrap_or_default(),
                addr,
            };
            match field(node, "role").and_then(text).as_deref() {
                Some("master") | Some("primary") => primary = Some(node_info),
                _ => topology.replicas.push(node_info),
            }
        }
        if let Some(primary) = primary
            && !slots.is_empty()
        {
            let index = topology.primaries.len();
            topology.primaries.push(primary);
            for range in slots.chunks(2) {
                let (start, end) = (range[0], *range.get(1).unwrap_or(&range[0]));
                for slot in start.max(0)..=end.min(i64::from(SLOTS) - 1) {
                    topology.owner[slot as usize] = Some(index);
                }
            }
        }
    }
    Ok(topology)
}

/// The port of a node: its TLS port when the target speaks TLS and the node has one.
fn port_of(node: &Value, tls: bool) -> Option<i64> {
    let tls_port = field(node, "tls-port").and_then(int).filter(|p| *p != 0);
    match tls_port {
        Some(port) if tls => Some(port),
        _ => field(node, "port").and_then(int),
    }
}

fn parse_slots(value: &Value, seed: &NodeAddr) -> Result<Topology, TargetError> {
    let mut topology = Topology {
        primaries: Vec::new(),
        replicas: Vec::new(),
        owner: vec![None; usize::from(SLOTS)],
    };
    for range in items(value).unwrap_or_default() {
        let parts = items(range).unwrap_or_default();
        if parts.len() < 3 {
            return Err(TargetError("CLUSTER SLOTS gave a malformed reply".into()));
        }
        let (Some(start), Some(end)) = (int(&parts[0]), int(&parts[1])) else {
            return Err(TargetError(
                "CLUSTER SLOTS gave a malformed slot range".into(),
            ));
        };
        let node = |value: &Value| {
            let fields = items(value).unwrap_or_default();
            let addr = announced(
                fields.first().and_then(text),
                fields.get(1).and_then(int),
                seed,
            )?;
            Some(ClusterNode {
                id: fields.get(2).and_then(text).unwrap_or_default(),
                addr,
            })
        };
        let Some(primary) = node(&parts[2]) else {
            continue;
        };
        let index = match topology
            .primaries
            .iter()
            .position(|p| p.addr == primary.addr)
        {
            Some(i) => i,
            None => {
                topology.primaries.push(primary);
                topology.primaries.len() - 1
            }
        };
        for replica in parts[3..].iter().filter_map(node) {
            if !topology.replicas.contains(&replica) {
                topology.replicas.push(replica);
            }
        }
        for slot in start.max(0)..=end.min(i64::from(SLOTS) - 1) {
            topology.owner[slot as usize] = Some(index);
        }
    }
    Ok(topology)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn shards_reply_gives_primaries_replicas_and_slots() {
        let node = |id: &str, port: i64, role: &str| {
            Value::Array(vec![
                bulk("id"),
                bulk(id),
                bulk("port"),
                Value::Int(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("endpoint"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk("online"),
            ])
        };
        let shard = |slots: Vec<i64>, nodes: Vec<Value>| {
            Value::Array(vec![
                bulk("slots"),
                Value::Array(slots.into_iter().map(Value::Int).collect()),
                bulk("nodes"),
                Value::Array(nodes),
            ])
        };
        let reply = Value::Array(vec![
            shard(
                vec![0, 8191],
                vec![node("a", 7000, "master"), node("b", 7002, "replica")],
            ),
            shard(
                vec![8192, 16000, 16001, 16383],
                vec![node("c", 7001, "master")],
            ),
        ]);
        let seed = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7000,
        };
        let topology = parse_shards(&reply, &seed, false).unwrap();
        assert_eq!(topology.primaries.len(), 2);
        assert_eq!(topology.replicas.len(), 1);
        assert_eq!(topology.slot_count(0), 8192);
        assert_eq!(topology.slot_count(1), 8192);
        assert_eq!(topology.uncovered(), None);
        assert_eq!(
            ranges(topology.owner.iter().map(|o| *o == Some(1))).as_deref(),
            Some("8192-16383")
        );
    }

    #[test]
    fn uncovered_slots_are_listed_as_ranges() {
        let mut owner = vec![Some(0); usize::from(SLOTS)];
        owner[5] = None;
        owner[100..200].fill(None);
        let topology = Topology {
            primaries: Vec::new(),
            replicas: Vec::new(),
            owner,
        };
        assert_eq!(topology.uncovered().as_deref(), Some("5, 100-199"));
    }
}

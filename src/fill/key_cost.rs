//! What a key of a stage costs the server: after the stage, up to 100 of its keys spread
//! over what was written are sampled with `MEMORY USAGE` and `OBJECT ENCODING`, so the
//! result says bytes per key and the encodings (listpack, hashtable, skiplist, quicklist,
//! intset, embstr, raw, stream …) the server chose for this shape.
//!
//! `MEMORY USAGE` walks a key's elements on the server's one thread, so a walk of a
//! million-member sorted set holds every other client for a quarter of a second. Each key is
//! measured from at most [`ELEMENTS_WALKED`] of its elements: exactly for a key with no more
//! (the walk ends at the last element, as `SAMPLES 0` would), estimated from that many for a
//! larger one (Redis scales their mean by the element count).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::Value;

use super::state::StageState;
use super::targets::Route;
use crate::dataset::Dataset;
use crate::plan::NodeAddr;
use crate::result::KeyCost;
use crate::server::Connector;
use crate::server::cluster::discover;
use crate::server::value::{Detour, detour};
use crate::slot::slot;

/// Keys sampled per stage, at most.
const SAMPLE: u64 = 100;

/// Elements (a list's: nodes) `MEMORY USAGE` walks per key, at most: its `SAMPLES`.
/// A million-member sorted set took 0.24 s with `SAMPLES 0` and under 1 ms with this,
/// estimated within 0.03 % (docs/cli-and-result.md).
pub(super) const ELEMENTS_WALKED: u32 = 4096;

/// The longest one round trip of the sample may take. The sample is nice to have: a
/// primary gone silent (paused, even once its replica took over its slots) leaves the
/// record `null` instead of holding the stage's end for its `io_timeout`.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(5);

/// Keys measured per round trip: the server answers other clients between round trips, so
/// the sample never holds it for more than ten keys' walks at once.
const KEYS_PER_ROUND_TRIP: usize = 10;

/// Samples the stage's written keys; `None` when nothing was written or the server refused
/// the commands (an ACL user without `MEMORY` or `OBJECT`).
pub(super) async fn sample(
    connector: &Connector,
    route: &Route,
    dataset: &Dataset,
    state: &StageState,
) -> Option<KeyCost> {
    let written = state.handed_out();
    if written == 0 || state.acked.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        return None;
    }
    let count = written.min(SAMPLE);
    // The slot map now, not the stage's first: after a failover the lost primary's keys are
    // on its successor (a replica then, so among the nodes the stage knew).
    let current = match route {
        Route::Standalone(_) => None,
        Route::Cluster(topology) => {
            let seeds: Vec<NodeAddr> = topology
                .primaries
                .iter()
                .chain(&topology.replicas)
                .map(|n| n.addr.clone())
                .collect();
            discover(connector, &seeds).await.ok()
        }
    };
    // Sampled keys grouped by the server that holds them.
    let mut by_node: BTreeMap<String, (NodeAddr, Vec<Vec<u8>>)> = BTreeMap::new();
    for k in 0..count {
        let position = (u128::from(k) * u128::from(written) / u128::from(count)) as u64;
        let key = dataset.key(state.global(position));
        let addr = match route {
            Route::Standalone(addr) => addr.clone(),
            Route::Cluster(first) => {
                let topology = current.as_ref().unwrap_or(first);
                let owner = topology.owner[usize::from(slot(&key))]?;
                topology.primaries[owner].addr.clone()
            }
        };
        by_node
            .entry(addr.to_string())
            .or_insert_with(|| (addr, Vec::new()))
            .1
            .push(key);
    }
    let mut tally = Tally::default();
    // Keys whose slot moved since the stage read the slot map (a resharding during the
    // fill): measured where the cluster says, once.
    let mut detours: HashMap<Detour, Vec<Vec<u8>>> = HashMap::new();
    for (addr, keys) in by_node.into_values() {
        for (detour, key) in measure(connector, &addr, &keys, false, &mut tally).await? {
            detours.entry(detour).or_default().push(key);
        }
    }
    for ((addr, asking), keys) in detours {
        // Redirected again: the slots keep moving, and those keys stay out of the sample.
        measure(connector, &addr, &keys, asking, &mut tally).await?;
    }
    let Tally { sizes, encodings } = tally;
    let sampled = sizes.len() as u64;
    if sampled == 0 {
        return None;
    }
    Some(KeyCost {
        sampled_keys: sampled,
        mean_bytes: sizes.iter().sum::<u64>() / sampled,
        min_bytes: sizes.iter().copied().min().unwrap_or(0),
        max_bytes: sizes.iter().copied().max().unwrap_or(0),
        encodings,
    })
}

/// The sizes and encodings measured so far.
#[derive(Default)]
struct Tally {
    sizes: Vec<u64>,
    encodings: BTreeMap<String, u64>,
}

/// Measures `keys` on the server at `addr` (each command after `ASKING` when `asking`), ten
/// keys per round trip; returns the keys it redirected, or `None` when it refused the
/// commands or could not be reached.
async fn measure(
    connector: &Connector,
    addr: &NodeAddr,
    keys: &[Vec<u8>],
    asking: bool,
    tally: &mut Tally,
) -> Option<Vec<(Detour, Vec<u8>)>> {
    let control = connector.control(addr).await.ok()?;
    let mut connection = control.connection();
    let mut redirected = Vec::new();
    for round in keys.chunks(KEYS_PER_ROUND_TRIP) {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for key in round {
            if asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.cmd("MEMORY")
                .arg("USAGE")
                .arg(key)
                .arg("SAMPLES")
                .arg(ELEMENTS_WALKED);
            if asking {
                pipe.cmd("ASKING").ignore();
            }
            pipe.cmd("OBJECT").arg("ENCODING").arg(key);
        }
        let replies: Vec<Value> =
            tokio::time::timeout(ROUND_TRIP_LIMIT, pipe.query_async(&mut connection))
                .await
                .ok()?
                .ok()?;
        for (pair, key) in replies.chunks(2).zip(round) {
            let [usage, encoding] = pair else { continue };
            if let Some(detour) = detour(usage, addr) {
                redirected.push((detour, key.clone()));
                continue;
            }
            match (usage, encoding) {
                (Value::Int(bytes), encoding) => {
                    tally.sizes.push(u64::try_from(*bytes).unwrap_or(0));
                    if let Value::BulkString(name) = encoding {
                        *tally
                            .encodings
                            .entry(String::from_utf8_lossy(name).into_owned())
                            .or_default() += 1;
                    }
                }
                // Refused (NOPERM) or not a Redis answer: no record rather than a wrong one.
                (Value::ServerError(_), _) | (_, Value::ServerError(_)) => return None,
                // A key gone since (expired, evicted): not sampled.
                _ => {}
            }
        }
    }
    Some(redirected)
}

//! Recovery of a running stage: how it goes on, losing no write and applying none twice,
//! when a link breaks, a server restarts (a new `run_id`) or a cluster primary is lost.
//!
//! **Events, and where they are found.**
//! - *A link breaks*: a write or read fails, the server closes, or it stays silent for
//!   `io_timeout` with entries in flight (`Session::read_some`); or a new connection does
//!   not connect and log in within `connect_timeout`, or finish `LOADING` within
//!   `io_timeout` (`Connector::data_identified`). The session ends `SessionEnd::Lost`.
//! - *A restart*: every new data connection reads the `run_id` in its login (`INFO server`;
//!   none when `INFO` is refused, and then no restart is noticed). `restart_seen` calls
//!   `StageState::note_run_id` (standalone) or `note_node_run_id` (cluster primary), i.e.
//!   `Restarts::note`: restarted when the id differs from the one the stage saw there last
//!   (its first connection there: from the target's, `Connector::note_run_id`). Found once
//!   per stage and id: `restarts` += 1, and `after_restart` runs before the session.
//! - *A lost primary*: a primary's connection gives up (below), or, silent for
//!   `ASK_REPLACED_AFTER` (2 s), asks at most once a second per primary whether the other
//!   nodes gave all its slots away (`Router::replaced`); `is_replaced` then makes all its
//!   connections give up at once.
//! - *A primary restarted with its slots*: a restart on a `Feed::Node`, found when its
//!   connections reconnect in time or after `node_unreachable` saw it answer again (below).
//!   `recheck_restarted` checks (its own `discover`) that it serves every slot it had, else
//!   the stage fails (it lost `nodes.conf`), then waits for `cluster_state:ok`
//!   (`wait_until_serving`: `CLUSTER INFO` every 100 ms, up to `failover_timeout`).
//!
//! **A connection** (`connection_worker`): writing → broken → reconnecting → (re-checking)
//! → writing. What was unanswered goes to the next session (`Session::into_unanswered`):
//! strings and hash/set/zset commands as they were (applied twice, they change nothing);
//! each list or stream key in flight as one `Span::Resume` (`to_resumes`), its length
//! asked and only the rest written. A cluster string stage hands them back to the
//! primary's feed (`Router::hand_back`). Each attempt counts in `reconnects`, after 200,
//! 400, 800 ms; a 4th break without progress between (`MAX_RECONNECTS` = 3), a stopping
//! stage or a replaced primary ends the tries, and what the last session that sent
//! anything left unanswered is the doubt (an interrupt: at once, doubt `unacknowledged`):
//! - standalone: the doubt counts `unacknowledged`; the stage fails ("could not restore it
//!   in 3 attempts") unless another failure had stopped it;
//! - cluster: `Router::node_unreachable` (`failover.rs`), decided once for all the
//!   primary's connections: `successor_or_return` reads the map from the other nodes every
//!   250 ms, up to `failover_timeout`, until one lacks the primary, and asks the primary
//!   itself whether it is back as another process (a new `run_id`, `restarted_in_place`)
//!   serving its slots; the same process answering again is not enough (a server that
//!   closes every connection would be reconnected to for ever). A successor: `take_over` (`failovers` += 1)
//!   switches the slot map, retires the primary (its connections end), reroutes its queued
//!   strings and spawns the re-check; the stage does not finish while one runs
//!   (`recovering`). The primary back in place: `AfterLoss::Reconnect`, not kept as the
//!   decision (a later loss waits again); its connections start over, and the new `run_id`
//!   starts a restarted primary's re-check. Neither in time: the stage fails naming its
//!   slots, the doubt `unacknowledged`. A stopping stage: `AfterLoss::Stopping`, the doubt
//!   `unacknowledged`.
//!
//! **What is re-checked.**
//! - Standalone strings: `after_restart` asks `EXISTS` (1000 a round trip) for every entry
//!   handed out so far and sets again the missing ones, awaiting each `+OK`
//!   (`rewrite_missing`; every read within `io_timeout`). First, once per new `run_id`
//!   (`claim_earlier_recheck`), `recheck_earlier_stages` does so for the string stages that
//!   ended ok before; it fails the stage if one was typed or failed, or on a cluster.
//! - Standalone typed: the positions below `handed_out` at the note (`recheck_upto`) are
//!   pending; `Feed::next` hands each out once, before anything new, as a `Span::Resume`
//!   (`next_recheck`). Its count (`HLEN` `SCARD` `ZCARD` `LLEN` `XLEN`) comes back to
//!   `resume_answered`: `resume_from` goes on from the length for a list or stream, else
//!   writes the key whole unless complete; `rechecked_counted` takes its count back (it
//!   counts again once whole), a short one is `rewritten`. A connection back on the new
//!   process drops the keys below `recheck_upto` it held, but a re-check resume it took
//!   itself (`left_after_restart`): one writer per key.
//! - Restarted primary (`cluster_restart.rs`): a typed stage records its slots and `upto`
//!   (`note_restart`, `RestartScope`): keys its connections and queue skip (`rechecks`,
//!   `next_for`). The finding connection re-checks strings with `Router::recheck`, typed
//!   keys with `resume_restarted` (counts 1000 at a time, then the rest; `DEL` and whole
//!   for a key marked by `restart_key`).
//! - Failover (`cluster_recheck.rs`): the strings of the lost slots below `upto`, but those
//!   never queued to it (`not_queued_to`) and those drained, by `Router::recheck`
//!   (`EXISTS` on control connections, `SET` on data ones); typed keys go to their new
//!   owners as resumes (`hand_on`), their counts taken back (`take_back`) until whole
//!   there; a short one is `rewritten` (`handed_on_counted`). The result's `rewritten`: the
//!   stage's plus the router's.
//!
//! **A second restart; a re-check not done.** A new `run_id` during a standalone typed
//! re-check starts it over (`Restarts::note`: new `upto`, pending from 0, resumes in flight
//! forgotten). A re-check over its own connection (strings, a cluster primary) is not
//! retried: any error fails the stage ("… restarted … may have lost acknowledged writes").
//! Once all tasks ended, `give_up_rechecks` takes back each key still pending or whose
//! count never came (`in_doubt`: `acked`, `elements`, `bytes`), those that had counted
//! `unacknowledged`; `give_up_restarted` does so when a cluster re-check stops early.
//! `partial_keys`: typed keys half written when a connection stopped, or refused midway.
//!
//! **Files.**
//! - `restart.rs`: `Restarts`: the run_ids seen, the positions pending, resumes in flight.
//! - `recheck.rs`: `rewrite_missing`, `write_acknowledged`, `exchange` (over one stream).
//! - `cluster_restart.rs`: `note_restart`, `next_for`, `recheck_restarted` and its helpers.
//! - `cluster_recheck.rs`: `Router::recheck`, `hand_on`, `handed_on_counted`.
//! - `failover.rs`: `node_unreachable`, `replaced`, `take_over`.
//! - `reconnected.rs`: `restart_seen`, `after_restart`, `recheck_earlier_stages` (a
//!   connection that meets a restarted server).
//! - `reconnected.rs`: `restart_seen`, `after_restart`, `recheck_earlier_stages` (a
//!   connection that meets a restarted server).
//! - Callers: `connection.rs`, `session/`, `state.rs` (the re-check counts), `stage.rs`.

mod cluster_recheck;
mod cluster_restart;
mod failover;
pub(in crate::fill) mod recheck;
pub(in crate::fill) mod reconnected;
pub(in crate::fill) mod restart;

pub(in crate::fill) use failover::AfterLoss;

//! One running stage: its connections (per primary on a cluster), the router of a cluster
//! stage, the progress display, and the stage's report.

use super::error::StageError;
use super::until_memory;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;

use super::batching::WriterConfig;
use super::cluster::{NodeFeed, Router};
use super::connection::connection_worker;
use super::feed::Feed;
use super::key_cost;
use super::restoring::{self, Decision, Restoring};
use super::state::StageState;
use super::targets::Route;
use super::timeline::Recorder;
use crate::dataset::Dataset;
use crate::interrupt;
use crate::plan::units::human_bytes;
use crate::plan::{DataType, NodeAddr, Stage};
use crate::progress::StageProgress;
use crate::rdb::ServerEncoding;
use crate::resp::typed::Chunking;
use crate::result::{self, KeyCost, NodeKeys, Redirects, StageReport, Status, UntilMemoryReport};
use crate::server::{Connector, MemoryProbe, WrittenStage};
use crate::shard::Shard;

/// Everything one running stage needs.
pub(super) struct StageRun {
    pub stage: Stage,
    pub seed: u64,
    pub target_name: String,
    pub connector: Arc<Connector>,
    pub route: Route,
    pub display: StageProgress,
    pub shard: Shard,
    /// `until_memory`: the goal in bytes of `used_memory`, and how to read it.
    pub memory: Option<(u64, MemoryProbe)>,
    /// Where the stage's start and end are recorded.
    pub timeline: Arc<Recorder>,
    /// How the target's servers encode keys (`None`: not known alike for all of them).
    pub server: Option<ServerEncoding>,
    /// Whether the stage writes its typed keys as payloads: decided in `execute`.
    pub restore: Option<Restoring>,
}

/// Without bars, a stalled server is reported once it has been silent this long (or half
/// the `io_timeout`, when shorter).
const STALL_REPORT_AFTER: Duration = Duration::from_secs(5);

type Workers = JoinSet<Result<(), StageError>>;

/// What `drive` needs to open connections to primaries found during a cluster stage.
type ClusterDrive<'a> = (
    &'a Arc<Router>,
    tokio::sync::mpsc::UnboundedReceiver<Arc<NodeFeed>>,
    &'a Arc<Dataset>,
    WriterConfig,
);

impl StageRun {
    /// Runs the stage to its end (done, failed or interrupted) and reports it.
    pub(super) async fn execute(mut self) -> StageReport {
        let started_at = SystemTime::now();
        let clock = Instant::now();
        let dataset = Arc::new(Dataset::new(
            self.seed,
            &self.stage.name,
            &self.stage.shape,
            self.stage.keys,
        ));
        // `run` checked `write = "restore"` against the target before anything was written.
        self.restore = match restoring::decide(self.stage.write, &dataset, self.server) {
            Decision::Restore(restoring) => Some(restoring),
            Decision::Commands => None,
            Decision::Fallback(why) => {
                if self.connector.first_time(&why) {
                    self.display.note(&format!(
                        "target \"{}\": typed keys are written with commands, not as RESTORE payloads: {why}",
                        self.target_name
                    ));
                }
                None
            }
        };
        let stage = &self.stage;
        let state = Arc::new(StageState::new(
            stage.keys,
            self.shard,
            self.memory.is_some(),
        ));
        let typed = stage.shape.elemental.data_type != DataType::String;
        self.timeline.stage_started(&stage.name, &state, typed);
        let mut workers = Workers::new();
        if let Some((goal, probe)) = &self.memory {
            workers.spawn(until_memory::monitor(
                state.clone(),
                probe.clone(),
                *goal,
                stage.shape.mean_entry_bytes(),
            ));
        }

        let mut recovery = (0, 0);
        let (per_node, redirects) = match &self.route {
            Route::Standalone(addr) => {
                let config = match typed_config(stage, &dataset, self.restore) {
                    Some(config) => config,
                    None => WriterConfig::new(
                        stage.pipeline,
                        stage.shape.mean_entry_bytes(),
                        stage.keys_per_command,
                        stage.shape.ttl.is_some(),
                    ),
                };
                for _ in 0..stage.connections {
                    self.spawn_worker(&mut workers, addr, &state, &dataset, config, Feed::Stage);
                }
                self.drive(&mut workers, &state, clock, None).await;
                let keys = state.acked.load(Relaxed);
                (
                    vec![NodeKeys {
                        address: addr.to_string(),
                        keys,
                    }],
                    Redirects::default(),
                )
            }
            Route::Cluster(topology) => {
                // Keys of one MSET must share a slot: the router hands each primary its
                // entries by slot, and its connections group each slot's keys as a
                // standalone server's consecutive keys are grouped.
                let config = typed_config(stage, &dataset, self.restore).unwrap_or_else(|| {
                    WriterConfig::new(
                        stage.pipeline,
                        stage.shape.mean_entry_bytes(),
                        stage.keys_per_command,
                        stage.shape.ttl.is_some(),
                    )
                });
                let by_slot = !typed && config.group > 1;
                let capacity = (stage.pipeline as usize * stage.connections as usize * 2).max(4096);
                match Router::new(
                    state.clone(),
                    topology,
                    capacity,
                    self.connector.clone(),
                    dataset.clone(),
                    by_slot,
                ) {
                    Err(failure) => {
                        state.record_failure(failure.to_string());
                        (Vec::new(), Redirects::default())
                    }
                    Ok((router, new_nodes)) => {
                        for node in router.nodes() {
                            self.spawn_node(&mut workers, &node, &router, &state, &dataset, config);
                        }
                        let (routing, ds) = (router.clone(), dataset.clone());
                        workers.spawn(async move {
                            routing.route(&ds).await;
                            Ok(())
                        });
                        self.drive(
                            &mut workers,
                            &state,
                            clock,
                            Some((&router, new_nodes, &dataset, config)),
                        )
                        .await;
                        let per_node = router
                            .nodes()
                            .iter()
                            .map(|n| NodeKeys {
                                address: n.addr.to_string(),
                                keys: n.keys.load(Relaxed),
                            })
                            .collect();
                        recovery = (
                            router.failovers.load(Relaxed),
                            router.rewritten.load(Relaxed),
                        );
                        let redirects = Redirects {
                            moved: router.moved.load(Relaxed),
                            ask: router.ask.load(Relaxed),
                        };
                        (per_node, redirects)
                    }
                }
            }
        };
        let elapsed = clock.elapsed();
        // Every task of the stage has ended: its counters are final, once what a restart's
        // re-check left unchecked is taken back.
        state.give_up_rechecks(&dataset);
        self.timeline.stage_ended(&stage.name);
        let memory = if interrupt::requested() {
            None
        } else {
            key_cost::sample(&self.connector, &self.route, &dataset, &state).await
        };
        let mut report = self.report(&state, started_at, elapsed, per_node, redirects, memory);
        (report.failovers, report.rewritten) = recovery;
        report.rewritten += state.rewritten.load(Relaxed);
        report.restarts = state.restarts.load(Relaxed);
        if report.keys_written > 0 || report.partial_keys > 0 {
            // A string stage that ended ok wrote every entry of its range: a restart of the
            // server later in the run re-checks them.
            let recheckable = !typed && report.status == Status::Ok;
            self.connector.stage_written(WrittenStage {
                name: self.stage.name.clone(),
                entries: recheckable.then(|| (dataset.clone(), self.shard, state.planned())),
            });
        }
        if let Some((goal, probe)) = &self.memory {
            let used = probe.clone().used().await.ok();
            report.until_memory = Some(UntilMemoryReport {
                goal_bytes: *goal,
                used_memory: used,
            });
        }
        report
    }

    fn spawn_worker(
        &self,
        workers: &mut Workers,
        addr: &NodeAddr,
        state: &Arc<StageState>,
        dataset: &Arc<Dataset>,
        config: WriterConfig,
        feed: Feed,
    ) {
        workers.spawn(connection_worker(
            self.connector.clone(),
            addr.clone(),
            state.clone(),
            dataset.clone(),
            config,
            feed,
            self.restore,
        ));
    }

    fn spawn_node(
        &self,
        workers: &mut Workers,
        node: &Arc<NodeFeed>,
        router: &Arc<Router>,
        state: &Arc<StageState>,
        dataset: &Arc<Dataset>,
        config: WriterConfig,
    ) {
        for _ in 0..self.stage.connections {
            let feed = Feed::Node {
                node: node.clone(),
                router: router.clone(),
            };
            self.spawn_worker(workers, &node.addr, state, dataset, config, feed);
        }
    }

    /// Waits for every task of the stage, updating the display; on a cluster also opens
    /// connections to primaries that redirections reveal.
    async fn drive(
        &self,
        workers: &mut Workers,
        state: &Arc<StageState>,
        clock: Instant,
        mut cluster: Option<ClusterDrive<'_>>,
    ) {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        loop {
            let new_node = async {
                match cluster.as_mut() {
                    Some((_, receiver, _, _)) => receiver.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finished = workers.join_next() => {
                    match finished {
                        None => break,
                        Some(Ok(Ok(()))) => {}
                        Some(Ok(Err(failure))) => state.record_failure(failure.to_string()),
                        Some(Err(e)) => state.record_failure(format!("internal error: {e}")),
                    }
                    if let Some((router, ..)) = &cluster && state.should_stop() {
                        router.wake_all();
                    }
                }
                Some(node) = new_node => {
                    if let Some((router, _, dataset, config)) = &cluster {
                        self.spawn_node(workers, &node, router, state, dataset, *config);
                    }
                }
                _ = ticker.tick() => {
                    self.display.update(state.acked.load(Relaxed), state.bytes.load(Relaxed), clock.elapsed());
                    self.display.stalled(state.stalls.longest(), (self.connector.io_timeout / 2).min(STALL_REPORT_AFTER));
                    for note in state.take_notes() {
                        self.display.note(&format!("stage {}: {note}", self.stage.name));
                    }
                    if let Some(why) = self.connector.restore_warning_due() {
                        self.display.note(&format!(
                            "target \"{}\": the server refused a RESTORE payload ({why}); writing typed keys with commands (slower) from now on",
                            self.target_name
                        ));
                    }
                    if self.connector.mset_warning_due() {
                        self.display.note(&format!(
                            "target \"{}\": the user may not run MSET; writing one SET per entry (slower) from now on",
                            self.target_name
                        ));
                    }
                    if let Some((router, ..)) = &cluster && state.should_stop() {
                        router.wake_all();
                    }
                }
            }
        }
    }

    fn report(
        &self,
        state: &StageState,
        started_at: SystemTime,
        elapsed: Duration,
        per_node: Vec<NodeKeys>,
        redirects: Redirects,
        memory: Option<KeyCost>,
    ) -> StageReport {
        let stage = &self.stage;
        let keys_written = state.acked.load(Relaxed);
        let payload_bytes = state.bytes.load(Relaxed);
        let first_error = state.first_error();
        let status = if first_error.is_some() {
            Status::Failed
        } else if keys_written == state.planned() {
            Status::Ok
        } else if interrupt::requested() {
            Status::Interrupted
        } else {
            Status::Failed
        };
        let first_error = first_error.or_else(|| {
            (status == Status::Failed).then(|| {
                format!(
                    "only {keys_written} of {} entries were acknowledged",
                    stage.keys
                )
            })
        });
        self.display.update(keys_written, payload_bytes, elapsed);
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let summary = match status {
            Status::Ok => format!(
                "ok, {keys_written} keys{}, {} in {:.2}s ({:.1} MB/s, {}){}",
                match stage.shape.elemental.data_type {
                    DataType::String => String::new(),
                    data_type => format!(
                        " ({data_type}, {} {}{})",
                        state.elements.load(Relaxed),
                        data_type.elements_noun(),
                        restored_note(state.restored_keys.load(Relaxed), keys_written)
                    ),
                },
                human_bytes(payload_bytes),
                seconds,
                payload_bytes as f64 / 1e6 / seconds,
                match stage.shape.elemental.data_type {
                    DataType::String => format!("{:.0} keys/s", keys_written as f64 / seconds),
                    data_type => format!(
                        "{:.0} {}/s",
                        state.elements.load(Relaxed) as f64 / seconds,
                        data_type.elements_noun()
                    ),
                },
                memory.as_ref().map_or(String::new(), |m| format!(
                    "; ~{} per key in memory{}",
                    human_bytes(m.mean_bytes),
                    m.dominant_encoding()
                        .map_or(String::new(), |e| format!(" ({e})"))
                ))
            ),
            _ => format!(
                "{}, {keys_written} of {} keys written: {}",
                if status == Status::Interrupted {
                    "interrupted"
                } else {
                    "failed"
                },
                state.planned(),
                first_error.as_deref().unwrap_or("interrupted")
            ),
        };
        self.display.finish(&summary);

        StageReport {
            name: stage.name.clone(),
            target: self.target_name.clone(),
            status,
            seed: self.seed,
            data_type: stage.shape.elemental.data_type,
            keys_planned: state.planned(),
            keys_written,
            elements_written: if stage.shape.elemental.data_type == DataType::String {
                keys_written
            } else {
                state.elements.load(Relaxed)
            },
            partial_keys: state.partial_keys.load(Relaxed),
            restored_keys: state.restored_keys.load(Relaxed),
            payload_bytes,
            started_at: Some(result::timestamp(started_at)),
            duration_s: elapsed.as_secs_f64(),
            keys_per_s: keys_written as f64 / seconds,
            mb_per_s: payload_bytes as f64 / 1e6 / seconds,
            errors: state.errors.load(Relaxed),
            first_error,
            redirects,
            reconnects: state.reconnects.load(Relaxed),
            unacknowledged: state.unacknowledged.load(Relaxed),
            restarts: 0,
            failovers: 0,
            rewritten: 0,
            until_memory: None,
            memory,
            per_node,
        }
    }
}

/// How a typed stage's end line tells the keys written as payloads: all of them, some, or
/// none (said by nothing).
fn restored_note(restored: u64, keys: u64) -> String {
    match restored {
        0 => String::new(),
        n if n == keys => ", restored".into(),
        n => format!(", {n} keys restored"),
    }
}

/// The writer settings of a typed stage (`None` for strings): a write of about 64 KiB of
/// commands, a command being a key's variadic chunk, or a whole key's `RESTORE`.
fn typed_config(
    stage: &Stage,
    dataset: &Dataset,
    restore: Option<Restoring>,
) -> Option<WriterConfig> {
    if dataset.data_type() == DataType::String {
        return None;
    }
    let chunking = match restore {
        Some(restore) => Chunking::restoring(dataset, &restore.server),
        None => Chunking::of(dataset),
    };
    let mean =
        (stage.shape.elemental.elements.min + stage.shape.elemental.elements.max).div_ceil(2);
    let elements = if chunking.restore.by_count(mean).unwrap_or(true) {
        mean
    } else {
        mean.min(chunking.per_command)
    };
    Some(WriterConfig::typed(
        stage.pipeline,
        elements * dataset.mean_element_bytes() + u64::from(stage.shape.key.mean_len()),
    ))
}

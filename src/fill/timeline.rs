//! The run's timeline: the counters of every started stage once a second and at each
//! stage's start and end, and each target's `INFO` figures read on its control connections.
//!
//! Stages only take a snapshot of counters they already keep (a few atomic loads under one
//! lock); the `INFO` readings happen on a task of their own, so a slow server delays the
//! figures of the samples, never the writers.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::lock::lock;
use super::state::StageState;
use crate::result::{self, StageEvent, StageSample, TargetSample, Timeline, TimelineSample};
use crate::server::{InfoFigures, MemoryProbe};

/// How often a sample is taken besides the stages' starts and ends.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Where stages record their start and end; shared by the stages and the sampling task.
pub(super) struct Recorder {
    clock: Instant,
    started_at: SystemTime,
    targets: Vec<String>,
    inner: Mutex<Samples>,
    /// Samples waiting for their targets' figures, by index.
    unread: mpsc::UnboundedSender<usize>,
}

/// The stages being watched and the samples so far.
#[derive(Default)]
struct Samples {
    stages: Vec<Watched>,
    samples: Vec<TimelineSample>,
}

/// A stage that has started.
struct Watched {
    name: String,
    state: Arc<StageState>,
    /// Strings count one element per key; typed stages keep their own count.
    typed: bool,
}

impl Recorder {
    /// Records the start of stage `name`, whose connections will share `state`.
    pub(super) fn stage_started(&self, name: &str, state: &Arc<StageState>, typed: bool) {
        self.record(
            Some(StageEvent::Start(name.to_string())),
            Some(Watched {
                name: name.to_string(),
                state: state.clone(),
                typed,
            }),
        );
    }

    /// Records the end of stage `name`; its counters must be final by now.
    pub(super) fn stage_ended(&self, name: &str) {
        self.record(Some(StageEvent::End(name.to_string())), None);
    }

    /// Takes a sample of every watched stage (after adding `started`) and queues it for its
    /// targets' figures.
    fn record(&self, event: Option<StageEvent>, started: Option<Watched>) {
        let mut inner = lock(&self.inner);
        inner.stages.extend(started);
        // Taken under the lock, so samples are in time order and every counter in one
        // sample is at least what it was in the one before.
        let offset = self.clock.elapsed();
        let stages = inner
            .stages
            .iter()
            .map(|stage| (stage.name.clone(), counts(stage)))
            .collect();
        let targets = self
            .targets
            .iter()
            .map(|name| (name.clone(), TargetSample::default()))
            .collect();
        inner.samples.push(TimelineSample {
            offset_s: offset.as_millis() as f64 / 1000.0,
            event,
            stages,
            targets,
        });
        let index = inner.samples.len() - 1;
        drop(inner);
        // The sampling task keeps the receiver until the recorder is finished.
        let _ = self.unread.send(index);
    }

    /// Gives the samples at `indexes` the targets' figures read just now.
    fn fill(&self, indexes: &[usize], figures: &[Option<InfoFigures>]) {
        let mut inner = lock(&self.inner);
        for &index in indexes {
            let Some(sample) = inner.samples.get_mut(index) else {
                continue;
            };
            for (name, figures) in self.targets.iter().zip(figures) {
                if let (Some(target), Some(figures)) = (sample.targets.get_mut(name), figures) {
                    *target = TargetSample {
                        used_memory: Some(figures.used_memory),
                        maxmemory: Some(figures.maxmemory),
                        evicted_keys: Some(figures.evicted_keys),
                        expired_keys: Some(figures.expired_keys),
                    };
                }
            }
        }
    }
}

/// What a stage's connections have had acknowledged so far.
fn counts(stage: &Watched) -> StageSample {
    let keys_written = stage.state.acked.load(Relaxed);
    StageSample {
        keys_written,
        elements_written: if stage.typed {
            stage.state.elements.load(Relaxed)
        } else {
            keys_written
        },
        payload_bytes: stage.state.bytes.load(Relaxed),
    }
}

/// The task that takes the once-a-second samples and reads the targets' figures.
pub(super) struct Sampler {
    recorder: Arc<Recorder>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Starts sampling the run that started at `started_at` (`clock`), with the targets' probes
    /// by name.
    pub(super) fn start(
        started_at: SystemTime,
        clock: Instant,
        targets: Vec<(String, MemoryProbe)>,
    ) -> Sampler {
        let (unread, queue) = mpsc::unbounded_channel();
        let (stop, stopped) = oneshot::channel();
        let (names, probes) = targets.into_iter().unzip();
        let recorder = Arc::new(Recorder {
            clock,
            started_at,
            targets: names,
            inner: Mutex::new(Samples::default()),
            unread,
        });
        let task = tokio::spawn(sample(recorder.clone(), queue, probes, stopped));
        Sampler {
            recorder,
            stop,
            task,
        }
    }

    /// Where stages record their start and end.
    pub(super) fn recorder(&self) -> Arc<Recorder> {
        self.recorder.clone()
    }

    /// Stops sampling once the samples taken so far have their figures, and returns the
    /// timeline.
    pub(super) async fn finish(self) -> Timeline {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let samples = std::mem::take(&mut lock(&self.recorder.inner).samples);
        Timeline {
            started_at: result::timestamp(self.recorder.started_at),
            samples,
        }
    }
}

/// Takes a sample every second and reads the targets' figures for every sample taken,
/// The longest one sample waits for a target's figures: a server slower than that (paused,
/// or replaced by its replica while silent) gets no figures in that sample, and neither the
/// timeline nor the end of the run waits for its `io_timeout`.
const READ_LIMIT: Duration = Duration::from_secs(2);

/// until told to stop; several samples waiting together share one reading.
async fn sample(
    recorder: Arc<Recorder>,
    mut queue: mpsc::UnboundedReceiver<usize>,
    probes: Vec<MemoryProbe>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut ticker = tokio::time::interval(SAMPLE_EVERY);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let mut due = Vec::new();
        let stopping = tokio::select! {
            biased;
            _ = &mut stop => true,
            Some(index) = queue.recv() => {
                due.push(index);
                false
            }
            _ = ticker.tick() => {
                // Queues the sample, for the reading below.
                recorder.record(None, None);
                false
            }
        };
        while let Ok(index) = queue.try_recv() {
            due.push(index);
        }
        if !due.is_empty() {
            let figures = read(&probes).await;
            recorder.fill(&due, &figures);
        }
        if stopping {
            return;
        }
    }
}

/// Every target's figures, read at the same time.
async fn read(probes: &[MemoryProbe]) -> Vec<Option<InfoFigures>> {
    let mut readings = JoinSet::new();
    for (i, probe) in probes.iter().enumerate() {
        let probe = probe.clone();
        readings.spawn(async move { (i, probe.figures(READ_LIMIT).await) });
    }
    let mut figures = vec![None; probes.len()];
    while let Some(reading) = readings.join_next().await {
        if let Ok((i, reading)) = reading {
            figures[i] = reading;
        }
    }
    figures
}

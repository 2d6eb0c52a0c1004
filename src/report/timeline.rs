//! The charts drawn from a result's timeline: how fast each stage wrote, and what each
//! target's memory and evictions did meanwhile.

use super::charts::{self, Series};
use crate::result::{RunResult, StageEvent, Timeline};

/// `(heading, svg)` of every chart the run's timeline gives; none without a timeline.
pub(super) fn charts(run: &RunResult) -> Result<Vec<(String, String)>, String> {
    let Some(timeline) = &run.timeline else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let throughput = stage_rates(timeline);
    if !throughput.is_empty() {
        let heading = "Keys written per second, by stage".to_string();
        let svg = charts::lines(&heading, "seconds since the start", "keys/s", &throughput)?;
        out.push((heading, svg));
    }
    for target in run.targets.keys() {
        let memory = memory_series(timeline, target);
        if memory.iter().any(|s| !s.points.is_empty()) {
            let heading = format!("Memory of {target}");
            let svg = charts::lines(&heading, "seconds since the start", "bytes", &memory)?;
            out.push((heading, svg));
        }
        let removed = removed_series(timeline, target);
        if removed.iter().any(|s| s.points.iter().any(|p| p.1 > 0.0)) {
            let heading = format!("Keys evicted and expired on {target}");
            let svg = charts::lines(&heading, "seconds since the start", "keys", &removed)?;
            out.push((heading, svg));
        }
    }
    Ok(out)
}

/// Each stage's keys per second between consecutive samples.
fn stage_rates(timeline: &Timeline) -> Vec<Series> {
    let mut names: Vec<&String> = timeline
        .samples
        .iter()
        .flat_map(|s| s.stages.keys())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let mut points = Vec::new();
            let mut last: Option<(f64, u64)> = None;
            for sample in &timeline.samples {
                let Some(stage) = sample.stages.get(name) else {
                    continue;
                };
                let ends = matches!(&sample.event, Some(StageEvent::End(ended)) if ended == name);
                let now = (sample.offset_s, stage.keys_written);
                match last {
                    None => points.push((now.0, 0.0)),
                    Some(before) if now.0 - before.0 >= 0.05 => {
                        let rate = now.1.saturating_sub(before.1) as f64 / (now.0 - before.0);
                        points.push((now.0, rate));
                    }
                    Some(_) => continue,
                }
                last = Some(now);
                if ends {
                    // Nothing more to draw: the stage wrote nothing after its end.
                    break;
                }
            }
            Series {
                name: name.clone(),
                points,
                limit: false,
            }
        })
        .collect()
}

/// `used_memory` and, when set, `maxmemory` of `target` over time.
fn memory_series(timeline: &Timeline, target: &str) -> Vec<Series> {
    let used = field(timeline, target, |t| t.used_memory);
    let max: Vec<(f64, f64)> = field(timeline, target, |t| t.maxmemory)
        .into_iter()
        .filter(|p| p.1 > 0.0)
        .collect();
    let mut series = vec![Series {
        name: "used_memory".into(),
        points: used,
        limit: false,
    }];
    if !max.is_empty() {
        series.push(Series {
            name: "maxmemory".into(),
            points: max,
            limit: true,
        });
    }
    series
}

/// `evicted_keys` and `expired_keys` of `target`, counted from the first sample.
fn removed_series(timeline: &Timeline, target: &str) -> Vec<Series> {
    [
        ("evicted_keys", field(timeline, target, |t| t.evicted_keys)),
        ("expired_keys", field(timeline, target, |t| t.expired_keys)),
    ]
    .into_iter()
    .map(|(name, points)| {
        let base = points.first().map_or(0.0, |p| p.1);
        Series {
            name: name.into(),
            points: points.into_iter().map(|(x, y)| (x, y - base)).collect(),
            limit: false,
        }
    })
    .collect()
}

/// One figure of `target` over time, where the sample has it.
fn field(
    timeline: &Timeline,
    target: &str,
    pick: impl Fn(&crate::result::TargetSample) -> Option<u64>,
) -> Vec<(f64, f64)> {
    timeline
        .samples
        .iter()
        .filter_map(|s| {
            let value = pick(s.targets.get(target)?)?;
            Some((s.offset_s, value as f64))
        })
        .collect()
}

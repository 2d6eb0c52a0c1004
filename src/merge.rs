//! `cachefill merge`: one result from the results of the shards of a run, as if one process
//! had written everything: totals per stage and per node, the earliest start, the latest end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::error::Failure;

fn invalid(path: &Path, message: impl std::fmt::Display) -> Failure {
    Failure::Invalid(format!("{}: {message}", path.display()))
}

fn time(value: &Value) -> Option<SystemTime> {
    humantime::parse_rfc3339(value.as_str()?).ok()
}

fn stamp(time: SystemTime) -> Value {
    Value::String(humantime::format_rfc3339_millis(time).to_string())
}

fn add(target: &mut Value, source: &Value, field: &str) {
    let sum = target[field].as_u64().unwrap_or(0) + source[field].as_u64().unwrap_or(0);
    target[field] = json!(sum);
}

/// How bad a status is, to keep the worst one.
fn rank(status: &Value) -> u8 {
    match status.as_str() {
        Some("failed") => 4,
        Some("interrupted") => 3,
        Some("skipped") => 2,
        Some("pending") => 1,
        _ => 0,
    }
}

/// Reads shard results, checks they belong together, and writes the merged result.
pub fn merge(files: &[PathBuf], output: Option<&Path>) -> Result<(), Failure> {
    let mut results = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid(path, format!("cannot read it: {e}")))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid(path, format!("not a cachefill result: {e}")))?;
        if value["stages"].as_array().is_none() || value["shard"]["count"].as_u64().is_none() {
            return Err(invalid(path, "not a cachefill result (no stages or shard)"));
        }
        results.push((path.clone(), value));
    }
    let Some((first_path, first)) = results.first().cloned() else {
        return Err(Failure::Invalid(
            "merge needs at least one result file".into(),
        ));
    };
    let count = first["shard"]["count"].as_u64().unwrap_or(1);
    let mut seen = vec![false; count as usize];
    for (path, result) in &results {
        if result["plan"]["sha256"] != first["plan"]["sha256"] {
            return Err(invalid(
                path,
                format!("comes from another plan file than {}", first_path.display()),
            ));
        }
        if result["shard"]["count"].as_u64() != Some(count) {
            return Err(invalid(
                path,
                format!(
                    "is a shard of {} parts, not {count}",
                    result["shard"]["count"]
                ),
            ));
        }
        let index = result["shard"]["index"].as_u64().unwrap_or(u64::MAX);
        match seen.get_mut(index as usize) {
            Some(slot) if !*slot => *slot = true,
            Some(_) => return Err(invalid(path, format!("shard {index} is given twice"))),
            None => {
                return Err(invalid(
                    path,
                    format!("shard index {index} is out of range"),
                ));
            }
        }
    }
    let missing: Vec<String> = seen
        .iter()
        .enumerate()
        .filter(|(_, s)| !**s)
        .map(|(i, _)| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::Invalid(format!(
            "shards {} of {count} are missing: give every shard's result",
            missing.join(", ")
        )));
    }

    let mut merged = first.clone();
    let starts: Vec<SystemTime> = results
        .iter()
        .filter_map(|(_, r)| time(&r["started_at"]))
        .collect();
    let ends: Vec<SystemTime> = results
        .iter()
        .filter_map(|(_, r)| time(&r["finished_at"]))
        .collect();
    let (start, end) = (starts.iter().min().copied(), ends.iter().max().copied());
    if let (Some(start), Some(end)) = (start, end) {
        merged["started_at"] = stamp(start);
        merged["finished_at"] = stamp(end);
        merged["duration_s"] = json!(end.duration_since(start).unwrap_or_default().as_secs_f64());
    }
    merged["shard"] = json!({ "index": null, "count": count, "merged": count });
    let worst = results
        .iter()
        .map(|(_, r)| &r["status"])
        .max_by_key(|s| rank(s))
        .cloned()
        .unwrap_or(json!("ok"));
    merged["status"] = worst;
    merged["error"] = results
        .iter()
        .map(|(_, r)| &r["error"])
        .find(|e| !e.is_null())
        .cloned()
        .unwrap_or(Value::Null);

    // Targets: flushed by any shard; the last shard to finish saw the final keys and memory.
    let latest = results
        .iter()
        .max_by_key(|(_, r)| time(&r["finished_at"]))
        .map(|(_, r)| r.clone());
    if let (Some(latest), Some(targets)) = (latest, merged["targets"].as_object_mut()) {
        for (name, target) in targets.iter_mut() {
            let flushed = results
                .iter()
                .any(|(_, r)| r["targets"][name]["flushed"] == json!(true));
            target["flushed"] = json!(flushed);
            if let Some(nodes) = latest["targets"][name]["nodes"].as_array() {
                target["nodes"] = json!(nodes);
            }
        }
    }

    let mut stages = Vec::new();
    for (i, stage) in first["stages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let mut total = stage.clone();
        let mut per_node: BTreeMap<String, u64> = BTreeMap::new();
        let (mut begin, mut finish) = (None::<SystemTime>, None::<SystemTime>);
        for (n, (_, result)) in results.iter().enumerate() {
            let part = &result["stages"][i];
            if part["name"] != stage["name"] {
                return Err(Failure::Invalid(format!(
                    "the results list different stages at position {i}"
                )));
            }
            if part["seed"] != stage["seed"] {
                return Err(Failure::Invalid(format!(
                    "stage \"{}\" was written with different seeds by different shards",
                    stage["name"].as_str().unwrap_or("?")
                )));
            }
            if n > 0 {
                for field in [
                    "keys_planned",
                    "keys_written",
                    "payload_bytes",
                    "errors",
                    "reconnects",
                    "failovers",
                    "rewritten",
                ] {
                    add(&mut total, part, field);
                }
                for field in ["moved", "ask"] {
                    add(&mut total["redirects"], &part["redirects"], field);
                }
                if rank(&part["status"]) > rank(&total["status"]) {
                    total["status"] = part["status"].clone();
                }
                if total["first_error"].is_null() {
                    total["first_error"] = part["first_error"].clone();
                }
            }
            for node in part["per_node"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                *per_node
                    .entry(node["address"].as_str().unwrap_or("?").to_string())
                    .or_default() += node["keys"].as_u64().unwrap_or(0);
            }
            if let Some(started) = time(&part["started_at"]) {
                let done = started
                    + Duration::from_secs_f64(part["duration_s"].as_f64().unwrap_or(0.0).max(0.0));
                begin = Some(begin.map_or(started, |b| b.min(started)));
                finish = Some(finish.map_or(done, |f| f.max(done)));
            }
        }
        total["per_node"] = json!(
            per_node
                .into_iter()
                .map(|(address, keys)| json!({ "address": address, "keys": keys }))
                .collect::<Vec<_>>()
        );
        if let (Some(begin), Some(finish)) = (begin, finish) {
            let seconds = finish
                .duration_since(begin)
                .unwrap_or_default()
                .as_secs_f64();
            total["started_at"] = stamp(begin);
            total["duration_s"] = json!(seconds);
            let seconds = seconds.max(1e-9);
            total["keys_per_s"] =
                json!(total["keys_written"].as_u64().unwrap_or(0) as f64 / seconds);
            total["mb_per_s"] =
                json!(total["payload_bytes"].as_u64().unwrap_or(0) as f64 / 1e6 / seconds);
        }
        stages.push(total);
    }
    merged["stages"] = json!(stages);

    let path = output.map(Path::to_path_buf).unwrap_or_else(|| {
        PathBuf::from(format!(
            "{}.result.json",
            merged["plan"]["name"].as_str().unwrap_or("merged")
        ))
    });
    let mut text =
        serde_json::to_vec_pretty(&merged).map_err(|e| Failure::Failed(e.to_string()))?;
    text.push(b'\n');
    crate::output::write(&text, &path).map_err(|e| {
        Failure::Failed(format!(
            "cannot write the merged result to {}: {e}",
            path.display()
        ))
    })?;
    if path.as_os_str() != "-" {
        eprintln!(
            "merged {} shard results into {}",
            results.len(),
            path.display()
        );
    }
    Ok(())
}

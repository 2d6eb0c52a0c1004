//! `cachefill report`: a result drawn as one self-contained HTML page. The content is checked
//! here without a browser; `scripts/render-report` looks at it in a real one.

use crate::support;

use std::path::Path;

use cachefill::__private::human_bytes;
use support::*;

/// Draws `result` and returns the page.
fn report_of(scratch: &Scratch, result: &Path) -> String {
    let page = scratch.path("report.html");
    let output = cachefill(scratch.dir.path())
        .arg("report")
        .arg(result)
        .arg("-o")
        .arg(&page)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::read_to_string(page).unwrap()
}

/// A page that fetches nothing and runs nothing.
fn assert_self_contained(page: &str) {
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(!page.contains("<script"), "no scripts");
    for attribute in ["src=", "href=", "url("] {
        assert!(!page.contains(attribute), "nothing fetched: {attribute}");
    }
}

/// The text of table row of `stage`, its cells joined by `|`.
fn row_of(page: &str, stage: &str) -> String {
    let start = page
        .find(&format!("<tr><td>{stage}</td>"))
        .unwrap_or_else(|| panic!("no row for {stage}"));
    let row = &page[start..start + page[start..].find("</tr>").unwrap()];
    row.replace("</td>", "|")
        .split('<')
        .map(|part| part.split_once('>').map_or(part, |(_, text)| text))
        .collect()
}

#[test]
fn a_run_is_drawn_with_its_stages_throughput_and_memory() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(8)
        .name("drawn")
        .target(server.target().flush(true))
        .stage(StageBuilder::new("sessions").keys(150_000).value_size(200))
        .stage(
            StageBuilder::new("carts")
                .data_type("hash")
                .keys(3000)
                .elements(5, 20)
                .after(&["sessions"]),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let page = report_of(&scratch, &scratch.path("result.json"));
    assert_self_contained(&page);
    assert!(page.contains("<title>cachefill report: drawn</title>"));
    let elements = result["stages"][1]["elements_written"].as_u64().unwrap();
    assert_eq!(
        row_of(&page, "sessions"),
        format!(
            "sessions|main|string|ok|150000/150000|150000|{}|",
            human_payload(&result["stages"][0])
        ) + &rest_of_row(&result["stages"][0])
    );
    assert!(
        row_of(&page, "carts").starts_with(&format!("carts|main|hash|ok|3000/3000|{elements}|"))
    );
    // The server before and after: flushed, then exactly the keys written, none evicted.
    let node = &result["targets"]["main"]["nodes"][0];
    let memory = |field: &str| human_bytes(node[field].as_u64().unwrap());
    assert_eq!(
        row_of(&page, &server.addr()),
        format!(
            "{}|main|{}|153000|{}|{}|0|",
            server.addr(),
            node["keys_before"],
            memory("used_memory_before"),
            memory("used_memory_after")
        )
    );
    for heading in [
        "Keys written per second, by stage",
        "Memory of main",
        "Servers",
    ] {
        assert!(page.contains(&format!("<h2>{heading}</h2>")), "{heading}");
    }
    // One SVG per chart: throughput and memory (no evictions, one server: no more).
    assert_eq!(page.matches("<svg").count(), 2);
    // The legends name the stages and the memory line.
    for legend in ["sessions", "carts", "used_memory"] {
        assert!(page.contains(&format!("\n{legend}\n</text>")), "{legend}");
    }
}

/// The payload column: bytes in the crate's human form.
fn human_payload(stage: &serde_json::Value) -> String {
    human_bytes(stage["payload_bytes"].as_u64().unwrap())
}

/// The table's cells after the payload, as the page formats them.
fn rest_of_row(stage: &serde_json::Value) -> String {
    let memory = &stage["memory"];
    let dominant = memory["encodings"]
        .as_object()
        .unwrap()
        .iter()
        .max_by_key(|(_, n)| n.as_u64())
        .map(|(name, _)| name.clone())
        .unwrap();
    format!(
        "{:.2}|{:.1}|{:.0}|{} ({dominant})|",
        stage["duration_s"].as_f64().unwrap(),
        stage["mb_per_s"].as_f64().unwrap(),
        stage["keys_per_s"].as_f64().unwrap(),
        memory["mean_bytes"].as_u64().unwrap(),
    )
}

#[test]
fn a_cluster_gets_its_keys_per_primary_as_bars() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(2)
        .target(TargetBuilder::launch_cluster("grid", 3, 0))
        .stage(StageBuilder::new("s").keys(30_000).value_size(20));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let page = report_of(&scratch, &scratch.path("result.json"));
    assert_self_contained(&page);
    assert!(page.contains("<h2>Keys per primary of grid</h2>"));
    let nodes = result["targets"]["grid"]["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    let keys: u64 = nodes
        .iter()
        .map(|n| n["keys_after"].as_u64().unwrap())
        .sum();
    assert_eq!(keys, 30_000);
    for node in nodes {
        assert!(page.contains(node["address"].as_str().unwrap()));
    }
}

#[test]
fn a_result_without_a_timeline_still_has_its_table_and_a_bad_file_is_one_line() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(3)
        .target(server.target())
        .stage(StageBuilder::new("s").keys(100));
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut result = run_ok(&scratch, &plan, &[]);
    // As an older cachefill wrote it.
    result.as_object_mut().unwrap().remove("timeline");
    let older = scratch.path("older.json");
    std::fs::write(&older, serde_json::to_string(&result).unwrap()).unwrap();
    let page = report_of(&scratch, &older);
    assert!(row_of(&page, "s").starts_with("s|main|string|ok|100/100|100|"));
    assert_eq!(page.matches("<svg").count(), 0);

    let bad = scratch.path("bad.json");
    std::fs::write(&bad, "{\"status\": \"ok\"}").unwrap();
    let output = cachefill(scratch.dir.path())
        .arg("report")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.json"), "{err}");
}

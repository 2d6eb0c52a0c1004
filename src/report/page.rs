//! The report page: what the run was, a table of its stages, and its charts, in one HTML
//! document with inline CSS and SVG.

use std::fmt::Write;

use super::charts;
use super::timeline;
use crate::plan::units::human_bytes;
use crate::result::{RunResult, StageReport, Status};

/// The whole page for `run`.
pub(crate) fn render(run: &RunResult) -> Result<String, String> {
    let mut page = String::with_capacity(64 << 10);
    let title = format!("cachefill report: {}", run.plan.name);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    summary(run, &mut page);
    page.push_str("<h2>Stages</h2>\n");
    stage_table(&run.stages, &mut page);
    page.push_str("<h2>Servers</h2>\n");
    server_table(run, &mut page);
    for (heading, svg) in timeline::charts(run)? {
        let _ = write!(
            page,
            "<h2>{}</h2>\n<figure>{svg}</figure>\n",
            escape(&heading)
        );
    }
    for (name, target) in &run.targets {
        if target.nodes.len() < 2 {
            continue;
        }
        let keys: Vec<(String, f64)> = target
            .nodes
            .iter()
            .map(|n| (n.address.clone(), n.keys_after.unwrap_or(0) as f64))
            .collect();
        let heading = format!("Keys per primary of {name}");
        let svg = charts::bars(&heading, "keys", &keys)?;
        let _ = write!(
            page,
            "<h2>{}</h2>\n<figure>{svg}</figure>\n",
            escape(&heading)
        );
    }
    let _ = write!(
        page,
        "<footer>cachefill {} · plan {} (sha256 {})</footer>\n</main>\n</body>\n</html>\n",
        escape(&run.cachefill_version),
        escape(&run.plan.path),
        escape(&run.plan.sha256)
    );
    Ok(page)
}

fn summary(run: &RunResult, page: &mut String) {
    let _ = write!(
        page,
        "<p class=\"summary\"><span class=\"status {status}\">{status}</span> started {} · {:.2} s",
        escape(&run.started_at),
        run.duration_s,
        status = status_name(run.status),
    );
    let keys: u64 = run.stages.iter().map(|s| s.keys_written).sum();
    let bytes: u64 = run.stages.iter().map(|s| s.payload_bytes).sum();
    let _ = write!(page, " · {keys} keys · {} of payload", human_bytes(bytes));
    if let Some(rss) = run.client_peak_rss_bytes {
        let _ = write!(page, " · client peak memory {}", human_bytes(rss));
    }
    page.push_str("</p>\n");
    if let Some(error) = &run.error {
        let _ = writeln!(page, "<p class=\"error\">{}</p>", escape(error));
    }
}

fn stage_table(stages: &[StageReport], page: &mut String) {
    page.push_str(
        "<table>\n<thead><tr><th>stage</th><th>target</th><th>type</th><th>status</th>\
         <th>keys written</th><th>elements</th><th>payload</th><th>seconds</th><th>MB/s</th>\
         <th>keys/s</th><th>bytes per key in memory</th></tr></thead>\n<tbody>\n",
    );
    for stage in stages {
        let memory = stage.memory.as_ref().map_or_else(
            || "–".to_string(),
            |cost| {
                format!(
                    "{} ({})",
                    cost.mean_bytes,
                    cost.dominant_encoding().unwrap_or("?")
                )
            },
        );
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"status {status}\">{status}</span></td>\
             <td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.2}</td><td class=\"n\">{:.1}</td><td class=\"n\">{:.0}</td><td class=\"n\">{}</td></tr>",
            escape(&stage.name),
            escape(&stage.target),
            stage.data_type.as_str(),
            stage.keys_written,
            stage.keys_planned,
            stage.elements_written,
            human_bytes(stage.payload_bytes),
            stage.duration_s,
            stage.mb_per_s,
            stage.keys_per_s,
            escape(&memory),
            status = status_name(stage.status),
        );
        page.push('\n');
        if let Some(error) = &stage.first_error {
            let _ = writeln!(
                page,
                "<tr class=\"error\"><td colspan=\"11\">{}</td></tr>",
                escape(error)
            );
        }
    }
    page.push_str("</tbody>\n</table>\n");
}

/// Each target's primaries before and after the run: keys, memory, and the keys they
/// evicted meanwhile ("–" where `INFO` was not allowed).
fn server_table(run: &RunResult, page: &mut String) {
    page.push_str(
        "<table>\n<thead><tr><th>server</th><th>target</th><th>keys before</th>\
         <th>keys after</th><th>memory before</th><th>memory after</th>\
         <th>evicted during the run</th></tr></thead>\n<tbody>\n",
    );
    let count = |n: Option<u64>| n.map_or_else(|| "–".to_string(), |n| n.to_string());
    let bytes = |n: Option<u64>| n.map_or_else(|| "–".to_string(), human_bytes);
    for (name, target) in &run.targets {
        for node in &target.nodes {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                escape(&node.address),
                escape(name),
                count(node.keys_before),
                count(node.keys_after),
                bytes(node.used_memory_before),
                bytes(node.used_memory_after),
                count(node.evicted_keys),
            );
        }
    }
    page.push_str("</tbody>\n</table>\n");
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Ok => "ok",
        Status::Failed => "failed",
        Status::Interrupted => "interrupted",
        Status::Skipped => "skipped",
        Status::Pending => "pending",
    }
}

/// `text` with the characters HTML gives a meaning escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;\
background:#f6f7f9;color:#1d232b}main{max-width:960px;margin:0 auto;padding:24px}\
h1{font-size:1.5rem;margin:0 0 8px}h2{font-size:1.1rem;margin:28px 0 8px}\
.summary{color:#4a5563}.error{color:#a1260d}table{border-collapse:collapse;width:100%;\
background:#fff;font-size:.85rem}th,td{padding:6px 8px;border-bottom:1px solid #e4e7eb;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
figure{margin:0;background:#fff;border:1px solid #e4e7eb}figure svg{display:block;\
max-width:100%;height:auto}.status{padding:1px 6px;border-radius:8px;font-size:.8rem}\
.status.ok{background:#d8f3e6;color:#0b6b3a}.status.failed{background:#fde2dd;color:#a1260d}\
.status.interrupted,.status.skipped,.status.pending{background:#fff1cc;color:#7a5200}\
footer{margin-top:28px;color:#7a8491;font-size:.8rem}";

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_characters_are_escaped() {
        assert_eq!(
            escape("<b>\"a\" & 'b'</b>"),
            "&lt;b&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/b&gt;"
        );
    }
}

//! From the raw TOML types to a [`Plan`]: every rule of the plan format that spans fields.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

mod key_space;
mod server_config;
mod stage;
mod target;

use super::raw::RawPlan;
use super::*;
use stage::{is_valid_stage_name, resolve_stage};
use target::resolve_target;

/// Collects the location of errors for one plan file.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn error(
        &self,
        span: Option<Range<usize>>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> PlanError {
        let field = field.into();
        let location = match span {
            Some(span) => {
                let at = self.field_offset(span.start, &field).unwrap_or(span.start);
                let before = &self.text[..at.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{column}", self.path.display())
            }
            None => self.path.display().to_string(),
        };
        PlanError {
            location,
            field,
            message: message.into(),
        }
    }

    /// Where the key of `field` (its last part: `nodes` of `targets.main.nodes`) is set in
    /// the table that starts at `start`, up to the next table header: the field's own line
    /// rather than the table's header.
    fn field_offset(&self, start: usize, field: &str) -> Option<usize> {
        let key = field.rsplit('.').next()?.split('[').next()?;
        if key.is_empty() {
            return None;
        }
        let mut offset = start.min(self.text.len());
        for (n, line) in self.text[offset..].split_inclusive('\n').enumerate() {
            let trimmed = line.trim_start();
            if n > 0 && trimmed.starts_with('[') {
                return None;
            }
            // `key = …` on its own line, or inside an inline table `{ key = … }`.
            let mut from = 0;
            while let Some(found) = line[from..].find(key) {
                let at = from + found;
                let before = line[..at].trim_end();
                let after = line[at + key.len()..].trim_start();
                let starts = before.is_empty() || before.ends_with(['{', ',']);
                if starts && after.starts_with('=') && !after.starts_with("==") {
                    return Some(offset + at);
                }
                from = at + key.len();
            }
            offset += line.len();
        }
        None
    }
}

/// Parses and validates the text of a plan file.
pub(super) fn parse(path: &Path, text: &str, sha256: String) -> Result<Plan, PlanError> {
    let source = Source { path, text };
    let raw = parse_raw(&source)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    if let Some(version) = &raw.version
        && *version.get_ref() != 1
    {
        return Err(source.error(
            Some(version.span()),
            "version",
            format!(
                "plan format version {} is not supported: this cachefill reads version 1",
                version.get_ref()
            ),
        ));
    }
    let name = match &raw.name {
        Some(name) if !is_valid_stage_name(name) => {
            return Err(source.error(
                None,
                "name",
                format!("plan name \"{name}\" may only use letters, digits, '_', '.' and '-' (it names the result file)"),
            ));
        }
        Some(name) => name.clone(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plan".into()),
    };

    let mut targets = Vec::new();
    for (target_name, target) in &raw.targets {
        targets.push(resolve_target(
            &source,
            &base_dir,
            target_name,
            target.get_ref(),
            target.span(),
        )?);
    }
    let target_index: HashMap<&str, usize> = raw
        .targets
        .keys()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();

    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, stage) in raw.stages.iter().enumerate() {
        let stage_name = stage.get_ref().name.as_str();
        if let Some(first) = names.insert(stage_name, i) {
            return Err(source.error(
                Some(stage.span()),
                format!("stages[{i}].name"),
                format!("stage name \"{stage_name}\" is already used by stages[{first}]: stage names must be unique"),
            ));
        }
    }

    let mut stages = Vec::new();
    for (i, stage) in raw.stages.iter().enumerate() {
        stages.push(resolve_stage(
            &source,
            i,
            stage.get_ref(),
            stage.span(),
            &raw.targets,
            &target_index,
            &names,
        )?);
    }
    check_cycles(&source, &raw, &stages)?;
    if let Some((i, message)) = key_space::first_clash(&stages, &targets) {
        return Err(source.error(
            Some(raw.stages[i].span()),
            format!("stages[{i}].key_format"),
            message,
        ));
    }

    Ok(Plan {
        name,
        path: path.to_path_buf(),
        sha256,
        seed: raw.seed,
        targets,
        stages,
    })
}

fn parse_raw(source: &Source) -> Result<RawPlan, PlanError> {
    let deserializer = toml::Deserializer::parse(source.text).map_err(|e| {
        source.error(
            e.span(),
            "plan",
            format!("invalid TOML: {}", e.message().trim().replace('\n', " ")),
        )
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        // `Spanned` wrappers show up in the path as a private field: leave them out.
        let path = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "");
        let field = if path == "." {
            "plan".to_string()
        } else {
            path
        };
        let inner = e.inner();
        source.error(
            inner.span(),
            field,
            inner.message().trim().replace('\n', " "),
        )
    })
}

/// Refuses `after` chains that loop back on themselves.
fn check_cycles(source: &Source, raw: &RawPlan, stages: &[Stage]) -> Result<(), PlanError> {
    let Some(cycle) = find_cycle(stages) else {
        return Ok(());
    };
    let names: Vec<&str> = cycle.iter().map(|&s| stages[s].name.as_str()).collect();
    Err(source.error(
        Some(raw.stages[cycle[0]].span()),
        format!("stages[{}].after", cycle[0]),
        format!(
            "the stages wait for each other in a cycle: {}; remove one of these `after` entries",
            names.join(" → ")
        ),
    ))
}

/// The first cycle of `after` entries, as the stages on it with the first one repeated at
/// the end. Depth first with a stack of its own: a chain of any length takes no call stack.
fn find_cycle(stages: &[Stage]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    let mut marks = vec![Mark::New; stages.len()];
    for root in 0..stages.len() {
        if marks[root] != Mark::New {
            continue;
        }
        marks[root] = Mark::Visiting;
        // The stages from `root` to the one being visited, each with its next `after` entry.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some((stage, next)) = path.last_mut() {
            let Some(&waits_for) = stages[*stage].after.get(*next) else {
                marks[*stage] = Mark::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match marks[waits_for] {
                Mark::Done => {}
                Mark::New => {
                    marks[waits_for] = Mark::Visiting;
                    path.push((waits_for, 0));
                }
                Mark::Visiting => {
                    let start = path.iter().position(|&(s, _)| s == waits_for).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[start..].iter().map(|&(s, _)| s).collect();
                    cycle.push(waits_for);
                    return Some(cycle);
                }
            }
        }
    }
    None
}

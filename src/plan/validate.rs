//! From the raw TOML types to a [`Plan`]: every rule of the plan format that spans fields.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::raw::{RawLaunch, RawMode, RawPlan, RawStage, RawTarget, RawTls};
use super::typed::{self, TypedField};
use super::*;

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
        let location = match span {
            Some(span) => {
                let before = &self.text[..span.start.min(self.text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("{}:{line}:{column}", self.path.display())
            }
            None => self.path.display().to_string(),
        };
        PlanError {
            location,
            field: field.into(),
            message: message.into(),
        }
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

fn resolve_target(
    source: &Source,
    base_dir: &Path,
    name: &str,
    raw: &RawTarget,
    span: Range<usize>,
) -> Result<Target, PlanError> {
    let field = |f: &str| format!("targets.{name}.{f}");
    let err = |f: &str, m: String| source.error(Some(span.clone()), field(f), m);

    if raw.password.is_some() {
        return Err(err(
            "password",
            "a literal password is refused: plans are kept in repositories; name an environment variable with password_env or a file with password_file".into(),
        ));
    }
    if let Some(tls) = &raw.tls
        && tls.cert_file.is_some() != tls.key_file.is_some()
    {
        return Err(err(
            "tls.cert_file",
            "cert_file and key_file go together: give both for mutual TLS, or neither".into(),
        ));
    }
    if let (Some(tls), Some(_)) = (&raw.tls, &raw.launch)
        && (tls.ca_file.is_some() || tls.cert_file.is_some() || tls.key_file.is_some())
    {
        return Err(err(
            "tls.ca_file",
            "a launched server gets a throwaway CA and certificate: remove ca_file, cert_file and key_file".into(),
        ));
    }
    // `launch = { tls = true }` on a cluster means what a [tls] table means with launch.
    let launch_tls =
        matches!(&raw.launch, Some(RawLaunch::Cluster(shape)) if shape.tls == Some(true));
    let default_tls = RawTls {
        ca_file: None,
        cert_file: None,
        key_file: None,
        server_name: None,
        insecure: None,
    };
    let tls = raw
        .tls
        .as_ref()
        .or(launch_tls.then_some(&default_tls))
        .map(|t| super::TlsSpec {
            ca_file: t.ca_file.as_deref().map(|f| resolve_path(base_dir, f)),
            client_auth: match (&t.cert_file, &t.key_file) {
                (Some(cert), Some(key)) => {
                    Some((resolve_path(base_dir, cert), resolve_path(base_dir, key)))
                }
                _ => None,
            },
            server_name: t.server_name.clone(),
            insecure: t.insecure.unwrap_or(false),
        });
    let default_port = if raw.tls.is_some() { 6380 } else { 6379 };

    let servers = match (&raw.nodes, &raw.launch) {
        (Some(_), Some(RawLaunch::Enabled(true) | RawLaunch::Cluster(_))) => {
            return Err(err(
                "launch",
                "give either nodes or launch, not both".into(),
            ));
        }
        (None, None | Some(RawLaunch::Enabled(false))) => {
            return Err(err(
                "nodes",
                "a target needs nodes = [\"host:port\"], or launch = true for a local server"
                    .into(),
            ));
        }
        (None, Some(RawLaunch::Cluster(_))) if raw.mode == RawMode::Standalone => {
            return Err(err("launch", "launch = { primaries = … } is for cluster targets; a standalone target takes launch = true".into()));
        }
        (None, Some(launch @ (RawLaunch::Enabled(true) | RawLaunch::Cluster(_)))) => {
            let (primaries, replicas) = match launch {
                RawLaunch::Cluster(shape) => (
                    shape.primaries.unwrap_or(DEFAULT_LAUNCH_PRIMARIES),
                    shape.replicas.unwrap_or(0),
                ),
                _ if raw.mode == RawMode::Cluster => (DEFAULT_LAUNCH_PRIMARIES, 0),
                _ => (1, 0),
            };
            if !(1..=16).contains(&primaries) || replicas > 4 {
                return Err(err(
                    "launch",
                    format!(
                        "a launched cluster takes 1 to 16 primaries and 0 to 4 replicas each, not {primaries} and {replicas}"
                    ),
                ));
            }
            Servers::Launch {
                server_bin: raw
                    .server_bin
                    .clone()
                    .unwrap_or_else(|| "redis-server".into()),
                primaries,
                replicas,
            }
        }
        (Some(nodes), _) => {
            let mut parsed = Vec::new();
            for node in nodes {
                parsed.push(NodeAddr::parse(node, default_port).map_err(|m| err("nodes", m))?);
            }
            if raw.mode == RawMode::Standalone && parsed.len() != 1 {
                return Err(err(
                    "nodes",
                    format!(
                        "a standalone target takes exactly one node, not {}",
                        parsed.len()
                    ),
                ));
            }
            if raw.server_bin.is_some() {
                return Err(err(
                    "server_bin",
                    "server_bin only applies with launch = true".into(),
                ));
            }
            Servers::Nodes(parsed)
        }
    };

    let password = match (&raw.password_env, &raw.password_file) {
        (Some(_), Some(_)) => {
            return Err(err(
                "password_env",
                "give either password_env or password_file, not both".into(),
            ));
        }
        (Some(var), None) if !is_variable_name(var) => {
            // Not echoed: a value here may be the password itself, pasted by mistake.
            return Err(err(
                "password_env",
                "password_env takes the NAME of an environment variable (letters, digits and _, not starting with a digit), never the password".into(),
            ));
        }
        (Some(var), None) => Some(PasswordSource::Env(var.clone())),
        (None, Some(file)) => Some(PasswordSource::File(resolve_path(base_dir, file))),
        (None, None) => None,
    };
    if raw.username.is_some() && password.is_none() {
        return Err(err(
            "username",
            "a username needs a password: add password_env or password_file".into(),
        ));
    }

    let db = raw.db.unwrap_or(0);
    if db != 0 && raw.mode == RawMode::Cluster {
        return Err(err("db", "a cluster has only database 0: remove db".into()));
    }
    Ok(Target {
        name: name.to_string(),
        mode: match raw.mode {
            RawMode::Standalone => Mode::Standalone,
            RawMode::Cluster => Mode::Cluster,
        },
        servers,
        auth: Auth {
            username: raw.username.clone(),
            password,
        },
        db,
        flush: raw.flush.unwrap_or(false),
        connect_timeout: raw.connect_timeout.map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0),
        failover_timeout: raw
            .failover_timeout
            .map_or(DEFAULT_FAILOVER_TIMEOUT, |d| d.0),
        tls,
    })
}

fn resolve_path(base_dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

fn is_variable_name(name: &str) -> bool {
    name.bytes()
        .enumerate()
        .all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()))
        && !name.is_empty()
}

fn is_valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Number of decimal digits of the largest index of a stage of `keys` entries.
pub fn index_width(keys: u64) -> u32 {
    keys.saturating_sub(1).checked_ilog10().unwrap_or(0) + 1
}

#[allow(clippy::too_many_arguments)]
fn resolve_stage(
    source: &Source,
    index: usize,
    raw: &RawStage,
    span: Range<usize>,
    targets: &BTreeMap<String, toml::Spanned<RawTarget>>,
    target_index: &HashMap<&str, usize>,
    names: &HashMap<&str, usize>,
) -> Result<Stage, PlanError> {
    let field = |f: &str| format!("stages[{index}].{f}");
    let err = |f: &str, m: String| source.error(Some(span.clone()), field(f), m);
    let name = raw.name.clone();
    if !is_valid_stage_name(&name) {
        return Err(err(
            "name",
            format!("stage name \"{name}\" may only use letters, digits, '_', '.' and '-'"),
        ));
    }

    let target = match &raw.target {
        Some(t) => *target_index.get(t.as_str()).ok_or_else(|| {
            let known: Vec<&str> = targets.keys().map(String::as_str).collect();
            err("target", format!("stage \"{name}\" names target \"{t}\", which the plan does not define; targets: {}", list_or_none(&known)))
        })?,
        None if targets.len() == 1 => 0,
        None if targets.is_empty() => {
            return Err(err("target", "the plan has stages but no targets: add a [targets.NAME] table".into()));
        }
        None => {
            let known: Vec<&str> = targets.keys().map(String::as_str).collect();
            return Err(err("target", format!("the plan has several targets, so stage \"{name}\" must name one: {}", known.join(", "))));
        }
    };

    let key_size = raw.key_size.map_or(DEFAULT_KEY_SIZE, |k| k.0);
    let value_size = raw.value_size.unwrap_or(ValueSize {
        min: DEFAULT_VALUE_SIZE,
        max: DEFAULT_VALUE_SIZE,
    });
    let ttl = raw.ttl;
    let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| format!("{name}:"));
    let elemental = resolve_elemental(raw, &name, value_size).map_err(|(f, m)| err(f, m))?;
    let shape = Shape {
        key_prefix,
        key_size,
        value_size,
        ttl,
        elemental,
    };

    let (amount, keys) = match (raw.size, raw.keys, raw.until_memory) {
        (Some(size), None, None) => {
            let per_key_four_times =
                elemental.key_bytes_four_times(key_size, value_size.min, value_size.max);
            let keys = (u128::from(size.0) * 4).div_ceil(per_key_four_times);
            (
                Amount::Size(size.0),
                u64::try_from(keys).unwrap_or(u64::MAX),
            )
        }
        (None, Some(keys), None) => (Amount::Keys, keys),
        (None, None, Some(goal)) => (Amount::UntilMemory(goal), UNTIL_MEMORY_KEYS),
        (None, None, None) => {
            return Err(err(
                "size",
                format!(
                    "stage \"{name}\" needs exactly one of size, keys or until_memory; it has none"
                ),
            ));
        }
        _ => {
            return Err(err(
                "size",
                format!(
                    "stage \"{name}\" needs exactly one of size, keys or until_memory; it has several"
                ),
            ));
        }
    };

    let width = index_width(keys);
    let needed = shape.key_prefix.len() as u64 + u64::from(width);
    if needed > u64::from(key_size) {
        return Err(err(
            "key_size",
            format!(
                "key_size {key_size} is too short for the prefix \"{}\" ({} bytes) and the largest index ({width} digits): use key_size = {needed} or more",
                shape.key_prefix,
                shape.key_prefix.len()
            ),
        ));
    }

    let mut after = Vec::new();
    for dependency in raw.after.iter().flatten() {
        match names.get(dependency.as_str()) {
            Some(&d) if d == index => {
                return Err(err(
                    "after",
                    format!("stage \"{name}\" cannot run after itself"),
                ));
            }
            Some(&d) => after.push(d),
            None => {
                return Err(err(
                    "after",
                    format!(
                        "stage \"{name}\" runs after \"{dependency}\", which is not a stage of this plan"
                    ),
                ));
            }
        }
    }

    Ok(Stage {
        name,
        target,
        amount,
        keys,
        shape,
        connections: raw.connections.map_or(DEFAULT_CONNECTIONS, |c| c.0),
        pipeline: raw.pipeline.map_or(DEFAULT_PIPELINE, |p| p.0),
        keys_per_command: raw.keys_per_command.map(|k| k.0),
        after,
        seed: raw.seed,
    })
}

/// The stage's type and element fields: fields of other types refused, defaults filled in,
/// and sizes checked to leave room for the element index that keeps names unique in a key.
fn resolve_elemental(
    raw: &RawStage,
    name: &str,
    value_size: ValueSize,
) -> Result<Elemental, (&'static str, String)> {
    let data_type = raw.data_type.unwrap_or_default();
    let given = [
        (TypedField::Elements, raw.elements.is_some()),
        (TypedField::FieldSize, raw.field_size.is_some()),
        (TypedField::Score, raw.score.is_some()),
        (TypedField::EntryFields, raw.entry_fields.is_some()),
        (TypedField::KeysPerCommand, raw.keys_per_command.is_some()),
    ];
    for (field, present) in given {
        if present {
            field
                .check(data_type, name)
                .map_err(|message| (field.name(), message))?;
        }
    }
    if data_type == DataType::String {
        return Ok(Elemental::STRING);
    }
    let elemental = Elemental {
        data_type,
        elements: raw.elements.unwrap_or(Elements {
            min: typed::DEFAULT_ELEMENTS,
            max: typed::DEFAULT_ELEMENTS,
        }),
        field_size: raw.field_size.map_or(typed::DEFAULT_FIELD_SIZE, |f| f.0),
        score: raw.score.unwrap_or(typed::DEFAULT_SCORE),
        entry_fields: raw
            .entry_fields
            .map_or(typed::DEFAULT_ENTRY_FIELDS, |e| e.0),
    };
    let element_width = index_width(elemental.elements.max);
    let (field, size, width, what) = match data_type {
        DataType::Hash => (
            "field_size",
            u64::from(elemental.field_size),
            element_width,
            format!(
                "unique field names in keys of up to {} fields",
                elemental.elements.max
            ),
        ),
        DataType::Set | DataType::Zset => (
            "value_size",
            value_size.min,
            element_width,
            format!(
                "unique members in keys of up to {} members",
                elemental.elements.max
            ),
        ),
        DataType::Stream => (
            "field_size",
            u64::from(elemental.field_size),
            index_width(u64::from(elemental.entry_fields)),
            format!(
                "unique field names in entries of {} fields",
                elemental.entry_fields
            ),
        ),
        DataType::String | DataType::List => return Ok(elemental),
    };
    if size < u64::from(width) {
        let shown = if field == "value_size" {
            "value_size min"
        } else {
            field
        };
        return Err((
            field,
            format!(
                "{shown} {size} is too small for {what} (names start with the {width}-digit element index): use {field} = {width} or more"
            ),
        ));
    }
    Ok(elemental)
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Refuses `after` chains that loop back on themselves.
fn check_cycles(source: &Source, raw: &RawPlan, stages: &[Stage]) -> Result<(), PlanError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[Stage],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match marks[i] {
            Mark::Done => return None,
            Mark::Visiting => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Some(cycle);
            }
            Mark::New => {}
        }
        marks[i] = Mark::Visiting;
        path.push(i);
        for &d in &stages[i].after {
            if let Some(cycle) = visit(d, stages, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for i in 0..stages.len() {
        if let Some(cycle) = visit(i, stages, &mut marks, &mut Vec::new()) {
            let names: Vec<&str> = cycle.iter().map(|&s| stages[s].name.as_str()).collect();
            return Err(source.error(
                Some(raw.stages[cycle[0]].span()),
                format!("stages[{}].after", cycle[0]),
                format!("the stages wait for each other in a cycle: {}; remove one of these `after` entries", names.join(" → ")),
            ));
        }
    }
    Ok(())
}

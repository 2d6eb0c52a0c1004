//! One `[targets.NAME]` table: where its servers are (and the settings of launched ones), who
//! logs in, TLS and timeouts.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::super::raw::{RawLaunch, RawMode, RawTarget, RawTls};
use super::super::*;
use super::Source;
use super::server_config::resolve_server_config;

/// The shortest timeout a plan may set: below it, ordinary scheduling delays on a busy
/// machine would break healthy connections.
const MIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

pub(super) fn resolve_target(
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
            let server_config = match &raw.server_config {
                Some(settings) => resolve_server_config(settings, &err)?,
                None => Vec::new(),
            };
            Servers::Launch {
                server_bin: raw
                    .server_bin
                    .clone()
                    .unwrap_or_else(|| "redis-server".into()),
                primaries,
                replicas,
                server_config,
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
            if raw.server_config.is_some() {
                return Err(err(
                    "server_config",
                    "server_config only applies with launch = true: set an existing server's configuration in its redis.conf or with CONFIG SET".into(),
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

    for (name, value) in [
        ("connect_timeout", &raw.connect_timeout),
        ("io_timeout", &raw.io_timeout),
        ("failover_timeout", &raw.failover_timeout),
    ] {
        if let Some(duration) = value
            && duration.0 < MIN_TIMEOUT
        {
            return Err(err(
                name,
                format!(
                    "{} is too short: a timeout must be at least {}",
                    humantime::format_duration(duration.0),
                    humantime::format_duration(MIN_TIMEOUT)
                ),
            ));
        }
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
        io_timeout: raw.io_timeout.map_or(DEFAULT_IO_TIMEOUT, |d| d.0),
        failover_timeout: raw
            .failover_timeout
            .map_or(DEFAULT_FAILOVER_TIMEOUT, |d| d.0),
        tls,
        write: raw.write.unwrap_or_default(),
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

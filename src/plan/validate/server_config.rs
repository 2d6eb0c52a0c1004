//! `server_config` of a launched target: the settings a plan may give the servers cachefill
//! starts, as far as they can be checked without a server. Whether the server knows a name
//! and takes its value is checked when it starts (`server/launch_settings.rs`).

use std::collections::BTreeMap;

use super::super::ServerSetting;
use super::super::raw::RawSetting;

/// Settings cachefill decides for a launched server itself, and why.
const RESERVED: &[(&[&str], &str)] = &[
    (
        &["port", "bind", "unixsocket", "cluster-port"],
        "cachefill starts a launched server on a free loopback port of its choosing",
    ),
    (
        &["dir", "logfile"],
        "cachefill gives each launched server a temporary folder and log of its own, removed after the run",
    ),
    (
        &["save", "appendonly"],
        "a launched server runs without persistence: it is thrown away after the run",
    ),
    (
        &[
            "cluster-enabled",
            "cluster-config-file",
            "replicaof",
            "slaveof",
        ],
        "cachefill forms a launched cluster itself: `mode` and `launch = { primaries, replicas }` give its shape",
    ),
    (
        &["daemonize"],
        "cachefill runs a launched server as its own child process, to stop it after the run",
    ),
    (
        &["requirepass", "masterauth", "masteruser"],
        "a password does not belong in a plan, and launched servers take none",
    ),
];

/// Why `name` (lowercase) is cachefill's to set, if it is.
fn reserved(name: &str) -> Option<&'static str> {
    if name.starts_with("tls-") {
        return Some(
            "cachefill sets up TLS on a launched server itself: add a [tls] table to the target, or launch = { tls = true } on a cluster",
        );
    }
    RESERVED
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, why)| *why)
}

/// The settings of `raw`, names lowercased; `error(field, message)` makes the error for
/// `server_config` or `server_config.NAME`.
pub(super) fn resolve_server_config(
    raw: &BTreeMap<String, RawSetting>,
    error: &dyn Fn(&str, String) -> crate::plan::PlanError,
) -> Result<Vec<ServerSetting>, crate::plan::PlanError> {
    let mut settings: Vec<ServerSetting> = Vec::new();
    for (name, RawSetting(value)) in raw {
        let field = format!("server_config.{name}");
        if name.is_empty() {
            return Err(error(
                "server_config",
                "a setting has an empty name: write names as in redis.conf, e.g. maxmemory".into(),
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(error(
                &field,
                format!(
                    "`{name}` is not a setting name: names are letters, digits and '-', as in redis.conf"
                ),
            ));
        }
        let lower = name.to_ascii_lowercase();
        if let Some(why) = reserved(&lower) {
            return Err(error(
                &field,
                format!("{lower} cannot be set in server_config: {why}"),
            ));
        }
        if settings.iter().any(|s| s.name == lower) {
            return Err(error(
                &field,
                format!("{lower} is given twice (names are case-insensitive)"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(error(
                &field,
                "a value cannot hold control characters such as a line break".into(),
            ));
        }
        if value.starts_with("--") {
            return Err(error(
                &field,
                "a value cannot start with `--`: the server would read it as another setting"
                    .into(),
            ));
        }
        settings.push(ServerSetting {
            name: lower,
            value: value.clone(),
        });
    }
    Ok(settings)
}

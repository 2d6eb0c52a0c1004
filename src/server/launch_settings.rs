//! `server_config` on launched servers: the settings as the server's command-line arguments,
//! a server that refuses one at start told as the plan field, and the names checked against
//! `CONFIG GET` once the servers run.

use super::control::Control;
use super::errors::SetupError;
use crate::plan::ServerSetting;

/// `--name value` for each setting, for every launched server of the target.
pub(crate) fn arguments(settings: &[ServerSetting]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|s| [format!("--{}", s.name), s.value.clone()])
        .collect()
}

/// The plan field of a setting, as validation names it.
fn field(target: &str, name: &str) -> String {
    format!("targets.{target}.server_config.{name}")
}

/// When a launched server exited at start over one of `settings`, the launch error told as
/// that setting's plan field. The server prints the refused line of its configuration as
/// `>>> 'name "value"'` followed by its reason (Redis 6.2 and 7, Valkey), which `message`
/// holds.
pub(crate) fn refused_at_start(
    target: &str,
    server_bin: &str,
    settings: &[ServerSetting],
    message: &str,
) -> Option<String> {
    let (_, line) = message.split_once(">>> '")?;
    let (directive, reason) = line.split_once("\"' ")?;
    let name = directive.split_whitespace().next()?.to_ascii_lowercase();
    settings.iter().find(|s| s.name == name)?;
    let hint = if reason.contains("Bad directive") {
        " (`CONFIG GET *` on a server of this build lists the names it knows)"
    } else {
        ""
    };
    Some(format!(
        "{}: `{server_bin}` refused {directive}\" at start: {}{hint}; nothing was written",
        field(target, &name),
        reason.trim()
    ))
}

/// Checks on a running server that `CONFIG GET` knows the name of every setting, so what
/// server_config sets can be read back (the server took them all at start; directives that
/// are no setting, such as `include` or `rename-command`, are refused here).
pub(crate) async fn check_known(
    target: &str,
    settings: &[ServerSetting],
    control: &mut Control,
) -> Result<(), SetupError> {
    for setting in settings {
        let reply = control
            .query(redis::cmd("CONFIG").arg("GET").arg(&setting.name))
            .await
            .map_err(|e| {
                SetupError::Launch({
                    format!(
                        "{}: cannot check it with CONFIG GET on {}: {e}; nothing was written",
                        field(target, &setting.name),
                        control.addr()
                    )
                })
            })?;
        let known = match reply {
            redis::Value::Array(items) => !items.is_empty(),
            redis::Value::Map(items) => !items.is_empty(),
            _ => false,
        };
        if !known {
            return Err(SetupError::Launch(format!(
                "{}: the server at {} has no setting {} that CONFIG GET reports: server_config takes settings only, not directives such as include or rename-command; nothing was written",
                field(target, &setting.name),
                control.addr(),
                setting.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(name: &str, value: &str) -> ServerSetting {
        ServerSetting {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn settings_become_arguments_in_order() {
        let settings = [
            setting("maxmemory", "64mb"),
            setting("maxmemory-policy", "allkeys-lru"),
        ];
        assert_eq!(
            arguments(&settings),
            ["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"]
        );
    }

    #[test]
    fn a_refusal_at_start_names_the_plan_field_and_the_servers_reason() {
        let settings = [setting("maxmemory", "lots"), setting("hz", "10")];
        let message = "target \"drill\": `redis-server` exited at start (exit status: 1): >>> 'maxmemory \"lots\"' argument must be a memory value";
        assert_eq!(
            refused_at_start("drill", "redis-server", &settings, message).unwrap(),
            "targets.drill.server_config.maxmemory: `redis-server` refused maxmemory \"lots\" at start: argument must be a memory value; nothing was written"
        );
        // A refusal of something else is left as the launcher said it.
        let other = "target \"drill\": `redis-server` exited at start (exit status: 1): >>> 'tls-port \"6380\"' Bad directive or wrong number of arguments";
        assert_eq!(
            refused_at_start("drill", "redis-server", &settings, other),
            None
        );
        assert_eq!(
            refused_at_start("drill", "redis-server", &settings, "no such line"),
            None
        );
    }
}

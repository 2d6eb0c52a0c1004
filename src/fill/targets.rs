//! Targets for a run: launch local servers, connect (through [`crate::server::target`]),
//! flush, and record what each server held before and after.

use std::path::{Path, PathBuf};

use crate::error::Failure;
use crate::plan::{DataType, Mode, NodeAddr, Servers, Stage, Target, WriteMode};
use crate::progress::Progress;
use crate::rdb::ServerEncoding;
use crate::result::{KeptServers, NodeReport, TargetReport};
use crate::server::launch::{self, LocalCluster, LocalServer};
use crate::server::launch_settings;
use crate::server::local_tls::{LocalTls, TlsFiles};
use crate::server::target::{self, Connected};
use crate::server::{Connector, Control, Credentials, MemoryProbe, ServerFacts};

pub(super) use crate::server::target::Route;

/// Servers cachefill started for this run.
enum Launched {
    Nothing,
    Server(LocalServer),
    Cluster(LocalCluster),
}

/// One target, connected and ready to be written to.
pub(super) struct LiveTarget {
    /// Connection settings shared by every connection to the target.
    pub connector: std::sync::Arc<Connector>,
    /// Where entries go.
    pub route: Route,
    /// One control connection per primary (the server, on a standalone target).
    controls: Vec<Control>,
    /// Each primary's `evicted_keys` before the run, and its `maxmemory-policy`.
    eviction_before: Vec<(Option<u64>, Option<String>)>,
    launched: Launched,
    /// The throwaway CA of a launched TLS server.
    local_tls: Option<LocalTls>,
    /// How its servers encode keys, when every primary does alike (`RESTORE` payloads).
    pub encoding: Option<ServerEncoding>,
}

fn failed(e: crate::server::TargetError) -> Failure {
    Failure::Failed(e.0)
}

impl LiveTarget {
    /// Launches (when the plan says so) and connects to a target, and describes it.
    pub(super) async fn connect(
        target: &Target,
        stages: &[&Stage],
        credentials: Credentials,
        progress: &Progress,
    ) -> Result<(LiveTarget, TargetReport), Failure> {
        // A launched TLS server gets a throwaway CA, which its connector must trust.
        let local_tls = match (&target.servers, &target.tls) {
            (Servers::Launch { .. }, Some(_)) => {
                Some(LocalTls::generate(&target.name).map_err(|e| Failure::Failed(e.to_string()))?)
            }
            _ => None,
        };
        let connector = target::connector(
            target,
            credentials,
            local_tls.as_ref().map(|t| t.ca_file.as_path()),
        )?;
        if target.tls.as_ref().is_some_and(|t| t.insecure) {
            progress.line(&format!(
                "warning: target {}: insecure = true, so server certificates are not verified",
                target.name
            ));
        }
        let (seeds, launched) = launch(target, progress, local_tls.as_ref()).await?;
        let Connected {
            connector,
            route,
            mut primaries,
        } = target::connect(connector, target.mode, &seeds).await?;
        if let (Servers::Launch { server_config, .. }, Some(first)) =
            (&target.servers, primaries.first_mut())
        {
            launch_settings::check_known(&target.name, server_config, &mut first.control)
                .await
                .map_err(|e| Failure::Failed(e.to_string()))?;
        }
        let mut controls = Vec::new();
        let mut eviction_before = Vec::new();
        let mut nodes = Vec::new();
        let mut version = None;
        let mut encodings = Vec::new();
        let mut config_refused = false;
        for target::Primary { mut control, slots } in primaries {
            let addr = control.addr().clone();
            let mut facts = control.facts().await.map_err(failed)?;
            if facts.loading {
                progress.line(&format!(
                    "target {}: {addr} is loading its dataset from disk; waiting for it (up to io_timeout, {})",
                    target.name,
                    humantime::format_duration(target.io_timeout)
                ));
                facts = control.facts_once_loaded().await.map_err(failed)?;
            }
            warn_about_eviction(&target.name, &addr, &facts, progress);
            version = version.or(facts.version.clone());
            let config = control.config().await.map_err(failed)?;
            config_refused |= config.is_none();
            encodings.push(ServerEncoding::new(
                facts.version.as_deref(),
                facts.valkey,
                &config.unwrap_or_default(),
            ));
            nodes.push(NodeReport {
                address: addr.to_string(),
                role: "primary".to_string(),
                slots,
                keys_before: facts.keys,
                keys_after: None,
                used_memory_before: facts.used_memory,
                used_memory_after: None,
                evicted_keys: None,
            });
            eviction_before.push((facts.evicted_keys, facts.maxmemory_policy));
            controls.push(control);
        }
        let report = TargetReport {
            mode: target.mode.as_str().to_string(),
            tls: target.tls.is_some(),
            flushed: false,
            launched: !matches!(launched, Launched::Nothing),
            server_version: version,
            nodes,
            mset_refused: false,
            restore_refused: None,
            kept: None,
        };
        let encoding = match encodings.split_first() {
            Some((first, rest)) if rest.iter().all(|e| e == first) => Some(*first),
            _ => None,
        };
        if config_refused && writes_payloads(stages) {
            progress.line(&format!(
                "target {}: the user may not run CONFIG GET, so cachefill assumes the servers' default encoding limits for the RESTORE payloads of typed keys",
                target.name
            ));
        }
        Ok((
            LiveTarget {
                connector,
                route,
                controls,
                eviction_before,
                launched,
                local_tls,
                encoding,
            },
            report,
        ))
    }

    /// A probe of the primaries' memory.
    pub(super) fn memory_probe(&self) -> MemoryProbe {
        MemoryProbe::new(&self.controls)
    }

    /// `maxmemory` summed over the primaries; `None` when a primary has none (or hides it).
    pub(super) async fn maxmemory(&mut self) -> Result<Option<u64>, Failure> {
        let mut total = 0u64;
        for control in &mut self.controls {
            match control.facts().await.map_err(failed)?.maxmemory {
                Some(max) if max > 0 => total = total.saturating_add(max),
                _ => return Ok(None),
            }
        }
        Ok(Some(total))
    }

    /// `maxmemory` summed over the primaries when every primary refuses writes once full
    /// (`maxmemory-policy noeviction`); `None` when one evicts instead, has no limit or
    /// hides it.
    pub(super) async fn refusing_limit(&mut self) -> Result<Option<u64>, Failure> {
        let mut total = 0u64;
        for control in &mut self.controls {
            let facts = control.facts().await.map_err(failed)?;
            match (facts.maxmemory, facts.maxmemory_policy.as_deref()) {
                (Some(max), Some("noeviction")) if max > 0 => total = total.saturating_add(max),
                _ => return Ok(None),
            }
        }
        Ok(Some(total))
    }

    /// A primary of the target that is not on this machine, if any.
    pub(super) fn remote_node(&self) -> Option<&NodeAddr> {
        self.controls
            .iter()
            .map(Control::addr)
            .find(|a| !a.is_loopback())
    }

    /// FLUSHALL ASYNC on every primary, then waits until each has freed what it flushed
    /// (see `server::flush`), saying so when that takes more than a second.
    pub(super) async fn flush(&mut self, progress: &Progress) -> Result<(), Failure> {
        for control in &mut self.controls {
            control.flushall().await.map_err(failed)?;
        }
        let name = &self.connector.name;
        let limit = humantime::format_duration(self.connector.io_timeout);
        for control in &mut self.controls {
            let addr = control.addr().clone();
            control
                .wait_freed(|pending| {
                    progress.line(&format!(
                        "target {name}: {addr} is freeing the flushed dataset in the background ({pending} objects left); waiting for it (as long as it frees something within io_timeout, {limit})"
                    ))
                })
                .await
                .map_err(failed)?;
        }
        let addrs: Vec<String> = self.controls.iter().map(|c| c.addr().to_string()).collect();
        progress.line(&format!(
            "target {}: flushed {}",
            self.connector.name,
            addrs.join(", ")
        ));
        Ok(())
    }

    /// Records keys, memory and evictions after the run in the target's report, and warns
    /// when servers evicted keys during it; what a server no longer answers stays unknown
    /// (the run's outcome says why).
    pub(super) async fn record_after(&mut self, report: &mut TargetReport, progress: &Progress) {
        report.mset_refused = self.connector.mset_refused();
        report.restore_refused = self.connector.restore_refused();
        let mut evicted = Vec::new();
        for ((control, node), (before, policy)) in self
            .controls
            .iter_mut()
            .zip(report.nodes.iter_mut())
            .zip(&self.eviction_before)
        {
            let facts = control.facts().await.unwrap_or_default();
            node.keys_after = facts.keys;
            node.used_memory_after = facts.used_memory;
            node.evicted_keys = facts
                .evicted_keys
                .zip(*before)
                .map(|(after, before)| after.saturating_sub(before));
            if let Some(n) = node.evicted_keys.filter(|&n| n > 0) {
                let policy = policy.as_deref().unwrap_or("unknown");
                evicted.push(format!("{} ({n}, {policy})", node.address));
            }
        }
        if !evicted.is_empty() {
            progress.line(&format!(
                "warning: target {}: servers evicted keys during the run under their maxmemory-policy: {}; they were written and acknowledged, then dropped (nodes[].evicted_keys in the result); verify counts them missing",
                self.connector.name,
                evicted.join(", ")
            ));
        }
    }

    /// Stops launched servers, or with `keep` leaves them running, says where, and returns
    /// them for the result.
    pub(super) fn finish(self, keep: bool, progress: &Progress) -> Option<KeptServers> {
        if !keep {
            return None;
        }
        let kept = match self.launched {
            Launched::Nothing => return None,
            Launched::Server(server) => vec![server.keep()],
            Launched::Cluster(cluster) => cluster.keep(),
        };
        let addresses: Vec<String> = kept.iter().map(|k| k.addr.to_string()).collect();
        let pids: Vec<u32> = kept.iter().filter_map(|k| k.pid).collect();
        let ca_file = self.local_tls.map(LocalTls::keep);
        let mut dirs: Vec<PathBuf> = kept.into_iter().map(|k| k.dir).collect();
        dirs.extend(
            ca_file
                .as_deref()
                .and_then(Path::parent)
                .map(Path::to_path_buf),
        );
        let ca = match &ca_file {
            Some(path) => format!(", TLS with the CA certificate {}", path.display()),
            None => String::new(),
        };
        let pid_list: Vec<String> = pids.iter().map(u32::to_string).collect();
        let cleanup = match launch::watch_kept(&pids, &dirs) {
            Ok(()) => "its temporary folders go when it stops".to_string(),
            Err(e) => format!(
                "remove {} once it stops (cannot watch it: {e})",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        progress.line(&format!(
            "target {} keeps running at {}{ca} (--keep): pid {}; stop it with `kill {}`; {cleanup}",
            self.connector.name,
            addresses.join(", "),
            pid_list.join(", "),
            pid_list.join(" "),
        ));
        Some(KeptServers {
            addresses,
            pids,
            ca_file: ca_file.map(|p| p.display().to_string()),
        })
    }
}

async fn launch(
    target: &Target,
    progress: &Progress,
    tls: Option<&LocalTls>,
) -> Result<(Vec<NodeAddr>, Launched), Failure> {
    let (server_bin, primaries, replicas, settings) = match &target.servers {
        Servers::Nodes(nodes) => return Ok((nodes.clone(), Launched::Nothing)),
        Servers::Launch {
            server_bin,
            primaries,
            replicas,
            server_config,
        } => (server_bin, *primaries, *replicas, server_config),
    };
    let (bin, name, mode) = (server_bin.clone(), target.name.clone(), target.mode);
    let files = tls.map(LocalTls::files);
    let arguments = launch_settings::arguments(settings);
    let launched = tokio::task::spawn_blocking(move || {
        let extra: Vec<&str> = arguments.iter().map(String::as_str).collect();
        match mode {
            Mode::Standalone => {
                LocalServer::start_with(&bin, &name, &extra, files.as_ref()).map(Launched::Server)
            }
            Mode::Cluster => LocalCluster::start(
                &bin,
                &name,
                primaries,
                replicas,
                &extra,
                files
                    .map(|f| TlsFiles {
                        plain_port_too: true,
                        ..f
                    })
                    .as_ref(),
            )
            .map(Launched::Cluster),
        }
    })
    .await
    .map_err(|e| Failure::Failed(format!("target \"{}\": {e}", target.name)))?
    .map_err(|error| {
        let message = error.to_string();
        Failure::Failed(
            launch_settings::refused_at_start(&target.name, server_bin, settings, &message)
                .unwrap_or(message),
        )
    })?;
    let seeds = match &launched {
        Launched::Server(server) => vec![server.addr.clone()],
        Launched::Cluster(cluster) => cluster.addrs(),
        Launched::Nothing => Vec::new(),
    };
    let shown: Vec<String> = seeds.iter().map(ToString::to_string).collect();
    progress.line(&format!(
        "target {}: started {server_bin} at {}",
        target.name,
        shown.join(", ")
    ));
    Ok((seeds, launched))
}

/// True when a typed stage of the target (`stages`, its own) may write `RESTORE` payloads.
fn writes_payloads(stages: &[&Stage]) -> bool {
    stages.iter().any(|stage| {
        stage.shape.elemental.data_type != DataType::String && stage.write != WriteMode::Commands
    })
}

fn warn_about_eviction(target: &str, addr: &NodeAddr, facts: &ServerFacts, progress: &Progress) {
    if let (Some(max), Some(policy)) = (facts.maxmemory, &facts.maxmemory_policy)
        && max > 0
        && policy != "noeviction"
    {
        progress.line(&format!(
            "warning: target {target} ({addr}) has maxmemory-policy {policy}: the server may evict entries this run writes"
        ));
    }
}

//! Targets for a run: launch local servers, connect, read the topology, flush, and record
//! what each server held before and after.

use std::sync::Arc;

use crate::error::Failure;
use crate::plan::{Mode, NodeAddr, Servers, Target};
use crate::progress::Progress;
use crate::report::{NodeReport, TargetReport};
use crate::server::cluster::{Topology, discover};
use crate::server::launch::{LocalCluster, LocalServer};
use crate::server::local_tls::{LocalTls, TlsFiles};
use crate::server::{Connector, Control, Credentials, MemoryProbe, ServerFacts};

/// Where a stage's entries go.
#[derive(Debug, Clone)]
pub enum Route {
    /// Every entry to one server.
    Standalone(NodeAddr),
    /// Every entry to the primary owning its slot.
    Cluster(Arc<Topology>),
}

/// Servers cachefill started for this run.
enum Launched {
    Nothing,
    Server(LocalServer),
    Cluster(LocalCluster),
}

/// One target, connected and ready to be written to.
pub struct LiveTarget {
    /// Connection settings shared by every connection to the target.
    pub connector: Arc<Connector>,
    /// Where entries go.
    pub route: Route,
    /// One control connection per primary (the server, on a standalone target).
    controls: Vec<Control>,
    launched: Launched,
    /// The throwaway CA of a launched TLS server.
    local_tls: Option<LocalTls>,
}

fn failed(e: crate::server::TargetError) -> Failure {
    Failure::Failed(e.0)
}

impl LiveTarget {
    /// Launches (when the plan says so) and connects to a target, and describes it.
    pub async fn connect(
        target: &Target,
        credentials: Credentials,
        progress: &Progress,
    ) -> Result<(LiveTarget, TargetReport), Failure> {
        // A launched TLS server gets a throwaway CA, which its connector must trust.
        let local_tls = match (&target.servers, &target.tls) {
            (Servers::Launch { .. }, Some(_)) => {
                Some(LocalTls::generate(&target.name).map_err(Failure::Failed)?)
            }
            _ => None,
        };
        let mut resolved = target.clone();
        if let (Some(local), Some(spec)) = (&local_tls, resolved.tls.as_mut()) {
            spec.ca_file = Some(local.ca_file.clone());
        }
        let connector = Connector::new(&resolved, credentials).map_err(Failure::Invalid)?;
        if target.tls.as_ref().is_some_and(|t| t.insecure) {
            progress.line(&format!(
                "warning: target {}: insecure = true, so server certificates are not verified",
                target.name
            ));
        }
        let connector = Arc::new(connector);
        let (seeds, launched) = launch(target, progress, local_tls.as_ref()).await?;
        let (route, primaries) = match target.mode {
            Mode::Standalone => (
                Route::Standalone(seeds[0].clone()),
                vec![(seeds[0].clone(), None)],
            ),
            Mode::Cluster => {
                let topology = discover(&connector, &seeds).await.map_err(failed)?;
                let primaries = topology
                    .primaries
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.addr.clone(), Some(topology.slot_count(i))))
                    .collect();
                (Route::Cluster(Arc::new(topology)), primaries)
            }
        };
        let mut controls = Vec::new();
        let mut nodes = Vec::new();
        let mut version = None;
        for (addr, slots) in primaries {
            let mut control = connector.control(&addr).await.map_err(failed)?;
            let facts = control.facts().await;
            warn_about_eviction(&target.name, &addr, &facts, progress);
            version = version.or(facts.version.clone());
            nodes.push(NodeReport {
                address: addr.to_string(),
                role: "primary",
                slots,
                keys_before: facts.keys,
                keys_after: None,
                used_memory_before: facts.used_memory,
                used_memory_after: None,
            });
            controls.push(control);
        }
        let report = TargetReport {
            mode: target.mode.as_str(),
            tls: target.tls.is_some(),
            flushed: false,
            launched: !matches!(launched, Launched::Nothing),
            server_version: version,
            nodes,
        };
        Ok((
            LiveTarget {
                connector,
                route,
                controls,
                launched,
                local_tls,
            },
            report,
        ))
    }

    /// A probe of the primaries' memory.
    pub fn memory_probe(&self) -> MemoryProbe {
        MemoryProbe::new(&self.controls)
    }

    /// `maxmemory` summed over the primaries; `None` when a primary has none (or hides it).
    pub async fn maxmemory(&mut self) -> Option<u64> {
        let mut total = 0u64;
        for control in &mut self.controls {
            match control.facts().await.maxmemory {
                Some(max) if max > 0 => total += max,
                _ => return None,
            }
        }
        Some(total)
    }

    /// A primary of the target that is not on this machine, if any.
    pub fn remote_node(&self) -> Option<&NodeAddr> {
        self.controls
            .iter()
            .map(Control::addr)
            .find(|a| !a.is_loopback())
    }

    /// FLUSHALL on every primary.
    pub async fn flush(&mut self, progress: &Progress) -> Result<(), Failure> {
        for control in &mut self.controls {
            control.flushall().await.map_err(failed)?;
        }
        let addrs: Vec<String> = self.controls.iter().map(|c| c.addr().to_string()).collect();
        progress.line(&format!(
            "target {}: flushed {}",
            self.connector.name,
            addrs.join(", ")
        ));
        Ok(())
    }

    /// Records keys and memory after the run in the target's report.
    pub async fn record_after(&mut self, report: &mut TargetReport) {
        for (control, node) in self.controls.iter_mut().zip(report.nodes.iter_mut()) {
            let facts = control.facts().await;
            node.keys_after = facts.keys;
            node.used_memory_after = facts.used_memory;
        }
    }

    /// Stops launched servers, or with `keep` leaves them running and says where.
    pub fn finish(self, keep: bool, progress: &Progress) {
        if !keep {
            return;
        }
        let addrs = match self.launched {
            Launched::Nothing => return,
            Launched::Server(server) => vec![server.keep()],
            Launched::Cluster(cluster) => cluster.keep(),
        };
        let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let ca = match self.local_tls {
            Some(tls) => format!(", TLS with the CA certificate {}", tls.keep().display()),
            None => String::new(),
        };
        progress.line(&format!(
            "target {} keeps running at {}{ca} (--keep)",
            self.connector.name,
            addrs.join(", ")
        ));
    }
}

async fn launch(
    target: &Target,
    progress: &Progress,
    tls: Option<&LocalTls>,
) -> Result<(Vec<NodeAddr>, Launched), Failure> {
    let (server_bin, primaries, replicas) = match &target.servers {
        Servers::Nodes(nodes) => return Ok((nodes.clone(), Launched::Nothing)),
        Servers::Launch {
            server_bin,
            primaries,
            replicas,
        } => (server_bin, *primaries, *replicas),
    };
    let (bin, name, mode) = (server_bin.clone(), target.name.clone(), target.mode);
    let files = tls.map(LocalTls::files);
    let launched = tokio::task::spawn_blocking(move || match mode {
        Mode::Standalone => {
            LocalServer::start_with(&bin, &name, &[], files.as_ref()).map(Launched::Server)
        }
        Mode::Cluster => LocalCluster::start(
            &bin,
            &name,
            primaries,
            replicas,
            files
                .map(|f| TlsFiles {
                    plain_port_too: true,
                    ..f
                })
                .as_ref(),
        )
        .map(Launched::Cluster),
    })
    .await
    .map_err(|e| Failure::Failed(format!("target \"{}\": {e}", target.name)))?
    .map_err(Failure::Failed)?;
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

//! The one way from a plan target to its connected servers, for `run`, `flush` and `verify`:
//! the connector (credentials, TLS), the route entries take (one server, or the slot map of a
//! cluster), and one control connection per primary. Where the seeds come from (the plan, a
//! launch, a result file) is the caller's business.

use std::path::Path;
use std::sync::Arc;

use super::cluster::{Topology, discover};
use super::connector::{Connector, TargetError};
use super::control::Control;
use super::credentials::Credentials;
use crate::error::Failure;
use crate::plan::{Mode, NodeAddr, Target};

/// Where a stage's entries go.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// Every entry to one server.
    Standalone(NodeAddr),
    /// Every entry to the primary owning its slot.
    Cluster(Arc<Topology>),
}

/// A primary of a connected target.
pub(crate) struct Primary {
    /// Its control connection.
    pub control: Control,
    /// Hash slots it serves (cluster); `None` on a standalone server.
    pub slots: Option<u32>,
}

/// A target whose servers answered: how to reach them, where entries go, and its primaries.
pub(crate) struct Connected {
    /// Connection settings shared by every connection to the target.
    pub connector: Arc<Connector>,
    /// Where entries go.
    pub route: Route,
    /// One per primary (the server, on a standalone target), in topology order.
    pub primaries: Vec<Primary>,
}

/// The connector of `target`; `ca_file` replaces the plan's CA (the throwaway CA of a
/// launched TLS server). Errors (a TLS file that is wrong) name the target.
pub(crate) fn connector(
    target: &Target,
    credentials: Credentials,
    ca_file: Option<&Path>,
) -> Result<Arc<Connector>, Failure> {
    let mut resolved = target.clone();
    if let (Some(ca_file), Some(spec)) = (ca_file, resolved.tls.as_mut()) {
        spec.ca_file = Some(ca_file.to_path_buf());
    }
    Connector::new(&resolved, credentials)
        .map(Arc::new)
        .map_err(|e| Failure::Invalid(e.to_string()))
}

/// Connects to a target through `seeds`: its only server on a standalone target, any nodes
/// of a cluster (the topology comes from the first that answers).
pub(crate) async fn connect(
    connector: Arc<Connector>,
    mode: Mode,
    seeds: &[NodeAddr],
) -> Result<Connected, Failure> {
    let failed = |e: TargetError| Failure::Failed(e.0);
    let (route, addrs) = match (mode, seeds) {
        (_, []) => {
            return Err(Failure::Invalid(format!(
                "target \"{}\": no server address to connect to",
                connector.name
            )));
        }
        (Mode::Standalone, [first, ..]) => (
            Route::Standalone(first.clone()),
            vec![(first.clone(), None)],
        ),
        (Mode::Cluster, _) => {
            let topology = discover(&connector, seeds).await.map_err(failed)?;
            let addrs = topology
                .primaries
                .iter()
                .enumerate()
                .map(|(i, p)| (p.addr.clone(), Some(topology.slot_count(i))))
                .collect();
            (Route::Cluster(Arc::new(topology)), addrs)
        }
    };
    if let Some(warning) = plaintext_password(&connector, addrs.iter().map(|(addr, _)| addr)) {
        eprintln!("cachefill: warning: {warning}");
    }
    let mut primaries = Vec::with_capacity(addrs.len());
    for (addr, slots) in addrs {
        let control = connector.control(&addr).await.map_err(failed)?;
        primaries.push(Primary { control, slots });
    }
    Ok(Connected {
        connector,
        route,
        primaries,
    })
}

/// The warning due when a password would cross the network in the clear: the target has a
/// password, no TLS, and a server that is not on a loopback address. Once per target (one
/// line naming the first such server).
fn plaintext_password<'a>(
    connector: &Connector,
    addrs: impl Iterator<Item = &'a NodeAddr>,
) -> Option<String> {
    let exposed = connector.credentials.password.is_some() && connector.tls.is_none();
    exposed.then(|| clear_text_warning(&connector.name, addrs))?
}

fn clear_text_warning<'a>(
    target: &str,
    mut addrs: impl Iterator<Item = &'a NodeAddr>,
) -> Option<String> {
    let remote = addrs.find(|addr| !addr.is_loopback())?;
    Some(format!(
        "target \"{target}\": the password goes to {remote} over plaintext TCP, readable on the network; add a [targets.{target}.tls] table to encrypt it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_clear_is_warned_about_only_for_remote_servers() {
        let remote = NodeAddr::parse("10.0.0.5:6379", 6379).unwrap();
        let local = NodeAddr::parse("127.0.0.1:6379", 6379).unwrap();
        let warning = clear_text_warning("main", [&local, &remote].into_iter())
            .expect("a server at 10.0.0.5");
        assert_eq!(
            warning,
            "target \"main\": the password goes to 10.0.0.5:6379 over plaintext TCP, readable on the network; add a [targets.main.tls] table to encrypt it"
        );
        assert!(clear_text_warning("main", [&local].into_iter()).is_none());
    }
}

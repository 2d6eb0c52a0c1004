//! A test fixture in Rust: a plan with a launched server, filled through the library, the
//! dataset checked, the server stopped. `cargo run --example fixture` (needs `redis-server`
//! on the PATH). The project's tests run it.

use std::error::Error;

use cachefill::{AfterRun, Plan, RunOptions, Status, VerifyOptions, VerifyStatus};

/// 5,000 sessions with a TTL and 200 carts (hashes of 10 to 40 fields) on a throwaway
/// `redis-server` on a free loopback port.
const PLAN: &str = r#"
name = "fixture"
seed = 7

[targets.cache]
mode = "standalone"
launch = true

[[stages]]
name = "sessions"
keys = 5000
value_size = { min = 100, max = 400 }
ttl = "1h"

[[stages]]
name = "carts"
type = "hash"
keys = 200
elements = { min = 10, max = 40 }
value_size = 32
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let plan = Plan::parse(PLAN, "fixture.toml")?;

    // Quiet by default; keep the launched server for the "test" below.
    let mut options = RunOptions::default();
    options.launched = AfterRun::Keep;
    let result = cachefill::run(&plan, &options).await?;
    assert_eq!(result.status, Status::Ok);
    let written: Vec<u64> = result.stages.iter().map(|s| s.keys_written).collect();
    assert_eq!(written, [5000, 200]);
    let kept = result.targets["cache"]
        .kept
        .clone()
        .ok_or("the launched server was not kept")?;
    let address = &kept.addresses[0];

    // The test proper: the server holds exactly the plan's keys.
    let mut connection = redis::Client::open(format!("redis://{address}"))?.get_connection()?;
    let keys: u64 = redis::cmd("DBSIZE").query(&mut connection)?;
    assert_eq!(keys, 5200);
    let carts: u64 = redis::cmd("EVAL")
        .arg("return #redis.call('KEYS', 'carts:*')")
        .arg(0)
        .query(&mut connection)?;
    assert_eq!(carts, 200);

    // Every key, value, field and TTL as the plan says, read back.
    let mut check = VerifyOptions::default();
    check.result = Some(result.clone());
    let report = cachefill::verify(&plan, &check).await?;
    assert_eq!(report.status, VerifyStatus::Ok, "{:?}", report.problem());
    let checked: u64 = report.stages.iter().map(|s| s.checked).sum();

    // Tear down: the server stops and its temporary folder goes.
    kept.stop()?;
    println!(
        "filled {keys} keys at {address}, verified {checked}, stopped pid {}",
        kept.pids[0]
    );
    Ok(())
}

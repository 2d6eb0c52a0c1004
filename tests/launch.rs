//! `launch = true`: a throwaway local server for self-contained plans and the quickstart.

mod support;

use std::net::TcpStream;

use support::*;

fn launched_plan(keys: u64) -> PlanBuilder {
    PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_standalone("local"))
        .stage(StageBuilder::new("s").keys(keys))
}

#[test]
fn a_launched_server_is_filled_and_stopped_afterwards() {
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &launched_plan(10_000).build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(result["targets"]["local"]["launched"], true);
    assert_eq!(result["targets"]["local"]["nodes"][0]["keys_after"], 10_000);
    let port = node_port(&result, "local", 0);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the launched server is still running"
    );
}

#[test]
fn keep_leaves_the_launched_server_running_and_prints_its_address() {
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &launched_plan(500).build());
    let (output, result) = run_plan(&scratch, &plan, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let port = node_port(&result.unwrap(), "local", 0);
    assert!(
        stderr(&output).contains(&format!("127.0.0.1:{port}")),
        "{}",
        stderr(&output)
    );
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 500);
    redis::cmd("SHUTDOWN").arg("NOSAVE").exec(&mut conn).ok();
    remove_kept_folders(&port.to_string());
}

#[test]
fn a_missing_server_binary_says_how_to_install_it() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(TargetBuilder::launch_standalone("local").set("server_bin", "no-such-redis-server"))
        .stage(StageBuilder::new("s").keys(1));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("no-such-redis-server") && err.contains("apt-get install redis-server"),
        "{err}"
    );
}

#[test]
fn the_quickstart_plan_runs_on_a_machine_with_nothing_running() {
    let scratch = Scratch::new();
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/quickstart.toml");
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(result["status"], "ok");
    for stage in result["stages"].as_array().unwrap() {
        assert_eq!(stage["keys_written"], stage["keys_planned"]);
    }
}

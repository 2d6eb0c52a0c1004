//! `launch = true`: a throwaway local server for self-contained plans and the quickstart, and
//! the `server_config` every launched server starts with.

use crate::support;

use std::net::TcpStream;
use std::time::Duration;

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

/// `--keep` leaves the server running and says where, its pid and how to stop it; once it
/// is stopped its temporary folder goes.
#[test]
fn keep_leaves_the_launched_server_running_and_says_how_to_stop_it() {
    let scratch = Scratch::new();
    let plan = scratch.plan("plan.toml", &launched_plan(500).build());
    let (output, result) = run_plan(&scratch, &plan, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    let port = node_port(&result, "local", 0);
    let pids = result["targets"]["local"]["kept"]["pids"]
        .as_array()
        .unwrap();
    assert_eq!(pids.len(), 1, "{result}");
    let pid = pids[0].as_u64().unwrap();
    assert!(
        stderr(&output).lines().any(|l| l
            == format!(
                "target local keeps running at 127.0.0.1:{port} (--keep): pid {pid}; stop it with `kill {pid}`; its temporary folders go when it stops"
            )),
        "{}",
        stderr(&output)
    );
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: u64 = redis::cmd("DBSIZE").query(&mut conn).unwrap();
    assert_eq!(keys, 500);
    let folders = || {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with("cachefill-") && name.ends_with(&format!("-{port}"))
            })
            .count()
    };
    assert_eq!(folders(), 1, "the kept server's folder");
    // SAFETY: kill(2) of the server this test's run left running; no memory is shared.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    wait_until(
        "the kept server's folder is removed once it stopped",
        Duration::from_secs(20),
        || folders() == 0,
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
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

/// `CONFIG GET name` on the server at `addr`.
fn config_get(addr: &str, name: &str) -> String {
    let mut conn = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let reply: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(&mut conn)
        .unwrap();
    reply[1].clone()
}

#[test]
fn server_config_reaches_every_node_of_a_launched_cluster_replicas_included() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(2)
        .target(TargetBuilder::launch_cluster("grid", 2, 1).server_config(&[
            ("maxmemory", "32mb".into()),
            ("maxmemory-policy", "allkeys-lru".into()),
            ("hz", 20.into()),
        ]))
        .stage(StageBuilder::new("s").keys(2_000).value_size(100))
        .build();
    let path = scratch.plan("plan.toml", &plan);
    let mut run = LaunchedRun::spawn(&scratch, &path, "grid");
    let (status, err, result) = run.finish();
    assert!(status.success(), "{err}");
    assert_eq!(run.addrs.len(), 4, "{err}");
    for addr in &run.addrs {
        assert_eq!(config_get(addr, "maxmemory"), "33554432", "{addr}");
        assert_eq!(
            config_get(addr, "maxmemory-policy"),
            "allkeys-lru",
            "{addr}"
        );
        assert_eq!(config_get(addr, "hz"), "20", "{addr}");
    }
    // The timeline sums maxmemory over the two primaries.
    for sample in result["timeline"]["samples"].as_array().unwrap() {
        assert_eq!(sample["targets"]["grid"]["maxmemory"], 2 * 33_554_432_u64);
    }
    assert_eq!(result["stages"][0]["keys_written"], 2_000);
    // Primaries first, then their replicas, which hold the same keys once they caught up.
    run.await_replicas();
    assert_eq!(run.total_keys(), 2 * 2_000);
}

/// Runs the launched standalone target `local` with these settings, which must fail at
/// start; returns the one error line of standard error.
fn refused_setting(settings: &[(&str, toml::Value)]) -> String {
    refused_setting_of(TargetBuilder::launch_standalone("local"), settings)
}

fn refused_setting_of(target: TargetBuilder, settings: &[(&str, toml::Value)]) -> String {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(target.flush(true).server_config(settings))
        .stage(StageBuilder::new("s").keys(100));
    let path = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let result = result.expect("a failed run writes its result");
    assert_eq!(result["stages"][0]["status"], "pending");
    assert_eq!(result["stages"][0]["keys_written"], 0);
    let err = stderr(&output);
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cachefill: "))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    errors[0].to_string()
}

#[test]
fn a_setting_the_server_refuses_at_start_is_one_line_naming_the_plan_field() {
    let err = refused_setting(&[("maxmemory", "lots".into()), ("hz", 20.into())]);
    assert!(
        err.starts_with("cachefill: targets.local.server_config.maxmemory: `redis-server` refused maxmemory \"lots\" at start: argument must be a memory value; nothing was written"),
        "{err}"
    );
    // A launch with TLS says the same, without blaming the build's TLS.
    let tls = TargetBuilder::launch_standalone("local").tls(None);
    let err = refused_setting_of(tls, &[("maxmemory", "lots".into())]);
    assert!(
        err.ends_with("refused maxmemory \"lots\" at start: argument must be a memory value; nothing was written"),
        "{err}"
    );
    let err = refused_setting(&[("maxmemroy", "64mb".into())]);
    assert!(
        err.starts_with("cachefill: targets.local.server_config.maxmemroy: `redis-server` refused maxmemroy \"64mb\" at start: Bad directive"),
        "{err}"
    );
}

#[test]
fn a_directive_that_config_get_does_not_know_is_refused_before_anything_is_written() {
    // The server starts with `user alice` (an ACL user), but it is no setting.
    let err = refused_setting(&[("user", "alice".into())]);
    assert!(
        err.contains("targets.local.server_config.user: the server at 127.0.0.1:")
            && err.contains("has no setting user that CONFIG GET reports"),
        "{err}"
    );
}

#[test]
fn check_refuses_settings_cachefill_decides_itself_with_the_reason() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(
            TargetBuilder::launch_standalone("local")
                .server_config(&[("maxmemory", "64mb".into()), ("port", 7000.into())]),
        )
        .stage(StageBuilder::new("s").keys(100));
    let path = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("targets.local.server_config.port: port cannot be set in server_config: cachefill starts a launched server on a free loopback port"),
        "{err}"
    );
}

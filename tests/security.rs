//! A plan is code, and CI may run `check` on plans from pull requests: `check`, `schema` and
//! `export` read the plan and nothing else. They open no connection, read no secret and start
//! no process, whatever the plan names.

use crate::support;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use support::*;

#[test]
fn check_schema_and_export_never_connect_start_a_server_or_read_a_secret() {
    let scratch = Scratch::new();
    // A server address that records every connection attempt.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let watched = listener.local_addr().unwrap().to_string();
    // A "server binary" that leaves a mark if anything starts it.
    let mark = scratch.path("started");
    let server_bin = scratch.path("fake-redis-server");
    std::fs::write(
        &server_bin,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(&server_bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Secrets that do not exist: reading either would fail the command.
    let secret = scratch.path("no-such-password-file");

    let plan = PlanBuilder::new()
        .seed(1)
        .target(
            TargetBuilder::standalone("watched", &watched)
                .flush(true)
                .set("password_env", "CACHEFILL_TEST_UNSET_PASSWORD"),
        )
        .target(
            TargetBuilder::standalone("far", "10.255.255.1:6379")
                .set("password_file", secret.to_str().unwrap()),
        )
        .target(
            TargetBuilder::launch_standalone("local")
                .set("server_bin", server_bin.to_str().unwrap()),
        )
        .stage(StageBuilder::new("a").set("target", "watched").keys(1000))
        .stage(
            StageBuilder::new("b")
                .set("target", "far")
                .keys(100)
                .data_type("hash"),
        )
        .stage(StageBuilder::new("c").set("target", "local").keys(100));
    let plan = scratch.plan("plan.toml", &plan.build());

    let commands: Vec<Vec<&str>> = vec![
        vec!["check"],
        vec!["check", "--shards", "4", "--no-flush"],
        vec!["schema"],
        vec!["export", "--format", "resp", "-o", "out.resp"],
        vec!["export", "--format", "keys", "-o", "out.keys"],
        vec!["export", "--format", "keys", "--stage", "b", "-o", "out.b"],
    ];
    for args in commands {
        let mut command = cachefill(scratch.dir.path());
        command.arg(args[0]);
        if args[0] != "schema" {
            command.arg(&plan);
        }
        let output = command.args(&args[1..]).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        match listener.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("{args:?} connected to the plan's server: {other:?}"),
        }
        assert!(!mark.exists(), "{args:?} started the plan's server_bin");
    }
    let keys = std::fs::read_to_string(scratch.path("out.keys")).unwrap();
    assert_eq!(
        keys.lines().count(),
        1200,
        "export wrote every stage's keys"
    );
}

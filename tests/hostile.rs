//! Servers that are not Redis: whichever step meets the garbage (the login, INFO, the
//! cluster topology, FLUSHALL, the writes, the reads of verify), cachefill exits 1 with one
//! line that names the server, never panics nor hangs, and `run` still writes its result.

use crate::support;

use std::process::Output;

use support::*;

/// Asserts the one-line failure naming `server`, and returns that line.
fn one_line_naming(output: &Output, server: &HostileServer, what: &str) -> String {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    let line = reason_line(output);
    assert!(line.contains(&server.addr()), "{what}: {err}");
    line
}

/// A plan filling `target` with a small stage.
fn plan(scratch: &Scratch, target: TargetBuilder) -> std::path::PathBuf {
    let plan = PlanBuilder::new()
        .seed(1)
        .target(target.set("connect_timeout", "10s"))
        .stage(StageBuilder::new("s").keys(1000).value_size(100));
    scratch.plan("plan.toml", &plan.build())
}

/// Runs the plan against a fake server answering `command` with each kind of garbage (after
/// `spared` proper answers); each run fails in one line and writes its result.
fn run_fails_on_garbage(
    command: &str,
    spared: usize,
    target: impl Fn(&HostileServer) -> TargetBuilder,
    expected: &str,
) {
    for garbage in Garbage::ALL {
        let server = HostileServer::start(garbage, command, spared);
        let scratch = Scratch::new();
        let plan = plan(&scratch, target(&server));
        let (output, result) = run_plan(&scratch, &plan, &[]);
        let what = format!("{garbage:?} for {command}");
        let line = one_line_naming(&output, &server, &what);
        assert!(line.contains(expected), "{what}: {line}");
        let result = result.unwrap_or_else(|| panic!("{what}: a failed run writes its result"));
        assert_eq!(result["status"], "failed", "{what}");
        assert_eq!(
            result["error"].as_str(),
            line.strip_prefix("cachefill: "),
            "{what}"
        );
    }
}

#[test]
fn garbage_for_info_fails_the_run_before_any_write() {
    run_fails_on_garbage("INFO", 0, |s| s.target(), "INFO failed: ");
}

#[test]
fn garbage_for_flushall_fails_the_run_before_any_write() {
    run_fails_on_garbage(
        "FLUSHALL",
        0,
        |s| s.target().flush(true),
        "FLUSHALL failed: ",
    );
}

#[test]
fn garbage_for_the_writes_fails_the_stage() {
    run_fails_on_garbage("MSET", 0, |s| s.target(), "stage \"s\"");
}

#[test]
fn garbage_for_the_control_login_fails_the_run() {
    // With db = 1 the login selects the database: the first SELECT is the control
    // connection's.
    run_fails_on_garbage("SELECT", 0, |s| s.target().set("db", 1), "login failed: ");
}

#[test]
fn garbage_for_auth_fails_the_run() {
    let scratch = Scratch::new();
    let password = scratch.path("password");
    std::fs::write(&password, "secret\n").unwrap();
    let password = password.display().to_string();
    run_fails_on_garbage(
        "AUTH",
        0,
        |s| s.target().set("password_file", password.as_str()),
        "login failed: ",
    );
}

#[test]
fn garbage_for_a_data_connection_login_fails_the_stage() {
    // The control connection's SELECT is answered; the data connections' get garbage.
    run_fails_on_garbage(
        "SELECT",
        1,
        |s| s.target().set("db", 1),
        "connection failed during login: ",
    );
}

#[test]
fn garbage_for_the_cluster_topology_fails_the_run() {
    run_fails_on_garbage(
        "CLUSTER SHARDS",
        0,
        HostileServer::cluster_target,
        "CLUSTER SHARDS failed: ",
    );
}

#[test]
fn garbage_for_the_writes_to_a_cluster_fails_the_stage() {
    // A primary that closes every connection is lost: no replica takes over within 1 s.
    run_fails_on_garbage(
        "SET",
        0,
        |s| s.cluster_target().failover_timeout("1s"),
        "stage \"s\"",
    );
}

#[test]
fn garbage_for_the_memory_probe_fails_the_stage() {
    for garbage in Garbage::ALL {
        let server = HostileServer::start(garbage, "INFO MEMORY", 0);
        let scratch = Scratch::new();
        let plan = PlanBuilder::new()
            .seed(1)
            .target(server.target())
            .stage(StageBuilder::new("s").until_memory("10MB"));
        let plan = scratch.plan("plan.toml", &plan.build());
        let (output, result) = run_plan(&scratch, &plan, &[]);
        let what = format!("{garbage:?} for INFO memory");
        let line = one_line_naming(&output, &server, &what);
        assert!(line.contains("INFO memory failed: "), "{what}: {line}");
        assert_eq!(result.expect("a result")["status"], "failed", "{what}");
    }
}

#[test]
fn garbage_for_the_reads_fails_verify() {
    for garbage in Garbage::ALL {
        let server = HostileServer::start(garbage, "GET", 0);
        let scratch = Scratch::new();
        let plan = plan(&scratch, server.target());
        let (output, report) = verify(&scratch, &plan, &[]);
        let what = format!("{garbage:?} for GET");
        let line = one_line_naming(&output, &server, &what);
        assert!(
            line.contains("stage \"s\" on target \"main\"")
                && line.contains(&format!("reading back from {} failed: ", server.addr())),
            "{what}: {line}"
        );
        assert!(
            report.is_none(),
            "{what}: verify writes no report when it cannot read"
        );
    }
}

#[test]
fn garbage_for_flushall_fails_flush() {
    for garbage in Garbage::ALL {
        let server = HostileServer::start(garbage, "FLUSHALL", 0);
        let scratch = Scratch::new();
        let plan = plan(&scratch, server.target().flush(true));
        let (output, result) = flush(&scratch, &plan, &[]);
        let what = format!("{garbage:?} for FLUSHALL");
        let line = one_line_naming(&output, &server, &what);
        assert!(line.contains("FLUSHALL failed: "), "{what}: {line}");
        assert_eq!(result.expect("a result")["status"], "failed", "{what}");
    }
}

/// Accepts connections on a free loopback port and never answers on them (a stopped
/// server's listen queue): returns its address; the connections live as long as the test.
fn silent_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// A server that accepts connections and answers nothing fails the login within
/// `connect_timeout`, naming the step that got no answer (not `FLUSHALL` or `CONFIG GET`
/// after `io_timeout`), and the failed run writes its result.
#[test]
fn a_server_that_never_answers_fails_the_login_naming_the_step() {
    let addr = silent_server();
    let scratch = Scratch::new();
    let password = scratch.plan("password", "secret-pw\n");
    let plain = TargetBuilder::standalone("main", &addr);
    let with_password = TargetBuilder::standalone("main", &addr)
        .set("username", "filler")
        .set("password_file", password.to_str().unwrap());
    for (target, server, step) in [
        (plain, addr.clone(), "PING"),
        (with_password, format!("{addr}, user \"filler\""), "AUTH"),
    ] {
        let plan = PlanBuilder::new()
            .seed(1)
            .target(
                target
                    .flush(true)
                    .set("connect_timeout", "1s")
                    .set("io_timeout", "1h"),
            )
            .stage(StageBuilder::new("s").keys(10));
        let plan = scratch.plan("plan.toml", &plan.build());
        let (output, result) = run_plan(&scratch, &plan, &[]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        let expected = format!(
            "target \"main\" ({server}): the server accepted the connection but did not answer {step} within 1s (connect_timeout)"
        );
        assert_eq!(reason_line(&output), format!("cachefill: {expected}"));
        let result = result.expect("a failed run writes its result");
        assert_eq!(result["status"], "failed");
        assert_eq!(result["error"], expected);
        assert!(!stderr(&output).contains("secret-pw"));
    }
}

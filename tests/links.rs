//! Broken links between cachefill and a healthy server, made by the test support's proxy:
//! connections reset mid-pipeline, a partition that outlasts `io_timeout`, one that heals
//! in time, and a slow link. A link that breaks loses nothing and counts nothing twice; a
//! slow one is not a broken one.

use crate::support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Sends `command` (RESP) and returns the first bytes of the answer.
fn exchange(conn: &mut TcpStream, command: &[u8]) -> std::io::Result<Vec<u8>> {
    conn.write_all(command)?;
    let mut reply = vec![0u8; 64];
    let n = conn.read(&mut reply)?;
    reply.truncate(n);
    Ok(reply)
}

#[test]
fn the_proxy_forwards_commands_and_resets_a_connection_after_n_bytes() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    let mut conn = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(exchange(&mut conn, b"PING\r\n").unwrap(), b"+PONG\r\n");

    proxy.reset_after(Some(1000));
    let mut set = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n".to_vec();
    set.extend([b'v'; 2000]);
    set.extend(b"\r\n");
    let error = exchange(&mut conn, &set).expect_err("the proxy resets the connection");
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    assert_eq!((proxy.accepted(), proxy.resets()), (1, 1));
    // The server got a cut command and then the reset: it wrote nothing.
    assert_eq!(server.dbsize(), 0);

    // A new connection counts its bytes from zero.
    let mut again = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(exchange(&mut again, b"PING\r\n").unwrap(), b"+PONG\r\n");
    assert_eq!((proxy.accepted(), proxy.resets()), (2, 1));
}

#[test]
fn connections_reset_every_10_mb_are_restored_and_the_fill_is_exact() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    let scratch = Scratch::new();
    let keys = 1_000_000u64;
    // About 66 bytes per entry: two connections carry about 33 MB each, so each is reset
    // about three times, with thousands of acknowledged entries between resets.
    let plan = PlanBuilder::new()
        .seed(21)
        .target(proxy.target().flush(true))
        .stage(
            StageBuilder::new("s")
                .keys(keys)
                .value_size(20)
                .connections(2),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    proxy.reset_after(Some(10_000_000));
    let result = run_ok(&scratch, &plan, &[]);
    let resets = proxy.resets();
    proxy.reset_after(None);

    // The fault happened as planned (not a result check: the count depends on resends).
    assert!(resets >= 4, "only {resets} resets: the test did not test");
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    // Every reset cut a connection with writes in flight (it is cut while forwarding
    // them), so each one cost exactly one reconnection.
    assert_eq!(stage["reconnects"], resets);
    assert_eq!(stage["unacknowledged"], 0);
    assert_eq!(server.dbsize(), keys);
    assert_verified(&scratch, &plan, keys);
}

/// verify only reads, so a read cut by a reset connection is read again on a new one: a
/// link reset every 3 MB of requests, whose first connection after each reset is refused
/// (a server restarting), costs one new connection per reset, and the check of strings and
/// hashes finds everything, exactly once.
#[test]
fn verify_through_a_link_reset_every_3_mb_connects_again_and_checks_every_key() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(23)
        .target(proxy.target().flush(true))
        .stage(StageBuilder::new("s").keys(300_000).value_size(20))
        .stage(
            StageBuilder::new("h")
                .data_type("hash")
                .keys(5_000)
                .elements(100, 100)
                .set("field_size", 8i64)
                .value_size(16),
        );
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(server.dbsize(), 305_000);
    assert_eq!(result["stages"][1]["elements_written"], 500_000);

    proxy.reset_after(Some(3_000_000));
    proxy.refuse_after_reset(1);
    let (said, report) = assert_verified_stages(&scratch, &plan, &[300_000, 5_000]);
    let resets = proxy.resets();
    proxy.reset_after(None);
    // Each reset's first new connection was refused, and tried again after a pause.
    assert_eq!(proxy.refused(), resets);
    // Requests: about 12 MB of GETs and 7 MB of HMGETs, so six resets or more.
    assert!(resets >= 6, "only {resets} resets: the test did not test");
    // Each reset cut reads in flight on the one connection, and one new connection served
    // them all.
    let reconnects: u64 = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reconnects"].as_u64().unwrap())
        .sum();
    assert_eq!(reconnects, resets);
    assert!(said.contains("connected again"), "{said}");
}

#[test]
fn a_partition_ends_the_run_after_io_timeout_and_the_result_brackets_what_the_server_holds() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    let scratch = Scratch::new();
    // The proxy accepts the reconnections, but gets nothing through.
    let (output, result) = silenced_fill(&scratch, &server, proxy.target(), 22, || {
        proxy.partition();
    });
    assert_failed_for_silence(&output, &proxy.addr());
    // Healed, the proxy delivers what it held, then the closes.
    proxy.heal();
    assert_holds_what_the_result_brackets(&server, &result);
}

#[test]
fn a_partition_shorter_than_io_timeout_is_waited_out_and_the_fill_is_exact() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    assert_silence_waited_out(
        &Scratch::new(),
        &server,
        (proxy.target(), &proxy.addr()),
        23,
        || proxy.partition(),
        || proxy.heal(),
    );
}

#[test]
fn a_slow_link_is_not_a_broken_one() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    // 2 ms before every chunk, and 1 MB/s each way: 20,000 entries (about 1 MB) take about
    // a second and a half instead of a few milliseconds.
    proxy.set_delay(Duration::from_millis(2));
    proxy.set_bandwidth(Some(1_000_000));
    let scratch = Scratch::new();
    let keys = 20_000u64;
    let plan = PlanBuilder::new()
        .seed(24)
        .target(proxy.target().flush(true).set("io_timeout", "5s"))
        .stage(StageBuilder::new("s").keys(keys).value_size(20));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    let stage = &result["stages"][0];
    assert_eq!(stage["status"], "ok");
    assert_eq!(stage["keys_written"], keys);
    assert_eq!(stage["reconnects"], 0);
    assert_eq!(server.dbsize(), keys);
    assert_verified(&scratch, &plan, keys);
}

/// A least-privilege reader (`+get` and nothing else, not even `PING`) is connected again
/// too: a new connection counts as made when the server answers, refusal or not.
#[test]
fn verify_as_a_user_allowed_only_get_connects_again_after_a_reset() {
    let server = RedisServer::start(&[]);
    server.acl_user("reader", "reader-pw", &["+get"]);
    let proxy = Proxy::to(&server);
    let scratch = Scratch::new();
    let stage = || StageBuilder::new("s").keys(100_000).value_size(20);
    let fill = PlanBuilder::new()
        .seed(26)
        .target(proxy.target().flush(true))
        .stage(stage());
    run_ok(&scratch, &scratch.plan("fill.toml", &fill.build()), &[]);
    let read = PlanBuilder::new()
        .seed(26)
        .target(proxy.target().user("reader", "READER_PW"))
        .stage(stage());
    let read = scratch.plan("read.toml", &read.build());
    // About 4 MB of GETs: two resets or more.
    proxy.reset_after(Some(1_500_000));
    let verified = cachefill(scratch.dir.path())
        .env("READER_PW", "reader-pw")
        .args(["verify", "-o", "verify.json"])
        .arg(&read)
        .output()
        .unwrap();
    let resets = proxy.resets();
    proxy.reset_after(None);
    assert!(resets >= 2, "only {resets} resets: the test did not test");
    assert!(verified.status.success(), "{}", stderr(&verified));
    let report = read_result(&scratch.path("verify.json"));
    assert_eq!(report["stages"][0]["checked"], 100_000);
    assert_eq!(report["stages"][0]["reconnects"], resets);
}

/// A link that breaks again on every new connection before one round trip gets through:
/// verify connects again three times for a round trip, then stops with one line naming the
/// stage, the server and what to do.
#[test]
fn verify_over_a_link_that_keeps_breaking_names_the_stage_and_the_server_in_one_line() {
    let server = RedisServer::start(&[]);
    let proxy = Proxy::to(&server);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(25)
        .target(proxy.target().flush(true))
        .stage(StageBuilder::new("s").keys(50_000).value_size(20));
    let plan = scratch.plan("plan.toml", &plan.build());
    run_ok(&scratch, &plan, &[]);
    // A round trip of verify's is 1000 GETs, about 40 kB: every connection breaks in the
    // middle of its first one, after the login.
    proxy.reset_after(Some(10_000));
    let (verified, report) = verify(&scratch, &plan, &[]);
    let resets = proxy.resets();
    proxy.reset_after(None);
    // The first connection and three more for the round trip that gave up, at least
    // (round trips in flight together may each have made one of their own).
    assert!(resets >= 4, "{resets} resets");
    assert_eq!(verified.status.code(), Some(1));
    let err = stderr(&verified);
    let reason = the_reason(&err);
    assert!(
        reason.contains("stage \"s\" on target \"main\"")
            && reason.contains(&format!("reading back from {} failed", proxy.addr()))
            && reason.contains("3 times in a row on new connections")
            && reason.contains("run verify again"),
        "{reason}"
    );
    assert!(report.is_none(), "a verify that stopped wrote a report");
}

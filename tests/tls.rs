//! TLS targets against real TLS servers on loopback, with certificates the tests make.

use crate::support;

use cachefill::__private::LocalCluster;
use support::tls::tls_cli;
use support::*;
use toml::Value;

/// A standalone TLS target on `server` with these `[tls]` fields, writing `keys` entries.
fn plan(server: &TlsServer, tls: &[(&str, &str)], keys: u64) -> String {
    let mut target = TargetBuilder::standalone("main", &server.addr())
        .flush(true)
        .tls(None);
    for (field, value) in tls {
        let value = match *value {
            "true" => Value::Boolean(true),
            text => text.into(),
        };
        target = target.tls(Some((field, value)));
    }
    PlanBuilder::new()
        .seed(1)
        .target(target)
        .stage(StageBuilder::new("s").keys(keys))
        .build()
}

#[test]
fn a_tls_fill_lands_exactly() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(&server, &[("ca_file", &certs.path("ca.crt"))], 100_000),
    );
    let (output, result) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "100000");
    let result = result.unwrap();
    assert_eq!(result["stages"][0]["keys_written"], 100_000);
    assert_eq!(result["targets"]["main"]["tls"], true);
    let verify = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn mutual_tls_needs_the_client_certificate() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, true);
    let scratch = Scratch::new();
    let ca = certs.path("ca.crt");
    let with = [
        ("ca_file", ca.as_str()),
        ("cert_file", &certs.path("client.crt")),
        ("key_file", &certs.path("client.key")),
    ];
    let path = scratch.plan("plan.toml", &plan(&server, &with, 10_000));
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "10000");

    certs.cli(server.port, &["FLUSHALL"]);
    let path = scratch.plan("plan.toml", &plan(&server, &[("ca_file", &ca)], 10_000));
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(the_reason(&err).contains(&server.addr()), "{err}");
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "0");
}

#[test]
fn a_certificate_from_another_ca_is_not_trusted() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(&server, &[("ca_file", &certs.path("other-ca.crt"))], 10),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not trusted"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn server_name_is_used_for_verification() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false);
    let scratch = Scratch::new();
    let ca = certs.path("ca.crt");
    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &[("ca_file", &ca), ("server_name", "wrong.test")],
            10,
        ),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("not valid for the name") && err.contains("wrong.test"),
        "{err}"
    );

    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &[("ca_file", &ca), ("server_name", "redis.test")],
            10,
        ),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn insecure_skips_verification_and_says_so() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(&server, &[("insecure", "true")], 1000));
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("insecure = true"),
        "{}",
        stderr(&output)
    );
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "1000");
}

#[test]
fn a_missing_ca_file_is_refused_before_connecting() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(&server, &[("ca_file", "missing-ca.pem")], 10),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("targets.main.tls") && err.contains("missing-ca.pem"),
        "{err}"
    );
}

/// Three TLS primaries formed into a cluster by the crate's launcher (TLS ports for clients
/// and the cluster bus, a plaintext port on loopback to form it through).
fn tls_cluster(certs: &TestCerts) -> (LocalCluster, Vec<u16>) {
    let cluster = LocalCluster::start("redis-server", "test", 3, 0, &[], Some(&certs.files(true)))
        .unwrap_or_else(|e| panic!("{e}"));
    let ports = cluster.addrs().iter().map(|a| a.port).collect();
    (cluster, ports)
}

fn cluster_plan(ports: &[u16], certs: &TestCerts, stage: StageBuilder) -> String {
    let seed = format!("127.0.0.1:{}", ports[0]);
    PlanBuilder::new()
        .seed(1)
        .target(
            TargetBuilder::cluster("main", &[seed])
                .flush(true)
                .ca_file(&certs.path("ca.crt")),
        )
        .stage(stage)
        .build()
}

#[test]
fn resharding_is_followed_over_tls() {
    let certs = TestCerts::new();
    let (_cluster, ports) = tls_cluster(&certs);
    let scratch = Scratch::new();
    let keys = 400_000u64;
    // One SET per key: entries go in the order of their index, so slots move under the
    // fill's feet (grouped by slot, a window of 400,000 would be written slot after slot;
    // tests/cluster.rs follows a resharding on that path).
    let stage = StageBuilder::new("s")
        .keys(keys)
        .value_size(32)
        .connections(1)
        .pipeline(64)
        .keys_per_command(1);
    let path = scratch.plan("plan.toml", &cluster_plan(&ports, &certs, stage));
    let (child, result_path) = spawn_plan(&scratch, &path);
    let total = || {
        ports
            .iter()
            .map(|p| certs.cli(*p, &["DBSIZE"]).parse::<u64>().unwrap_or(0))
            .sum::<u64>()
    };
    wait_until(
        "the fill has started",
        std::time::Duration::from_secs(30),
        || total() > 20_000,
    );
    let ids: Vec<String> = ports
        .iter()
        .map(|p| certs.cli(*p, &["CLUSTER", "MYID"]))
        .collect();
    let seed = format!("127.0.0.1:{}", ports[0]);
    reshard_nodes(&certs.cli_args(), &seed, &ids[0], &ids[1], 1500);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let result = read_result(&result_path);
    let stage = &result["stages"][0];
    assert_eq!(stage["keys_written"], keys);
    let redirects =
        stage["redirects"]["moved"].as_u64().unwrap() + stage["redirects"]["ask"].as_u64().unwrap();
    assert!(
        redirects > 0,
        "no redirection seen; the resharding finished too early"
    );
    assert_eq!(total(), keys);
    let verify = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
}

#[test]
fn a_tls_cluster_is_filled_exactly() {
    let certs = TestCerts::new();
    let (_cluster, ports) = tls_cluster(&certs);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &cluster_plan(&ports, &certs, StageBuilder::new("s").keys(60_000)),
    );
    let (output, result) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let total: u64 = ports
        .iter()
        .map(|p| certs.cli(*p, &["DBSIZE"]).parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 60_000);
    let per_node = result.unwrap()["stages"][0]["per_node"].clone();
    for node in per_node.as_array().unwrap() {
        let keys = node["keys"].as_u64().unwrap();
        assert!((19_000..=21_000).contains(&keys), "{node}");
    }
}

#[test]
fn a_launched_server_speaks_tls_with_a_throwaway_ca() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_standalone("local").tls(None))
        .stage(StageBuilder::new("s").keys(5000));
    let path = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &path, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(result["targets"]["local"]["tls"], true);
    assert_eq!(result["targets"]["local"]["nodes"][0]["keys_after"], 5000);
    let tls = [
        "--tls".to_string(),
        "--cacert".into(),
        kept_ca_file(&result, "local"),
    ];
    let port = node_port(&result, "local", 0);
    assert_eq!(tls_cli(&tls, port, &["DBSIZE"]), "5000");
    tls_cli(&tls, port, &["SHUTDOWN", "NOSAVE"]);
}

#[test]
fn a_launched_cluster_speaks_tls() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_cluster("grid", 3, 0).launch_tls())
        .stage(StageBuilder::new("s").keys(9000));
    let path = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &path, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(result["targets"]["grid"]["tls"], true);
    let tls = [
        "--tls".to_string(),
        "--cacert".into(),
        kept_ca_file(&result, "grid"),
    ];
    let nodes = result["targets"]["grid"]["nodes"].as_array().unwrap().len();
    assert_eq!(nodes, 3);
    let mut total = 0;
    for index in 0..nodes {
        let port = node_port(&result, "grid", index);
        total += tls_cli(&tls, port, &["DBSIZE"])
            .parse::<u64>()
            .expect("the node answers over TLS");
        tls_cli(&tls, port, &["SHUTDOWN", "NOSAVE"]);
    }
    assert_eq!(total, 9000);
}

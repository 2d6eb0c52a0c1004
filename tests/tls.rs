//! TLS targets against real TLS servers on loopback, with certificates the tests make.

mod support;

use support::*;

fn plan(server: &TlsServer, tls: &str, keys: u64) -> String {
    format!(
        "seed = 1\n[targets.main]\nmode = \"standalone\"\nnodes = [\"{}\"]\nflush = true\n[targets.main.tls]\n{tls}\n[[stages]]\nname = \"s\"\nkeys = {keys}\n",
        server.addr()
    )
}

#[test]
fn a_tls_fill_lands_exactly() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false, &[]);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &format!("ca_file = \"{}\"", certs.path("ca.crt")),
            100_000,
        ),
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
    let server = TlsServer::start(&certs, true, &[]);
    let scratch = Scratch::new();
    let with = format!(
        "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"",
        certs.path("ca.crt"),
        certs.path("client.crt"),
        certs.path("client.key")
    );
    let path = scratch.plan("plan.toml", &plan(&server, &with, 10_000));
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "10000");

    certs.cli(server.port, &["FLUSHALL"]);
    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &format!("ca_file = \"{}\"", certs.path("ca.crt")),
            10_000,
        ),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let reasons: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("cachefill: "))
        .collect();
    assert_eq!(reasons.len(), 1, "{err}");
    assert!(reasons[0].contains(&server.addr()), "{err}");
    assert_eq!(certs.cli(server.port, &["DBSIZE"]), "0");
}

#[test]
fn a_certificate_from_another_ca_is_not_trusted() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false, &[]);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &format!("ca_file = \"{}\"", certs.path("other-ca.crt")),
            10,
        ),
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
    let server = TlsServer::start(&certs, false, &[]);
    let scratch = Scratch::new();
    let ca = certs.path("ca.crt");
    let path = scratch.plan(
        "plan.toml",
        &plan(
            &server,
            &format!("ca_file = \"{ca}\"\nserver_name = \"wrong.test\""),
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
            &format!("ca_file = \"{ca}\"\nserver_name = \"redis.test\""),
            10,
        ),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn insecure_skips_verification_and_says_so() {
    let certs = TestCerts::new();
    let server = TlsServer::start(&certs, false, &[]);
    let scratch = Scratch::new();
    let path = scratch.plan("plan.toml", &plan(&server, "insecure = true", 1000));
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
    let server = TlsServer::start(&certs, false, &[]);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &plan(&server, "ca_file = \"missing-ca.pem\"", 10),
    );
    let (output, _) = run_plan(&scratch, &path, &[]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("targets.main.tls") && err.contains("missing-ca.pem"),
        "{err}"
    );
}

/// Three TLS-only primaries formed into a cluster with `redis-cli --tls --cluster create`.
fn tls_cluster(certs: &TestCerts) -> Vec<TlsServer> {
    let args = [
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--tls-cluster",
        "yes",
        "--tls-replication",
        "yes",
    ];
    let servers: Vec<TlsServer> = (0..3)
        .map(|_| TlsServer::start(certs, false, &args))
        .collect();
    let output = std::process::Command::new("redis-cli")
        .args(tls_cli_args(certs))
        .args(["--cluster", "create"])
        .args(servers.iter().map(|s| s.addr()))
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    wait_until(
        "the TLS cluster is ok",
        std::time::Duration::from_secs(30),
        || {
            servers.iter().all(|s| {
                certs
                    .cli(s.port, &["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
        },
    );
    servers
}

fn tls_cli_args(certs: &TestCerts) -> Vec<String> {
    vec![
        "--tls".into(),
        "--cacert".into(),
        certs.path("ca.crt"),
        "--cert".into(),
        certs.path("client.crt"),
        "--key".into(),
        certs.path("client.key"),
    ]
}

fn cluster_plan(servers: &[TlsServer], certs: &TestCerts, stage: &str) -> String {
    format!(
        "seed = 1\n[targets.main]\nmode = \"cluster\"\nnodes = [\"{}\"]\nflush = true\n[targets.main.tls]\nca_file = \"{}\"\n[[stages]]\n{stage}\n",
        servers[0].addr(),
        certs.path("ca.crt")
    )
}

#[test]
fn resharding_is_followed_over_tls() {
    let certs = TestCerts::new();
    let servers = tls_cluster(&certs);
    let scratch = Scratch::new();
    let keys = 400_000u64;
    let path = scratch.plan(
        "plan.toml",
        &cluster_plan(
            &servers,
            &certs,
            &format!(
                "name = \"s\"\nkeys = {keys}\nvalue_size = 32\nconnections = 1\npipeline = 64"
            ),
        ),
    );
    let (child, result_path) = spawn_plan(&scratch, &path);
    let total = || {
        servers
            .iter()
            .map(|s| certs.cli(s.port, &["DBSIZE"]).parse::<u64>().unwrap_or(0))
            .sum::<u64>()
    };
    wait_until(
        "the fill has started",
        std::time::Duration::from_secs(30),
        || total() > 20_000,
    );
    let ids: Vec<String> = servers
        .iter()
        .map(|s| certs.cli(s.port, &["CLUSTER", "MYID"]))
        .collect();
    let reshard = std::process::Command::new("redis-cli")
        .args(tls_cli_args(&certs))
        .args(["--cluster", "reshard", &servers[0].addr()])
        .args([
            "--cluster-from",
            &ids[0],
            "--cluster-to",
            &ids[1],
            "--cluster-slots",
            "1500",
            "--cluster-yes",
        ])
        .output()
        .unwrap();
    assert!(
        reshard.status.success(),
        "reshard failed: {}",
        String::from_utf8_lossy(&reshard.stdout)
    );
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
    let servers = tls_cluster(&certs);
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        &cluster_plan(&servers, &certs, "name = \"s\"\nkeys = 60_000"),
    );
    let (output, result) = run_plan(&scratch, &path, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let total: u64 = servers
        .iter()
        .map(|s| certs.cli(s.port, &["DBSIZE"]).parse::<u64>().unwrap())
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
    let path = scratch.plan(
        "plan.toml",
        "seed = 1\n[targets.local]\nmode = \"standalone\"\nlaunch = true\n[targets.local.tls]\n[[stages]]\nname = \"s\"\nkeys = 5000\n",
    );
    let (output, result) = run_plan(&scratch, &path, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(result["targets"]["local"]["tls"], true);
    assert_eq!(result["targets"]["local"]["nodes"][0]["keys_after"], 5000);
    let err = stderr(&output);
    let line = err
        .lines()
        .find(|l| l.contains("keeps running"))
        .expect("the kept server is announced");
    let ca = line
        .split("CA certificate ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let port = result["targets"]["local"]["nodes"][0]["address"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", ca, "-p", &port])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["DBSIZE"]), "5000");
    cli(&["SHUTDOWN", "NOSAVE"]);
}

#[test]
fn a_launched_cluster_speaks_tls() {
    let scratch = Scratch::new();
    let path = scratch.plan(
        "plan.toml",
        "seed = 1\n[targets.grid]\nmode = \"cluster\"\nlaunch = { primaries = 3, tls = true }\n[[stages]]\nname = \"s\"\nkeys = 9000\n",
    );
    let (output, result) = run_plan(&scratch, &path, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    assert_eq!(result["targets"]["grid"]["tls"], true);
    let err = stderr(&output);
    let line = err
        .lines()
        .find(|l| l.contains("keeps running"))
        .expect("the kept cluster is announced");
    let ca = line
        .split("CA certificate ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let mut total = 0;
    for node in result["targets"]["grid"]["nodes"].as_array().unwrap() {
        let port = node["address"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let tls_cli = |args: &[&str]| {
            let out = std::process::Command::new("redis-cli")
                .args(["--tls", "--cacert", &ca, "-p", &port])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        total += tls_cli(&["DBSIZE"])
            .parse::<u64>()
            .expect("the node answers over TLS");
        tls_cli(&["SHUTDOWN", "NOSAVE"]);
    }
    assert_eq!(total, 9000);
}

//! `cachefill verify`: the dataset read back and compared with what the plan says.

mod support;

use support::*;

fn verify(
    scratch: &Scratch,
    plan: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, Option<serde_json::Value>) {
    let report = scratch.path("verify.json");
    let _ = std::fs::remove_file(&report);
    let output = cachefill(scratch.dir.path())
        .arg("verify")
        .arg(plan)
        .arg("-o")
        .arg(&report)
        .args(extra)
        .output()
        .unwrap();
    let json = std::fs::read_to_string(&report)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (output, json)
}

#[test]
fn verify_passes_after_a_fill_and_counts_exactly_what_was_broken() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "seed = 4\n{}\n[[stages]]\nname = \"s\"\nkeys = 20_000\nvalue_size = {{ min = 10, max = 100 }}\nttl = {{ min = \"1h\", max = \"2h\" }}\n",
            target(&server, true)
        ),
    );
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, report) = verify(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["checked"], 20_000);

    let mut conn = server.connect();
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("s:*").query(&mut conn).unwrap();
    keys.sort();
    for key in &keys[..10] {
        redis::cmd("DEL").arg(key).query::<()>(&mut conn).unwrap();
    }
    for key in &keys[100..105] {
        redis::cmd("SET")
            .arg(key)
            .arg("tampered")
            .arg("KEEPTTL")
            .query::<()>(&mut conn)
            .unwrap();
    }
    redis::cmd("PERSIST")
        .arg(&keys[200])
        .query::<()>(&mut conn)
        .unwrap();
    let (output, report) = verify(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stage = &report.unwrap()["stages"][0];
    assert_eq!(stage["missing"], 10);
    assert_eq!(stage["wrong_value"], 5);
    assert_eq!(stage["ttl_problems"], 1);
    let named = stage["missing_keys"][0].as_str().unwrap();
    assert!(keys[..10].iter().any(|k| k == named), "{named}");
    let err = stderr(&output);
    assert!(
        err.contains("10 missing") && err.contains("5 wrong values"),
        "{err}"
    );
}

#[test]
fn a_sample_finds_problems_when_a_tenth_is_gone() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "seed = 4\n{}\n[[stages]]\nname = \"s\"\nkeys = 50_000\n",
            target(&server, true)
        ),
    );
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mut conn = server.connect();
    for _ in 0..5_000 {
        let key: String = redis::cmd("RANDOMKEY").query(&mut conn).unwrap();
        redis::cmd("DEL").arg(key).query::<()>(&mut conn).unwrap();
    }
    let (output, report) = verify(&scratch, &plan, &["--sample", "1000"]);
    assert_eq!(output.status.code(), Some(1));
    let stage = &report.unwrap()["stages"][0];
    assert_eq!(stage["checked"], 1000);
    assert!(stage["missing"].as_u64().unwrap() >= 1);
}

#[test]
fn an_unseeded_plan_is_verified_with_the_seed_from_the_result() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "{}\n[[stages]]\nname = \"s\"\nkeys = 3000\n",
            target(&server, true)
        ),
    );
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, _) = verify(&scratch, &plan, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--result"), "{}", stderr(&output));
    let result = scratch.path("result.json");
    let (output, report) = verify(&scratch, &plan, &["--result", result.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["missing"], 0);
}

#[test]
fn verify_reads_a_cluster_routed_like_the_writes() {
    let cluster = RedisCluster::start(3, 0);
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        &format!(
            "seed = 8\n{}\n[[stages]]\nname = \"s\"\nkeys = 30_000\n",
            cluster.target(true)
        ),
    );
    let (output, _) = run_plan(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (output, report) = verify(&scratch, &plan, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(report.unwrap()["stages"][0]["checked"], 30_000);
}

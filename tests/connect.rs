//! Reaching a target again from a run's result: servers kept with `--keep` are recorded
//! (addresses and the throwaway CA) for `verify --result`, and a result of another format
//! is refused with the field that is wrong.

use crate::support;

use std::path::Path;

use support::*;

fn verify_with_result(scratch: &Scratch, plan: &Path, result: &Path) -> std::process::Output {
    cachefill(scratch.dir.path())
        .arg("verify")
        .arg(plan)
        .arg("--result")
        .arg(result)
        .output()
        .unwrap()
}

/// Stops a kept TLS server and removes the folders `--keep` left for it.
fn stop_kept_tls_server(port: &str, ca_file: &Path) {
    std::process::Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca_file)
        .args(["-p", port, "SHUTDOWN", "NOSAVE"])
        .output()
        .unwrap();
    if let Some(dir) = ca_file.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    remove_kept_folders(port);
}

#[test]
fn keep_records_the_launched_server_and_its_ca_so_verify_can_reach_it() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_standalone("local").tls(None))
        .stage(StageBuilder::new("s").keys(3000));
    let plan = scratch.plan("plan.toml", &plan.build());
    let (output, result) = run_plan(&scratch, &plan, &["--keep"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let result = result.unwrap();
    let kept = &result["targets"]["local"]["kept"];
    let address = result["targets"]["local"]["nodes"][0]["address"].clone();
    assert_eq!(kept["addresses"], serde_json::json!([address]));
    let ca_file = Path::new(kept["ca_file"].as_str().expect("a CA file")).to_path_buf();
    let port = address
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert!(ca_file.is_file(), "{} is missing", ca_file.display());

    let verified = verify_with_result(&scratch, &plan, &scratch.path("result.json"));
    stop_kept_tls_server(&port, &ca_file);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stderr(&verified).contains("checked 3000, missing 0"),
        "{}",
        stderr(&verified)
    );
}

#[test]
fn without_keep_the_result_records_no_kept_servers() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(1)
        .target(TargetBuilder::launch_standalone("local"))
        .stage(StageBuilder::new("s").keys(100));
    let plan = scratch.plan("plan.toml", &plan.build());
    let result = run_ok(&scratch, &plan, &[]);
    assert_eq!(result["targets"]["local"]["launched"], true);
    assert!(result["targets"]["local"].get("kept").is_none(), "{result}");
}

#[test]
fn a_result_of_another_format_is_refused_naming_the_missing_field() {
    let server = RedisServer::start(&[]);
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(2)
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(100));
    let plan = scratch.plan("plan.toml", &plan.build());
    let mut result = run_ok(&scratch, &plan, &[]);
    result["stages"][0]
        .as_object_mut()
        .unwrap()
        .remove("keys_planned");
    let old = scratch.path("old.json");
    std::fs::write(&old, result.to_string()).unwrap();

    let verified = verify_with_result(&scratch, &plan, &old);
    let merged = cachefill(scratch.dir.path())
        .arg("merge")
        .arg(&old)
        .output()
        .unwrap();
    for output in [verified, merged] {
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("old.json") && err.contains("stages[0]") && err.contains("keys_planned"),
            "{err}"
        );
    }
}

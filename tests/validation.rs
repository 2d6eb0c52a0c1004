//! Bad plans through the binary: exit 2, one line naming the file, and nothing written.
//! Which field each bad plan names, and how, is tested in-process (src/plan/tests.rs).

use crate::support;

use support::*;

/// Runs `check PLAN` or `run PLAN -o result.json` and checks the refusal: exit 2, one line
/// of stderr naming the plan file and containing `expected`, no secret echoed.
fn refused(scratch: &Scratch, command: &str, plan: &std::path::Path, expected: &[&str]) {
    let output = cachefill(scratch.dir.path())
        .arg(command)
        .arg(plan)
        .args(if command == "run" {
            &["-o", "result.json"][..]
        } else {
            &[]
        })
        .env_remove("CACHEFILL_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{command}: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{command}: not one line: {err}"
    );
    assert!(err.contains("bad.toml"), "{command}: no file name: {err}");
    for text in expected {
        assert!(err.contains(text), "{command}: missing `{text}` in: {err}");
    }
    assert!(
        !err.contains("hunter2"),
        "{command}: the literal password was echoed: {err}"
    );
}

#[test]
fn an_invalid_plan_exits_2_names_the_file_and_writes_nothing() {
    let server = RedisServer::start(&[]);
    server.set("sentinel", "1");
    let digest = server.digest();
    let scratch = Scratch::new();
    let good = PlanBuilder::new().target(server.target().flush(true));
    let bad_plans = [
        // Refused by validation, before any connection.
        good.clone()
            .stage(StageBuilder::new("s").keys(10).key_size(0))
            .build(),
        good.clone()
            .target(server.target().flush(true).set("password", "hunter2"))
            .stage(StageBuilder::new("s").keys(10))
            .build(),
    ];
    for text in bad_plans {
        let plan = scratch.plan("bad.toml", &text);
        for command in ["check", "run"] {
            refused(&scratch, command, &plan, &[]);
        }
    }
    // Refused at run time, when the password is read: still before anything is written.
    let plan = good
        .target(
            server
                .target()
                .flush(true)
                .set("password_env", "CACHEFILL_TEST_UNSET_VARIABLE"),
        )
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("bad.toml", &plan.build());
    let check = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check reads no environment: {}",
        stderr(&check)
    );
    refused(
        &scratch,
        "run",
        &plan,
        &["password_env", "CACHEFILL_TEST_UNSET_VARIABLE", "not set"],
    );

    assert_eq!(server.dbsize(), 1, "the server was touched");
    assert_eq!(server.digest(), digest, "the server was touched");
    for name in ["result.json", "bad.result.json"] {
        assert!(!scratch.path(name).exists(), "an invalid plan wrote {name}");
    }
}

#[test]
fn a_missing_plan_file_is_a_clear_error() {
    let scratch = Scratch::new();
    let output = cachefill(scratch.dir.path())
        .args(["run", "nowhere.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("nowhere.toml") && stderr(&output).contains("cannot read"));
}

/// A plan without stages would write nothing: `run`, `check`, `verify` and `export` refuse
/// it (`profile` and `flush` need only its targets).
#[test]
fn a_plan_without_stages_is_refused() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new().target(TargetBuilder::standalone("main", "127.0.0.1:1"));
    let plan = scratch.plan("plan.toml", &plan.build());
    for command in ["run", "check", "verify", "export"] {
        let output = cachefill(scratch.dir.path())
            .arg(command)
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        assert_eq!(
            stderr(&output),
            format!(
                "cachefill: {}: stages: the plan has no stages, so it would write nothing: add a [[stages]] table (docs/plan-format.md)\n",
                plan.display()
            ),
            "{command}"
        );
        assert_eq!(std::fs::read_dir(scratch.dir.path()).unwrap().count(), 1);
    }
}

/// `check` refuses a plan whose payload is more than the servers it launches hold, when
/// they refuse writes once full (noeviction, the default); an eviction policy fills past it.
#[test]
fn check_refuses_a_plan_that_cannot_fit_its_launched_servers() {
    let scratch = Scratch::new();
    let plan = |policy: Option<&str>| {
        let mut settings = vec![("maxmemory", "16mb".into())];
        if let Some(policy) = policy {
            settings.push(("maxmemory-policy", policy.into()));
        }
        let plan = PlanBuilder::new()
            .seed(9)
            .target(TargetBuilder::launch_cluster("main", 3, 0).server_config(&settings))
            .stage(StageBuilder::new("big").keys(100_000).value_size(1000));
        scratch.plan("plan.toml", &plan.build())
    };
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(plan(None))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "cachefill: target \"main\": its stages write ~98.42 MiB of payload, more than its maxmemory of 48.00 MiB (maxmemory-policy noeviction): the server would refuse writes once full. Lower the stages' size or keys, raise maxmemory, or fill with until_memory\n"
    );
    assert!(output.stdout.is_empty());
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(plan(Some("allkeys-lru")))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn check_shows_what_the_plan_would_write() {
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .seed(9)
        .target(TargetBuilder::standalone("main", "127.0.0.1:6379").flush(true))
        .stage(StageBuilder::new("warm").keys(1000))
        .stage(StageBuilder::new("bulk").size("64MiB").after(&["warm"]));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(out.contains("stage warm: target main, 1000 keys"), "{out}");
    assert!(
        out.contains(&format!(
            "stage bulk: target main, {} keys",
            (64u64 << 20).div_ceil(544)
        )),
        "{out}"
    );
    assert!(out.contains("after warm"), "{out}");
    assert!(out.contains("flushed first"), "{out}");
}

#[test]
fn schema_is_json_schema_of_the_plan() {
    let scratch = Scratch::new();
    let output = cachefill(scratch.dir.path())
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        schema["$schema"]
            .as_str()
            .unwrap()
            .contains("json-schema.org")
    );
    let stage = &schema["$defs"]["RawStage"]["properties"];
    for field in [
        "name",
        "target",
        "size",
        "keys",
        "until_memory",
        "key_size",
        "value_size",
        "ttl",
        "connections",
        "pipeline",
        "after",
        "seed",
    ] {
        assert!(stage.get(field).is_some(), "schema lacks stages.{field}");
    }
    assert_eq!(schema["$defs"]["RawStage"]["additionalProperties"], false);
}

#[test]
fn flushing_a_remote_target_needs_yes() {
    let scratch = Scratch::new();
    // 192.0.2.0/24 is reserved for documentation: never contacted, the refusal comes first.
    let plan = PlanBuilder::new()
        .target(TargetBuilder::standalone("far", "192.0.2.10:6379").flush(true))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let output = cachefill(scratch.dir.path())
        .arg("run")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(
        err.contains("far") && err.contains("192.0.2.10:6379") && err.contains("--yes"),
        "{err}"
    );
    assert!(!scratch.path("plan.result.json").exists());
}

#[test]
fn every_shipped_plan_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["plans", "examples"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let output = cachefill(root).arg("check").arg(&path).output().unwrap();
                assert!(
                    output.status.success(),
                    "{}: {}",
                    path.display(),
                    stderr(&output)
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 3, "only {checked} plans found");
}

/// A bad command line keeps clap's form (the argument, the usage, where the help is),
/// exits 2 and touches nothing.
#[test]
fn command_line_errors_name_the_argument_with_exit_2() {
    let scratch = Scratch::new();
    let output = cachefill(scratch.dir.path())
        .args(["run", "--bogus", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\nUsage: cachefill run [OPTIONS] <PLAN>\n\nFor more information, try '--help'.\n"
    );
    assert_eq!(std::fs::read_dir(scratch.dir.path()).unwrap().count(), 0);
}

/// Every output path is checked before any work: a run to a missing folder neither flushes
/// nor fills (before, it did both and then lost its result), and `profile`, `verify`,
/// `export`, `flush`, `merge` and `report` refuse before they read or write anything.
#[test]
fn an_output_path_that_cannot_be_written_is_refused_before_any_work() {
    let server = RedisServer::start(&[]);
    server.set("sentinel", "1");
    let digest = server.digest();
    let pings = server.calls("ping");
    let scratch = Scratch::new();
    let plan = PlanBuilder::new()
        .target(server.target().flush(true))
        .stage(StageBuilder::new("s").keys(10));
    let plan = scratch.plan("plan.toml", &plan.build());
    let plan = plan.to_str().unwrap();
    std::fs::write(scratch.path("plain"), "x").unwrap();
    let cases: [(&[&str], &str, &str); 8] = [
        (&["run", plan, "-o"], "missing/r.json", "the result"),
        (&["run", plan, "-o"], "plain/r.json", "the result"),
        (
            &["flush", "--yes", plan, "-o"],
            "missing/f.json",
            "the result",
        ),
        (
            &["verify", plan, "-o"],
            "missing/v.json",
            "the verify report",
        ),
        (
            &["profile", plan, "-o"],
            "missing/p.toml",
            "the profiled plan",
        ),
        (&["export", plan, "-o"], "missing/e.resp", "the export"),
        (
            &["merge", "a.json", "-o"],
            "missing/m.json",
            "the merged result",
        ),
        (&["report", "a.json", "-o"], "missing/r.html", "the report"),
    ];
    for (args, path, what) in cases {
        let output = cachefill(scratch.dir.path())
            .args(args)
            .arg(path)
            .output()
            .unwrap();
        let why = match path.split_once('/') {
            Some(("plain", _)) => "plain is a file, not a folder".to_string(),
            _ => "the folder missing does not exist (create it first)".to_string(),
        };
        assert_eq!(
            (output.status.code(), stderr(&output)),
            (
                Some(2),
                format!("cachefill: cannot write {what} to {path}: {why}; nothing was done\n")
            ),
            "{args:?}"
        );
    }
    assert_eq!(server.dbsize(), 1, "the server was flushed or filled");
    assert_eq!(server.digest(), digest);
    assert_eq!(server.calls("ping"), pings, "cachefill logged in");
    let left: Vec<_> = std::fs::read_dir(scratch.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

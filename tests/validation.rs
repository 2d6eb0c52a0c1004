//! Bad plans: exit 2, one line naming the file, the field and what would be valid, and the
//! server untouched.

mod support;

use support::*;

/// (what is wrong, target extras, stage extras, text the error must contain)
const BAD_PLANS: &[(&str, &str, &str, &[&str])] = &[
    (
        "typo in a field",
        "",
        "keys = 10\nconections = 4",
        &["conections", "stages[0]"],
    ),
    ("wrong type", "", "keys = \"many\"", &["stages[0].keys"]),
    (
        "key_size zero",
        "",
        "keys = 10\nkey_size = 0",
        &["key_size", "between 1 and 65536"],
    ),
    (
        "key_size too large",
        "",
        "keys = 10\nkey_size = 70000",
        &["key_size"],
    ),
    (
        "value_size zero",
        "",
        "keys = 10\nvalue_size = 0",
        &["value_size"],
    ),
    (
        "value_size over 64 MiB",
        "",
        "keys = 10\nvalue_size = \"65MiB\"",
        &["value_size", "64 MiB"],
    ),
    (
        "value range upside down",
        "",
        "keys = 10\nvalue_size = { min = 100, max = 10 }",
        &["value_size", "min"],
    ),
    (
        "connections zero",
        "",
        "keys = 10\nconnections = 0",
        &["connections", "1 and 1024"],
    ),
    (
        "connections too many",
        "",
        "keys = 10\nconnections = 2000",
        &["connections"],
    ),
    (
        "pipeline zero",
        "",
        "keys = 10\npipeline = 0",
        &["pipeline", "1 and 65536"],
    ),
    (
        "no amount",
        "",
        "key_size = 32",
        &["size, keys or until_memory", "none"],
    ),
    (
        "several amounts",
        "",
        "keys = 10\nsize = \"1MB\"",
        &["size, keys or until_memory", "several"],
    ),
    ("bad size unit", "", "size = \"5GiBs\"", &["size", "5GiBs"]),
    (
        "missing target",
        "",
        "keys = 10\ntarget = \"nope\"",
        &["target", "nope", "main"],
    ),
    (
        "after unknown stage",
        "",
        "keys = 10\nafter = [\"ghost\"]",
        &["after", "ghost"],
    ),
    (
        "ttl below a second",
        "",
        "keys = 10\nttl = \"500ms\"",
        &["ttl", "at least 1s"],
    ),
    (
        "ttl not a duration",
        "",
        "keys = 10\nttl = \"soon\"",
        &["ttl", "soon"],
    ),
    (
        "key_size too short for the index",
        "",
        "keys = 100000\nkey_size = 6",
        &["key_size", "use key_size = 7 or more"],
    ),
    (
        "stage name with a space",
        "",
        "keys = 10\nname = \"bad name\"",
        &["name"],
    ),
    (
        "literal password",
        "password = \"hunter2\"",
        "keys = 10",
        &["password", "password_env"],
    ),
    (
        "cert without key",
        "[targets.main.tls]\ncert_file = \"c.pem\"",
        "keys = 10",
        &["cert_file", "key_file"],
    ),
    (
        "unknown target field",
        "flsh = true",
        "keys = 10",
        &["flsh", "targets.main"],
    ),
    (
        "two nodes on standalone",
        "nodes = [\"127.0.0.1:1\", \"127.0.0.1:2\"]",
        "keys = 10",
        &["nodes", "exactly one"],
    ),
    (
        "username without password",
        "username = \"u\"",
        "keys = 10",
        &["username", "password"],
    ),
    (
        "two password sources",
        "password_env = \"A\"\npassword_file = \"f\"",
        "keys = 10",
        &["password_env", "not both"],
    ),
    (
        "password_env holding a value",
        "password_env = \"hunter2 with spaces\"",
        "keys = 10",
        &["password_env", "NAME"],
    ),
    (
        "nodes and launch",
        "launch = true",
        "keys = 10",
        &["launch", "not both"],
    ),
    (
        "until_memory not a size",
        "",
        "until_memory = \"lots\"",
        &["until_memory", "lots"],
    ),
    (
        "until_memory percentage out of range",
        "",
        "until_memory = \"120%\"",
        &["until_memory", "percentage"],
    ),
    (
        "a launched server with a CA of its own",
        "launch = true\n[targets.main.tls]\nca_file = \"ca.pem\"",
        "keys = 10",
        &["tls.ca_file", "throwaway"],
    ),
    (
        "ttl beyond 100 years",
        "",
        "keys = 10\nttl = \"200years\"",
        &["ttl", "at most 100 years"],
    ),
    (
        "missing password variable",
        "password_env = \"CACHEFILL_TEST_UNSET_VARIABLE\"",
        "keys = 10",
        &["password_env", "CACHEFILL_TEST_UNSET_VARIABLE", "not set"],
    ),
];

fn plan_text(server: &RedisServer, target_extra: &str, stage_extra: &str) -> String {
    // A later `nodes` in target_extra replaces the default one.
    let nodes = if target_extra.contains("nodes") {
        String::new()
    } else {
        format!("nodes = [\"{}\"]\n", server.addr())
    };
    let (target_lines, tls_table) = match target_extra.split_once("[targets.main.tls]") {
        Some((before, after)) => (before.to_string(), format!("[targets.main.tls]{after}\n")),
        None => (target_extra.to_string(), String::new()),
    };
    let name = if stage_extra.contains("name =") {
        ""
    } else {
        "name = \"s\"\n"
    };
    format!(
        "[targets.main]\nmode = \"standalone\"\n{nodes}flush = true\n{target_lines}\n{tls_table}\n[[stages]]\n{name}{stage_extra}\n"
    )
}

#[test]
fn every_invalid_plan_exits_2_names_the_field_and_writes_nothing() {
    let server = RedisServer::start(&[]);
    redis::cmd("SET")
        .arg("sentinel")
        .arg("1")
        .query::<()>(&mut server.connect())
        .unwrap();
    let scratch = Scratch::new();
    for (what, target_extra, stage_extra, expected) in BAD_PLANS {
        let plan = scratch.plan("bad.toml", &plan_text(&server, target_extra, stage_extra));
        for command in ["check", "run"] {
            let output = cachefill(scratch.dir.path())
                .arg(command)
                .arg(&plan)
                .env_remove("CACHEFILL_TEST_UNSET_VARIABLE")
                .output()
                .unwrap();
            let err = stderr(&output);
            if *what == "missing password variable" && command == "check" {
                // Environment variables are read at run time; check only validates the file.
                assert!(output.status.success(), "{what}: check failed: {err}");
                continue;
            }
            assert_eq!(
                output.status.code(),
                Some(2),
                "{what} ({command}): exit code, stderr: {err}"
            );
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{what} ({command}): not one line: {err}"
            );
            assert!(
                err.contains("bad.toml"),
                "{what} ({command}): no file name: {err}"
            );
            for text in *expected {
                assert!(
                    err.contains(text),
                    "{what} ({command}): missing `{text}` in: {err}"
                );
            }
            assert!(
                !err.contains("hunter2"),
                "{what}: the literal password was echoed: {err}"
            );
        }
        assert_eq!(server.dbsize(), 1, "{what}: the server was touched");
        assert!(
            !scratch.path("bad.result.json").exists(),
            "{what}: an invalid plan wrote a result"
        );
    }
}

#[test]
fn errors_point_at_line_and_column() {
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n\n[[stages]]\nname = \"s\"\nkeys = 10\nkey_size = 0\n",
    );
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert!(err.contains("plan.toml:8:12"), "{err}");
    assert!(err.contains("stages[0].key_size"), "{err}");
}

#[test]
fn duplicate_stage_names_and_cycles_are_refused() {
    let scratch = Scratch::new();
    let head = "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n";
    let duplicate =
        format!("{head}[[stages]]\nname = \"a\"\nkeys = 1\n[[stages]]\nname = \"a\"\nkeys = 1\n");
    let cycle = format!(
        "{head}[[stages]]\nname = \"a\"\nkeys = 1\nafter = [\"c\"]\n[[stages]]\nname = \"b\"\nkeys = 1\nafter = [\"a\"]\n[[stages]]\nname = \"c\"\nkeys = 1\nafter = [\"b\"]\n"
    );
    for (text, expected) in [(duplicate, "already used"), (cycle, "cycle: a → c → b → a")] {
        let plan = scratch.plan("plan.toml", &text);
        let output = cachefill(scratch.dir.path())
            .arg("check")
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
}

#[test]
fn invalid_toml_and_unknown_versions_are_refused() {
    let scratch = Scratch::new();
    for (text, expected) in [
        ("[targets.main\nmode = 1", "invalid TOML"),
        ("version = 2\n", "version 2 is not supported"),
    ] {
        let plan = scratch.plan("plan.toml", text);
        let output = cachefill(scratch.dir.path())
            .arg("check")
            .arg(&plan)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let err = stderr(&output);
        assert!(
            err.contains(expected) && err.contains("plan.toml:1:"),
            "{err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
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

#[test]
fn check_shows_what_the_plan_would_write() {
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        "seed = 9\n[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\nflush = true\n[[stages]]\nname = \"warm\"\nkeys = 1000\n[[stages]]\nname = \"bulk\"\nsize = \"64MiB\"\nafter = [\"warm\"]\n",
    );
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
    let plan = scratch.plan(
        "plan.toml",
        "[targets.far]\nmode = \"standalone\"\nnodes = [\"192.0.2.10:6379\"]\nflush = true\n[[stages]]\nname = \"s\"\nkeys = 10\n",
    );
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

#[test]
fn a_plan_name_that_is_not_a_file_name_is_refused() {
    let scratch = Scratch::new();
    let plan = scratch.plan(
        "plan.toml",
        "name = \"../elsewhere\"\n[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n",
    );
    let output = cachefill(scratch.dir.path())
        .arg("check")
        .arg(&plan)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("plan name"), "{}", stderr(&output));
}

#[test]
fn command_line_errors_are_one_line_with_exit_2() {
    let scratch = Scratch::new();
    let output = cachefill(scratch.dir.path())
        .args(["run", "--bogus", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--bogus"), "{err}");
}

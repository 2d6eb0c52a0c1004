//! Plans in-process: addresses, and validation: each bad plan of `bad_plans.rs` is refused
//! with one error that names the field and says what is valid instead.

use std::path::Path;

use super::bad_plans::{BAD_PLANS, BadPlan, bad};
use super::*;

#[test]
fn node_addresses_parse_like_redis_cli() {
    assert_eq!(
        NodeAddr::parse("10.0.0.5:7000", 6379).unwrap().to_string(),
        "10.0.0.5:7000"
    );
    assert_eq!(NodeAddr::parse("redis.internal", 6380).unwrap().port, 6380);
    assert_eq!(NodeAddr::parse("[::1]:7001", 6379).unwrap().host, "::1");
    assert_eq!(
        NodeAddr::parse("[::1]", 6379).unwrap().to_string(),
        "[::1]:6379"
    );
    assert_eq!(NodeAddr::parse("::1", 6379).unwrap().port, 6379);
    assert!(NodeAddr::parse("host:port", 6379).is_err());
    assert!(NodeAddr::parse(":7000", 6379).is_err());
    assert!(NodeAddr::parse("", 6379).is_err());
}

#[test]
fn loopback_is_recognised() {
    for addr in ["127.0.0.1:1", "localhost:1", "[::1]:1", "127.3.2.1:5"] {
        assert!(NodeAddr::parse(addr, 1).unwrap().is_loopback(), "{addr}");
    }
    for addr in ["10.0.0.5:7000", "redis.internal:6379", "[2001:db8::1]:1"] {
        assert!(!NodeAddr::parse(addr, 1).unwrap().is_loopback(), "{addr}");
    }
}

/// A plan with one standalone target `main` and one stage `s`, plus the lines of `bad`
/// (a `nodes`, a `launch` or a `name` there replaces the default one).
fn plan_text(bad: &BadPlan) -> String {
    let nodes = if bad.target.contains("nodes") || bad.target.contains("launch") {
        ""
    } else {
        "nodes = [\"127.0.0.1:6379\"]\n"
    };
    let name = if bad.stage.contains("name =") {
        ""
    } else {
        "name = \"s\"\n"
    };
    format!(
        "[targets.main]\nmode = \"standalone\"\n{nodes}flush = true\n{}\n\n[[stages]]\n{name}{}\n",
        bad.target, bad.stage
    )
}

/// Parses and validates `text` as if read from `dir/bad.toml`.
fn parse_text(text: &str) -> Result<Plan, PlanError> {
    validate::parse(Path::new("dir/bad.toml"), text, String::new())
}

#[test]
fn every_bad_plan_names_its_field_and_what_is_valid() {
    for bad in BAD_PLANS {
        let text = plan_text(bad);
        let Err(error) = parse_text(&text) else {
            panic!("{}: accepted:\n{text}", bad.what);
        };
        assert_eq!(error.field, bad.field, "{}: {error}", bad.what);
        assert!(
            error.message.contains(bad.message),
            "{}: `{}` is not in: {error}",
            bad.what,
            bad.message
        );
        assert!(
            error.location.starts_with("dir/bad.toml"),
            "{}: {error}",
            bad.what
        );
        let line = error.to_string();
        assert_eq!(line.lines().count(), 1, "{}: {line}", bad.what);
        assert!(
            !line.contains("hunter2"),
            "{}: a secret was echoed: {line}",
            bad.what
        );
    }
}

#[test]
fn the_same_plan_without_the_fault_is_valid() {
    let good = bad("nothing", "", "keys = 10", "", "");
    let plan = parse_text(&plan_text(&good)).unwrap();
    assert_eq!(plan.name, "bad");
    assert_eq!(plan.stages[0].keys, 10);
}

#[test]
fn server_config_reaches_the_plan_with_names_lowercased_and_values_as_text() {
    let text = "[targets.main]\nmode = \"cluster\"\nlaunch = { primaries = 2 }\nserver_config = { MaxMemory = \"64mb\", \"maxmemory-policy\" = \"allkeys-lru\", hz = 50 }\n[[stages]]\nname = \"s\"\nkeys = 1\n";
    let plan = parse_text(text).unwrap();
    let Servers::Launch { server_config, .. } = &plan.targets[0].servers else {
        panic!("not launched: {:?}", plan.targets[0].servers);
    };
    let settings: Vec<(&str, &str)> = server_config
        .iter()
        .map(|s| (s.name.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(
        settings,
        [
            ("maxmemory", "64mb"),
            ("hz", "50"),
            ("maxmemory-policy", "allkeys-lru")
        ]
    );
}

#[test]
fn write_comes_from_the_stage_else_its_target() {
    let plan = parse_text(
        "seed = 1\n[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\nwrite = \"restore\"\n\
         [[stages]]\nname = \"a\"\ntype = \"hash\"\nkeys = 1\n\
         [[stages]]\nname = \"b\"\ntype = \"list\"\nkeys = 1\nwrite = \"commands\"\n\
         [[stages]]\nname = \"c\"\nkeys = 1\n",
    )
    .unwrap();
    let writes: Vec<WriteMode> = plan.stages.iter().map(|s| s.write).collect();
    // A string stage takes its target's "restore" (it writes MSET/SET all the same).
    assert_eq!(
        writes,
        [WriteMode::Restore, WriteMode::Commands, WriteMode::Restore]
    );
    assert_eq!(plan.targets[0].write, WriteMode::Restore);
    let default = parse_text(
        "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n[[stages]]\nname = \"a\"\ntype = \"set\"\nkeys = 1\n",
    )
    .unwrap();
    assert_eq!(default.stages[0].write, WriteMode::Auto);
}

#[test]
fn errors_point_at_line_and_column() {
    let text = "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n\n[[stages]]\nname = \"s\"\nkeys = 10\nkey_size = 0\n";
    let error = parse_text(text).unwrap_err();
    assert_eq!(error.location, "dir/bad.toml:8:12");
    assert_eq!(error.field, "stages[0].key_size");
}

/// An error about a field points at the field's own line, not its table's header.
#[test]
fn errors_point_at_the_fields_own_line() {
    let head = "[targets.main]\nmode = \"standalone\"\n";
    let stage = "\n[[stages]]\nname = \"s\"\nkeys = 10\n";
    for (text, location, field) in [
        (
            format!("{head}nodes = [\"127.0.0.1:1\"]\npassword = \"x\"\n{stage}"),
            "4:1",
            "targets.main.password",
        ),
        (
            format!("{head}nodes = [\"127.0.0.1:99999\"]\n{stage}"),
            "3:1",
            "targets.main.nodes",
        ),
        (
            format!("{head}nodes = [\"127.0.0.1:1\"]\n{stage}elements = 5\n"),
            "8:1",
            "stages[0].elements",
        ),
        (
            format!("{head}nodes = [\"127.0.0.1:1\"]\ntls = {{ cert_file = \"c.pem\" }}\n{stage}"),
            "4:9",
            "targets.main.tls.cert_file",
        ),
    ] {
        let error = parse_text(&text).unwrap_err();
        assert_eq!(error.field, field, "{error}");
        assert_eq!(
            error.location,
            format!("dir/bad.toml:{location}"),
            "{error}"
        );
    }
}

#[test]
fn duplicate_stage_names_and_cycles_are_refused() {
    let head = "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n";
    let duplicate =
        format!("{head}[[stages]]\nname = \"a\"\nkeys = 1\n[[stages]]\nname = \"a\"\nkeys = 1\n");
    let cycle = format!(
        "{head}[[stages]]\nname = \"a\"\nkeys = 1\nafter = [\"c\"]\n[[stages]]\nname = \"b\"\nkeys = 1\nafter = [\"a\"]\n[[stages]]\nname = \"c\"\nkeys = 1\nafter = [\"b\"]\n"
    );
    for (text, expected) in [(duplicate, "already used"), (cycle, "cycle: a → c → b → a")] {
        let error = parse_text(&text).unwrap_err();
        assert!(error.message.contains(expected), "{error}");
    }
}

#[test]
fn invalid_toml_and_unknown_versions_are_refused() {
    for (text, expected) in [
        ("[targets.main\nmode = 1", "invalid TOML"),
        ("version = 2\n", "version 2 is not supported"),
    ] {
        let error = parse_text(text).unwrap_err();
        assert!(error.location.starts_with("dir/bad.toml:1:"), "{error}");
        assert!(error.to_string().contains(expected), "{error}");
        assert_eq!(error.to_string().lines().count(), 1, "{error}");
    }
}

#[test]
fn a_plan_name_that_is_not_a_file_name_is_refused() {
    let text = "name = \"../elsewhere\"\n[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n";
    let error = parse_text(text).unwrap_err();
    assert_eq!(error.field, "name");
    assert!(error.message.contains("plan name"), "{error}");
}

#[test]
fn a_cluster_target_refuses_a_database_other_than_0() {
    let text = "[targets.main]\nmode = \"cluster\"\nnodes = [\"127.0.0.1:7000\"]\ndb = 1\n[[stages]]\nname = \"s\"\nkeys = 1\n";
    assert_eq!(parse_text(text).unwrap_err().field, "targets.main.db");
}

#[test]
fn a_plan_name_with_a_line_break_is_refused_on_one_line() {
    let text = "name = \"a\\r\\nb\"\n[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n";
    let error = parse_text(text).unwrap_err();
    assert_eq!(error.field, "name");
    assert!(
        error
            .to_string()
            .starts_with("dir/bad.toml: name: plan name \"a\\r\\nb\""),
        "{error}"
    );
}

#[test]
fn a_long_chain_of_stages_is_checked_for_cycles_without_deep_recursion() {
    let mut text =
        String::from("[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n");
    // Each stage waits for the next: the check walks the whole chain from the first.
    for i in 0..5000 {
        text.push_str(&format!("[[stages]]\nname = \"s{i}\"\nkeys = 1\n"));
        if i < 4999 {
            text.push_str(&format!("after = [\"s{}\"]\n", i + 1));
        }
    }
    // A small stack: the check must not take a frame per stage of the chain.
    let validated = std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(move || parse_text(&text).map(|plan| plan.stages.len()))
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(validated.unwrap(), 5000);
}

#[test]
fn a_size_with_a_key_format_counts_each_keys_exact_length() {
    // Keys 0–9 are 2 bytes, 10–99 3, 100–999 4, then 5: with 100-byte values,
    // 10 × 102 + 90 × 103 + 900 × 104 + 8535 × 105 = 1,000,065 ≥ 1 MB, and 9534 keys fall
    // 105 bytes short (docs/plan-format.md gives this example).
    let sized = bad(
        "",
        "",
        "size = \"1MB\"\nvalue_size = 100\nkey_format = \"k{i}\"",
        "",
        "",
    );
    let plan = parse_text(&plan_text(&sized)).unwrap();
    assert_eq!(plan.stages[0].keys, 9535);
    let KeyShape::Format { format, mean_len } = &plan.stages[0].shape.key else {
        panic!("not a format");
    };
    assert_eq!(format.text(), "k{i}");
    // (10 × 2 + 90 × 3 + 900 × 4 + 8535 × 5) / 9535 = 4.88…, rounded up.
    assert_eq!(*mean_len, 5);
}

#[test]
fn key_formats_that_cannot_meet_are_accepted() {
    for (first, second) in [
        ("{{user:{i}}}:cart", "{{user:{i}}}:profile"),
        ("k{i}", "k0{i}"),
        ("memtier-{i}", "key:{i:012}"),
    ] {
        let text = format!(
            "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n\n[[stages]]\nname = \"a\"\nkeys = 1000\nkey_format = \"{first}\"\n\n[[stages]]\nname = \"b\"\ntype = \"set\"\nkeys = 1000\nkey_format = \"{second}\"\n"
        );
        let plan = parse_text(&text).unwrap_or_else(|e| panic!("{first} {second}: {e}"));
        assert_eq!(plan.stages[1].keys, 1000);
    }
}

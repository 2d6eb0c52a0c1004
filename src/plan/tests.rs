//! Plans in-process: addresses, and validation — each bad plan is refused with one error
//! that names the field and says what is valid instead.

use std::path::Path;

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

/// A bad plan: what is wrong, lines added to the target `main`, lines of the stage, the
/// field the error must name, and a part of its message.
struct BadPlan {
    what: &'static str,
    target: &'static str,
    stage: &'static str,
    field: &'static str,
    message: &'static str,
}

/// One row of [`BAD_PLANS`].
const fn bad(
    what: &'static str,
    target: &'static str,
    stage: &'static str,
    field: &'static str,
    message: &'static str,
) -> BadPlan {
    BadPlan {
        what,
        target,
        stage,
        field,
        message,
    }
}

/// Every way a plan file can be wrong that validation must catch, one at a time.
const BAD_PLANS: &[BadPlan] = &[
    bad(
        "io_timeout of zero",
        "io_timeout = \"0s\"",
        "keys = 10",
        "targets.main.io_timeout",
        "a timeout must be at least 100ms",
    ),
    bad(
        "connect_timeout too short",
        "connect_timeout = \"5ms\"",
        "keys = 10",
        "targets.main.connect_timeout",
        "5ms is too short",
    ),
    bad(
        "typo in a field",
        "",
        "keys = 10\nconections = 4",
        "stages[0].conections",
        "unknown field `conections`",
    ),
    bad(
        "wrong type",
        "",
        "keys = \"many\"",
        "stages[0].keys",
        "invalid type: string \"many\"",
    ),
    bad(
        "key_size zero",
        "",
        "keys = 10\nkey_size = 0",
        "stages[0].key_size",
        "between 1 and 65536, not 0",
    ),
    bad(
        "key_size too large",
        "",
        "keys = 10\nkey_size = 70000",
        "stages[0].key_size",
        "between 1 and 65536, not 70000",
    ),
    bad(
        "value_size zero",
        "",
        "keys = 10\nvalue_size = 0",
        "stages[0].value_size",
        "between 1 B and 64 MiB, not 0 bytes",
    ),
    bad(
        "value_size over 64 MiB",
        "",
        "keys = 10\nvalue_size = \"65MiB\"",
        "stages[0].value_size",
        "between 1 B and 64 MiB, not 68157440 bytes",
    ),
    bad(
        "value range upside down",
        "",
        "keys = 10\nvalue_size = { min = 100, max = 10 }",
        "stages[0].value_size",
        "min (100) is larger than max (10)",
    ),
    bad(
        "connections zero",
        "",
        "keys = 10\nconnections = 0",
        "stages[0].connections",
        "between 1 and 1024, not 0",
    ),
    bad(
        "connections too many",
        "",
        "keys = 10\nconnections = 2000",
        "stages[0].connections",
        "between 1 and 1024, not 2000",
    ),
    bad(
        "pipeline zero",
        "",
        "keys = 10\npipeline = 0",
        "stages[0].pipeline",
        "between 1 and 65536, not 0",
    ),
    bad(
        "no amount",
        "",
        "key_size = 32",
        "stages[0].size",
        "exactly one of size, keys or until_memory; it has none",
    ),
    bad(
        "several amounts",
        "",
        "keys = 10\nsize = \"1MB\"",
        "stages[0].size",
        "exactly one of size, keys or until_memory; it has several",
    ),
    bad(
        "bad size unit",
        "",
        "size = \"5GiBs\"",
        "stages[0].size",
        "`5GiBs` is not a size",
    ),
    bad(
        "missing target",
        "",
        "keys = 10\ntarget = \"nope\"",
        "stages[0].target",
        "target \"nope\", which the plan does not define; targets: main",
    ),
    bad(
        "after unknown stage",
        "",
        "keys = 10\nafter = [\"ghost\"]",
        "stages[0].after",
        "after \"ghost\", which is not a stage",
    ),
    bad(
        "ttl below a second",
        "",
        "keys = 10\nttl = \"500ms\"",
        "stages[0].ttl",
        "at least 1s, not 500ms",
    ),
    bad(
        "ttl not a duration",
        "",
        "keys = 10\nttl = \"soon\"",
        "stages[0].ttl",
        "`soon` is not a duration",
    ),
    bad(
        "key_size too short for the index",
        "",
        "keys = 100000\nkey_size = 6",
        "stages[0].key_size",
        "use key_size = 7 or more",
    ),
    bad(
        "stage name with a space",
        "",
        "keys = 10\nname = \"bad name\"",
        "stages[0].name",
        "\"bad name\" may only use letters",
    ),
    bad(
        "literal password",
        "password = \"hunter2\"",
        "keys = 10",
        "targets.main.password",
        "name an environment variable with password_env",
    ),
    bad(
        "cert without key",
        "[targets.main.tls]\ncert_file = \"c.pem\"",
        "keys = 10",
        "targets.main.tls.cert_file",
        "cert_file and key_file go together",
    ),
    bad(
        "unknown target field",
        "flsh = true",
        "keys = 10",
        "targets.main.flsh",
        "unknown field `flsh`",
    ),
    bad(
        "two nodes on standalone",
        "nodes = [\"127.0.0.1:1\", \"127.0.0.1:2\"]",
        "keys = 10",
        "targets.main.nodes",
        "exactly one node, not 2",
    ),
    bad(
        "username without password",
        "username = \"u\"",
        "keys = 10",
        "targets.main.username",
        "needs a password",
    ),
    bad(
        "two password sources",
        "password_env = \"A\"\npassword_file = \"f\"",
        "keys = 10",
        "targets.main.password_env",
        "password_env or password_file, not both",
    ),
    bad(
        "password_env holding a value",
        "password_env = \"hunter2 with spaces\"",
        "keys = 10",
        "targets.main.password_env",
        "the NAME of an environment variable",
    ),
    bad(
        "nodes and launch",
        "nodes = [\"127.0.0.1:1\"]\nlaunch = true",
        "keys = 10",
        "targets.main.launch",
        "not both",
    ),
    bad(
        "until_memory not a size",
        "",
        "until_memory = \"lots\"",
        "stages[0].until_memory",
        "`lots` is not a size",
    ),
    bad(
        "until_memory percentage out of range",
        "",
        "until_memory = \"120%\"",
        "stages[0].until_memory",
        "`120%` is not a percentage",
    ),
    bad(
        "a launched server with a CA of its own",
        "launch = true\n[targets.main.tls]\nca_file = \"ca.pem\"",
        "keys = 10",
        "targets.main.tls.ca_file",
        "throwaway CA",
    ),
    bad(
        "server_config without launch",
        "server_config = { maxmemory = \"1mb\" }",
        "keys = 10",
        "targets.main.server_config",
        "only applies with launch = true",
    ),
    bad(
        "server_config setting the port",
        "launch = true\nserver_config = { port = 7000 }",
        "keys = 10",
        "targets.main.server_config.port",
        "port cannot be set in server_config: cachefill starts a launched server on a free loopback port",
    ),
    bad(
        "server_config setting a TLS file",
        "launch = true\nserver_config = { tls-cert-file = \"x.pem\" }",
        "keys = 10",
        "targets.main.server_config.tls-cert-file",
        "cachefill sets up TLS on a launched server itself",
    ),
    bad(
        "server_config turning persistence on",
        "launch = true\nserver_config = { appendonly = \"yes\" }",
        "keys = 10",
        "targets.main.server_config.appendonly",
        "without persistence",
    ),
    bad(
        "server_config holding a password",
        "launch = true\nserver_config = { requirepass = \"hunter2\" }",
        "keys = 10",
        "targets.main.server_config.requirepass",
        "a password does not belong in a plan",
    ),
    bad(
        "server_config with an empty name",
        "launch = true\nserver_config = { \"\" = \"1\" }",
        "keys = 10",
        "targets.main.server_config",
        "a setting has an empty name",
    ),
    bad(
        "server_config with a name that is not one",
        "launch = true\nserver_config = { \"max memory\" = \"1mb\" }",
        "keys = 10",
        "targets.main.server_config.max memory",
        "is not a setting name",
    ),
    bad(
        "server_config with a name given twice",
        "launch = true\nserver_config = { maxmemory = \"1mb\", MAXMEMORY = \"2mb\" }",
        "keys = 10",
        "targets.main.server_config.maxmemory",
        "maxmemory is given twice",
    ),
    bad(
        "server_config with a boolean value",
        "launch = true\nserver_config = { lazyfree-lazy-eviction = true }",
        "keys = 10",
        "targets.main.server_config.lazyfree-lazy-eviction",
        "a string or an integer",
    ),
    bad(
        "server_config with a line break in a value",
        "launch = true\nserver_config = { maxmemory-policy = \"noeviction\\nport 1\" }",
        "keys = 10",
        "targets.main.server_config.maxmemory-policy",
        "control characters",
    ),
    bad(
        "server_config with a value that is another option",
        "launch = true\nserver_config = { maxmemory = \"--port\" }",
        "keys = 10",
        "targets.main.server_config.maxmemory",
        "cannot start with `--`",
    ),
    bad(
        "ttl beyond 100 years",
        "",
        "keys = 10\nttl = \"200years\"",
        "stages[0].ttl",
        "at most 100 years, not 200years",
    ),
    bad(
        "field_size on a list",
        "",
        "keys = 10\ntype = \"list\"\nfield_size = 4",
        "stages[0].field_size",
        "field_size applies to hash and stream stages only; stage \"s\" is of type list",
    ),
    bad(
        "score on a hash",
        "",
        "keys = 10\ntype = \"hash\"\nscore = { min = 1, max = 2 }",
        "stages[0].score",
        "score applies to zset stages only",
    ),
    bad(
        "no elements",
        "",
        "keys = 10\ntype = \"set\"\nelements = 0",
        "stages[0].elements",
        "elements must be between 1 and 100000000 per key, not 0",
    ),
    bad(
        "members too small to be unique",
        "",
        "keys = 10\ntype = \"zset\"\nelements = 1000\nvalue_size = 2",
        "stages[0].value_size",
        "use value_size = 3 or more",
    ),
    bad(
        "field names too small to be unique",
        "",
        "keys = 10\ntype = \"hash\"\nelements = { min = 1, max = 100 }\nfield_size = 1",
        "stages[0].field_size",
        "use field_size = 2 or more",
    ),
    bad(
        "entry_fields on a set",
        "",
        "keys = 10\ntype = \"set\"\nentry_fields = 2",
        "stages[0].entry_fields",
        "entry_fields applies to stream stages only",
    ),
    bad(
        "keys_per_command on a hash",
        "",
        "keys = 10\ntype = \"hash\"\nkeys_per_command = 4",
        "stages[0].keys_per_command",
        "keys_per_command applies to string stages only",
    ),
    bad(
        "elements on a string stage",
        "",
        "keys = 10\nelements = 3",
        "stages[0].elements",
        "elements applies to hash, set, zset, list and stream stages only",
    ),
    bad(
        "key_format with an unknown placeholder",
        "",
        "keys = 10\nkey_format = \"k:{j}\"",
        "stages[0].key_format",
        "has `{j}`, which is not a placeholder: write {i} (the entry index) or {i:0N}",
    ),
    bad(
        "key_format padded too wide",
        "",
        "keys = 10\nkey_format = \"k:{i:021}\"",
        "stages[0].key_format",
        "has `{i:021}`, which is not a placeholder",
    ),
    bad(
        "key_format with a lone opening brace",
        "",
        "keys = 10\nkey_format = \"{user:{i}\"",
        "stages[0].key_format",
        "has `{user:{i}`, which is not a placeholder",
    ),
    bad(
        "key_format with a lone closing brace",
        "",
        "keys = 10\nkey_format = \"user:{i}}\"",
        "stages[0].key_format",
        "has a lone `}` at byte 8",
    ),
    bad(
        "key_format with an unclosed brace",
        "",
        "keys = 10\nkey_format = \"k{i}{\"",
        "stages[0].key_format",
        "has a lone `{` at byte 4",
    ),
    bad(
        "key_format without the index",
        "",
        "keys = 10\nkey_format = \"{{user}}:cart\"",
        "stages[0].key_format",
        "has no {i}: every key must hold the entry index so keys are unique",
    ),
    bad(
        "key_format with a line break",
        "",
        "keys = 10\nkey_format = \"k\\n{i}\"",
        "stages[0].key_format",
        "control character",
    ),
    bad(
        "key_format beside key_prefix",
        "",
        "keys = 10\nkey_format = \"k{i}\"\nkey_prefix = \"k\"",
        "stages[0].key_prefix",
        "key_prefix cannot be used with key_format \"k{i}\": the key is exactly the format",
    ),
    bad(
        "key_format beside key_size",
        "",
        "keys = 10\nkey_format = \"k{i}\"\nkey_size = 16",
        "stages[0].key_size",
        "key_size cannot be used with key_format \"k{i}\": the key is exactly the format",
    ),
    bad(
        "the same key_format twice",
        "",
        "name = \"a\"\nkeys = 10\nkey_format = \"k{i}\"\n\n[[stages]]\nname = \"b\"\ntype = \"hash\"\nkeys = 10\nkey_format = \"k{i}\"",
        "stages[1].key_format",
        "stage \"b\" (key_format \"k{i}\") and stage \"a\" (key_format \"k{i}\") can write the same key on target \"main\" (e.g. \"k1\")",
    ),
    bad(
        "key_formats that meet",
        "",
        "name = \"a\"\nkeys = 100\nkey_format = \"k{i}\"\n\n[[stages]]\nname = \"b\"\nkeys = 10\nkey_format = \"k1{i}\"",
        "stages[1].key_format",
        "(e.g. \"k11\"), and a key written twice would count twice in keys_written",
    ),
    bad(
        "a key_format in another stage's prefix space",
        "",
        "name = \"a\"\nkeys = 100\nkey_prefix = \"s:\"\nkey_size = 8\n\n[[stages]]\nname = \"b\"\nkeys = 10\nkey_format = \"s:{i:06}\"",
        "stages[1].key_format",
        "stage \"b\" (key_format \"s:{i:06}\") and stage \"a\" (key_prefix \"s:\", key_size 8) can write the same key",
    ),
    bad(
        "unknown type",
        "",
        "keys = 10\ntype = \"tree\"",
        "stages[0].type",
        "expected one of `string`, `hash`, `set`, `zset`, `list`, `stream`",
    ),
];

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
    let text = "[targets.main]\nmode = \"cluster\"\nlaunch = { primaries = 2 }\nserver_config = { MaxMemory = \"64mb\", \"maxmemory-policy\" = \"allkeys-lru\", hz = 50 }\n";
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
fn errors_point_at_line_and_column() {
    let text = "[targets.main]\nmode = \"standalone\"\nnodes = [\"127.0.0.1:6379\"]\n\n[[stages]]\nname = \"s\"\nkeys = 10\nkey_size = 0\n";
    let error = parse_text(text).unwrap_err();
    assert_eq!(error.location, "dir/bad.toml:8:12");
    assert_eq!(error.field, "stages[0].key_size");
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

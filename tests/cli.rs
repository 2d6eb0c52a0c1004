//! The command line's conventions: the committed JSON Schema that plans name, shell
//! completions, the manual page and an example in every subcommand's help.

use crate::support;

use std::path::{Path, PathBuf};

use support::*;

use cachefill::__private::SUBCOMMANDS;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cachefill ARGS` in the repository and returns its standard output; it must succeed.
fn stdout_of(args: &[&str]) -> String {
    let output = cachefill(repo()).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The schema plans name with `#:schema ../docs/cachefill.schema.json`.
fn committed_schema() -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("docs/cachefill.schema.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every plan kept in the repository: `plans/` and `examples/`, recursively.
fn repository_plans() -> Vec<PathBuf> {
    fn walk(dir: &Path, plans: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, plans);
            } else if path.extension().is_some_and(|e| e == "toml") {
                plans.push(path);
            }
        }
    }
    let mut plans = Vec::new();
    walk(&repo().join("plans"), &mut plans);
    walk(&repo().join("examples"), &mut plans);
    plans.sort();
    plans
}

fn as_json(toml_text: &str) -> serde_json::Value {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn the_committed_schema_is_what_cachefill_schema_prints() {
    let printed: serde_json::Value = serde_json::from_str(&stdout_of(&["schema"])).unwrap();
    assert_eq!(
        printed,
        committed_schema(),
        "docs/cachefill.schema.json is stale: run `cachefill schema > docs/cachefill.schema.json`"
    );
}

#[test]
fn every_plan_in_the_repository_names_the_schema_and_an_independent_validator_accepts_it() {
    let schema = committed_schema();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    let validator = jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema");
    let plans = repository_plans();
    assert!(
        plans.len() >= 6,
        "plans/ and examples/ hold the repository's plans: {plans:?}"
    );
    for path in plans {
        let text = std::fs::read_to_string(&path).unwrap();
        let depth = path.strip_prefix(repo()).unwrap().components().count() - 1;
        let expected = format!("#:schema {}docs/cachefill.schema.json", "../".repeat(depth));
        assert_eq!(
            text.lines().next(),
            Some(expected.as_str()),
            "{}",
            path.display()
        );
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&text))
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        let output = cachefill(repo()).arg("check").arg(&path).output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
    }
}

#[test]
fn the_schema_catches_a_misspelt_field_and_a_wrong_type() {
    let validator = jsonschema::draft202012::new(&committed_schema()).unwrap();
    let plan = PlanBuilder::new()
        .target(TargetBuilder::launch_standalone("local"))
        .stage(StageBuilder::new("s").keys(10));
    assert!(validator.is_valid(&as_json(&plan.build())));
    let misspelt = PlanBuilder::new()
        .target(TargetBuilder::launch_standalone("local"))
        .stage(StageBuilder::new("s").keys(10).set("conections", 4));
    let errors: Vec<String> = validator
        .iter_errors(&as_json(&misspelt.build()))
        .map(|e| e.to_string())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("conections")),
        "{errors:?}"
    );
    let wrong_type = PlanBuilder::new()
        .target(TargetBuilder::launch_standalone("local"))
        .stage(StageBuilder::new("s").set("keys", "many"));
    assert!(!validator.is_valid(&as_json(&wrong_type.build())));
}

#[test]
fn completions_for_each_shell_know_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for subcommand in SUBCOMMANDS {
            assert!(script.contains(subcommand), "{shell}: {subcommand}");
        }
        assert!(script.contains("--no-flush"), "{shell}: run's flags");
    }
    let output = cachefill(repo())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(
            "invalid value 'tcsh' for '<SHELL>'\n  [possible values: bash, elvish, fish, powershell, zsh]"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_manual_page_and_every_subcommands_help_show_how_to_use_it() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH cachefill 1"), "{page}");
    // Every page cachefill(1) refers to is written by `man --dir`, and printed by `man NAME`.
    let scratch = Scratch::new();
    let dir = scratch.path("man1");
    std::fs::create_dir(&dir).unwrap();
    stdout_of(&["man", "--dir", dir.to_str().unwrap()]);
    let mut written: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|s| format!("cachefill-{s}.1"))
        .chain(["cachefill.1".to_string()])
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    for subcommand in SUBCOMMANDS {
        assert!(
            page.contains(&format!("cachefill\\-{subcommand}(1)")),
            "the page refers to cachefill-{subcommand}(1)"
        );
        let own = stdout_of(&["man", subcommand]);
        assert!(
            own.contains(&format!(".TH cachefill-{subcommand} 1")),
            "{own}"
        );
        assert_eq!(
            own,
            std::fs::read_to_string(dir.join(format!("cachefill-{subcommand}.1"))).unwrap()
        );
        let help = stdout_of(&[subcommand, "--help"]);
        assert!(
            help.contains("Example") && help.contains(&format!("cachefill {subcommand}")),
            "{subcommand} --help has no example:\n{help}"
        );
    }
}

/// A bad command line is clap's own error: the argument, the valid values, a near match,
/// the usage, where the help is; exit 2.
#[test]
fn usage_errors_name_the_argument_the_values_and_a_suggestion() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["run"],
            "error: the following required arguments were not provided:\n  <PLAN>\n\nUsage: cachefill run <PLAN>",
        ),
        (
            &["chek", "plan.toml"],
            "error: unrecognized subcommand 'chek'\n\n  tip: some similar subcommands exist: 'schema', 'check'",
        ),
        (
            &["export", "--format", "csv", "plan.toml"],
            "error: invalid value 'csv' for '--format <FORMAT>'\n  [possible values: keys, resp, jsonl, rdb]",
        ),
        (
            &["verify", "plan.toml", "--sampel", "3"],
            "error: unexpected argument '--sampel' found\n\n  tip: a similar argument exists: '--sample'",
        ),
    ];
    for (args, expected) in cases {
        let output = cachefill(repo()).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(text.starts_with(expected), "{args:?}:\n{text}");
        assert!(
            text.contains("For more information, try '--help'."),
            "{text}"
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

/// `check` takes several plans: each valid one's summary on standard output, each invalid
/// one's line on standard error, and exit 2 when any is invalid.
#[test]
fn check_takes_several_plans_and_fails_when_any_is_invalid() {
    let plans = repository_plans();
    let mut args = vec!["check".to_string()];
    args.extend(plans.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let summary = stdout_of(&args);
    assert_eq!(
        summary.lines().filter(|l| l.ends_with(": valid")).count(),
        plans.len(),
        "{summary}"
    );
    let scratch = Scratch::new();
    let bad = scratch.plan("bad.toml", "name = \"bad\"\nstagez = []\n");
    let quickstart = repo().join("plans/quickstart.toml");
    let output = cachefill(repo())
        .args(["check", quickstart.to_str().unwrap(), bad.to_str().unwrap()])
        .args([quickstart.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "cachefill: {}:2:1: stagez: unknown field",
            bad.display()
        )),
        "{text}"
    );
    assert_eq!(lines[1], "cachefill: 1 of 3 plans are invalid");
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(": valid")).count(),
        2,
        "{out}"
    );
}

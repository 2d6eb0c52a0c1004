//! The command line's conventions: the committed JSON Schema that plans name, shell
//! completions, the manual page and an example in every subcommand's help.

mod support;

use std::path::{Path, PathBuf};

use support::*;

/// Every subcommand.
const SUBCOMMANDS: [&str; 9] = [
    "run",
    "flush",
    "check",
    "verify",
    "merge",
    "export",
    "schema",
    "completions",
    "man",
];

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
    assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
}

#[test]
fn the_manual_page_and_every_subcommands_help_show_how_to_use_it() {
    let page = stdout_of(&["man"]);
    assert!(page.contains(".TH cachefill 1"), "{page}");
    for subcommand in SUBCOMMANDS {
        assert!(page.contains(subcommand), "the page lists {subcommand}");
        let help = stdout_of(&[subcommand, "--help"]);
        assert!(
            help.contains("Example") && help.contains(&format!("cachefill {subcommand}")),
            "{subcommand} --help has no example:\n{help}"
        );
    }
}

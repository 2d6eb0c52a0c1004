//! What `verify` found: per stage the keys checked and each kind of problem with a few
//! examples, and the report `verify -o` writes.

use serde::Serialize;

/// Offending keys listed per kind of problem.
pub(super) const SHOWN: usize = 5;

/// What verify found for one stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageCheck {
    /// The stage's name.
    pub name: String,
    /// Its target's name.
    pub target: String,
    /// The seed its dataset was regenerated from.
    pub seed: u64,
    /// Keys the stage has (the run's count with a result, else the plan's).
    pub keys: u64,
    /// Keys read back.
    pub checked: u64,
    /// Keys not there.
    pub missing: u64,
    /// Keys holding another type than the stage's.
    pub wrong_type: u64,
    /// Keys whose value (strings) or elements (typed keys) differ.
    pub wrong_value: u64,
    /// Keys without the TTL they should have, or with one out of the stage's range.
    pub ttl_problems: u64,
    /// Up to 5 of the missing keys.
    pub missing_keys: Vec<String>,
    /// Up to 5 keys of another type, with the type found.
    pub wrong_type_keys: Vec<String>,
    /// Keys with another value or other elements; for typed keys, what differs.
    pub wrong_value_keys: Vec<String>,
    /// Up to 5 keys with a TTL problem.
    pub ttl_problem_keys: Vec<String>,
    /// Connections made again after a link broke while the stage was read.
    pub reconnects: u64,
    /// Primaries lost while the stage was read whose slots were then read from the
    /// replicas that took over.
    pub failovers: u64,
}

impl StageCheck {
    /// Keys missing, of the wrong type, with a wrong value or a TTL problem.
    pub fn problems(&self) -> u64 {
        self.missing + self.wrong_type + self.wrong_value + self.ttl_problems
    }

    pub(super) fn add_missing(&mut self, key: &[u8]) {
        self.missing += 1;
        show(&mut self.missing_keys, || {
            String::from_utf8_lossy(key).into_owned()
        });
    }

    pub(super) fn add_wrong_type(&mut self, key: &[u8], found: &str) {
        self.wrong_type += 1;
        show(&mut self.wrong_type_keys, || {
            format!("{} (a {found})", String::from_utf8_lossy(key))
        });
    }

    pub(super) fn add_wrong_value(&mut self, key: &[u8], what: impl FnOnce() -> String) {
        self.wrong_value += 1;
        show(&mut self.wrong_value_keys, || {
            let what = what();
            let key = String::from_utf8_lossy(key);
            if what.is_empty() {
                key.into_owned()
            } else {
                format!("{key}: {what}")
            }
        });
    }

    pub(super) fn add_ttl_problem(&mut self, key: &[u8]) {
        self.ttl_problems += 1;
        show(&mut self.ttl_problem_keys, || {
            String::from_utf8_lossy(key).into_owned()
        });
    }
}

/// Keeps up to [`SHOWN`] examples.
fn show(list: &mut Vec<String>, example: impl FnOnce() -> String) {
    if list.len() < SHOWN {
        list.push(example());
    }
}

/// What `verify` found: the JSON report of `verify -o`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Version of cachefill that verified.
    pub cachefill_version: String,
    /// `ok` when no stage has a problem.
    pub status: VerifyStatus,
    /// The plan's name.
    pub plan: String,
    /// Each stage, in plan order.
    pub stages: Vec<StageCheck>,
}

/// Whether a verify found the dataset whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyStatus {
    /// Every key checked is there, of its type, value and TTL.
    Ok,
    /// At least one key is not.
    Failed,
}

impl VerifyReport {
    /// The one line that says what is wrong (the first stage with problems, an example
    /// key), or `None` when nothing is.
    pub fn problem(&self) -> Option<String> {
        let bad: Vec<&StageCheck> = self.stages.iter().filter(|c| c.problems() > 0).collect();
        let first = bad.first()?;
        let example = [
            (&first.missing_keys, "missing"),
            (&first.wrong_type_keys, "wrong type at"),
            (&first.wrong_value_keys, "wrong value at"),
            (&first.ttl_problem_keys, "TTL problem at"),
        ]
        .into_iter()
        .find_map(|(keys, what)| keys.first().map(|k| format!("{what} {k}")))
        .unwrap_or_default();
        Some(format!(
            "verify found problems in {} stage(s); stage \"{}\": {} missing, {} of the wrong type, {} wrong values, {} TTL problems (e.g. {example})",
            bad.len(),
            first.name,
            first.missing,
            first.wrong_type,
            first.wrong_value,
            first.ttl_problems
        ))
    }
}

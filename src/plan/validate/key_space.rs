//! Stages that could write the same key: two stages of one target whose keys can be equal
//! would make `keys_written` count one key twice, so a plan where a stage with a
//! `key_format` could meet another stage's keys is refused.
//!
//! The rule, exactly: each stage's keys are described position by position, one template
//! per number of digits of the index (a literal byte, a digit, a digit 1-9 where an index
//! starts, or a filler character `0-9A-Za-z`); two stages clash when a template of one and a
//! template of the other have the same length and every position can hold the same byte.
//! This over-approximates (a stage repeating `{i}` is treated as if each could differ), so
//! a clash it finds may never happen, but a clash it misses cannot.

use super::super::key_format::{Part, digits};
use super::super::*;

/// What one position of a key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Exactly this byte.
    Byte(u8),
    /// `0-9`.
    Digit,
    /// `1-9`: the first digit of an index of two or more digits.
    NonZero,
    /// `0-9A-Za-z`: the filler of a `key_size` key.
    Filler,
}

impl Class {
    /// A byte both classes hold, if any.
    fn common(self, other: Class) -> Option<u8> {
        match (self, other) {
            (Class::Byte(a), Class::Byte(b)) => (a == b).then_some(a),
            (Class::Byte(a), c) | (c, Class::Byte(a)) => c.holds(a).then_some(a),
            // Every class without a fixed byte holds `1`.
            _ => Some(b'1'),
        }
    }

    fn holds(self, byte: u8) -> bool {
        match self {
            Class::Byte(b) => b == byte,
            Class::Digit => byte.is_ascii_digit(),
            Class::NonZero => (b'1'..=b'9').contains(&byte),
            Class::Filler => byte.is_ascii_alphanumeric(),
        }
    }
}

/// The templates of a stage's keys: one per length they can have.
fn templates(stage: &Stage) -> Vec<Vec<Class>> {
    if stage.keys == 0 {
        return Vec::new();
    }
    match &stage.shape.key {
        KeyShape::Sized { prefix, size } => {
            let mut template: Vec<Class> = prefix.bytes().map(Class::Byte).collect();
            let width = index_width(stage.keys) as usize;
            template.extend(std::iter::repeat_n(Class::Digit, width));
            let filler = (*size as usize).saturating_sub(template.len());
            template.extend(std::iter::repeat_n(Class::Filler, filler));
            vec![template]
        }
        KeyShape::Format { format, .. } => (1..=digits(stage.keys - 1))
            .map(|d| format_template(format.parts(), d))
            .collect(),
    }
}

/// The template of a format's keys whose index has `d` digits.
fn format_template(parts: &[Part], d: u32) -> Vec<Class> {
    let mut template = Vec::new();
    for part in parts {
        match part {
            Part::Literal(bytes) => template.extend(bytes.iter().map(|&b| Class::Byte(b))),
            Part::Index { width } => {
                let zeros = u32::from(*width).saturating_sub(d) as usize;
                template.extend(std::iter::repeat_n(Class::Byte(b'0'), zeros));
                if d == 1 {
                    template.push(Class::Digit);
                } else {
                    template.push(Class::NonZero);
                    template.extend(std::iter::repeat_n(Class::Digit, d as usize - 1));
                }
            }
        }
    }
    template
}

/// A key both stages could write, if there is one.
fn shared_key(a: &Stage, b: &Stage) -> Option<String> {
    let theirs = templates(b);
    for mine in templates(a) {
        for other in theirs.iter().filter(|t| t.len() == mine.len()) {
            let key: Option<Vec<u8>> = mine.iter().zip(other).map(|(x, y)| x.common(*y)).collect();
            if let Some(key) = key {
                return Some(String::from_utf8_lossy(&key).into_owned());
            }
        }
    }
    None
}

/// How a stage's keys are made, in the plan's words.
fn describe(stage: &Stage) -> String {
    match &stage.shape.key {
        KeyShape::Sized { prefix, size } => {
            format!("key_prefix \"{prefix}\", key_size {size}")
        }
        KeyShape::Format { format, .. } => format!("key_format \"{format}\""),
    }
}

/// The first pair of stages of one target whose keys could be equal, at least one of them
/// with a `key_format`: (the stage to name, which has a format, and what to say).
pub(super) fn first_clash(stages: &[Stage], targets: &[Target]) -> Option<(usize, String)> {
    let formatted = |s: &Stage| matches!(s.shape.key, KeyShape::Format { .. });
    for (j, later) in stages.iter().enumerate() {
        for (i, earlier) in stages[..j].iter().enumerate() {
            if earlier.target != later.target || !(formatted(earlier) || formatted(later)) {
                continue;
            }
            let Some(key) = shared_key(later, earlier) else {
                continue;
            };
            let named = if formatted(later) { j } else { i };
            let message = format!(
                "stage \"{}\" ({}) and stage \"{}\" ({}) can write the same key on target \"{}\" (e.g. \"{key}\"), and a key written twice would count twice in keys_written: make them differ in a character that is not a digit (e.g. \"{}:{{i}}\")",
                later.name,
                describe(later),
                earlier.name,
                describe(earlier),
                targets[later.target].name,
                stages[named].name,
            );
            return Some((named, message));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, key: KeyShape, keys: u64) -> Stage {
        Stage {
            name: name.into(),
            target: 0,
            amount: Amount::Keys,
            keys,
            shape: Shape {
                key,
                value_size: ValueSize { min: 1, max: 1 },
                ttl: None,
                elemental: Elemental::STRING,
            },
            connections: 1,
            pipeline: 1,
            keys_per_command: None,
            after: Vec::new(),
            seed: None,
            write: WriteMode::Auto,
        }
    }

    fn format(text: &str) -> KeyShape {
        KeyShape::Format {
            format: KeyFormat::parse(text).unwrap(),
            mean_len: 1,
        }
    }

    #[test]
    fn formats_that_can_meet_share_an_example_key() {
        for (a, b, keys, example) in [
            ("k{i}", "k1{i}", 100, Some("k11")),
            ("k{i}", "k{i}", 10, Some("k1")),
            ("k{i}", "k1{i}", 10, None),
            ("k{i}", "k0{i}", 1000, None),
            ("k{i:03}", "k0{i:02}", 1000, Some("k001")),
            ("k{i}", "k{i}:x", 1000, None),
            ("{{u:{i}}}:cart", "{{u:{i}}}:profile", 1000, None),
            ("memtier-{i}", "memtier-{i}", 5, Some("memtier-1")),
        ] {
            let found = shared_key(&stage("a", format(a), keys), &stage("b", format(b), keys));
            assert_eq!(found.as_deref(), example, "{a} {b}");
        }
    }

    #[test]
    fn a_format_meets_prefix_keys_only_at_their_length() {
        let sized = stage("s", KeyShape::sized("s:", 8), 100);
        let short = stage("f", format("s:{i}"), 100);
        assert_eq!(shared_key(&short, &sized), None);
        let long = stage("f", format("s:{i:06}"), 100);
        assert_eq!(shared_key(&long, &sized).as_deref(), Some("s:000001"));
        let other = stage("f", format("t:{i:06}"), 100);
        assert_eq!(shared_key(&other, &sized), None);
    }

    #[test]
    fn only_stages_of_one_target_with_a_format_are_compared() {
        let targets: Vec<Target> = Vec::new();
        let mut b = stage("b", format("k{i}"), 10);
        b.target = 1;
        let stages = [stage("a", format("k{i}"), 10), b];
        assert_eq!(first_clash(&stages, &targets), None);
        let sized = [
            stage("a", KeyShape::sized("k", 8), 10),
            stage("b", KeyShape::sized("k", 8), 10),
        ];
        assert_eq!(first_clash(&sized, &targets), None);
    }
}

//! `key_format`: a stage's keys written out by the user, so other tools can address them,
//! e.g. `{{user:{i}}}:cart` → `{user:7}:cart`. `{i}` is the entry index, `{i:0N}` the index
//! zero-padded to N digits, `{{` and `}}` literal braces.

use std::fmt;

/// Most digits of a zero-padded index (`{i:020}`): those of the largest u64.
pub(crate) const MAX_INDEX_WIDTH: u8 = 20;

/// Most bytes of the literal text of a format (the same bound as `key_size`).
pub(crate) const MAX_LITERAL_BYTES: usize = 65536;

/// A parsed `key_format`: literal bytes and the entry index, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    text: String,
    parts: Vec<Part>,
    /// Bytes of literal text in every key.
    literal_len: usize,
}

/// One piece of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Bytes written as they are (`{{` and `}}` already made single braces).
    Literal(Vec<u8>),
    /// The entry index in decimal, zero-padded to `width` digits (1 for `{i}`).
    Index {
        /// Fewest digits written.
        width: u8,
    },
}

/// What a format accepts, for the error messages.
const ACCEPTED: &str = "write {i} (the entry index) or {i:0N} (zero-padded to N digits, N 1..=20), and {{ or }} for a literal brace";

impl KeyFormat {
    /// Parses `text`; the error says what is wrong and what is accepted.
    pub fn parse(text: &str) -> Result<KeyFormat, String> {
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!(
                "key_format \"{}\" holds the control character {:?}: keys are written one per line by `export --format keys`, so they may not hold control characters",
                text.escape_default(),
                c
            ));
        }
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("{{") {
                literal.push(b'{');
                rest = after;
            } else if let Some(after) = rest.strip_prefix("}}") {
                literal.push(b'}');
                rest = after;
            } else if c == '}' {
                return Err(format!(
                    "key_format \"{text}\" has a lone `}}` at byte {}: {ACCEPTED}",
                    text.len() - rest.len()
                ));
            } else if c == '{' {
                let Some(end) = rest.find('}') else {
                    return Err(format!(
                        "key_format \"{text}\" has a lone `{{` at byte {}: {ACCEPTED}",
                        text.len() - rest.len()
                    ));
                };
                let spec = &rest[..=end];
                let width = placeholder_width(&spec[1..end]).ok_or_else(|| {
                    format!(
                        "key_format \"{text}\" has `{spec}`, which is not a placeholder: {ACCEPTED}"
                    )
                })?;
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                parts.push(Part::Index { width });
                rest = &rest[end + 1..];
            } else {
                literal.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Index { .. })) {
            return Err(format!(
                "key_format \"{text}\" has no {{i}}: every key must hold the entry index so keys are unique, e.g. \"{text}{{i}}\""
            ));
        }
        let literal_len = parts
            .iter()
            .map(|p| match p {
                Part::Literal(bytes) => bytes.len(),
                Part::Index { .. } => 0,
            })
            .sum();
        let format = KeyFormat {
            text: text.to_string(),
            parts,
            literal_len,
        };
        if format.literal_len() > MAX_LITERAL_BYTES {
            return Err(format!(
                "key_format is {} bytes of text: at most {MAX_LITERAL_BYTES} are allowed",
                format.literal_len()
            ));
        }
        Ok(format)
    }

    /// The format as the plan wrote it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The pieces of every key, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Bytes of literal text in every key.
    pub fn literal_len(&self) -> usize {
        self.literal_len
    }

    /// The widths of the index placeholders.
    fn widths(&self) -> impl Iterator<Item = u8> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Index { width } => Some(*width),
            Part::Literal(_) => None,
        })
    }

    /// Bytes of the key of an index of `digits` decimal digits.
    pub fn len_for_digits(&self, digits: u32) -> usize {
        self.literal_len()
            + self
                .widths()
                .map(|w| u32::from(w).max(digits) as usize)
                .sum::<usize>()
    }

    /// Bytes of the key of entry `index`.
    pub fn len(&self, index: u64) -> usize {
        self.len_for_digits(digits(index))
    }

    /// The length of every key of a stage of `keys` entries, when they all have the same
    /// (every placeholder is padded at least to the digits of the largest index).
    pub fn fixed_len(&self, keys: u64) -> Option<usize> {
        let largest = index_width(keys);
        let narrowest = self.widths().min().map_or(0, u32::from);
        (largest <= narrowest).then(|| self.len_for_digits(largest))
    }

    /// Bytes of the keys of entries `0..keys` together, exactly.
    pub fn total_len(&self, keys: u64) -> u128 {
        let mut total = 0u128;
        let mut low = 0u128;
        for d in 1..=MAX_INDEX_WIDTH as u32 {
            let high = 10u128.pow(d).min(u128::from(keys));
            if high > low {
                total += (high - low) * self.len_for_digits(d) as u128;
            }
            low = 10u128.pow(d);
        }
        total
    }
}

impl fmt::Display for KeyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Decimal digits of `n` (1 for 0).
pub(crate) fn digits(n: u64) -> u32 {
    n.checked_ilog10().unwrap_or(0) + 1
}

/// Number of decimal digits of the largest index of a stage of `keys` entries.
pub(crate) fn index_width(keys: u64) -> u32 {
    digits(keys.saturating_sub(1))
}

/// The width of a placeholder's inside (`i` → 1, `i:08` → 8), or `None` when it is not one.
fn placeholder_width(spec: &str) -> Option<u8> {
    if spec == "i" {
        return Some(1);
    }
    let n = spec.strip_prefix("i:0")?;
    if n.is_empty() || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let width: u8 = n.parse().ok()?;
    (1..=MAX_INDEX_WIDTH).contains(&width).then_some(width)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(text: &str) -> Part {
        Part::Literal(text.as_bytes().to_vec())
    }

    #[test]
    fn doubled_braces_are_literal_and_the_index_is_a_part() {
        let format = KeyFormat::parse("{{user:{i}}}:cart").unwrap();
        assert_eq!(
            format.parts(),
            [lit("{user:"), Part::Index { width: 1 }, lit("}:cart")]
        );
        assert_eq!(format.to_string(), "{{user:{i}}}:cart");
        let padded = KeyFormat::parse("key:{i:012}").unwrap();
        assert_eq!(padded.parts(), [lit("key:"), Part::Index { width: 12 }]);
        let twice = KeyFormat::parse("{i}-{i:020}").unwrap();
        assert_eq!(
            twice.parts(),
            [
                Part::Index { width: 1 },
                lit("-"),
                Part::Index { width: 20 }
            ]
        );
    }

    #[test]
    fn everything_else_in_braces_is_refused_saying_what_is_accepted() {
        for (text, says) in [
            ("k{j}", "has `{j}`, which is not a placeholder"),
            ("k{i:8}", "has `{i:8}`, which is not a placeholder"),
            ("k{i:00}", "has `{i:00}`"),
            ("k{i:021}", "has `{i:021}`"),
            ("k{i:008}", "has `{i:008}`"),
            ("k{i:0x}", "has `{i:0x}`"),
            ("k{ i }", "has `{ i }`"),
            ("k{}{i}", "has `{}`"),
            ("k{i", "has a lone `{` at byte 1"),
            ("k}{i}", "has a lone `}` at byte 1"),
            ("{i}}", "has a lone `}` at byte 3"),
            ("plain", "has no {i}"),
            ("", "has no {i}"),
            ("{{i}}", "has no {i}"),
            ("a\nb{i}", "control character '\\n'"),
        ] {
            let error = KeyFormat::parse(text).unwrap_err();
            assert!(error.contains(says), "{text}: {error}");
        }
        let error = KeyFormat::parse("k{j}").unwrap_err();
        assert!(error.ends_with(ACCEPTED), "{error}");
    }

    #[test]
    fn lengths_follow_the_digits_of_the_index() {
        let format = KeyFormat::parse("k{i}:{i:03}").unwrap();
        assert_eq!(format.len(0), "k0:000".len());
        assert_eq!(format.len(12_345), "k12345:12345".len());
        assert_eq!(format.fixed_len(1000), None);
        let both = KeyFormat::parse("k{i:03}:{i:04}").unwrap();
        assert_eq!(both.fixed_len(1000), Some("k000:0000".len()));
        assert_eq!(both.fixed_len(1001), None);
        let padded = KeyFormat::parse("key:{i:012}").unwrap();
        assert_eq!(padded.fixed_len(1_000_000_000_000), Some(16));
        assert_eq!(padded.fixed_len(1_000_000_000_001), None);
        assert_eq!(KeyFormat::parse("k{i}").unwrap().fixed_len(11), None);
    }

    #[test]
    fn the_total_length_is_the_sum_over_the_keys() {
        let format = KeyFormat::parse("m-{i}{i:02}").unwrap();
        for keys in [0, 1, 9, 10, 11, 99, 100, 101, 1234] {
            let sum: u128 = (0..keys).map(|i| format.len(i) as u128).sum();
            assert_eq!(format.total_len(keys), sum, "{keys}");
        }
        let big = KeyFormat::parse("{i}").unwrap();
        assert_eq!(big.total_len(u64::MAX), {
            let mut t = 0u128;
            for d in 1..=20u32 {
                let lo = if d == 1 { 0 } else { 10u128.pow(d - 1) };
                let hi = 10u128.pow(d).min(u128::from(u64::MAX));
                t += (hi - lo) * u128::from(d);
            }
            t
        });
    }
}

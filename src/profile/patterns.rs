//! Key patterns: a key split into its literal text and its ids (runs of digits, hex ids,
//! UUIDs), so `user:83734:cart` and `user:912:cart` are one pattern, and the `key_format`
//! that writes keys of that pattern and of the same length.

use crate::plan::index_width as largest_index_digits;
use crate::plan::key_format::MAX_INDEX_WIDTH;

/// One piece of a key pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Piece {
    /// Text every key of the pattern has here (braces included: a hash tag stays a tag).
    Text(String),
    /// An id: a run of digits, a hex id of 8 or more characters, or a UUID.
    Id,
}

/// A key split into its pattern and the text of each of its ids, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitKey {
    /// The pattern.
    pub pattern: Vec<Piece>,
    /// The text of each [`Piece::Id`].
    pub ids: Vec<String>,
}

/// Splits a key. Bytes that are not UTF-8 become U+FFFD and control characters `?`: a
/// `key_format` holds neither, and the pattern only has to look like the key.
pub(crate) fn split(key: &[u8]) -> SplitKey {
    let text: String = String::from_utf8_lossy(key)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let bytes = text.as_bytes();
    let mut pattern = Vec::new();
    let mut ids = Vec::new();
    let mut literal = String::new();
    let mut id = |pattern: &mut Vec<Piece>, literal: &mut String, text: &str| {
        if !literal.is_empty() {
            pattern.push(Piece::Text(std::mem::take(literal)));
        }
        pattern.push(Piece::Id);
        ids.push(text.to_string());
    };
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if at_boundary && is_uuid_at(bytes, i) {
            id(&mut pattern, &mut literal, &text[i..i + UUID_LEN]);
            i += UUID_LEN;
        } else if bytes[i].is_ascii_alphanumeric() {
            let end = i + bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count();
            let run = &text[i..end];
            if is_hex_id(run) || is_random_id(run) {
                id(&mut pattern, &mut literal, run);
            } else {
                let mut rest = run;
                while !rest.is_empty() {
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    if digits > 0 {
                        id(&mut pattern, &mut literal, &rest[..digits]);
                        rest = &rest[digits..];
                    } else {
                        let letters = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
                        literal.push_str(&rest[..letters]);
                        rest = &rest[letters..];
                    }
                }
            }
            i = end;
        } else {
            let c = text[i..].chars().next().unwrap_or('?');
            literal.push(c);
            i += c.len_utf8();
        }
    }
    if !literal.is_empty() {
        pattern.push(Piece::Text(literal));
    }
    SplitKey { pattern, ids }
}

const UUID_LEN: usize = 36;

/// A UUID (8-4-4-4-12 hex digits) starting at `i` and not followed by a letter or digit.
fn is_uuid_at(bytes: &[u8], i: usize) -> bool {
    let Some(candidate) = bytes.get(i..i + UUID_LEN) else {
        return false;
    };
    let shaped = candidate.iter().enumerate().all(|(k, b)| match k {
        8 | 13 | 18 | 23 => *b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    let ends = bytes
        .get(i + UUID_LEN)
        .is_none_or(|b| !b.is_ascii_alphanumeric());
    shaped && ends
}

/// A hex id: 8 or more hex digits, at least one a decimal digit (so words stay words).
fn is_hex_id(run: &str) -> bool {
    run.len() >= 8
        && run.bytes().all(|b| b.is_ascii_hexdigit())
        && run.bytes().any(|b| b.is_ascii_digit())
}

/// Random alphanumerics (base62 ids, cachefill's own key filler after its index): 8 or more
/// letters and digits that switch between letters and digits three times or more
/// (`RHzz92oBUo5A`), twice with mixed case (`Kq7Tzp2Lm`), or that start with 4 or more
/// digits (an index run into a tail: `000042Ab`). Words with a number in them (`item42x`,
/// `order2024summary`) stay words and digits.
fn is_random_id(run: &str) -> bool {
    let bytes = run.as_bytes();
    if bytes.len() < 8 || !bytes.iter().any(u8::is_ascii_alphabetic) {
        return false;
    }
    let leading_digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    let switches = bytes
        .windows(2)
        .filter(|w| w[0].is_ascii_digit() != w[1].is_ascii_digit())
        .count();
    let case_changes = bytes
        .windows(2)
        .filter(|w| {
            w[0].is_ascii_alphabetic()
                && w[1].is_ascii_alphabetic()
                && w[0].is_ascii_uppercase() != w[1].is_ascii_uppercase()
        })
        .count();
    bytes.iter().any(u8::is_ascii_digit)
        && (switches >= 3 || (switches >= 2 && case_changes >= 2) || leading_digits >= 4)
}

/// What the keys of one pattern held at each id position.
#[derive(Debug, Clone, Default)]
pub(crate) struct IdsSeen {
    keys: u64,
    slots: Vec<IdSlot>,
}

#[derive(Debug, Clone, Default)]
struct IdSlot {
    /// The text of the first key's id, while every key had the same.
    same: Option<String>,
    varies: bool,
    length_sum: u64,
}

impl IdsSeen {
    /// Notes the ids of one key of the pattern.
    pub(crate) fn add(&mut self, ids: &[String]) {
        self.slots.resize_with(ids.len(), IdSlot::default);
        for (slot, id) in self.slots.iter_mut().zip(ids) {
            match &slot.same {
                None if self.keys == 0 => slot.same = Some(id.clone()),
                Some(same) if same != id => {
                    slot.same = None;
                    slot.varies = true;
                }
                _ => {}
            }
            slot.length_sum += id.len() as u64;
        }
        self.keys += 1;
    }

    /// Which id positions become the entry index: those whose text varies between keys; a
    /// position holding the same text in every key (`v2` in `api:v2:user:7`) is text. When
    /// none varies (one key), the last id is the index.
    fn index_slots(&self) -> Vec<bool> {
        let mut index: Vec<bool> = self.slots.iter().map(|s| s.varies).collect();
        if !index.contains(&true)
            && let Some(last) = index.last_mut()
        {
            *last = true;
        }
        index
    }

    fn text(&self, slot: usize) -> &str {
        self.slots[slot].same.as_deref().unwrap_or("")
    }

    fn mean_length(&self, slot: usize) -> f64 {
        self.slots[slot].length_sum as f64 / self.keys.max(1) as f64
    }
}

/// The pattern for people: the index as `*`, e.g. `user:*:cart`.
pub(crate) fn label(pattern: &[Piece], seen: &IdsSeen) -> String {
    render(pattern, seen, |_| "*".into(), |text| text.to_string())
}

/// Text pieces through `text`, ids that are the index through `index` (given the
/// position), ids that are the same in every key as text.
fn render(
    pattern: &[Piece],
    seen: &IdsSeen,
    index: impl Fn(usize) -> String,
    text: impl Fn(&str) -> String,
) -> String {
    let index_slots = seen.index_slots();
    let mut slot = 0;
    let mut out = String::new();
    for piece in pattern {
        match piece {
            Piece::Text(literal) => out.push_str(&text(literal)),
            Piece::Id => {
                if index_slots.get(slot).copied().unwrap_or(true) {
                    out.push_str(&index(slot));
                } else {
                    out.push_str(&text(seen.text(slot)));
                }
                slot += 1;
            }
        }
    }
    out
}

/// How a stage that shares its pattern with a stage written before it keeps its keys
/// apart: its first index gets `digit` in front and at least `width` digits, the most the
/// other stage's first index has, so at that position its keys are longer than any of the
/// other's (and those of two such stages differ in the digit or the length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Apart {
    /// The digit in front (`1`, `2`, …).
    pub digit: char,
    /// The fewest digits of the index after it.
    pub width: u32,
}

/// The `key_format` of `count` keys of the pattern: text with its braces doubled (a hash tag
/// stays a tag), each id the entry index zero-padded so that the keys' mean length is the
/// observed one. A pattern without ids gets the index at its end.
pub(crate) fn key_format(
    pattern: &[Piece],
    seen: &IdsSeen,
    count: u64,
    apart: Option<Apart>,
) -> String {
    let first = seen.index_slots().iter().position(|i| *i);
    let index = |slot: usize| {
        let mean = seen.mean_length(slot);
        match apart {
            Some(apart) if Some(slot) == first => placeholder_apart(mean, count, apart),
            _ => placeholder(index_width(mean, count)),
        }
    };
    let format = render(pattern, seen, index, escape);
    if pattern.contains(&Piece::Id) {
        format
    } else {
        format + &apart.map_or_else(|| placeholder(1), |a| placeholder_apart(2.0, count, a))
    }
}

/// The most digits the first index of [`key_format`]`(pattern, seen, count, None)` has.
pub(crate) fn first_index_digits(pattern: &[Piece], seen: &IdsSeen, count: u64) -> u32 {
    let width = match seen.index_slots().iter().position(|i| *i) {
        Some(slot) if pattern.contains(&Piece::Id) => index_width(seen.mean_length(slot), count),
        _ => 1,
    };
    width.max(largest_index_digits(count))
}

/// The text of the `key_format` of the merged small patterns of one type.
fn other_text(type_name: &str) -> String {
    format!("other:{type_name}:")
}

/// The `key_format` of `count` keys of the merged small patterns of one type:
/// `other:TYPE:` and the index, padded to the keys' observed mean length.
pub(crate) fn other_format(
    type_name: &str,
    mean_key_length: f64,
    count: u64,
    apart: Option<Apart>,
) -> String {
    let text = other_text(type_name);
    let id_length = (mean_key_length - text.len() as f64).max(1.0);
    match apart {
        Some(apart) => text + &placeholder_apart(id_length, count, apart),
        None => text + &placeholder(index_width(id_length, count)),
    }
}

/// The most digits the index of [`other_format`]`(…, None)` has.
pub(crate) fn other_index_digits(type_name: &str, mean_key_length: f64, count: u64) -> u32 {
    let id_length = (mean_key_length - other_text(type_name).len() as f64).max(1.0);
    index_width(id_length, count).max(largest_index_digits(count))
}

fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// Most digits of a zero-padded index in a `key_format`.
const MAX_WIDTH: u32 = MAX_INDEX_WIDTH as u32;

/// The width whose zero-padded indexes `0..count` are `mean_length` digits long on average
/// (the nearest).
fn index_width(mean_length: f64, count: u64) -> u32 {
    (1..=64u32)
        .min_by(|a, b| {
            let off = |w| (mean_digits(w, count) - mean_length).abs();
            off(*a).total_cmp(&off(*b))
        })
        .unwrap_or(1)
}

/// The index zero-padded to `width`: `{i}`, `{i:08}`; widths beyond 20 get literal zeros in
/// front.
fn placeholder(width: u32) -> String {
    let zeros = "0".repeat(width.saturating_sub(MAX_WIDTH) as usize);
    match width.min(MAX_WIDTH) {
        1 => format!("{zeros}{{i}}"),
        w => format!("{zeros}{{i:0{w}}}"),
    }
}

/// The digit of `apart`, then the index: `mean_length` long with the digit, at least as
/// wide as `apart` says.
fn placeholder_apart(mean_length: f64, count: u64, apart: Apart) -> String {
    let width = index_width(mean_length - 1.0, count).max(apart.width);
    format!("{}{}", apart.digit, placeholder(width))
}

/// Mean digits of the indexes `0..count` zero-padded to `width`.
fn mean_digits(width: u32, count: u64) -> f64 {
    let count = count.max(1);
    let mut total = 0u128;
    let mut low = 0u64;
    for digits in 1..=20u32 {
        let high = 10u64.checked_pow(digits).unwrap_or(u64::MAX).min(count);
        if high > low {
            total += u128::from(high - low) * u128::from(digits.max(width));
        }
        low = high;
        if low >= count {
            break;
        }
    }
    total as f64 / count as f64
}

/// A stage name from a pattern's label: its text, runs of other characters as `-`.
pub(crate) fn stage_name(label: &str) -> String {
    let mut name = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            name.push(c);
        } else if !name.is_empty() && !name.ends_with('-') {
            name.push('-');
        }
    }
    let name = name.trim_end_matches('-');
    let name: String = name.chars().take(40).collect();
    if name.is_empty() { "keys".into() } else { name }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format_of(keys: &[&str], count: u64) -> (String, String) {
        let mut seen = IdsSeen::default();
        let first = split(keys[0].as_bytes());
        for key in keys {
            let key = split(key.as_bytes());
            assert_eq!(key.pattern, first.pattern, "{key:?}");
            seen.add(&key.ids);
        }
        (
            label(&first.pattern, &seen),
            key_format(&first.pattern, &seen, count, None),
        )
    }

    #[test]
    fn digits_hex_ids_and_uuids_are_ids() {
        let key = split(b"user:83734:cart");
        assert_eq!(
            key.pattern,
            vec![
                Piece::Text("user:".into()),
                Piece::Id,
                Piece::Text(":cart".into())
            ]
        );
        assert_eq!(key.ids, vec!["83734"]);
        let key = split(b"s:3f2a9c0d11:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d:x7");
        assert_eq!(
            key.ids,
            vec!["3f2a9c0d11", "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", "7"]
        );
        // Words stay words, even hex-looking ones; digits inside words are ids.
        assert_eq!(split(b"cafebabe:page").ids, Vec::<String>::new());
        assert_eq!(split(b"item42x").ids, vec!["42"]);
        assert_eq!(split(b"order2024summary:x").ids, vec!["2024"]);
    }

    /// cachefill's own default keys (prefix, zero-padded index, random filler) are one
    /// pattern, as are base62 ids: the random tail is part of the id.
    #[test]
    fn random_alphanumeric_tails_are_ids() {
        let keys = [
            "users:000000RHzz92oBUo5A",
            "users:00001DI29RPCZlkZZc",
            "users:00002AxGxpqsa4NxpA",
            "users:000031bcdefghijklm",
        ];
        let (label, format) = format_of(&keys, 100_000);
        assert_eq!(label, "users:*");
        assert_eq!(format, "users:{i:018}");
        assert_eq!(split(b"link:aB3dE5fG").ids, vec!["aB3dE5fG"]);
        assert_eq!(split(b"s:Kq7Tzp2Lm").ids, vec!["Kq7Tzp2Lm"]);
    }

    #[test]
    fn a_hash_tag_stays_a_tag() {
        let (label, format) = format_of(&["{user:83734}:cart", "{user:10}:cart"], 100);
        assert_eq!(label, "{user:*}:cart");
        // Mean id length 3.5 over 100 keys: padded to 3 digits (mean 3).
        assert_eq!(format, "{{user:{i:03}}}:cart");
    }

    #[test]
    fn unpadded_ids_keep_their_mean_length() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k:{i}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(format_of(&keys, 1000).1, "k:{i}");
    }

    #[test]
    fn fixed_width_ids_keep_their_width() {
        let (label, format) = format_of(
            &[
                "sess:9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
                "sess:1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed",
            ],
            50,
        );
        assert_eq!(label, "sess:*");
        assert_eq!(format, "sess:0000000000000000{i:020}");
        assert_eq!(format_of(&["t:00000042", "t:00000043"], 50).1, "t:{i:08}");
    }

    #[test]
    fn an_id_the_same_in_every_key_is_text() {
        let (label, format) = format_of(&["api:v2:user:5", "api:v2:user:6"], 10);
        assert_eq!(label, "api:v2:user:*");
        assert_eq!(format, "api:v2:user:{i}");
        // One key: its last id stays the index.
        assert_eq!(format_of(&["api:v2:user:5"], 1).1, "api:v2:user:{i}");
        assert_eq!(format_of(&["config"], 1).1, "config{i}");
    }

    #[test]
    fn braces_outside_a_tag_are_literal() {
        assert_eq!(format_of(&["a}b:1", "a}b:2"], 2).1, "a}}b:{i}");
    }

    #[test]
    fn other_keys_keep_their_mean_length() {
        assert_eq!(other_format("hash", 20.0, 1000, None), "other:hash:{i:09}");
        assert_eq!(other_format("set", 5.0, 10, None), "other:set:{i}");
        assert_eq!(other_index_digits("set", 5.0, 100), 2);
    }

    #[test]
    fn a_second_stage_of_a_pattern_keeps_its_keys_apart() {
        let keys: Vec<String> = (0..1000).map(|i| format!("k:{i}:x")).collect();
        let mut seen = IdsSeen::default();
        keys.iter().for_each(|k| seen.add(&split(k.as_bytes()).ids));
        let pattern = split(keys[0].as_bytes()).pattern;
        assert_eq!(first_index_digits(&pattern, &seen, 1000), 3);
        let apart = Apart {
            digit: '1',
            width: 3,
        };
        assert_eq!(key_format(&pattern, &seen, 50, Some(apart)), "k:1{i:03}:x");
        let config = split(b"config").pattern;
        assert_eq!(
            key_format(&config, &IdsSeen::default(), 5, Some(apart)),
            "config1{i:03}"
        );
    }

    #[test]
    fn stage_names_come_from_the_text() {
        assert_eq!(stage_name("{user:*}:cart"), "user-cart");
        assert_eq!(stage_name("*"), "keys");
        assert_eq!(stage_name("api:v2:user:*"), "api-v2-user");
    }
}

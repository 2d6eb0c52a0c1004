//! The dataset: entry `i` of a stage → (key, value, TTL), a pure function of the stage seed,
//! the stage name, `i` and the stage's shape. `run` and `verify` both use only this module,
//! so what is written and what is checked can never disagree.
//!
//! The algorithm is part of the contract (docs/dataset.md): changing it changes every
//! dataset, so it is written out here with fixed constants and no dependency on any
//! library's random number generator.

mod elements;
mod keys;
mod modulus;
mod pool;

pub use elements::STREAM_BASE_MS;
pub(crate) use elements::{Element, StreamValue};

use crate::decimal::{MAX_DIGITS, write_back};
use crate::mix::{fnv1a64, mix64};
use crate::plan::{DataType, Elemental, Shape};

use keys::Keys;
use modulus::Modulus;
use pool::Pool;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Everything needed to produce the entries of one stage.
#[derive(Debug, Clone)]
pub struct Dataset {
    keys: Keys,
    value_min: u64,
    value_span: u64,
    /// Remainders by `value_span` (a ranged value's length).
    value_modulus: Modulus,
    /// Remainders by the span of scores (a sorted-set member's score).
    score_modulus: Modulus,
    ttl: Option<(u64, u64)>,
    stage_key: u64,
    pool: Pool,
    elemental: Elemental,
    /// Digits of the largest element index of a key.
    element_width: usize,
    /// Digits of the largest field index of a stream entry.
    pair_width: usize,
    /// Hash or stream field names made once (they depend only on the stage and the
    /// field's index), when they fit in [`FIELD_NAMES_BYTES`].
    field_names: Vec<u8>,
    /// The payload of every element, when all have the same (`value_size` one number).
    fixed_element_payload: Option<u64>,
}

/// Most bytes of field names made ahead.
const FIELD_NAMES_BYTES: usize = 4 << 20;

/// The per-entry draws, computed once and used for key, value and TTL.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Index of the entry in its stage.
    pub index: u64,
    /// Bytes of the value.
    pub value_len: usize,
    value_offset: usize,
    key_offset: usize,
    /// TTL in milliseconds, when the stage has one.
    pub ttl_ms: Option<u64>,
    /// Elements of the key (1 for a string).
    pub elements: u64,
    /// The draw elements are derived from.
    draw: u64,
}

impl Dataset {
    /// The dataset of a stage of `keys` entries (the count fixes the index width).
    pub fn new(seed: u64, stage_name: &str, shape: &Shape, keys: u64) -> Dataset {
        let stage_key = mix64(seed ^ mix64(fnv1a64(stage_name.as_bytes())));
        let pool = Pool::new(stage_key);
        let mut dataset = Dataset {
            keys: Keys::new(&shape.key, keys),
            value_min: shape.value_size.min,
            value_span: shape.value_size.max - shape.value_size.min + 1,
            value_modulus: Modulus::new(shape.value_size.max - shape.value_size.min + 1),
            score_modulus: Modulus::new(shape.elemental.score.span()),
            ttl: shape.ttl.map(|t| (t.min_ms, t.max_ms - t.min_ms + 1)),
            stage_key,
            pool,
            elemental: shape.elemental,
            element_width: crate::plan::index_width(shape.elemental.elements.max) as usize,
            pair_width: crate::plan::index_width(u64::from(shape.elemental.entry_fields)) as usize,
            field_names: Vec::new(),
            fixed_element_payload: None,
        };
        dataset.fixed_element_payload = dataset
            .fixed_value_len()
            .map(|len| dataset.element_payload(&Element::of_length(len)));
        let names = dataset.field_names();
        let bytes = names.saturating_mul(u64::from(shape.elemental.field_size));
        if bytes > 0 && bytes <= FIELD_NAMES_BYTES as u64 {
            let mut table = Vec::with_capacity(bytes as usize);
            for j in 0..names {
                dataset.make_field_name(j, &mut table);
            }
            dataset.field_names = table;
        }
        dataset
    }

    /// Bytes of the longest key: of every key, unless the stage has a `key_format` whose
    /// keys grow with the index (room to make a key in).
    pub fn key_size(&self) -> usize {
        self.keys.longest()
    }

    /// The length of every key, when all have the same (always without a `key_format`).
    #[inline]
    pub fn fixed_key_len(&self) -> Option<usize> {
        self.keys.fixed_len()
    }

    /// Bytes of the key of entry `index`.
    #[inline]
    pub fn key_len(&self, index: u64) -> usize {
        self.keys.len(index)
    }

    /// Whether entries expire.
    pub fn has_ttl(&self) -> bool {
        self.ttl.is_some()
    }

    /// Mean payload bytes of one element, rounded up (strings: of the value).
    pub fn mean_element_bytes(&self) -> u64 {
        let max = self.value_min + self.value_span - 1;
        self.elemental
            .element_bytes_twice(self.value_min, max)
            .div_ceil(2)
    }

    /// True for hashes, sets, sorted sets, lists and streams.
    pub fn is_typed(&self) -> bool {
        self.elemental.data_type != DataType::String
    }

    /// The Redis type of the stage's keys.
    pub fn data_type(&self) -> DataType {
        self.elemental.data_type
    }

    /// The draws of entry `index`.
    #[inline]
    pub fn entry(&self, index: u64) -> Entry {
        let a = mix64(
            self.stage_key
                .wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN)),
        );
        let b = mix64(a ^ GOLDEN);
        let mask = (pool::LEN - 1) as u64;
        Entry {
            index,
            value_len: self.value_len(a),
            value_offset: (b & mask) as usize,
            key_offset: ((b >> 32) & mask) as usize,
            ttl_ms: self.ttl.map(|(min, span)| within(min, span, mix64(b))),
            elements: match self.elemental.data_type {
                DataType::String => 1,
                _ => {
                    let range = self.elemental.elements;
                    within(range.min, range.max - range.min + 1, a)
                }
            },
            draw: b,
        }
    }

    /// Appends the key of `entry`: prefix, zero-padded index, filler up to `key_size`; or
    /// the stage's `key_format` with the index filled in.
    #[inline]
    pub fn push_key(&self, entry: &Entry, out: &mut Vec<u8>) {
        self.keys
            .push(&self.pool, entry.index, entry.key_offset, out);
    }

    /// Appends the value of `entry`.
    #[inline]
    pub fn push_value(&self, entry: &Entry, out: &mut Vec<u8>) {
        self.pool.push(entry.value_offset, entry.value_len, out);
    }

    /// `value_min + draw mod (value_max - value_min + 1)`: the length of a value (no
    /// division when every value has the same length).
    #[inline]
    fn value_len(&self, draw: u64) -> usize {
        (self.value_min + self.value_modulus.of(draw)) as usize
    }

    /// Prefetches the filler of `entry`'s key, ahead of writing the key.
    #[inline]
    pub fn prefetch_key(&self, entry: &Entry) {
        self.keys.prefetch(&self.pool, entry.key_offset);
    }

    /// Prefetches the pool bytes of `entry`'s value, ahead of writing it.
    #[inline]
    pub fn prefetch_value(&self, entry: &Entry) {
        self.pool.prefetch(entry.value_offset, entry.value_len);
    }

    /// Payload bytes (key plus value, or key plus all elements) of entry `index`.
    #[inline]
    pub fn payload_bytes(&self, index: u64) -> u64 {
        if self.elemental.data_type != DataType::String {
            let entry = self.entry(index);
            return self.key_len(index) as u64 + self.elements_payload(&entry, 0..entry.elements);
        }
        let value = if self.value_span == 1 {
            self.value_min
        } else {
            self.entry(index).value_len as u64
        };
        self.key_len(index) as u64 + value
    }

    /// The key of entry `index`, as a new vector (for checks and tests, not the hot path).
    pub fn key(&self, index: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.key_len(index));
        self.push_key(&self.entry(index), &mut out);
        out
    }

    /// The value of entry `index`, as a new vector (for checks and tests, not the hot path).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn value(&self, index: u64) -> Vec<u8> {
        let entry = self.entry(index);
        let mut out = Vec::with_capacity(entry.value_len);
        self.push_value(&entry, &mut out);
        out
    }
}

/// Appends `index` in decimal, zero-padded to `width` digits (at least one); returns the
/// bytes written.
#[inline(always)]
fn push_padded(index: u64, width: usize, out: &mut Vec<u8>) -> usize {
    let mut digits = [b'0'; MAX_DIGITS];
    let start = write_back(&mut digits, MAX_DIGITS, index).min(MAX_DIGITS.saturating_sub(width));
    out.extend_from_slice(&digits[start..]);
    MAX_DIGITS - start
}

/// `min + draw mod span`: a draw within a range of `span` values (no division for one).
#[inline]
fn within(min: u64, span: u64, draw: u64) -> u64 {
    if span == 1 { min } else { min + draw % span }
}

#[cfg(test)]
const PINNED_STRING_DIGEST: u64 = 0x7d28_70a5_c450_226e;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Ttl, ValueSize};
    use std::collections::HashSet;

    fn shape(prefix: &str, key_size: u32, min: u64, max: u64) -> Shape {
        Shape {
            key: crate::plan::KeyShape::sized(prefix, key_size),
            value_size: ValueSize { min, max },
            ttl: Some(Ttl {
                min_ms: 1000,
                max_ms: 5000,
            }),
            elemental: crate::plan::Elemental::STRING,
        }
    }

    /// Existing plans keep writing exactly the same bytes: a digest of the first 10,000
    /// entries of a ranged stage, pinned when typed datasets were added.
    #[test]
    fn string_dataset_is_pinned() {
        let ds = Dataset::new(42, "pinned", &shape("p:", 24, 1, 3000), 10_000);
        let mut digest = 0xcbf2_9ce4_8422_2325u64;
        for i in 0..10_000 {
            let entry = ds.entry(i);
            let mut bytes = ds.key(i);
            bytes.extend(ds.value(i));
            bytes.extend(entry.ttl_ms.unwrap_or(0).to_le_bytes());
            digest = crate::mix::mix64(digest ^ crate::mix::fnv1a64(&bytes));
        }
        assert_eq!(digest, PINNED_STRING_DIGEST, "{digest:#x}");
    }

    #[test]
    fn keys_have_prefix_padded_index_and_exact_size() {
        let ds = Dataset::new(42, "sessions", &shape("sessions:", 32, 10, 10), 100_000);
        let key = ds.key(42);
        assert_eq!(key.len(), 32);
        assert!(
            key.starts_with(b"sessions:00042"),
            "{}",
            String::from_utf8_lossy(&key)
        );
        assert_eq!(ds.key(99_999).len(), 32);
    }

    #[test]
    fn keys_never_collide_within_a_stage() {
        let ds = Dataset::new(7, "s", &shape("s:", 12, 1, 1), 200_000);
        let keys: HashSet<Vec<u8>> = (0..200_000).map(|i| ds.key(i)).collect();
        assert_eq!(keys.len(), 200_000);
    }

    #[test]
    fn entries_depend_on_seed_and_stage_name_only() {
        let a = Dataset::new(1, "a", &shape("p:", 32, 100, 200), 1000);
        let again = Dataset::new(1, "a", &shape("p:", 32, 100, 200), 1000);
        let other_seed = Dataset::new(2, "a", &shape("p:", 32, 100, 200), 1000);
        let other_name = Dataset::new(1, "b", &shape("p:", 32, 100, 200), 1000);
        assert_eq!(a.value(5), again.value(5));
        assert_eq!(a.key(5), again.key(5));
        assert_ne!(a.value(5), other_seed.value(5));
        assert_ne!(a.value(5), other_name.value(5));
    }

    #[test]
    fn value_sizes_and_ttls_stay_in_their_ranges_and_vary() {
        let ds = Dataset::new(3, "v", &shape("v:", 16, 64, 4096), 10_000);
        let mut lengths = HashSet::new();
        for i in 0..10_000 {
            let e = ds.entry(i);
            assert!((64..=4096).contains(&e.value_len));
            assert!((1000..=5000).contains(&e.ttl_ms.unwrap()));
            assert_eq!(ds.value(i).len(), e.value_len);
            lengths.insert(e.value_len);
        }
        assert!(lengths.len() > 1000);
    }

    #[test]
    fn values_larger_than_the_pool_wrap_around() {
        let ds = Dataset::new(3, "big", &shape("b:", 16, 3 << 20, 3 << 20), 2);
        assert_eq!(ds.value(1).len(), 3 << 20);
    }
}

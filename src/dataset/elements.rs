//! Elements of typed keys: element `j` of key `i` (a hash field and its value, a set or
//! sorted-set member and its score, a list item, a stream entry with its ID and fields), a
//! pure function of the stage seed, the stage name, `i` and `j` (docs/dataset.md).
//!
//! Names that must be unique within a key (hash fields, set/zset members, a stream entry's
//! fields) start with the element's index, zero-padded, as keys start with theirs.

use super::{Dataset, Entry, GOLDEN, pool, push_padded};
use crate::mix::mix64;
use crate::plan::DataType;
use crate::plan::typed::{SCORE_BYTES, STREAM_ID_BYTES};

/// Milliseconds part of the first stream entry's ID; entry `j` has ID `BASE + j` - 0.
pub const STREAM_BASE_MS: u64 = 1_700_000_000_000;

/// Value `k` of a stream entry, drawn once for its length and its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamValue {
    /// Bytes of the value.
    pub len: usize,
    offset: usize,
}

/// The draws of one element, computed once and used for its bytes and score.
#[derive(Debug, Clone, Copy, Default)]
pub struct Element {
    /// Index of the element in its key.
    pub index: u64,
    /// Bytes of its value (hash value, member, list item; a stream entry's first value).
    pub len: usize,
    offset: usize,
    draw: u64,
}

impl Element {
    /// An element whose values all take `len` bytes (to count payloads).
    pub(super) fn of_length(len: usize) -> Element {
        Element {
            index: 0,
            len,
            offset: 0,
            draw: 0,
        }
    }
}

impl Dataset {
    /// The draws of element `j` of `entry`.
    #[inline]
    pub fn element(&self, entry: &Entry, j: u64) -> Element {
        let e = mix64(
            entry
                .draw
                .wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN)),
        );
        let c = mix64(e ^ GOLDEN);
        Element {
            index: j,
            len: self.value_len(e),
            offset: (c & (pool::LEN as u64 - 1)) as usize,
            draw: c,
        }
    }

    /// The draws of element `j` of a key whose own draws do not matter: for what depends on
    /// `j` alone (a stream entry's ID).
    #[inline]
    pub fn element_at(&self, j: u64) -> Element {
        Element {
            index: j,
            ..Element::default()
        }
    }

    /// Prefetches the pool bytes of an element (its value, or a member's filler) before it
    /// is written.
    #[inline]
    pub fn prefetch_element(&self, element: &Element) {
        self.pool.prefetch(element.offset, element.len);
    }

    /// Prefetches the pool bytes of a stream entry's value.
    #[inline]
    pub fn prefetch_stream_value(&self, value: &StreamValue) {
        self.pool.prefetch(value.offset, value.len);
    }

    /// Appends the bytes of an element's value: a hash value or a list item.
    #[inline]
    pub fn push_element_value(&self, element: &Element, out: &mut Vec<u8>) {
        self.pool.push(element.offset, element.len, out);
    }

    /// Appends a set or sorted-set member: its index, zero-padded, then filler up to its
    /// length (plan validation keeps the length at least the index's width).
    #[inline]
    pub fn push_member(&self, element: &Element, out: &mut Vec<u8>) {
        let written = push_padded(element.index, self.element_width, out);
        self.pool
            .push(element.offset, element.len.saturating_sub(written), out);
    }

    /// The bytes of an element's value (a hash value or a list item) as one slice, when
    /// they are (up to 64 KiB); [`Dataset::push_element_value`] appends any.
    #[inline]
    pub fn element_bytes(&self, element: &Element) -> Option<&[u8]> {
        self.pool.slice(element.offset, element.len)
    }

    /// Digits of a set or sorted-set member's padded index (see [`Dataset::push_member`]).
    #[inline]
    pub fn member_digits(&self, element: &Element) -> usize {
        crate::decimal::digits(element.index).max(self.element_width)
    }

    /// The filler of a set or sorted-set member after its `digits` digits of index, when it
    /// is one slice of the pool (up to 64 KiB).
    #[inline]
    pub fn member_filler(&self, element: &Element, digits: usize) -> Option<&[u8]> {
        self.pool
            .slice(element.offset, element.len.saturating_sub(digits))
    }

    /// The bytes of a stream entry's value as one slice, when they are (up to 64 KiB);
    /// [`Dataset::push_stream_value`] appends any.
    #[inline]
    pub fn stream_value_bytes(&self, value: &StreamValue) -> Option<&[u8]> {
        self.pool.slice(value.offset, value.len)
    }

    /// The score of a sorted-set member.
    #[inline]
    pub fn score(&self, element: &Element) -> i64 {
        self.elemental
            .score
            .min
            .wrapping_add(self.score_modulus.of(mix64(element.draw)) as i64)
    }

    /// Appends field name `j` (hash field `j`, or field `j` of every stream entry): the
    /// padded index, then filler up to `field_size`. The same for every key of the stage, as
    /// the fields of an application's records are.
    #[inline]
    pub fn push_field_name(&self, j: u64, out: &mut Vec<u8>) {
        let size = self.field_size();
        let start = (j as usize).saturating_mul(size);
        match self.field_names.get(start..start.saturating_add(size)) {
            Some(name) => out.extend_from_slice(name),
            None => self.make_field_name(j, out),
        }
    }

    /// Field name `j` as one slice, when the stage's names were made ahead (up to 4 MiB of
    /// them); [`Dataset::push_field_name`] appends any.
    #[inline]
    pub fn field_name_bytes(&self, j: u64) -> Option<&[u8]> {
        let size = self.field_size();
        let start = (j as usize).saturating_mul(size);
        self.field_names.get(start..start.saturating_add(size))
    }

    /// Makes field name `j` (see [`Dataset::push_field_name`]).
    pub(super) fn make_field_name(&self, j: u64, out: &mut Vec<u8>) {
        let width = match self.elemental.data_type {
            DataType::Stream => self.pair_width,
            _ => self.element_width,
        };
        let written = push_padded(j, width, out);
        let name = mix64(
            mix64(self.stage_key ^ GOLDEN).wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN)),
        );
        let filler = (self.elemental.field_size as usize).saturating_sub(written);
        self.pool
            .push((name & (pool::LEN as u64 - 1)) as usize, filler, out);
    }

    /// The ID of stream entry `j`: `STREAM_BASE_MS + j`, sequence 0; increasing in `j`.
    #[inline]
    pub fn stream_id_ms(&self, element: &Element) -> u64 {
        STREAM_BASE_MS + element.index
    }

    /// Value `k` of a stream entry: its length and where it starts in the pool.
    #[inline]
    pub fn stream_value(&self, element: &Element, k: u32) -> StreamValue {
        let d = mix64(
            element
                .draw
                .wrapping_add(u64::from(k).wrapping_add(1).wrapping_mul(GOLDEN)),
        );
        StreamValue {
            len: self.value_len(d),
            offset: (mix64(d ^ GOLDEN) & (pool::LEN as u64 - 1)) as usize,
        }
    }

    /// Appends the bytes of a stream entry's value.
    #[inline]
    pub fn push_stream_value(&self, value: &StreamValue, out: &mut Vec<u8>) {
        self.pool.push(value.offset, value.len, out);
    }

    /// Field/value pairs per stream entry.
    pub fn entry_fields(&self) -> u32 {
        self.elemental.entry_fields
    }

    /// How many field names the stage has: a hash's (as many as its largest key), a stream
    /// entry's; none for the other types.
    pub fn field_names(&self) -> u64 {
        match self.elemental.data_type {
            DataType::Hash => self.elemental.elements.max,
            DataType::Stream => u64::from(self.elemental.entry_fields),
            _ => 0,
        }
    }

    /// The length of every value (hash value, member, list item, stream value), when
    /// `value_size` is one number.
    pub fn fixed_value_len(&self) -> Option<usize> {
        (self.value_span == 1).then_some(self.value_min as usize)
    }

    /// Bytes of the shortest value (hash value, member, list item, stream value).
    pub fn min_value_len(&self) -> usize {
        self.value_min as usize
    }

    /// Bytes of the longest value.
    pub fn max_value_len(&self) -> usize {
        (self.value_min + self.value_span - 1) as usize
    }

    /// Most elements a key of the stage has.
    pub fn max_elements(&self) -> u64 {
        self.elemental.elements.max
    }

    /// The lowest and highest score a sorted-set member can draw.
    pub fn score_range(&self) -> (i64, i64) {
        (self.elemental.score.min, self.elemental.score.max)
    }

    /// Bytes of hash field names and stream field names.
    pub fn field_size(&self) -> usize {
        self.elemental.field_size as usize
    }

    /// Payload bytes of one element, as `size` counts them (docs/plan-format.md).
    #[inline]
    pub fn element_payload(&self, element: &Element) -> u64 {
        let field = u64::from(self.elemental.field_size);
        let len = element.len as u64;
        match self.elemental.data_type {
            DataType::String | DataType::Set | DataType::List => len,
            DataType::Hash => field + len,
            DataType::Zset => len + SCORE_BYTES,
            DataType::Stream => {
                STREAM_ID_BYTES
                    + (0..self.elemental.entry_fields)
                        .map(|k| field + self.stream_value(element, k).len as u64)
                        .sum::<u64>()
            }
        }
    }

    /// Payload bytes of elements `range` of key `index` (drawn only when sizes vary).
    #[inline]
    pub fn key_elements_payload(&self, index: u64, range: std::ops::Range<u64>) -> u64 {
        match self.fixed_element_payload {
            Some(each) => (range.end - range.start) * each,
            None => self.elements_payload(&self.entry(index), range),
        }
    }

    /// Payload bytes of elements `range` of `entry`.
    #[inline]
    pub fn elements_payload(&self, entry: &Entry, range: std::ops::Range<u64>) -> u64 {
        if let Some(each) = self.fixed_element_payload {
            // Every element has the same size: no need to draw them.
            return (range.end - range.start) * each;
        }
        range
            .map(|j| self.element_payload(&self.element(entry, j)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::plan::{Elemental, Elements, Score, Shape, ValueSize};

    fn typed(data_type: DataType, elements: (u64, u64), value: (u64, u64)) -> Shape {
        Shape {
            key: crate::plan::KeyShape::sized("t:", 16),
            value_size: ValueSize {
                min: value.0,
                max: value.1,
            },
            ttl: None,
            elemental: Elemental {
                data_type,
                elements: Elements {
                    min: elements.0,
                    max: elements.1,
                },
                field_size: 10,
                score: Score { min: -50, max: 50 },
                entry_fields: 3,
            },
        }
    }

    #[test]
    fn element_counts_stay_in_range_and_vary() {
        let ds = Dataset::new(1, "h", &typed(DataType::Hash, (1, 30), (8, 64)), 10_000);
        let counts: HashSet<u64> = (0..10_000).map(|i| ds.entry(i).elements).collect();
        assert!(counts.iter().all(|c| (1..=30).contains(c)));
        assert_eq!(counts.len(), 30, "every count from 1 to 30 occurs");
    }

    #[test]
    fn members_and_field_names_are_unique_in_a_key_and_sized() {
        let ds = Dataset::new(9, "s", &typed(DataType::Set, (1000, 1000), (4, 9)), 10);
        let entry = ds.entry(3);
        let mut members = HashSet::new();
        for j in 0..entry.elements {
            let element = ds.element(&entry, j);
            let mut member = Vec::new();
            ds.push_member(&element, &mut member);
            assert_eq!(member.len(), element.len);
            assert!((4..=9).contains(&member.len()));
            members.insert(member);
        }
        assert_eq!(members.len(), 1000);

        let hash = Dataset::new(9, "h", &typed(DataType::Hash, (100, 100), (1, 1)), 10);
        let names: HashSet<Vec<u8>> = (0..100)
            .map(|j| {
                let mut name = Vec::new();
                hash.push_field_name(j, &mut name);
                assert_eq!(name.len(), 10);
                name
            })
            .collect();
        assert_eq!(names.len(), 100);
    }

    #[test]
    fn elements_depend_on_key_and_index_only() {
        let shape = typed(DataType::Zset, (5, 50), (16, 16));
        let a = Dataset::new(1, "z", &shape, 1000);
        let b = Dataset::new(1, "z", &shape, 1000);
        let other = Dataset::new(2, "z", &shape, 1000);
        let (ea, eb, eo) = (a.entry(7), b.entry(7), other.entry(7));
        let bytes = |ds: &Dataset, e: &Entry| {
            let mut out = Vec::new();
            for j in 0..e.elements {
                let el = ds.element(e, j);
                ds.push_member(&el, &mut out);
                out.extend(ds.score(&el).to_le_bytes());
            }
            out
        };
        assert_eq!(bytes(&a, &ea), bytes(&b, &eb));
        assert_ne!(bytes(&a, &ea), bytes(&other, &eo));
    }

    #[test]
    fn scores_cover_their_range() {
        let ds = Dataset::new(5, "z", &typed(DataType::Zset, (100, 100), (8, 8)), 100);
        let entry = ds.entry(0);
        let scores: HashSet<i64> = (0..100).map(|j| ds.score(&ds.element(&entry, j))).collect();
        assert!(scores.iter().all(|s| (-50..=50).contains(s)));
        assert!(scores.len() > 40, "{scores:?}");
    }

    #[test]
    fn stream_payload_counts_fields_values_and_the_id() {
        let ds = Dataset::new(5, "x", &typed(DataType::Stream, (2, 2), (7, 7)), 10);
        let entry = ds.entry(1);
        let element = ds.element(&entry, 0);
        assert_eq!(ds.element_payload(&element), 16 + 3 * (10 + 7));
        assert_eq!(ds.payload_bytes(1), 16 + 2 * (16 + 3 * 17));
        assert!(ds.stream_id_ms(&ds.element(&entry, 1)) > ds.stream_id_ms(&element));
    }
}

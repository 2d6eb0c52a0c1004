//! The bytes of a typed key's elements, the hot loop of a typed stage. What is the same for
//! every element of the stage is made once: the bulk header of fixed-size values, and each
//! field name (hash fields, a stream entry's fields) as a whole bulk string followed by the
//! value's header. An element then costs its draws (docs/dataset.md) and a few copies.

use std::mem::MaybeUninit;
use std::ops::Range;

use crate::dataset::{Dataset, Element, Entry};
use crate::decimal;
use crate::plan::DataType;
use crate::resp::encode::{BulkInteger, push_bulk_header};
use crate::resp::room::Room;

/// Most bytes of field names made ahead, per encoder; names past them are made as they go.
const FIELD_TABLE_BYTES: usize = 64 << 10;
/// Elements (stream values) drawn, and their pool bytes prefetched, before any of them is
/// written: enough cache misses in flight at once to hide their latency.
const AHEAD: usize = 16;
/// Bytes of an element besides its value and field name, at most: a score, headers, and
/// `\r\n`s (what room is reserved for; more only makes the buffer grow).
const ELEMENT_FRAMING: usize = 96;

/// The per-stage bytes of elements, and the loops that write elements with them.
pub(super) struct ElementFrames {
    /// `$<len>\r\n` of every value (hash value, member, list item, stream value) when all
    /// values have one length.
    value_header: Option<Vec<u8>>,
    /// Field name `n` as the bulk string `$<field_size>\r\n<name>\r\n`, then the value
    /// header when there is one, for the stage's first field names, back to back.
    fields: Vec<u8>,
    /// Bytes of one name in `fields`.
    field_stride: usize,
}

impl ElementFrames {
    /// The frames of `dataset`'s stage.
    pub(super) fn new(dataset: &Dataset) -> ElementFrames {
        let value_header = dataset.fixed_value_len().map(|len| {
            let mut header = Vec::new();
            push_bulk_header(&mut header, len);
            header
        });
        let mut frames = ElementFrames {
            value_header,
            fields: Vec::new(),
            field_stride: 0,
        };
        let mut first = Vec::new();
        frames.push_field_slow(dataset, 0, &mut first);
        frames.field_stride = first.len();
        let names = (FIELD_TABLE_BYTES / first.len()) as u64;
        let mut fields = Vec::new();
        for n in 0..dataset.field_names().min(names) {
            frames.push_field_slow(dataset, n, &mut fields);
        }
        frames.fields = fields;
        frames
    }

    /// Appends `head` (a variadic command up to its key), then the elements `elements` of
    /// `entry` (of a hash, set, sorted set or list). Elements are drawn [`AHEAD`] at a time
    /// and their pool bytes prefetched one batch before they are written (the first batch
    /// before the head), so that the cache misses of a batch overlap each other and the
    /// writing of the batch before.
    pub(super) fn push_elements(
        &self,
        dataset: &Dataset,
        entry: &Entry,
        elements: Range<u64>,
        head: impl FnOnce(&mut Vec<u8>),
        out: &mut Vec<u8>,
    ) {
        let mut batches = [Batch::new(), Batch::new()];
        let mut next = elements.start;
        next += batches[0].draw(dataset, entry, next..elements.end) as u64;
        head(out);
        let mut current = 0;
        loop {
            let drawn = batches[1 - current].draw(dataset, entry, next..elements.end);
            self.push_drawn(dataset, &batches[current], out);
            if drawn == 0 {
                break;
            }
            next += drawn as u64;
            current = 1 - current;
        }
    }

    /// Appends elements drawn beforehand, in room reserved once for all of them.
    #[inline]
    fn push_drawn(&self, dataset: &Dataset, batch: &Batch, out: &mut Vec<u8>) {
        let (drawn, scores) = (batch.drawn(), batch.scores());
        let framing = self.field_stride + ELEMENT_FRAMING;
        let bytes = drawn.iter().map(|element| element.len + framing).sum();
        let mut room = Room::new(out, bytes);
        match dataset.data_type() {
            DataType::Hash => {
                for element in drawn {
                    self.put_field(dataset, element.index, element.len, &mut room);
                    put_value(dataset.element_bytes(element), &mut room, |out| {
                        dataset.push_element_value(element, out);
                    });
                    room.put(b"\r\n");
                }
            }
            DataType::Zset => {
                debug_assert_eq!(scores.len(), drawn.len(), "a score per member");
                for (element, score) in drawn.iter().zip(scores) {
                    room.put(score.bytes());
                    self.put_value_header(element.len, &mut room);
                    self.put_member(dataset, element, &mut room);
                }
            }
            DataType::Set => {
                for element in drawn {
                    self.put_value_header(element.len, &mut room);
                    self.put_member(dataset, element, &mut room);
                }
            }
            DataType::List | DataType::Stream | DataType::String => {
                for element in drawn {
                    self.put_value_header(element.len, &mut room);
                    put_value(dataset.element_bytes(element), &mut room, |out| {
                        dataset.push_element_value(element, out);
                    });
                    room.put(b"\r\n");
                }
            }
        }
    }

    /// Appends a set or sorted-set member and its `\r\n` (its header is written).
    #[inline(always)]
    fn put_member(&self, dataset: &Dataset, element: &Element, room: &mut Room) {
        let digits = dataset.member_digits(element);
        room.put_digits(element.index, digits);
        put_value(dataset.member_filler(element, digits), room, |out| {
            let mut member = Vec::new();
            dataset.push_member(element, &mut member);
            out.extend_from_slice(&member[digits..]);
        });
        room.put(b"\r\n");
    }

    /// Appends the `XADD` commands of stream entries `entries` of `entry`, each `head`
    /// (`XADD key`) then its ID and field/value pairs. Entries are drawn and their values
    /// prefetched a batch at a time, as [`ElementFrames::push_elements`] does.
    pub(super) fn push_stream_entries(
        &self,
        dataset: &Dataset,
        entry: &Entry,
        entries: Range<u64>,
        head: &[u8],
        out: &mut Vec<u8>,
    ) {
        let pairs = dataset.entry_fields() as usize;
        let batch = (AHEAD / pairs).max(1);
        let mut values = Vec::with_capacity(batch * pairs);
        let mut id = None;
        let mut next = entries.start;
        while next < entries.end {
            let count = (entries.end - next).min(batch as u64);
            values.clear();
            for j in next..next + count {
                let element = dataset.element(entry, j);
                let id = id.get_or_insert_with(|| StreamId::new(dataset.stream_id_ms(&element)));
                debug_assert_eq!(id.ms() + j - next, dataset.stream_id_ms(&element));
                for k in 0..dataset.entry_fields() {
                    let value = dataset.stream_value(&element, k);
                    dataset.prefetch_stream_value(&value);
                    values.push(value);
                }
            }
            let Some(id) = id.as_mut() else { break };
            let framing = self.field_stride + ELEMENT_FRAMING;
            let bytes = values
                .iter()
                .map(|value| value.len + framing)
                .sum::<usize>()
                + (head.len() + ELEMENT_FRAMING) * count as usize;
            let mut room = Room::new(out, bytes);
            for entry_values in values.chunks(pairs) {
                room.put(head);
                id.put(&mut room);
                for (k, value) in (0..).zip(entry_values) {
                    self.put_field(dataset, k, value.len, &mut room);
                    put_value(dataset.stream_value_bytes(value), &mut room, |out| {
                        dataset.push_stream_value(value, out);
                    });
                    room.put(b"\r\n");
                }
            }
            next += count;
        }
    }

    /// Appends field name `n` as a bulk string and the header of its value, `len` bytes.
    #[inline(always)]
    fn put_field(&self, dataset: &Dataset, n: u64, len: usize, room: &mut Room) {
        let start = (n as usize).saturating_mul(self.field_stride);
        match self
            .fields
            .get(start..start.saturating_add(self.field_stride))
        {
            Some(frame) => room.put(frame),
            None => room.with_vec(|out| self.push_field_slow(dataset, n, out)),
        }
        if self.value_header.is_none() {
            room.put_bulk_header(len);
        }
    }

    /// Makes what [`ElementFrames::put_field`] copies from the table.
    fn push_field_slow(&self, dataset: &Dataset, n: u64, out: &mut Vec<u8>) {
        push_bulk_header(out, dataset.field_size());
        dataset.push_field_name(n, out);
        out.extend_from_slice(b"\r\n");
        if let Some(header) = &self.value_header {
            out.extend_from_slice(header);
        }
    }

    /// Appends the bulk header of a value of `len` bytes.
    #[inline(always)]
    fn put_value_header(&self, len: usize, room: &mut Room) {
        match &self.value_header {
            Some(header) => room.put(header),
            None => room.put_bulk_header(len),
        }
    }
}

/// Appends a value (or a member's filler): `bytes`, when it is one slice of the pool, or
/// what `push` appends to the buffer (a value longer than 64 KiB).
#[inline(always)]
fn put_value(bytes: Option<&[u8]>, room: &mut Room, push: impl FnOnce(&mut Vec<u8>)) {
    match bytes {
        Some(bytes) => room.put(bytes),
        None => room.with_vec(push),
    }
}

/// Elements drawn ahead of writing them: up to [`AHEAD`], of which the first `len` are
/// drawn, and their scores when they are a sorted set's members. (Left unset rather than
/// zeroed: a zeroed pair of batches per key cost a `memset` of 1 KiB for every small key.)
struct Batch {
    elements: [MaybeUninit<Element>; AHEAD],
    scores: [MaybeUninit<BulkInteger>; AHEAD],
    len: usize,
    /// How many of `scores` are made: `len`, or none when the stage is not of sorted sets.
    scored: usize,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            elements: [const { MaybeUninit::uninit() }; AHEAD],
            scores: [const { MaybeUninit::uninit() }; AHEAD],
            len: 0,
            scored: 0,
        }
    }

    /// Draws the first elements of `elements` (as many as a batch holds), makes their
    /// scores when they have some and prefetches their pool bytes; returns how many.
    #[inline]
    fn draw(&mut self, dataset: &Dataset, entry: &Entry, elements: Range<u64>) -> usize {
        let count = (elements.end.saturating_sub(elements.start)).min(AHEAD as u64) as usize;
        let scored = dataset.data_type() == DataType::Zset;
        let (slots, scores) = (&mut self.elements[..count], &mut self.scores[..count]);
        for k in 0..count {
            let element = slots[k].write(dataset.element(entry, elements.start + k as u64));
            dataset.prefetch_element(element);
            if scored {
                scores[k].write(BulkInteger::new(dataset.score(element)));
            }
        }
        self.len = count;
        self.scored = if scored { count } else { 0 };
        count
    }

    /// The elements drawn.
    #[inline]
    fn drawn(&self) -> &[Element] {
        // SAFETY: `draw` wrote the first `len` elements (and `len <= AHEAD`); an
        // initialised `MaybeUninit<Element>` has the layout of an `Element`.
        unsafe { std::slice::from_raw_parts(self.elements.as_ptr().cast::<Element>(), self.len) }
    }

    /// The scores of the elements drawn (none unless they are a sorted set's members).
    #[inline]
    fn scores(&self) -> &[BulkInteger] {
        // SAFETY: `draw` wrote the first `scored` scores (`scored <= len <= AHEAD`), as
        // `drawn` for elements.
        unsafe {
            std::slice::from_raw_parts(self.scores.as_ptr().cast::<BulkInteger>(), self.scored)
        }
    }
}

/// The ID of the next stream entry, `<ms>-0`: the entries of a key have consecutive
/// milliseconds (docs/dataset.md).
struct StreamId {
    ms: u64,
}

impl StreamId {
    /// The ID `ms`-0.
    fn new(ms: u64) -> StreamId {
        StreamId { ms }
    }

    /// Appends the ID as a bulk string and moves on to the next millisecond.
    #[inline]
    fn put(&mut self, room: &mut Room) {
        let digits = decimal::digits(self.ms);
        room.put_bulk_header(digits + 2);
        room.put_digits(self.ms, digits);
        room.put(b"-0\r\n");
        self.ms += 1;
    }

    /// The milliseconds (for checks).
    fn ms(&self) -> u64 {
        self.ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_count_up_across_digit_boundaries() {
        let mut id = StreamId::new(98);
        let mut out = Vec::new();
        for _ in 0..3 {
            id.put(&mut Room::new(&mut out, 0));
        }
        assert_eq!(out, b"$4\r\n98-0\r\n$4\r\n99-0\r\n$5\r\n100-0\r\n");
        assert_eq!(id.ms(), 101);
    }
}

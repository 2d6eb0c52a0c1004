//! A typed key's elements as a payload encoder draws them: ahead of their use, their pool
//! bytes prefetched, and into scratch space reused from key to key.

use super::quicklist::NodeSpan;
use crate::dataset::{Dataset, Element, Entry, StreamValue};

/// Scratch space reused from key to key (the hot path allocates nothing per key).
#[derive(Default)]
pub(super) struct Scratch {
    /// One element's bytes (a member, or a value longer than the pool's slices).
    pub(super) bytes: Vec<u8>,
    /// A sorted set's elements in the order they are written.
    pub(super) order: Vec<u64>,
    /// A sorted set's (score, element), to sort them when they do not pack into one integer.
    pub(super) pairs: Vec<(i64, u64)>,
    /// A set's members as integers.
    pub(super) integers: Vec<i64>,
    /// A stream node's entries after its count.
    pub(super) node: Vec<u8>,
    /// A list's items: length and listpack entry bytes.
    pub(super) items: Vec<(usize, usize)>,
    /// A list's nodes.
    pub(super) nodes: Vec<NodeSpan>,
}

/// Elements drawn ahead of their use.
pub(super) const AHEAD: usize = 16;

/// A key's elements (of the indices given, in their order), each drawn and its pool bytes
/// prefetched [`AHEAD`] elements before it is used: the values are cut from the pool at
/// random offsets, so each would be a cache miss of its own, one after the other; drawn
/// ahead, their misses overlap (as the command encoder's batches do).
pub(super) struct Ahead<'d, I> {
    dataset: &'d Dataset,
    entry: &'d Entry,
    indices: I,
    ring: [Element; AHEAD],
    head: usize,
    len: usize,
}

impl<'d, I: Iterator<Item = u64>> Ahead<'d, I> {
    pub(super) fn new(dataset: &'d Dataset, entry: &'d Entry, indices: I) -> Self {
        Ahead {
            dataset,
            entry,
            indices,
            ring: [Element::default(); AHEAD],
            head: 0,
            len: 0,
        }
    }
}

impl<I: Iterator<Item = u64>> Iterator for Ahead<'_, I> {
    type Item = Element;

    #[inline]
    fn next(&mut self) -> Option<Element> {
        while self.len < AHEAD {
            let Some(j) = self.indices.next() else { break };
            let element = self.dataset.element(self.entry, j);
            self.dataset.prefetch_element(&element);
            self.ring[(self.head + self.len) % AHEAD] = element;
            self.len += 1;
        }
        if self.len == 0 {
            return None;
        }
        let element = self.ring[self.head];
        self.head = (self.head + 1) % AHEAD;
        self.len -= 1;
        Some(element)
    }
}

/// Hash field name `j`.
#[inline]
pub(super) fn field<'s>(dataset: &'s Dataset, j: u64, scratch: &'s mut Vec<u8>) -> &'s [u8] {
    match dataset.field_name_bytes(j) {
        Some(name) => name,
        None => {
            scratch.clear();
            dataset.push_field_name(j, scratch);
            scratch
        }
    }
}

/// A stream entry's value.
#[inline]
pub(super) fn stream_value<'s>(
    dataset: &'s Dataset,
    value: &StreamValue,
    scratch: &'s mut Vec<u8>,
) -> &'s [u8] {
    match dataset.stream_value_bytes(value) {
        Some(bytes) => bytes,
        None => {
            scratch.clear();
            dataset.push_stream_value(value, scratch);
            scratch
        }
    }
}

/// An element's value (hash value, list item).
#[inline]
pub(super) fn value<'s>(
    dataset: &'s Dataset,
    element: &Element,
    scratch: &'s mut Vec<u8>,
) -> &'s [u8] {
    match dataset.element_bytes(element) {
        Some(bytes) => bytes,
        None => {
            scratch.clear();
            dataset.push_element_value(element, scratch);
            scratch
        }
    }
}

/// A set or sorted-set member.
#[inline]
pub(super) fn member<'s>(
    dataset: &Dataset,
    element: &Element,
    scratch: &'s mut Vec<u8>,
) -> &'s [u8] {
    scratch.clear();
    dataset.push_member(element, scratch);
    scratch
}

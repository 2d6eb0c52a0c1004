//! A typed key of the dataset as a `DUMP` payload for one server: the encoding its commands
//! would have given the key (docs/architecture.md, "RESTORE payloads"), serialized as
//! `rdb.c` serializes it.
//!
//! - hash: a listpack of field, value, field, value … in field order, when it has at most
//!   `hash-max-listpack-entries` fields and no field or value is longer than
//!   `hash-max-listpack-value`; else the plain hash type (the server builds its table).
//! - sorted set: a listpack of member, score … ordered by score, then member, under the
//!   `zset-max-listpack-*` limits; else the plain type (`ZSET_2`, binary scores), highest
//!   first, which the server loads fastest.
//! - set: an intset when every member is an integer and there are at most
//!   `set-max-intset-entries`; on 7.2+ a listpack under the `set-max-listpack-*` limits;
//!   else the plain type.
//! - list: a quicklist of listpack nodes, split where `RPUSH` would split them.

use std::cell::RefCell;

use super::encoding::{
    Prefixed, push_binary_double, push_blob, push_footer, push_len, push_string,
};
use super::intset::push_intset;
use super::listpack::{self, Listpack, as_integer, integer_bytes, string_entry_bytes};
use super::object_type as rdb_type;
use super::quicklist::{EMPTY_LISTPACK, NodeSpan, Nodes};
use super::server::{Family, RDB_LISTPACK_SETS, RDB_LISTPACKS, RDB_PLAIN, ServerEncoding};
use crate::dataset::{Dataset, Element, Entry, StreamValue};
use crate::plan::DataType;

/// Largest payload cachefill sends: a key whose payload could be larger is written with
/// commands (a payload is one argument, which the server holds whole while loading it).
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// Bytes of a payload besides its elements, at most: type, lengths, listpack headers, the
/// footer.
const PAYLOAD_OVERHEAD: u64 = 64;

/// The largest score a listpack holds as the integer the server would make of it: `ZADD`
/// stores a score as `d2string` formats it, which is the integer's own digits below 2^52.
const LISTPACK_SCORE: i64 = (1 << 52) - 2;

/// Why a stage's keys are not written as payloads on a server: one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// Which keys of a stage are written as payloads, by their element count (and for some
/// lists, by their items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restorable {
    /// Keys of at most this many elements: a larger payload could pass
    /// [`MAX_PAYLOAD_BYTES`].
    pub up_to: u64,
    /// Lists of 7.2 and later whose count is in this range may end, with commands, as one
    /// listpack over the node limit, which a server loads as a quicklist: their items
    /// decide ([`Restorable::restores_key`]). Empty for everything else.
    pub ask_items: (u64, u64),
    /// How the server lays out lists, and the items per command of the command path (which
    /// decides the layout on 7.2 and later).
    lists: Option<(Nodes, u64)>,
}

impl Restorable {
    /// No key: every key is written with commands.
    pub const NONE: Restorable = Restorable {
        up_to: 0,
        ask_items: (0, 0),
        lists: None,
    };

    /// Whether a key of `count` elements is written as a payload, when its count says:
    /// `None` when its items decide.
    #[inline]
    pub fn by_count(&self, count: u64) -> Option<bool> {
        if count > self.up_to {
            Some(false)
        } else if (self.ask_items.0..self.ask_items.1).contains(&count) {
            None
        } else {
            Some(true)
        }
    }

    /// True when key `entry` of `dataset` is written as a payload (its items drawn when
    /// its count does not say).
    pub fn restores_key(&self, dataset: &Dataset, entry: &Entry) -> bool {
        match (self.by_count(entry.elements), self.lists) {
            (Some(sure), _) => sure,
            (None, Some(lists)) => {
                let scratch = &mut Scratch::default();
                let listpack = list_layout(dataset, entry, lists, scratch);
                lists.0.reloads_as(&scratch.nodes, listpack)
            }
            (None, None) => false,
        }
    }
}

/// Which keys of `dataset` are written as payloads for `server`, when the stage's commands
/// carry `per_command` elements each.
pub(crate) fn restorable(
    dataset: &Dataset,
    server: &ServerEncoding,
    per_command: u64,
) -> Restorable {
    let up_to = (MAX_PAYLOAD_BYTES - PAYLOAD_OVERHEAD) / element_bound(dataset);
    let mut ask_items = (0, 0);
    let nodes = Nodes::new(server.family, server.limits.list_size)
        .filter(|_| dataset.data_type() == DataType::List);
    if let Some(limit) = nodes.and_then(|nodes| nodes.listpack_limit()) {
        // One listpack within the limit for sure: at most `small` items of the longest.
        let room = (limit - EMPTY_LISTPACK) as u64;
        let small = room / string_entry_bytes(dataset.max_value_len()) as u64;
        // A quicklist from the first item for sure: the first command's items alone pass
        // the limit, however short, and they make two nodes at least.
        let min = dataset.min_value_len().max(1) as u64;
        let big = if per_command.saturating_mul(min) > 2 * room {
            2 * room / min + 1
        } else {
            u64::MAX
        };
        ask_items = (small + 1, big.max(small + 1));
    }
    Restorable {
        up_to,
        ask_items,
        lists: nodes.map(|nodes| (nodes, per_command)),
    }
}

/// Lays out list `entry` as `RPUSH`es of `per_command` items would (see
/// [`Nodes::layout`]), into `scratch.nodes`; true when it is one listpack.
fn list_layout(
    dataset: &Dataset,
    entry: &Entry,
    (nodes, per_command): (Nodes, u64),
    scratch: &mut Scratch,
) -> bool {
    let Scratch {
        bytes,
        items,
        nodes: spans,
        ..
    } = scratch;
    items.clear();
    for element in Ahead::new(dataset, entry, 0..entry.elements) {
        let item = value(dataset, &element, bytes);
        items.push((item.len(), listpack::entry_bytes(item)));
    }
    nodes.layout(items, per_command, spans)
}

/// Most bytes one element of `dataset` takes in a payload: its field and value (the longest
/// they can be), each with an entry header and back length (or an RDB length) of up to 10
/// bytes, and a score.
fn element_bound(dataset: &Dataset) -> u64 {
    let value = dataset.max_value_len() as u64;
    let field = dataset.field_size() as u64;
    match dataset.data_type() {
        DataType::Hash => field + value + 2 * 10 + 10,
        // An entry: its values, flags, ID and count; and a node's master entry (its field
        // names), once per entry at worst.
        DataType::Stream => u64::from(dataset.entry_fields()) * (field + value + 2 * 10) + 64,
        _ => value + 2 * 10 + 10,
    }
}

/// Scratch space reused from key to key (the hot path allocates nothing per key).
#[derive(Default)]
struct Scratch {
    /// One element's bytes (a member, or a value longer than the pool's slices).
    bytes: Vec<u8>,
    /// A sorted set's elements in the order they are written.
    order: Vec<u64>,
    /// A sorted set's (score, element), to sort them when they do not pack into one integer.
    pairs: Vec<(i64, u64)>,
    /// A set's members as integers.
    integers: Vec<i64>,
    /// A stream node's entries after its count.
    node: Vec<u8>,
    /// A list's items: length and listpack entry bytes.
    items: Vec<(usize, usize)>,
    /// A list's nodes.
    nodes: Vec<NodeSpan>,
}

/// Encodes the keys of one typed stage as payloads for one server.
pub struct PayloadEncoder<'a> {
    dataset: &'a Dataset,
    server: ServerEncoding,
    /// How the server splits lists into nodes (lists only).
    nodes: Option<Nodes>,
    /// Which keys the commands would lay out so that only their items tell (lists).
    restorable: Restorable,
    /// Sorted sets: the lowest score and the bits of an element index, when a score above
    /// the lowest and an index fit in one `u64` together (see `sort_members`).
    packed_scores: Option<(i64, u32)>,
    scratch: RefCell<Scratch>,
}

/// Elements drawn ahead of their use.
const AHEAD: usize = 16;

/// A key's elements (of the indices given, in their order), each drawn and its pool bytes
/// prefetched [`AHEAD`] elements before it is used: the values are cut from the pool at
/// random offsets, so each would be a cache miss of its own, one after the other; drawn
/// ahead, their misses overlap (as the command encoder's batches do).
struct Ahead<'d, I> {
    dataset: &'d Dataset,
    entry: &'d Entry,
    indices: I,
    ring: [Element; AHEAD],
    head: usize,
    len: usize,
}

impl<'d, I: Iterator<Item = u64>> Ahead<'d, I> {
    fn new(dataset: &'d Dataset, entry: &'d Entry, indices: I) -> Self {
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

/// Where the elements of a hash or a set go: a listpack, or plain RDB strings.
enum Sink {
    Listpack(Listpack),
    Plain,
}

impl Sink {
    /// Appends one piece of an element.
    #[inline]
    fn push(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        match self {
            Sink::Listpack(lp) => lp.push(out, bytes),
            Sink::Plain => push_string(out, bytes),
        }
    }

    /// Ends a listpack.
    fn finish(self, out: &mut Vec<u8>) {
        if let Sink::Listpack(lp) = self {
            lp.finish(out);
        }
    }
}

/// The flag of a stream entry with its node's master fields.
const STREAM_SAMEFIELDS: i64 = 2;
/// Largest stream node (`STREAM_LISTPACK_MAX_SIZE`).
const STREAM_LISTPACK_MAX_SIZE: u64 = 1 << 30;

/// An object written: its RDB type (the first byte of a payload) and the lowest RDB
/// version that has it.
type Object = (u8, u16);

/// A quicklist node holding a listpack (`QUICKLIST_NODE_CONTAINER_PACKED`).
const QUICKLIST_PACKED: u64 = 2;
/// A quicklist node holding one item's bytes (`QUICKLIST_NODE_CONTAINER_PLAIN`, 7.4+).
const QUICKLIST_PLAIN: u64 = 1;

/// Ends a list's node: its listpack, then the blob's length.
fn end_node(blob: Prefixed, lp: Listpack, out: &mut Vec<u8>) {
    lp.finish(out);
    let len = blob.written(out);
    blob.finish(out, len);
}

impl<'a> PayloadEncoder<'a> {
    /// The encoder of `dataset`'s keys for `server`, whose commands would carry
    /// `per_command` elements each (which decides how lists of 7.2 and later are laid out);
    /// `Err` says why they cannot be payloads there.
    pub fn new(
        dataset: &'a Dataset,
        server: ServerEncoding,
        per_command: u64,
    ) -> Result<Self, Unsupported> {
        supported(dataset, &server)?;
        Ok(PayloadEncoder {
            dataset,
            server,
            restorable: restorable(dataset, &server, per_command),
            nodes: Nodes::new(server.family, server.limits.list_size),
            packed_scores: packed_scores(dataset),
            scratch: RefCell::default(),
        })
    }

    /// Appends the `DUMP` payload of `entry`, a whole key: its object, then the footer.
    pub fn push_payload(&self, entry: &Entry, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(0);
        let (object_type, version) = self.push_body(entry, out);
        out[start] = object_type;
        push_footer(out, start, version);
    }

    /// Appends `entry` as an RDB file holds a key: its object's type, `key`, then the
    /// object. Returns the RDB version the object needs.
    pub fn push_key_value(&self, entry: &Entry, key: &[u8], out: &mut Vec<u8>) -> u16 {
        let start = out.len();
        out.push(0);
        push_string(out, key);
        let (object_type, version) = self.push_body(entry, out);
        out[start] = object_type;
        version
    }

    /// Appends the serialization of `entry`'s object; returns its type and RDB version.
    fn push_body(&self, entry: &Entry, out: &mut Vec<u8>) -> Object {
        let scratch = &mut *self.scratch.borrow_mut();
        match self.dataset.data_type() {
            DataType::Hash => self.push_hash(entry, scratch, out),
            DataType::Zset => self.push_zset(entry, scratch, out),
            DataType::Set => self.push_set(entry, scratch, out),
            DataType::List => self.push_list(entry, scratch, out),
            DataType::Stream => self.push_stream(entry, scratch, out),
            DataType::String => {
                unreachable!("PayloadEncoder::new refuses {}", self.dataset.data_type())
            }
        }
    }

    /// A hash: a listpack, or the plain type past the limits.
    fn push_hash(&self, entry: &Entry, scratch: &mut Scratch, out: &mut Vec<u8>) -> Object {
        let dataset = self.dataset;
        let limits = &self.server.limits;
        let compact = entry.elements <= limits.hash_entries
            && dataset.field_size() as u64 <= limits.hash_value
            && self.values_within(entry, limits.hash_value);
        self.push_ordered(
            entry,
            scratch,
            out,
            compact,
            |j, element, scratch, sink, out| {
                sink.push(out, field(dataset, j, &mut scratch.bytes));
                sink.push(out, value(dataset, element, &mut scratch.bytes));
            },
        );
        if compact {
            (rdb_type::HASH_LISTPACK, RDB_LISTPACKS)
        } else {
            (rdb_type::HASH, RDB_PLAIN)
        }
    }

    /// Writes the elements of `entry` in their order, each as the pieces `push` gives them to
    /// the sink (a hash's field and value, a set's member): in one listpack blob, or after
    /// their count as plain RDB strings.
    fn push_ordered(
        &self,
        entry: &Entry,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
        listpack: bool,
        mut push: impl FnMut(u64, &Element, &mut Scratch, &mut Sink, &mut Vec<u8>),
    ) {
        let dataset = self.dataset;
        let mut each = |sink: &mut Sink, out: &mut Vec<u8>| {
            for element in Ahead::new(dataset, entry, 0..entry.elements) {
                push(element.index, &element, scratch, sink, out);
            }
        };
        if listpack {
            push_blob(out, |out| {
                let mut sink = Sink::Listpack(Listpack::begin(out));
                each(&mut sink, out);
                sink.finish(out);
            });
        } else {
            push_len(out, entry.elements);
            each(&mut Sink::Plain, out);
        }
    }

    /// A sorted set: a listpack ordered by score then member, or the plain type past the
    /// limits, highest first.
    fn push_zset(&self, entry: &Entry, scratch: &mut Scratch, out: &mut Vec<u8>) -> Object {
        let dataset = self.dataset;
        let limits = &self.server.limits;
        let (low, high) = dataset.score_range();
        // A score far from 0 is stored as the server formats doubles; the plain type leaves
        // that to the server, which formats it as `ZADD` does when it makes the listpack.
        let integer_scores = low >= -LISTPACK_SCORE && high <= LISTPACK_SCORE;
        let compact = integer_scores
            && entry.elements <= limits.zset_entries
            && self.values_within(entry, limits.zset_value);
        self.sort_members(entry, scratch, !compact);
        let Scratch { order, bytes, .. } = scratch;
        if compact {
            push_blob(out, |out| {
                let mut lp = Listpack::begin(out);
                for element in Ahead::new(dataset, entry, order.iter().copied()) {
                    lp.push(out, member(dataset, &element, bytes));
                    lp.push_integer(out, dataset.score(&element));
                }
                lp.finish(out);
            });
            return (rdb_type::ZSET_LISTPACK, RDB_LISTPACKS);
        }
        push_len(out, entry.elements);
        for element in Ahead::new(dataset, entry, order.iter().copied()) {
            push_string(out, member(dataset, &element, bytes));
            push_binary_double(out, dataset.score(&element) as f64);
        }
        (rdb_type::ZSET_2, RDB_PLAIN)
    }

    /// Leaves in `scratch.order` the indices of `entry`'s members ordered by score, then
    /// member (highest first when `descending`). Members of one key start with their index,
    /// zero-padded to one width, so for equal scores their byte order is their index order:
    /// each member sorts as one integer, its score above its index, when both fit in 64 bits.
    fn sort_members(&self, entry: &Entry, scratch: &mut Scratch, descending: bool) {
        let dataset = self.dataset;
        let scores = (0..entry.elements).map(|j| (dataset.score(&dataset.element(entry, j)), j));
        let order = &mut scratch.order;
        order.clear();
        match self.packed_scores {
            Some((min, bits)) => {
                order.extend(scores.map(|(score, j)| (score.wrapping_sub(min) as u64) << bits | j));
                order.sort_unstable();
                let mask = (1u64 << bits) - 1;
                for key in order.iter_mut() {
                    *key &= mask;
                }
            }
            None => {
                let pairs = &mut scratch.pairs;
                pairs.clear();
                pairs.extend(scores);
                pairs.sort_unstable();
                order.extend(pairs.iter().map(|&(_, j)| j));
            }
        }
        if descending {
            order.reverse();
        }
    }

    /// A set: an intset, a listpack (7.2+) or the plain type.
    fn push_set(&self, entry: &Entry, scratch: &mut Scratch, out: &mut Vec<u8>) -> Object {
        let dataset = self.dataset;
        let limits = &self.server.limits;
        let integers = self.integer_members(entry, scratch);
        if integers && entry.elements <= limits.set_intset_entries {
            scratch.integers.sort_unstable();
            push_blob(out, |out| push_intset(out, &scratch.integers));
            return (rdb_type::SET_INTSET, RDB_PLAIN);
        }
        // On 7.2+, a set whose first member is an integer starts as an intset, and a later
        // member that is not turns it into a listpack of the integers so far, sorted, then the
        // rest; or a table. The plain type loads exactly as SADD builds it.
        let starts_intset = !scratch.integers.is_empty();
        let compact = self.server.has_listpack_sets()
            && !starts_intset
            && entry.elements <= limits.set_entries
            && self.values_within(entry, limits.set_value);
        self.push_ordered(
            entry,
            scratch,
            out,
            compact,
            |_, element, scratch, sink, out| {
                sink.push(out, member(dataset, element, &mut scratch.bytes));
            },
        );
        if compact {
            (rdb_type::SET_LISTPACK, RDB_LISTPACK_SETS)
        } else {
            (rdb_type::SET, RDB_PLAIN)
        }
    }

    /// A list: a quicklist of listpack nodes, split where `RPUSH` splits them; on 7.2 and
    /// later a small list is one node, which the server loads as a listpack.
    fn push_list(&self, entry: &Entry, scratch: &mut Scratch, out: &mut Vec<u8>) -> Object {
        let dataset = self.dataset;
        let rule = self
            .nodes
            .expect("PayloadEncoder::new checks the list settings");
        if self.restorable.by_count(entry.elements).is_none() {
            return self.push_laid_out_list(entry, scratch, out);
        }
        let nodes = Prefixed::begin(out);
        let mut count = 0;
        // The node being written: its blob and its listpack.
        let mut node: Option<(Prefixed, Listpack)> = None;
        let one_node = self.small_list(entry);
        for element in Ahead::new(dataset, entry, 0..entry.elements) {
            let item = value(dataset, &element, &mut scratch.bytes);
            if rule.plain(item.len()) {
                // A node of its own, its bytes as they are; the next item starts a node.
                if let Some((blob, lp)) = node.take() {
                    end_node(blob, lp, out);
                }
                push_len(out, QUICKLIST_PLAIN);
                push_string(out, item);
                count += 1;
                continue;
            }
            let joins = match &node {
                Some((_, lp)) => one_node || rule.allows(lp.bytes(out), lp.count(), item.len()),
                None => false,
            };
            if !joins {
                if let Some((blob, lp)) = node.take() {
                    end_node(blob, lp, out);
                }
                push_len(out, QUICKLIST_PACKED);
                node = Some((Prefixed::begin(out), Listpack::begin(out)));
                count += 1;
            }
            if let Some((_, lp)) = &mut node {
                lp.push(out, item);
            }
        }
        if let Some((blob, lp)) = node {
            end_node(blob, lp, out);
        }
        nodes.finish(out, count);
        (rdb_type::LIST_QUICKLIST_2, RDB_LISTPACKS)
    }

    /// A list of 7.2 or later whose nodes its items decide: laid out as its commands would
    /// lay it out ([`Nodes::layout`]), then written node by node (one listpack node when it
    /// stays a listpack, which the server loads as one).
    fn push_laid_out_list(
        &self,
        entry: &Entry,
        scratch: &mut Scratch,
        out: &mut Vec<u8>,
    ) -> Object {
        let dataset = self.dataset;
        let lists = self.restorable.lists.expect("lists have their layout");
        list_layout(dataset, entry, lists, scratch);
        let spans = std::mem::take(&mut scratch.nodes);
        push_len(out, spans.len() as u64);
        let mut elements = Ahead::new(dataset, entry, 0..entry.elements);
        for span in &spans {
            if span.plain {
                let element = elements.next().expect("a plain node holds one item");
                push_len(out, QUICKLIST_PLAIN);
                push_string(out, value(dataset, &element, &mut scratch.bytes));
                continue;
            }
            push_len(out, QUICKLIST_PACKED);
            let blob = Prefixed::begin(out);
            let mut lp = Listpack::begin(out);
            for element in elements.by_ref().take(span.count as usize) {
                lp.push(out, value(dataset, &element, &mut scratch.bytes));
            }
            end_node(blob, lp, out);
        }
        scratch.nodes = spans;
        (rdb_type::LIST_QUICKLIST_2, RDB_LISTPACKS)
    }

    /// A stream: its entries in listpack nodes, split where `XADD` splits them, each node
    /// headed by its master entry (the entries' count, none deleted, the field names) and
    /// keyed by its first entry's ID; every entry has the master's fields (`SAMEFIELDS`),
    /// its ID as a difference from the master's, its values and its element count. Then
    /// the stream's length, last and first IDs, nothing deleted, entries added, no consumer
    /// group (`STREAM_LISTPACKS_2`).
    fn push_stream(&self, entry: &Entry, scratch: &mut Scratch, out: &mut Vec<u8>) -> Object {
        let dataset = self.dataset;
        let limits = &self.server.limits;
        let pairs = u64::from(dataset.entry_fields());
        // Raw bytes of an entry's field names; an entry adds its values' to them.
        let field_bytes = pairs * dataset.field_size() as u64;
        let max_bytes = match limits.stream_node_bytes {
            0 => STREAM_LISTPACK_MAX_SIZE,
            bytes => bytes.min(STREAM_LISTPACK_MAX_SIZE),
        };
        let nodes = Prefixed::begin(out);
        let mut count_nodes = 0;
        // The open node: its first entry, its entries, and its content after the count.
        let mut node: Option<(u64, u64)> = None;
        let Scratch {
            bytes,
            node: content,
            ..
        } = scratch;
        content.clear();
        let mut lp = Listpack::begin(content);
        for element in Ahead::new(dataset, entry, 0..entry.elements) {
            let raw: u64 = field_bytes
                + (0..dataset.entry_fields())
                    .map(|k| dataset.stream_value(&element, k).len as u64)
                    .sum::<u64>();
            if let Some((first, count)) = node {
                let node_bytes = lp.bytes(content) + integer_bytes(count as i64);
                let full = node_bytes as u64 + raw >= max_bytes
                    || (limits.stream_node_entries > 0 && count >= limits.stream_node_entries);
                if full {
                    self.push_stream_node(first, count, lp, content, out);
                    count_nodes += 1;
                    node = None;
                    content.clear();
                    lp = Listpack::begin(content);
                }
            }
            let (first, count) = match node {
                Some(open) => open,
                None => {
                    // The master entry after its count: none deleted, the fields, its end.
                    lp.push_integer(content, 0);
                    lp.push_integer(content, pairs as i64);
                    for k in 0..pairs {
                        lp.push(content, field(dataset, k, bytes));
                    }
                    lp.push_integer(content, 0);
                    (element.index, 0)
                }
            };
            lp.push_integer(content, STREAM_SAMEFIELDS);
            lp.push_integer(content, (element.index - first) as i64);
            lp.push_integer(content, 0);
            for k in 0..dataset.entry_fields() {
                let value = dataset.stream_value(&element, k);
                lp.push(content, stream_value(dataset, &value, bytes));
            }
            lp.push_integer(content, pairs as i64 + 3);
            node = Some((first, count + 1));
        }
        if let Some((first, count)) = node {
            self.push_stream_node(first, count, lp, content, out);
            count_nodes += 1;
        }
        nodes.finish(out, count_nodes);
        let id = |j: u64| dataset.stream_id_ms(&dataset.element(entry, j));
        push_len(out, entry.elements);
        push_len(out, id(entry.elements.saturating_sub(1)));
        push_len(out, 0);
        push_len(out, id(0));
        push_len(out, 0);
        // Nothing deleted, every entry added, no consumer group.
        push_len(out, 0);
        push_len(out, 0);
        push_len(out, entry.elements);
        push_len(out, 0);
        (rdb_type::STREAM_LISTPACKS_2, RDB_LISTPACKS)
    }

    /// Appends one node of a stream: the ID of its first entry (`first`), big-endian as the
    /// radix tree keys it, then its listpack: the count of its entries, then `content`
    /// (written by `lp` after a header of its own, which is left out).
    fn push_stream_node(
        &self,
        first: u64,
        count: u64,
        lp: Listpack,
        content: &[u8],
        out: &mut Vec<u8>,
    ) {
        let dataset = self.dataset;
        let ms = dataset.stream_id_ms(&dataset.element_at(first));
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&ms.to_be_bytes());
        push_string(out, &key);
        push_blob(out, |out| {
            let mut node = Listpack::begin(out);
            node.push_integer(out, count as i64);
            node.extend(out, &content[6..], lp.count());
            node.finish(out);
        });
    }

    /// True when `entry`, a list, is one listpack on the server (7.2 and later: its items'
    /// raw bytes leave its listpack within the node limit; see `quicklist.rs`).
    fn small_list(&self, entry: &Entry) -> bool {
        let Some(rule) = self.nodes else {
            return false;
        };
        let dataset = self.dataset;
        let raw = |len: usize| entry.elements as usize * len;
        if rule.stays_listpack(raw(dataset.max_value_len())) {
            return true;
        }
        if !rule.stays_listpack(raw(dataset.min_value_len())) {
            return false;
        }
        let raw: usize = (0..entry.elements)
            .map(|j| dataset.element(entry, j).len)
            .sum();
        rule.stays_listpack(raw)
    }

    /// True when every element value of `entry` (hash value, member, item) is at most
    /// `limit` bytes long; drawn only when the stage's sizes straddle the limit.
    fn values_within(&self, entry: &Entry, limit: u64) -> bool {
        let dataset = self.dataset;
        if dataset.max_value_len() as u64 <= limit {
            return true;
        }
        if dataset.min_value_len() as u64 > limit {
            return false;
        }
        (0..entry.elements).all(|j| dataset.element(entry, j).len as u64 <= limit)
    }

    /// True when every member of `entry` is an integer, left in `scratch.integers` (the
    /// integers before the first member that is not, when one is not). A member starts with
    /// its index zero-padded, so unless the first is `0` itself none is.
    fn integer_members(&self, entry: &Entry, scratch: &mut Scratch) -> bool {
        let dataset = self.dataset;
        scratch.integers.clear();
        for j in 0..entry.elements {
            let element = dataset.element(entry, j);
            match as_integer(member(dataset, &element, &mut scratch.bytes)) {
                Some(value) => scratch.integers.push(value),
                None => return false,
            }
        }
        true
    }
}

/// Why `dataset`'s keys cannot be payloads on `server`, if they cannot.
fn supported(dataset: &Dataset, server: &ServerEncoding) -> Result<(), Unsupported> {
    let data_type = dataset.data_type();
    if data_type == DataType::String {
        return Err(Unsupported(format!(
            "cachefill writes {data_type} keys with commands"
        )));
    }
    if server.family == Family::Ziplists {
        return Err(Unsupported(
            "the server predates Redis 7.0's listpacks (RDB 10), the encodings cachefill writes"
                .into(),
        ));
    }
    if data_type == DataType::List && Nodes::new(server.family, server.limits.list_size).is_none() {
        return Err(Unsupported(format!(
            "cachefill does not reproduce the list nodes of list-max-listpack-size {} on this server",
            server.limits.list_size
        )));
    }
    Ok(())
}

/// The lowest score of `dataset` and the bits of its largest element index, when scores
/// above the lowest and element indices fit in one `u64` side by side.
fn packed_scores(dataset: &Dataset) -> Option<(i64, u32)> {
    let (min, max) = dataset.score_range();
    let span = max.abs_diff(min);
    let bits = u64::BITS - dataset.max_elements().leading_zeros();
    (u64::BITS - span.leading_zeros() + bits <= u64::BITS).then_some((min, bits))
}

/// Hash field name `j`.
#[inline]
fn field<'s>(dataset: &'s Dataset, j: u64, scratch: &'s mut Vec<u8>) -> &'s [u8] {
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
fn stream_value<'s>(
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
fn value<'s>(dataset: &'s Dataset, element: &Element, scratch: &'s mut Vec<u8>) -> &'s [u8] {
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
fn member<'s>(dataset: &Dataset, element: &Element, scratch: &'s mut Vec<u8>) -> &'s [u8] {
    scratch.clear();
    dataset.push_member(element, scratch);
    scratch
}

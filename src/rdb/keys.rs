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

use super::Object;
use super::elements::{Ahead, Scratch, field, member, value};
use super::encoding::{
    Prefixed, push_binary_double, push_blob, push_footer, push_len, push_string,
};
use super::intset::push_intset;
use super::listpack::{Listpack, as_integer};
use super::object_type as rdb_type;
use super::quicklist::Nodes;
use super::restorable::{Restorable, list_layout, restorable};
use super::server::{Family, RDB_LISTPACK_SETS, RDB_LISTPACKS, RDB_PLAIN, ServerEncoding};
use super::stream;
use crate::dataset::{Dataset, Element, Entry};
use crate::plan::DataType;

/// The largest score a listpack holds as the integer the server would make of it: `ZADD`
/// stores a score as `d2string` formats it, which is the integer's own digits below 2^52.
const LISTPACK_SCORE: i64 = (1 << 52) - 2;

/// Why a stage's keys are not written as payloads on a server: one line for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

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
            DataType::Stream => {
                stream::push_stream(self.dataset, &self.server.limits, entry, scratch, out)
            }
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

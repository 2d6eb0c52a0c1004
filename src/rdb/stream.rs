//! A stream as a payload: its entries in listpack nodes, split where `XADD` splits them.

use super::Object;
use super::elements::{Ahead, Scratch, field, stream_value};
use super::encoding::{Prefixed, push_blob, push_len, push_string};
use super::listpack::{Listpack, integer_bytes};
use super::object_type as rdb_type;
use super::server::{Limits, RDB_LISTPACKS};
use crate::dataset::{Dataset, Entry};

/// The flag of a stream entry with its node's master fields.
const STREAM_SAMEFIELDS: i64 = 2;
/// Largest stream node (`STREAM_LISTPACK_MAX_SIZE`).
const STREAM_LISTPACK_MAX_SIZE: u64 = 1 << 30;

/// A stream: its entries in listpack nodes, split where `XADD` splits them, each node
/// headed by its master entry (the entries' count, none deleted, the field names) and
/// keyed by its first entry's ID; every entry has the master's fields (`SAMEFIELDS`),
/// its ID as a difference from the master's, its values and its element count. Then
/// the stream's length, last and first IDs, nothing deleted, entries added, no consumer
/// group (`STREAM_LISTPACKS_2`).
pub(super) fn push_stream(
    dataset: &Dataset,
    limits: &Limits,
    entry: &Entry,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
) -> Object {
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
                push_stream_node(dataset, first, count, lp, content, out);
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
        push_stream_node(dataset, first, count, lp, content, out);
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
    dataset: &Dataset,
    first: u64,
    count: u64,
    lp: Listpack,
    content: &[u8],
    out: &mut Vec<u8>,
) {
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

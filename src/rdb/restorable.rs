//! Which keys of a stage are written as payloads on a server: by their element count (a
//! payload must stay under [`MAX_PAYLOAD_BYTES`]), and for the lists of 7.2 and later whose
//! count does not settle it, by their items laid out as `RPUSH` would.

use super::elements::{Ahead, Scratch, value};
use super::listpack::{self, string_entry_bytes};
use super::quicklist::{EMPTY_LISTPACK, Nodes};
use super::server::ServerEncoding;
use crate::dataset::{Dataset, Entry};
use crate::plan::DataType;

/// Largest payload cachefill sends: a key whose payload could be larger is written with
/// commands (a payload is one argument, which the server holds whole while loading it).
pub(crate) const MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// Bytes of a payload besides its elements, at most: type, lengths, listpack headers, the
/// footer.
const PAYLOAD_OVERHEAD: u64 = 64;

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
    pub(super) lists: Option<(Nodes, u64)>,
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
pub(super) fn list_layout(
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

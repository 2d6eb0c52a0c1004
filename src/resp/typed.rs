//! The write commands of typed keys: a key's elements split into variadic commands of
//! bounded size (`HSET`, `SADD`, `ZADD`, `RPUSH`; one `XADD` per stream entry), then
//! `PEXPIRE` when the stage has a TTL. How a key is split is a pure function of the stage's
//! shape and the key's element count, so the reader of replies knows which reply finishes a
//! key without being told.

use std::ops::Range;

use super::encode::{push_array_header, push_bulk, push_bulk_header};
use crate::dataset::{Dataset, Entry};
use crate::plan::DataType;

/// Payload bytes one variadic command carries, about: large enough that the per-command
/// cost disappears, small enough that a million-member key never becomes one huge command.
pub const COMMAND_BYTES: u64 = 64 << 10;
/// Most elements in one command.
pub const MAX_ELEMENTS_PER_COMMAND: u64 = 1024;

/// How the keys of one typed stage are split into commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Elements per variadic command (1 for streams: one `XADD` per entry).
    pub per_command: u64,
    /// A `PEXPIRE` follows the last element.
    pub ttl: bool,
}

impl Chunking {
    /// The chunking of a stage whose elements take `mean_element_bytes` on average.
    pub fn new(data_type: DataType, mean_element_bytes: u64, ttl: bool) -> Chunking {
        let per_command = match data_type {
            DataType::Stream | DataType::String => 1,
            _ => (COMMAND_BYTES / mean_element_bytes.max(1)).clamp(1, MAX_ELEMENTS_PER_COMMAND),
        };
        Chunking { per_command, ttl }
    }

    /// The chunking of `dataset`'s stage.
    pub fn of(dataset: &Dataset) -> Chunking {
        Chunking::new(
            dataset.data_type(),
            dataset.mean_element_bytes(),
            dataset.has_ttl(),
        )
    }

    /// Commands that write elements `from..count` of a key (and its TTL).
    #[inline]
    pub fn commands(&self, from: u64, count: u64) -> u64 {
        count.saturating_sub(from).div_ceil(self.per_command) + u64::from(self.ttl)
    }

    /// The elements command `c` (counted from element `from`) writes; `None` for the
    /// `PEXPIRE` that ends the key.
    #[inline]
    pub fn elements_of(&self, from: u64, count: u64, c: u64) -> Option<Range<u64>> {
        let start = from + c * self.per_command;
        (start < count).then(|| start..(start + self.per_command).min(count))
    }
}

/// Appends the key of `entry` as a bulk string.
#[inline]
fn push_key(dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
    push_bulk_header(out, dataset.key_size());
    dataset.push_key(entry, out);
    out.extend_from_slice(b"\r\n");
}

/// The command that writes a type's elements.
pub fn write_command(data_type: DataType) -> &'static [u8] {
    match data_type {
        DataType::Hash => b"HSET",
        DataType::Set => b"SADD",
        DataType::Zset => b"ZADD",
        DataType::List => b"RPUSH",
        DataType::Stream => b"XADD",
        DataType::String => b"SET",
    }
}

/// Appends the command that writes `elements` of `entry`.
pub fn push_elements(dataset: &Dataset, entry: &Entry, elements: Range<u64>, out: &mut Vec<u8>) {
    let count = elements.end - elements.start;
    let name = write_command(dataset.data_type());
    let per_element = match dataset.data_type() {
        DataType::Hash | DataType::Zset => 2,
        _ => 1,
    };
    let mut digits = itoa::Buffer::new();
    if dataset.data_type() == DataType::Stream {
        let pairs = u64::from(dataset.entry_fields());
        for j in elements {
            push_array_header(out, 3 + 2 * pairs);
            push_bulk(out, name);
            push_key(dataset, entry, out);
            let element = dataset.element(entry, j);
            let mut id = [0u8; 24];
            let ms = digits.format(dataset.stream_id_ms(&element)).as_bytes();
            id[..ms.len()].copy_from_slice(ms);
            id[ms.len()..ms.len() + 2].copy_from_slice(b"-0");
            push_bulk(out, &id[..ms.len() + 2]);
            for k in 0..dataset.entry_fields() {
                push_bulk_header(out, dataset.field_size());
                dataset.push_field_name(u64::from(k), out);
                out.extend_from_slice(b"\r\n");
                push_bulk_header(out, dataset.stream_value_len(&element, k));
                dataset.push_stream_value(&element, k, out);
                out.extend_from_slice(b"\r\n");
            }
        }
        return;
    }
    push_array_header(out, 2 + per_element * count);
    push_bulk(out, name);
    push_key(dataset, entry, out);
    for j in elements {
        let element = dataset.element(entry, j);
        match dataset.data_type() {
            DataType::Hash => {
                push_bulk_header(out, dataset.field_size());
                dataset.push_field_name(j, out);
                out.extend_from_slice(b"\r\n");
                push_bulk_header(out, element.len);
                dataset.push_element_value(&element, out);
            }
            DataType::Zset => {
                push_bulk(out, digits.format(dataset.score(&element)).as_bytes());
                push_bulk_header(out, element.len);
                dataset.push_member(&element, out);
            }
            DataType::Set => {
                push_bulk_header(out, element.len);
                dataset.push_member(&element, out);
            }
            DataType::List | DataType::String | DataType::Stream => {
                push_bulk_header(out, element.len);
                dataset.push_element_value(&element, out);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `PEXPIRE key ms` for `entry`'s TTL.
pub fn push_pexpire(dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(b"*3\r\n$7\r\nPEXPIRE\r\n");
    push_key(dataset, entry, out);
    let ms = entry.ttl_ms.unwrap_or(0);
    push_bulk(out, itoa::Buffer::new().format(ms).as_bytes());
}

/// The command that counts a typed key's elements.
pub fn count_command(data_type: DataType) -> &'static [u8] {
    match data_type {
        DataType::Hash => b"HLEN",
        DataType::Set => b"SCARD",
        DataType::Zset => b"ZCARD",
        DataType::List => b"LLEN",
        DataType::Stream => b"XLEN",
        DataType::String => b"EXISTS",
    }
}

/// Appends the command that counts `entry`'s elements on the server.
pub fn push_count(dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
    push_array_header(out, 2);
    push_bulk(out, count_command(dataset.data_type()));
    push_key(dataset, entry, out);
}

/// Appends `DEL` of `entry`'s key: a key written again from its first element.
pub fn push_delete(dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
    push_array_header(out, 2);
    push_bulk(out, b"DEL");
    push_key(dataset, entry, out);
}

/// Appends commands `commands` (counted from element `from`) of `entry`.
pub fn push_key_commands(
    dataset: &Dataset,
    chunking: Chunking,
    entry: &Entry,
    from: u64,
    commands: Range<u64>,
    out: &mut Vec<u8>,
) {
    for c in commands {
        match chunking.elements_of(from, entry.elements, c) {
            Some(elements) => push_elements(dataset, entry, elements, out),
            None => push_pexpire(dataset, entry, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunking_splits_keys_into_bounded_commands_then_the_ttl() {
        let chunking = Chunking::new(DataType::Zset, 24, true);
        assert_eq!(chunking.per_command, 1024);
        assert_eq!(chunking.commands(0, 1_000_000), 977 + 1);
        assert_eq!(
            chunking.elements_of(0, 1_000_000, 976),
            Some(999_424..1_000_000)
        );
        assert_eq!(chunking.elements_of(0, 1_000_000, 977), None);
        let big = Chunking::new(DataType::Hash, 10_000, false);
        assert_eq!((big.per_command, big.commands(0, 30)), (6, 5));
        assert_eq!(big.commands(28, 30), 1, "resuming from element 28");
        assert_eq!(Chunking::new(DataType::Stream, 50, false).per_command, 1);
    }

    /// Every type's commands are well-formed RESP arrays, one per command.
    #[test]
    fn encoded_commands_are_complete_resp_arrays() {
        use crate::plan::{Elemental, Elements, Score, Shape, Ttl, ValueSize};
        for data_type in [
            DataType::Hash,
            DataType::Set,
            DataType::Zset,
            DataType::List,
            DataType::Stream,
        ] {
            let shape = Shape {
                key_prefix: "k:".into(),
                key_size: 12,
                value_size: ValueSize { min: 3, max: 40 },
                ttl: Some(Ttl {
                    min_ms: 10,
                    max_ms: 20,
                }),
                elemental: Elemental {
                    data_type,
                    elements: Elements { min: 1, max: 50 },
                    field_size: 6,
                    score: Score { min: -3, max: 3 },
                    entry_fields: 2,
                },
            };
            let dataset = Dataset::new(1, "t", &shape, 100);
            let chunking = Chunking {
                per_command: 7,
                ttl: true,
            };
            let mut out = Vec::new();
            let mut expected = 0;
            for i in 0..100 {
                let entry = dataset.entry(i);
                let commands = chunking.commands(0, entry.elements);
                let commands = if data_type == DataType::Stream {
                    entry.elements + 1
                } else {
                    commands
                };
                expected += commands;
                push_key_commands(
                    &dataset,
                    chunking_for(data_type, chunking),
                    &entry,
                    0,
                    0..commands,
                    &mut out,
                );
            }
            let (mut at, mut parsed) = (0, 0);
            while at < out.len() {
                let (_, used) = crate::resp::parse_reply(&out[at..]).unwrap().unwrap();
                at += used;
                parsed += 1;
            }
            assert_eq!(parsed, expected, "{data_type}");
        }
    }

    fn chunking_for(data_type: DataType, chunking: Chunking) -> Chunking {
        if data_type == DataType::Stream {
            Chunking {
                per_command: 1,
                ..chunking
            }
        } else {
            chunking
        }
    }
}

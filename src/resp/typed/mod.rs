//! The write commands of typed keys: a key's elements in variadic commands (`HSET`, `SADD`,
//! `ZADD`, `RPUSH`; one `XADD` per stream entry) split as [`Chunking`] says, then `PEXPIRE`
//! when the stage has a TTL, or the whole key as one `RESTORE key ttl payload REPLACE` of
//! the payload `rdb` encodes; and the command that counts a key's elements. The elements
//! themselves are written by `elements.rs`.

use std::ops::Range;

use super::encode::{push_array_header, push_bulk, push_bulk_with};
use super::key_bulk::KeyBulk;
use crate::dataset::{Dataset, Entry};
use crate::plan::DataType;
use crate::rdb::{PayloadEncoder, ServerEncoding};

mod chunking;
mod elements;

pub use chunking::Chunking;
pub(crate) use chunking::{KeyForm, resume_from};
use elements::ElementFrames;

/// The command that writes a type's elements.
pub(crate) fn write_command(data_type: DataType) -> &'static [u8] {
    match data_type {
        DataType::Hash => b"HSET",
        DataType::Set => b"SADD",
        DataType::Zset => b"ZADD",
        DataType::List => b"RPUSH",
        DataType::Stream => b"XADD",
        DataType::String => b"SET",
    }
}

/// The command that counts a typed key's elements.
pub(crate) fn count_command(data_type: DataType) -> &'static [u8] {
    match data_type {
        DataType::Hash => b"HLEN",
        DataType::Set => b"SCARD",
        DataType::Zset => b"ZCARD",
        DataType::List => b"LLEN",
        DataType::Stream => b"XLEN",
        DataType::String => b"EXISTS",
    }
}

/// Encodes the commands of one typed stage's keys; what they all share is made once.
pub(crate) struct KeyEncoder<'a> {
    dataset: &'a Dataset,
    chunking: Chunking,
    frames: ElementFrames,
    keys: KeyBulk,
    /// The payloads of the keys written with `RESTORE`.
    payloads: Option<PayloadEncoder<'a>>,
}

impl<'a> KeyEncoder<'a> {
    /// The encoder of `dataset`'s keys, written with commands.
    pub(crate) fn new(dataset: &'a Dataset) -> KeyEncoder<'a> {
        KeyEncoder {
            dataset,
            chunking: Chunking::of(dataset),
            frames: ElementFrames::new(dataset),
            keys: KeyBulk::new(dataset),
            payloads: None,
        }
    }

    /// The encoder of `dataset`'s keys written as `RESTORE` payloads for a server that
    /// encodes as `server` does (keys too large for a payload with commands); with
    /// commands when the keys cannot be payloads there.
    pub(crate) fn restoring(dataset: &'a Dataset, server: ServerEncoding) -> KeyEncoder<'a> {
        match PayloadEncoder::new(dataset, server, Chunking::of(dataset).per_command) {
            Ok(payloads) => KeyEncoder {
                chunking: Chunking::restoring(dataset, &server),
                payloads: Some(payloads),
                ..KeyEncoder::new(dataset)
            },
            Err(_) => KeyEncoder::new(dataset),
        }
    }

    /// How the stage's keys split into commands.
    pub(crate) fn chunking(&self) -> Chunking {
        self.chunking
    }

    /// How `entry` is written (see [`Chunking::form`]).
    #[inline]
    pub(crate) fn form(&self, entry: &Entry) -> KeyForm {
        self.chunking.form(self.dataset, entry)
    }

    /// Appends commands `commands` (counted from element `from`) of `entry`, written as
    /// `restored` says (from [`KeyEncoder::form`]).
    pub(crate) fn push_commands(
        &self,
        entry: &Entry,
        restored: bool,
        from: u64,
        commands: Range<u64>,
        out: &mut Vec<u8>,
    ) {
        let dataset = self.dataset;
        dataset.prefetch_key(entry);
        let key = KeyForm {
            elements: entry.elements,
            restored,
        };
        if let Some(payloads) = &self.payloads
            && restored
        {
            if commands.start == 0 && commands.end > 0 && from < entry.elements {
                self.push_restore(payloads, entry, out);
            }
            return;
        }
        if dataset.data_type() == DataType::Stream {
            return self.push_stream_commands(entry, from, commands, out);
        }
        let name = write_command(dataset.data_type());
        let per_element = match dataset.data_type() {
            DataType::Hash | DataType::Zset => 2,
            _ => 1,
        };
        for c in commands {
            let Some(elements) = self.chunking.elements_of(from, key, c) else {
                self.push_pexpire(entry, out);
                continue;
            };
            let count = elements.end - elements.start;
            let head = |out: &mut Vec<u8>| {
                push_array_header(out, 2 + per_element * count);
                push_bulk(out, name);
                self.push_key(entry, out);
            };
            self.frames
                .push_elements(dataset, entry, elements, head, out);
        }
    }

    /// Appends commands `commands` of a stream key: one `XADD` per entry, whose head
    /// (`XADD key`) is made once, then perhaps the `PEXPIRE`.
    fn push_stream_commands(
        &self,
        entry: &Entry,
        from: u64,
        commands: Range<u64>,
        out: &mut Vec<u8>,
    ) {
        // One entry per command (`Chunking`): command `c` writes entry `from + c`.
        let entries =
            (from + commands.start).min(entry.elements)..(from + commands.end).min(entry.elements);
        if !entries.is_empty() {
            let mut head = Vec::new();
            push_array_header(&mut head, 3 + 2 * u64::from(self.dataset.entry_fields()));
            push_bulk(&mut head, write_command(DataType::Stream));
            self.push_key(entry, &mut head);
            self.frames
                .push_stream_entries(self.dataset, entry, entries, &head, out);
        }
        if from + commands.end > entry.elements {
            debug_assert!(self.chunking.ttl, "only a TTL follows the last entry");
            self.push_pexpire(entry, out);
        }
    }

    /// Appends `RESTORE key ttl payload REPLACE`: the whole key, its TTL with it (0: none).
    fn push_restore(&self, payloads: &PayloadEncoder<'_>, entry: &Entry, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*5\r\n$7\r\nRESTORE\r\n");
        self.push_key(entry, out);
        let ms = entry.ttl_ms.unwrap_or(0);
        push_bulk(out, itoa::Buffer::new().format(ms).as_bytes());
        push_bulk_with(out, |out| payloads.push_payload(entry, out));
        out.extend_from_slice(b"$7\r\nREPLACE\r\n");
    }

    /// Appends `PEXPIRE key ms` for `entry`'s TTL.
    fn push_pexpire(&self, entry: &Entry, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*3\r\n$7\r\nPEXPIRE\r\n");
        self.push_key(entry, out);
        let ms = entry.ttl_ms.unwrap_or(0);
        push_bulk(out, itoa::Buffer::new().format(ms).as_bytes());
    }

    /// Appends the command that counts `entry`'s elements on the server.
    pub(crate) fn push_count(&self, entry: &Entry, out: &mut Vec<u8>) {
        push_array_header(out, 2);
        push_bulk(out, count_command(self.dataset.data_type()));
        self.push_key(entry, out);
    }

    /// Appends `DEL` of `entry`'s key: a key written again from its first element.
    pub(crate) fn push_delete(&self, entry: &Entry, out: &mut Vec<u8>) {
        push_array_header(out, 2);
        push_bulk(out, b"DEL");
        self.push_key(entry, out);
    }

    /// Appends the key of `entry` as a bulk string.
    fn push_key(&self, entry: &Entry, out: &mut Vec<u8>) {
        self.keys.push(self.dataset, entry, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                key: crate::plan::KeyShape::sized("k:", 12),
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
                restore: crate::rdb::Restorable::NONE,
            };
            let mut out = Vec::new();
            let mut expected = 0;
            for i in 0..100 {
                let entry = dataset.entry(i);
                let commands = chunking.commands(0, KeyForm::commands(entry.elements));
                let commands = if data_type == DataType::Stream {
                    entry.elements + 1
                } else {
                    commands
                };
                expected += commands;
                let mut encoder = KeyEncoder::new(&dataset);
                encoder.chunking = chunking_for(data_type, chunking);
                encoder.push_commands(&entry, false, 0, 0..commands, &mut out);
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

    /// What typed stages write never changes by accident: a digest of every command of a
    /// few stages of each type (fixed and ranged sizes, a TTL, keys split into several
    /// commands, hash field names past any table made ahead), pinned before the encoder
    /// was optimised. tests/typed.rs compares runs with each other, not with these bytes.
    #[test]
    fn typed_commands_are_pinned() {
        use crate::plan::{Elemental, Elements, Score, Shape, Ttl, ValueSize};
        use crate::resp::EntryEncoder;
        let stage =
            |data_type, elements: (u64, u64), value: (u64, u64), field_size, ttl: bool| Shape {
                key: crate::plan::KeyShape::sized("pin:", 20),
                value_size: ValueSize {
                    min: value.0,
                    max: value.1,
                },
                ttl: ttl.then_some(Ttl {
                    min_ms: 1000,
                    max_ms: 90_000,
                }),
                elemental: Elemental {
                    data_type,
                    elements: Elements {
                        min: elements.0,
                        max: elements.1,
                    },
                    field_size,
                    score: Score {
                        min: -5_000_000,
                        max: 5_000_000,
                    },
                    entry_fields: 3,
                },
            };
        let stages = [
            stage(DataType::Hash, (10, 10), (32, 32), 8, false),
            stage(DataType::Hash, (1, 3000), (1, 120), 12, true),
            stage(DataType::Hash, (60_000, 60_000), (4, 4), 9, false),
            stage(DataType::Set, (1, 2500), (5, 40), 8, true),
            stage(DataType::Set, (100, 100), (16, 16), 8, false),
            stage(DataType::Zset, (100, 100), (16, 16), 8, false),
            stage(DataType::Zset, (1, 4000), (4, 300), 8, true),
            stage(DataType::List, (100, 100), (64, 64), 8, false),
            stage(DataType::List, (1, 300), (1, 2000), 8, true),
            stage(DataType::Stream, (1000, 1000), (16, 16), 8, false),
            stage(DataType::Stream, (1, 300), (1, 100), 11, true),
        ];
        let mut digests = Vec::new();
        for (n, shape) in stages.iter().enumerate() {
            let keys = if shape.elemental.elements.max > 10_000 {
                2
            } else {
                40
            };
            let dataset = Dataset::new(7, &format!("pin{n}"), shape, keys);
            let encoder = EntryEncoder::new(&dataset);
            let mut out = Vec::new();
            for i in 0..keys {
                encoder.push_whole_key(i, &mut out);
            }
            digests.push(crate::mix::fnv1a64(&out));
        }
        assert_eq!(digests, PINNED_TYPED_DIGESTS, "{digests:#x?}");
    }

    /// The digests of [`typed_commands_are_pinned`].
    const PINNED_TYPED_DIGESTS: [u64; 11] = [
        0x43f9_ee30_dc5f_8c8a,
        0xb250_ffd1_6133_04c7,
        0x8ad9_e521_44be_ac6b,
        0x4165_8984_adb7_9930,
        0x9974_ea9d_0120_eb84,
        0xacd2_5d9d_61ba_9337,
        0xdb79_4d49_83b3_99ed,
        0xaed7_5353_d031_0273,
        0x243b_e0eb_bcb6_f64f,
        0xfc4d_f0c2_72e2_a7df,
        0xe12f_abd3_4112_4363,
    ];

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

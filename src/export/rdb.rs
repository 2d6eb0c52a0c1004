//! `export --format rdb`: the plan's dataset as a whole RDB file, what a server writes with
//! `SAVE` and loads at start: the header (`REDIS` and the version), a few auxiliary fields,
//! the database and its sizes, every key (an absolute expiry first when it has a TTL), the
//! end, and the CRC-64 of all of it. A server started on the file holds the same dataset a
//! run writes (`DEBUG DIGEST`), in the encodings `rdb` writes for payloads.

use std::io::{self, Write};
use std::ops::RangeInclusive;

use crate::dataset::{Dataset, Entry};
use crate::plan::{DataType, Stage};
use crate::rdb::{Crc64Digest, PayloadEncoder, ServerEncoding, push_len, push_string};
use crate::resp::typed::Chunking;
use crate::shard::Shard;
use crate::slot::slot;

/// RDB opcodes (`rdb.h`).
const AUX: u8 = 0xFA;
const RESIZEDB: u8 = 0xFB;
const EXPIRETIME_MS: u8 = 0xFC;
const SELECTDB: u8 = 0xFE;
const EOF: u8 = 0xFF;
/// The object type of a string.
const TYPE_STRING: u8 = 0;

/// What an RDB file holds beyond the plan.
pub(super) struct RdbFile {
    /// The RDB version (10 or 11) and the encodings of its keys.
    pub server: ServerEncoding,
    /// The database the keys are in.
    pub db: u32,
    /// Unix time in milliseconds that TTLs count from: a key's expiry is this plus its TTL.
    pub base_ms: u64,
    /// Only keys of these hash slots (a cluster node's file).
    pub slots: Option<RangeInclusive<u16>>,
    /// The part of every stage to write.
    pub shard: Shard,
}

/// One stage of the file: its dataset and its keys.
pub(super) struct FileStage<'a> {
    /// The stage.
    pub stage: &'a Stage,
    /// Its dataset.
    pub dataset: Dataset,
}

/// Bytes gathered before each write.
const CHUNK: usize = 256 << 10;

impl RdbFile {
    /// Writes the file of `stages` to `out`.
    pub(super) fn write(&self, stages: &[FileStage<'_>], out: &mut impl Write) -> io::Result<()> {
        let mut file = Hashed {
            out,
            crc: Crc64Digest::new(),
        };
        let mut buf = Vec::with_capacity(2 * CHUNK);
        buf.extend_from_slice(format!("REDIS{:04}", self.server.rdb_version).as_bytes());
        let produced_by = match self.server.rdb_version {
            10 => "7.0.0",
            _ => "7.2.0",
        };
        for (name, value) in [
            ("redis-ver", produced_by),
            ("redis-bits", "64"),
            ("ctime", &(self.base_ms / 1000).to_string()),
            (
                "cachefill-ver",
                concat!("cachefill ", env!("CARGO_PKG_VERSION")),
            ),
        ] {
            buf.push(AUX);
            push_string(&mut buf, name.as_bytes());
            push_string(&mut buf, value.as_bytes());
        }
        buf.push(SELECTDB);
        push_len(&mut buf, u64::from(self.db));
        let (keys, expires) = self.count(stages);
        buf.push(RESIZEDB);
        push_len(&mut buf, keys);
        push_len(&mut buf, expires);
        let mut key = Vec::new();
        for FileStage { stage, dataset } in stages {
            let payloads = match stage.shape.elemental.data_type {
                DataType::String => None,
                _ => Some(
                    PayloadEncoder::new(dataset, self.server, Chunking::of(dataset).per_command)
                        .map_err(|why| {
                            io::Error::other(format!("stage \"{}\": {}", stage.name, why.0))
                        })?,
                ),
            };
            for index in self.indices(stage) {
                let entry = dataset.entry(index);
                key.clear();
                dataset.push_key(&entry, &mut key);
                if !self.holds(&key) {
                    continue;
                }
                if let Some(ms) = entry.ttl_ms {
                    buf.push(EXPIRETIME_MS);
                    buf.extend_from_slice(&self.base_ms.saturating_add(ms).to_le_bytes());
                }
                match &payloads {
                    Some(payloads) => {
                        payloads.push_key_value(&entry, &key, &mut buf);
                    }
                    None => push_string_key(dataset, &entry, &key, &mut buf),
                }
                if buf.len() >= CHUNK {
                    file.write(&buf)?;
                    buf.clear();
                }
            }
        }
        buf.push(EOF);
        file.write(&buf)?;
        let crc = file.crc.finish();
        file.out.write_all(&crc.to_le_bytes())
    }

    /// The indices of `stage`'s keys this file's shard holds.
    fn indices(&self, stage: &Stage) -> impl Iterator<Item = u64> + '_ {
        let shard = self.shard;
        (0..shard.len(stage.keys)).map(move |position| shard.global(position))
    }

    /// True when the file holds `key` (its slot is in `--slots`).
    fn holds(&self, key: &[u8]) -> bool {
        self.slots
            .as_ref()
            .is_none_or(|slots| slots.contains(&slot(key)))
    }

    /// The keys the file holds, and of them the keys with a TTL (for `RESIZEDB`).
    fn count(&self, stages: &[FileStage<'_>]) -> (u64, u64) {
        let (mut keys, mut expires) = (0, 0);
        let mut key = Vec::new();
        for FileStage { stage, dataset } in stages {
            let held = match self.slots {
                None => stage.keys.min(self.shard.len(stage.keys)),
                Some(_) => self
                    .indices(stage)
                    .filter(|&index| {
                        key.clear();
                        dataset.push_key(&dataset.entry(index), &mut key);
                        self.holds(&key)
                    })
                    .count() as u64,
            };
            keys += held;
            if dataset.has_ttl() {
                expires += held;
            }
        }
        (keys, expires)
    }
}

/// A string key: its type, key and value.
fn push_string_key(dataset: &Dataset, entry: &Entry, key: &[u8], out: &mut Vec<u8>) {
    out.push(TYPE_STRING);
    push_string(out, key);
    push_len(out, entry.value_len as u64);
    dataset.push_value(entry, out);
}

/// A writer that keeps the CRC-64 of everything written through it.
struct Hashed<'w, W> {
    out: &'w mut W,
    crc: Crc64Digest,
}

impl<W: Write> Hashed<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.out.write_all(bytes)
    }
}

//! The one encoder of dataset entries as write commands: `SET key value [PX ms]` for one
//! entry, `MSET k v k v …` for a group. The data connections and the failover re-check
//! both write through it, so an entry is the same bytes whichever path writes it. A typed
//! entry (a hash, set, sorted set, list or stream) is several commands, made by
//! [`KeyEncoder`].

use std::ops::Range;

use super::encode::{push_array_header, push_bulk, push_bulk_header, push_command};
use super::key_bulk::KeyBulk;
use super::typed::{KeyEncoder, KeyForm};
use crate::dataset::{Dataset, Entry};

/// Entries drawn ahead of writing them in a cluster slot's `MSET`.
const AHEAD: usize = 16;

/// Encodes the entries of one stage, allocating nothing per entry.
pub(crate) struct EntryEncoder<'a> {
    dataset: &'a Dataset,
    /// The keys as bulk strings.
    keys: KeyBulk,
    /// The commands of typed keys.
    typed: KeyEncoder<'a>,
}

impl<'a> EntryEncoder<'a> {
    /// An encoder for the entries of `dataset`.
    pub(crate) fn new(dataset: &'a Dataset) -> EntryEncoder<'a> {
        EntryEncoder {
            dataset,
            keys: KeyBulk::new(dataset),
            typed: KeyEncoder::new(dataset),
        }
    }

    /// An encoder for the entries of `dataset` that writes its typed keys as `RESTORE`
    /// payloads for a server that encodes as `server` does (see [`KeyEncoder::restoring`]).
    pub(crate) fn restoring(dataset: &'a Dataset, server: crate::rdb::ServerEncoding) -> Self {
        EntryEncoder {
            typed: KeyEncoder::restoring(dataset, server),
            ..EntryEncoder::new(dataset)
        }
    }

    /// How typed keys split into commands.
    pub(crate) fn chunking(&self) -> crate::resp::typed::Chunking {
        self.typed.chunking()
    }

    /// Encodes every command of typed key `index`.
    pub(crate) fn push_whole_key(&self, index: u64, out: &mut Vec<u8>) {
        let entry = self.dataset.entry(index);
        let key = self.form(&entry);
        self.push_entry_commands(&entry, key.restored, 0, 0..self.commands(0, key), out);
    }

    /// How typed key `entry` is written: its elements, and whether as one `RESTORE` (its
    /// items drawn when its element count does not say).
    #[inline]
    pub(crate) fn form(&self, entry: &Entry) -> KeyForm {
        self.typed.form(entry)
    }

    /// Commands that write elements `from..` of typed key `key` (and its TTL).
    #[inline]
    pub(crate) fn commands(&self, from: u64, key: KeyForm) -> u64 {
        self.typed.chunking().commands(from, key)
    }

    /// Encodes `commands` of typed key `index`, counted from element `from`, written as
    /// `restored` says ([`EntryEncoder::form`]).
    #[inline]
    pub(crate) fn push_key_commands(
        &self,
        index: u64,
        restored: bool,
        from: u64,
        commands: Range<u64>,
        out: &mut Vec<u8>,
    ) {
        self.push_entry_commands(&self.dataset.entry(index), restored, from, commands, out);
    }

    /// [`EntryEncoder::push_key_commands`] of a key drawn already (`Dataset::entry`).
    #[inline]
    pub(crate) fn push_entry_commands(
        &self,
        entry: &Entry,
        restored: bool,
        from: u64,
        commands: Range<u64>,
        out: &mut Vec<u8>,
    ) {
        self.typed
            .push_commands(entry, restored, from, commands, out);
    }

    /// The draws of entry `index` (its element count among them), to encode it with
    /// [`EntryEncoder::push_entry_commands`] without drawing it twice.
    #[inline]
    pub(crate) fn entry(&self, index: u64) -> Entry {
        self.dataset.entry(index)
    }

    /// Encodes the command that counts typed key `index`'s elements on the server.
    pub(crate) fn push_element_count(&self, index: u64, out: &mut Vec<u8>) {
        self.typed.push_count(&self.dataset.entry(index), out);
    }

    /// Encodes `DEL` of typed key `index`, before writing it again from its first element.
    pub(crate) fn push_delete(&self, index: u64, out: &mut Vec<u8>) {
        self.typed.push_delete(&self.dataset.entry(index), out);
    }

    /// Encodes `entries` as commands of up to `group` entries each, counted from the start
    /// (one reply per command): `SET` for a lone entry, `MSET` for more.
    #[inline]
    pub(crate) fn push_grouped(&self, entries: Range<u64>, group: u64, out: &mut Vec<u8>) {
        let mut start = entries.start;
        while start < entries.end {
            let end = (start + group).min(entries.end);
            if end - start == 1 {
                self.push_set(start, out);
            } else {
                push_array_header(out, 1 + 2 * (end - start));
                out.extend_from_slice(b"$4\r\nMSET\r\n");
                for index in start..end {
                    self.push_pair(&self.dataset.entry(index), out);
                }
            }
            start = end;
        }
    }

    /// Encodes `indices` as one command: `SET` for one, `MSET` for more (the keys of one
    /// cluster slot, in any order).
    #[inline]
    pub(crate) fn push_listed(&self, indices: &[u64], out: &mut Vec<u8>) {
        if let [index] = indices {
            return self.push_set(*index, out);
        }
        push_array_header(out, 1 + 2 * indices.len() as u64);
        out.extend_from_slice(b"$4\r\nMSET\r\n");
        // The entries of a slot are far apart in the dataset: their pool bytes are fetched
        // a batch ahead of writing them, so that their cache misses overlap.
        let mut batches = [[None; AHEAD]; 2];
        let mut drawn = 0;
        for (n, chunk) in indices.chunks(AHEAD).enumerate() {
            let batch = &mut batches[n % 2];
            for (slot, &index) in batch.iter_mut().zip(chunk) {
                let entry = self.dataset.entry(index);
                self.dataset.prefetch_key(&entry);
                self.dataset.prefetch_value(&entry);
                *slot = Some(entry);
            }
            if n > 0 {
                self.push_pairs(&batches[(n - 1) % 2][..AHEAD], out);
            }
            drawn = chunk.len();
        }
        let last = (indices.len() - 1) / AHEAD;
        self.push_pairs(&batches[last % 2][..drawn], out);
    }

    /// Appends the key and value of each entry drawn.
    #[inline]
    fn push_pairs(&self, entries: &[Option<Entry>], out: &mut Vec<u8>) {
        for entry in entries.iter().flatten() {
            self.push_pair(entry, out);
        }
    }

    /// Encodes `ASKING` and then `SET` of entry `index`: two commands, two replies.
    pub(crate) fn push_asking_set(&self, index: u64, out: &mut Vec<u8>) {
        push_command(out, &[b"ASKING"]);
        self.push_set(index, out);
    }

    /// Encodes `SET key value`, with `PX ms` when the entry has a TTL.
    #[inline]
    pub(crate) fn push_set(&self, index: u64, out: &mut Vec<u8>) {
        let entry = self.dataset.entry(index);
        out.extend_from_slice(if entry.ttl_ms.is_some() {
            b"*5\r\n$3\r\nSET\r\n"
        } else {
            b"*3\r\n$3\r\nSET\r\n"
        });
        self.push_pair(&entry, out);
        if let Some(ms) = entry.ttl_ms {
            out.extend_from_slice(b"$2\r\nPX\r\n");
            push_bulk(out, itoa::Buffer::new().format(ms).as_bytes());
        }
    }

    /// The key and the value of an entry, as two bulk strings.
    #[inline]
    fn push_pair(&self, entry: &Entry, out: &mut Vec<u8>) {
        self.keys.push(self.dataset, entry, out);
        push_bulk_header(out, entry.value_len);
        self.dataset.push_value(entry, out);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Shape, Ttl, ValueSize};

    fn dataset(ttl: Option<Ttl>) -> Dataset {
        let shape = Shape {
            key: crate::plan::KeyShape::sized("k:", 8),
            value_size: ValueSize { min: 3, max: 3 },
            ttl,
            elemental: crate::plan::Elemental::STRING,
        };
        Dataset::new(1, "s", &shape, 100)
    }

    /// The arguments of every command in `bytes`, decoded by hand.
    fn commands(mut bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        fn line(bytes: &mut &[u8]) -> Vec<u8> {
            let end = bytes.windows(2).position(|w| w == b"\r\n").unwrap();
            let line = bytes[1..end].to_vec();
            *bytes = &bytes[end + 2..];
            line
        }
        let mut out = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(bytes[0], b'*');
            let count: usize = String::from_utf8(line(&mut bytes))
                .unwrap()
                .parse()
                .unwrap();
            let mut args = Vec::new();
            for _ in 0..count {
                assert_eq!(bytes[0], b'$');
                let len: usize = String::from_utf8(line(&mut bytes))
                    .unwrap()
                    .parse()
                    .unwrap();
                args.push(bytes[..len].to_vec());
                assert_eq!(&bytes[len..len + 2], b"\r\n");
                bytes = &bytes[len + 2..];
            }
            out.push(args);
        }
        out
    }

    #[test]
    fn a_lone_entry_is_a_set_with_its_key_and_value() {
        let ds = dataset(None);
        let mut out = Vec::new();
        EntryEncoder::new(&ds).push_set(7, &mut out);
        assert_eq!(
            commands(&out),
            vec![vec![b"SET".to_vec(), ds.key(7), ds.value(7)]]
        );
    }

    #[test]
    fn entries_with_a_ttl_are_set_with_px() {
        let ds = dataset(Some(Ttl {
            min_ms: 1000,
            max_ms: 1000,
        }));
        let mut out = Vec::new();
        EntryEncoder::new(&ds).push_set(7, &mut out);
        assert_eq!(
            commands(&out),
            vec![vec![
                b"SET".to_vec(),
                ds.key(7),
                ds.value(7),
                b"PX".to_vec(),
                b"1000".to_vec()
            ]]
        );
    }

    #[test]
    fn groups_are_msets_and_a_lone_remainder_is_a_set() {
        let ds = dataset(None);
        let mut out = Vec::new();
        EntryEncoder::new(&ds).push_grouped(0..5, 2, &mut out);
        let names: Vec<(Vec<u8>, usize)> = commands(&out)
            .into_iter()
            .map(|c| (c[0].clone(), c.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                (b"MSET".to_vec(), 5),
                (b"MSET".to_vec(), 5),
                (b"SET".to_vec(), 3)
            ]
        );
        assert_eq!(commands(&out)[1][3], ds.key(3));
    }

    #[test]
    fn asking_precedes_the_set() {
        let ds = dataset(None);
        let mut out = Vec::new();
        EntryEncoder::new(&ds).push_asking_set(4, &mut out);
        let sent = commands(&out);
        assert_eq!(sent[0], vec![b"ASKING".to_vec()]);
        assert_eq!(sent[1][1], ds.key(4));
    }
}

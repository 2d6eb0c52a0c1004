//! How a typed key splits into commands: its elements in variadic commands of bounded size
//! (one `XADD` per stream entry), then `PEXPIRE` when the stage has a TTL; or, when the key
//! is written as a payload, one `RESTORE` (with its TTL). A pure function of the stage's
//! shape, how it writes, and the key's element count, so the reader of replies knows which
//! reply finishes a key without being told.

use std::ops::Range;

use crate::dataset::{Dataset, Entry};
use crate::plan::DataType;
use crate::rdb::{Restorable, ServerEncoding, restorable};

/// Payload bytes one variadic command carries, about: large enough that the per-command
/// cost disappears, small enough that a million-member key never becomes one huge command.
pub(crate) const COMMAND_BYTES: u64 = 64 << 10;
/// Most elements in one command.
pub(crate) const MAX_ELEMENTS_PER_COMMAND: u64 = 1024;

/// The element a typed key written with commands is written again from, given `count`,
/// the elements the server holds of it (`LLEN`, `HLEN` …), and `elements`, the key's own.
/// Lists and streams hold a prefix of their elements (a key's commands are applied in
/// order), unless `restart` says a refusal may have left a gap (then the key is deleted and
/// written whole); the other types are written again whole unless complete, which is
/// harmless.
pub(crate) fn resume_from(data_type: DataType, count: u64, elements: u64, restart: bool) -> u64 {
    match data_type {
        _ if restart => 0,
        DataType::List | DataType::Stream => count.min(elements),
        _ if count >= elements => elements,
        _ => 0,
    }
}

/// How the keys of one typed stage are split into commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Elements per variadic command (1 for streams: one `XADD` per entry).
    pub per_command: u64,
    /// A `PEXPIRE` follows the last element.
    pub ttl: bool,
    /// The keys written as one `RESTORE` of their payload, by element count.
    pub restore: Restorable,
}

impl Chunking {
    /// The chunking of a stage whose elements take `mean_element_bytes` on average, written
    /// with commands.
    pub fn new(data_type: DataType, mean_element_bytes: u64, ttl: bool) -> Chunking {
        let per_command = match data_type {
            DataType::Stream | DataType::String => 1,
            _ => (COMMAND_BYTES / mean_element_bytes.max(1)).clamp(1, MAX_ELEMENTS_PER_COMMAND),
        };
        Chunking {
            per_command,
            ttl,
            restore: Restorable::NONE,
        }
    }

    /// The chunking of `dataset`'s stage, written with commands.
    pub fn of(dataset: &Dataset) -> Chunking {
        Chunking::new(
            dataset.data_type(),
            dataset.mean_element_bytes(),
            dataset.has_ttl(),
        )
    }

    /// The chunking of `dataset`'s stage when its keys are written as payloads for a server
    /// that encodes as `server` does: each key `rdb::restorable` picks is one `RESTORE`
    /// (one whose payload surely fits in `rdb::restorable::MAX_PAYLOAD_BYTES`), the others
    /// are written with commands.
    pub fn restoring(dataset: &Dataset, server: &ServerEncoding) -> Chunking {
        let commands = Chunking::of(dataset);
        Chunking {
            restore: restorable(dataset, server, commands.per_command),
            ..commands
        }
    }

    /// How `entry`, a key of `dataset`, is written: one `RESTORE` or its commands (its
    /// items drawn when its element count does not say; see [`Restorable`]).
    #[inline]
    pub fn form(&self, dataset: &Dataset, entry: &Entry) -> KeyForm {
        KeyForm {
            elements: entry.elements,
            restored: self.restore.restores_key(dataset, entry),
        }
    }

    /// Commands that write elements `from..` of a key (and its TTL): a restored key is one
    /// `RESTORE`, or nothing when the server holds it whole.
    #[inline]
    pub fn commands(&self, from: u64, key: KeyForm) -> u64 {
        let count = key.elements;
        if key.restored {
            return u64::from(from < count);
        }
        count.saturating_sub(from).div_ceil(self.per_command) + u64::from(self.ttl)
    }

    /// The elements command `c` (counted from element `from`) writes; `None` for the
    /// `PEXPIRE` that ends the key. A `RESTORE` writes them all.
    #[inline]
    pub fn elements_of(&self, from: u64, key: KeyForm, c: u64) -> Option<Range<u64>> {
        let count = key.elements;
        if key.restored {
            return (c == 0 && from < count).then_some(0..count);
        }
        let start = from + c * self.per_command;
        (start < count).then(|| start..(start + self.per_command).min(count))
    }

    /// The element a key is written again from, given `count`, the elements the server
    /// holds of it (see [`resume_from`]). A restored key is restored whole unless the
    /// server holds it whole: `RESTORE … REPLACE` leaves the same key however often it is
    /// applied, and nothing of a refused one.
    #[inline]
    pub fn resume_from(&self, data_type: DataType, count: u64, key: KeyForm, restart: bool) -> u64 {
        let elements = key.elements;
        if key.restored {
            return if !restart && count >= elements {
                elements
            } else {
                0
            };
        }
        resume_from(data_type, count, elements, restart)
    }
}

/// A typed key as its commands see it: its elements, and whether it is one `RESTORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyForm {
    pub elements: u64,
    pub restored: bool,
}

impl KeyForm {
    /// A key of `elements` written with commands.
    pub const fn commands(elements: u64) -> KeyForm {
        KeyForm {
            elements,
            restored: false,
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
        assert_eq!(chunking.commands(0, KeyForm::commands(1_000_000)), 977 + 1);
        assert_eq!(
            chunking.elements_of(0, KeyForm::commands(1_000_000), 976),
            Some(999_424..1_000_000)
        );
        assert_eq!(
            chunking.elements_of(0, KeyForm::commands(1_000_000), 977),
            None
        );
        let big = Chunking::new(DataType::Hash, 10_000, false);
        assert_eq!(
            (big.per_command, big.commands(0, KeyForm::commands(30))),
            (6, 5)
        );
        assert_eq!(
            big.commands(28, KeyForm::commands(30)),
            1,
            "resuming from element 28"
        );
        assert_eq!(Chunking::new(DataType::Stream, 50, false).per_command, 1);
    }

    #[test]
    fn a_restored_key_is_one_command_carrying_every_element() {
        let chunking = Chunking::new(DataType::List, 24, true);
        let restored = KeyForm {
            elements: 100,
            restored: true,
        };
        assert_eq!(
            chunking.commands(0, restored),
            1,
            "the TTL rides with RESTORE"
        );
        assert_eq!(
            chunking.commands(100, restored),
            0,
            "held whole: nothing to send"
        );
        assert_eq!(chunking.elements_of(0, restored, 0), Some(0..100));
        assert_eq!(chunking.elements_of(0, restored, 1), None);
        // A list that holds a prefix is restored whole, not carried on from its length.
        assert_eq!(chunking.resume_from(DataType::List, 40, restored, false), 0);
        assert_eq!(
            chunking.resume_from(DataType::List, 100, restored, false),
            100
        );
        assert_eq!(chunking.resume_from(DataType::List, 100, restored, true), 0);
        // A key written with commands carries on from its length.
        let commands = KeyForm::commands(3000);
        assert_eq!(
            chunking.commands(0, commands),
            3000usize.div_ceil(1024) as u64 + 1
        );
        assert_eq!(
            chunking.resume_from(DataType::List, 40, commands, false),
            40
        );
    }
}

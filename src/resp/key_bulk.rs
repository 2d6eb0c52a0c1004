//! A dataset key as a bulk string. Keys of one length (every stage without a `key_format`,
//! and formats padded past the largest index) take their length from the stage; keys whose
//! length follows the index's digits get it per key.

use super::encode::push_bulk_header;
use crate::dataset::{Dataset, Entry};

/// Writes a stage's keys as bulk strings.
pub struct KeyBulk {
    /// The length of every key of the stage, when they all have the same.
    fixed: Option<usize>,
}

impl KeyBulk {
    /// The key writer of `dataset`.
    pub fn new(dataset: &Dataset) -> KeyBulk {
        KeyBulk {
            fixed: dataset.fixed_key_len(),
        }
    }

    /// Appends the key of `entry` as a bulk string (inline: it is most of a `SET`).
    #[inline(always)]
    pub fn push(&self, dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
        let len = match self.fixed {
            Some(len) => len,
            None => dataset.key_len(entry.index),
        };
        push_bulk_header(out, len);
        dataset.push_key(entry, out);
        out.extend_from_slice(b"\r\n");
    }
}

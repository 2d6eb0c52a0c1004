//! A dataset key as a bulk string. Keys of one length (every stage without a `key_format`,
//! and formats padded past the largest index) get their `$<len>\r\n` made once; keys whose
//! length follows the index's digits get it per key.

use super::encode::push_bulk_header;
use crate::dataset::{Dataset, Entry};

/// Writes a stage's keys as bulk strings.
pub(super) struct KeyBulk {
    /// `$<len>\r\n`, when every key of the stage has the same length.
    header: Option<Vec<u8>>,
}

impl KeyBulk {
    /// The key writer of `dataset`.
    pub(super) fn new(dataset: &Dataset) -> KeyBulk {
        KeyBulk {
            header: dataset.fixed_key_len().map(|len| {
                let mut header = Vec::new();
                push_bulk_header(&mut header, len);
                header
            }),
        }
    }

    /// Appends the key of `entry` as a bulk string (inline: it is most of a `SET`).
    #[inline(always)]
    pub(super) fn push(&self, dataset: &Dataset, entry: &Entry, out: &mut Vec<u8>) {
        match &self.header {
            Some(header) => out.extend_from_slice(header),
            None => push_bulk_header(out, dataset.key_len(entry.index)),
        }
        dataset.push_key(entry, out);
        out.extend_from_slice(b"\r\n");
    }
}

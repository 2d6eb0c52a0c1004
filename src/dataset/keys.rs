//! The keys of a stage: prefix, zero-padded index and filler up to `key_size` (every key
//! the same length), or a `key_format` with the index filled in (the length may follow the
//! index's digits).

use super::pool::Pool;
use super::push_padded;
use crate::plan::KeyShape;
use crate::plan::key_format::{KeyFormat, Part};

/// How the keys of one stage are made.
#[derive(Debug, Clone)]
pub(super) enum Keys {
    /// `key_prefix` + index zero-padded to `width` + filler up to `size`.
    Sized {
        prefix: Vec<u8>,
        size: usize,
        width: usize,
    },
    /// `key_format`.
    Format {
        format: KeyFormat,
        /// The length of every key, when they all have the same.
        fixed: Option<usize>,
        /// The length of the longest key.
        longest: usize,
    },
}

impl Keys {
    /// The keys of a stage of `keys` entries shaped `shape`.
    pub(super) fn new(shape: &KeyShape, keys: u64) -> Keys {
        match shape {
            KeyShape::Sized { prefix, size } => Keys::Sized {
                prefix: prefix.as_bytes().to_vec(),
                size: *size as usize,
                width: crate::plan::index_width(keys) as usize,
            },
            KeyShape::Format { format, .. } => Keys::Format {
                format: format.clone(),
                fixed: format.fixed_len(keys),
                longest: format.len(keys.saturating_sub(1)),
            },
        }
    }

    /// The length of every key, when they all have the same.
    #[inline]
    pub(super) fn fixed_len(&self) -> Option<usize> {
        match self {
            Keys::Sized { size, .. } => Some(*size),
            Keys::Format { fixed, .. } => *fixed,
        }
    }

    /// Bytes of the longest key.
    pub(super) fn longest(&self) -> usize {
        match self {
            Keys::Sized { size, .. } => *size,
            Keys::Format { longest, .. } => *longest,
        }
    }

    /// Bytes of the key of entry `index`.
    #[inline]
    pub(super) fn len(&self, index: u64) -> usize {
        match self {
            Keys::Sized { size, .. } => *size,
            Keys::Format { format, fixed, .. } => fixed.unwrap_or_else(|| format.len(index)),
        }
    }

    /// Appends the key of entry `index`, whose filler (if any) starts at `filler_offset`
    /// of the pool. The default keys are made inline, a format out of line, so the default
    /// path costs what it did before formats existed.
    #[inline(always)]
    pub(super) fn push(&self, pool: &Pool, index: u64, filler_offset: usize, out: &mut Vec<u8>) {
        match self {
            Keys::Sized {
                prefix,
                size,
                width,
            } => {
                out.extend_from_slice(prefix);
                let digits = push_padded(index, *width, out);
                let filler = size.saturating_sub(prefix.len() + digits);
                pool.push(filler_offset, filler, out);
            }
            Keys::Format { format, .. } => push_formatted(format, index, out),
        }
    }

    /// Prefetches the filler of a key that starts at `filler_offset` of the pool.
    #[inline]
    pub(super) fn prefetch(&self, pool: &Pool, filler_offset: usize) {
        if let Keys::Sized {
            prefix,
            size,
            width,
        } = self
        {
            pool.prefetch(filler_offset, size.saturating_sub(prefix.len() + width));
        }
    }
}

/// Appends `format` with `index` filled in.
#[inline(never)]
fn push_formatted(format: &KeyFormat, index: u64, out: &mut Vec<u8>) {
    for part in format.parts() {
        match part {
            Part::Literal(bytes) => out.extend_from_slice(bytes),
            Part::Index { width } => {
                push_padded(index, usize::from(*width), out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str, keys: u64) -> Keys {
        let shape = KeyShape::Format {
            format: KeyFormat::parse(text).unwrap(),
            mean_len: 0,
        };
        Keys::new(&shape, keys)
    }

    fn key(keys: &Keys, index: u64) -> String {
        let mut out = Vec::new();
        keys.push(&Pool::new(1), index, 0, &mut out);
        assert_eq!(out.len(), keys.len(index));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn formats_fill_in_the_index_and_unescape_braces() {
        let cart = format("{{user:{i}}}:cart", 1000);
        assert_eq!(key(&cart, 0), "{user:0}:cart");
        assert_eq!(key(&cart, 7), "{user:7}:cart");
        assert_eq!(key(&cart, 999), "{user:999}:cart");
        assert_eq!(cart.fixed_len(), None);
        assert_eq!(cart.longest(), "{user:999}:cart".len());
        let bench = format("key:{i:012}", 1_000_000);
        assert_eq!(key(&bench, 42), "key:000000000042");
        assert_eq!(bench.fixed_len(), Some(16));
        let wide = format("x{i:02}", 1000);
        assert_eq!(key(&wide, 5), "x05");
        assert_eq!(key(&wide, 123), "x123");
    }
}

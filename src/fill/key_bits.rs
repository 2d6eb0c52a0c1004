//! A set of a stage's keys, one bit per key by this process's position in the stage (see
//! [`crate::shard`]), shared by a stage's connections without a lock on the common path.
//! Pages are allocated as positions are reached, so an `until_memory` stage (whose count is
//! not known beforehand) pays only for the keys it hands out.

use std::sync::RwLock;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use super::lock::{read, write};

/// Keys per page: 8 KiB of bits.
const PAGE_KEYS: u64 = 1 << 16;
const WORDS_PER_PAGE: usize = (PAGE_KEYS / 64) as usize;

/// A set of positions, safe to change from several connections at once.
#[derive(Debug, Default)]
pub(super) struct KeyBits {
    pages: RwLock<Vec<Box<[AtomicU64]>>>,
}

impl KeyBits {
    /// An empty set; nothing is allocated until a position is added.
    pub(super) fn new() -> KeyBits {
        KeyBits::default()
    }

    /// Adds `position`; true when it was not in the set.
    pub(super) fn insert(&self, position: u64) -> bool {
        let (page, word, bit) = place(position);
        {
            let pages = read(&self.pages);
            if let Some(page) = pages.get(page) {
                return page[word].fetch_or(bit, Relaxed) & bit == 0;
            }
        }
        let mut pages = write(&self.pages);
        while pages.len() <= page {
            pages.push((0..WORDS_PER_PAGE).map(|_| AtomicU64::new(0)).collect());
        }
        pages[page][word].fetch_or(bit, Relaxed) & bit == 0
    }

    /// Removes `position`; true when it was in the set.
    pub(super) fn remove(&self, position: u64) -> bool {
        let (page, word, bit) = place(position);
        read(&self.pages)
            .get(page)
            .is_some_and(|page| page[word].fetch_and(!bit, Relaxed) & bit != 0)
    }

    /// True when `position` is in the set.
    pub(super) fn contains(&self, position: u64) -> bool {
        let (page, word, bit) = place(position);
        read(&self.pages)
            .get(page)
            .is_some_and(|page| page[word].load(Relaxed) & bit != 0)
    }

    /// Empties the set, calling `each` with every position it held, in increasing order.
    pub(super) fn drain(&self, mut each: impl FnMut(u64)) {
        let pages = read(&self.pages);
        for (page, words) in (0u64..).zip(pages.iter()) {
            for (word, bits) in (0u64..).zip(words.iter()) {
                let mut bits = bits.swap(0, Relaxed);
                while bits != 0 {
                    let bit = u64::from(bits.trailing_zeros());
                    bits &= bits - 1;
                    each(page * PAGE_KEYS + word * 64 + bit);
                }
            }
        }
    }
}

/// The page, word and bit of `position`.
fn place(position: u64) -> (usize, usize, u64) {
    let page = (position / PAGE_KEYS) as usize;
    let word = (position % PAGE_KEYS / 64) as usize;
    (page, word, 1 << (position % 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_position_is_added_and_removed_once() {
        let bits = KeyBits::new();
        assert!(!bits.remove(5), "nothing allocated yet");
        for position in [0, 63, 64, PAGE_KEYS - 1, PAGE_KEYS, 3 * PAGE_KEYS + 7] {
            assert!(bits.insert(position), "{position} first");
            assert!(!bits.insert(position), "{position} again");
        }
        assert!(!bits.insert(0));
        assert!(bits.contains(PAGE_KEYS) && !bits.contains(PAGE_KEYS + 1));
        assert!(bits.remove(PAGE_KEYS));
        assert!(!bits.remove(PAGE_KEYS), "already removed");
        assert!(!bits.contains(PAGE_KEYS) && !bits.contains(9 * PAGE_KEYS));
        assert!(!bits.remove(2 * PAGE_KEYS), "a page never written");
        assert!(bits.insert(PAGE_KEYS), "added again after removal");
        assert!(bits.remove(3 * PAGE_KEYS + 7));
        assert!(!bits.remove(3 * PAGE_KEYS + 8));
    }

    #[test]
    fn a_drain_gives_every_position_once_and_empties_the_set() {
        let bits = KeyBits::new();
        let held = [
            0,
            1,
            63,
            64,
            65,
            PAGE_KEYS - 1,
            PAGE_KEYS,
            3 * PAGE_KEYS + 7,
        ];
        for position in held {
            bits.insert(position);
        }
        let mut drained = Vec::new();
        bits.drain(|position| drained.push(position));
        assert_eq!(drained, held);
        let mut again = Vec::new();
        bits.drain(|position| again.push(position));
        assert!(again.is_empty());
        assert!(bits.insert(64), "gone from the set");
    }
}

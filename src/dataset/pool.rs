//! The byte pool that values, members and fillers are cut from (docs/dataset.md): 1 MiB made
//! from the stage key, then its first 64 KiB again, so that any slice up to that long is
//! contiguous. The pool is read at random offsets, which makes every short value a cache
//! and TLB miss of its own; so it lives in one huge page when the system grants one (one TLB
//! entry instead of 272), and the bytes of values about to be copied are prefetched.
//! Neither changes a byte of what is written.

use crate::mix::mix64;

use super::GOLDEN;

/// Size of the pool (a power of two: offsets are draws masked with `LEN - 1`).
pub(super) const LEN: usize = 1 << 20;
/// Bytes repeated after the pool, so that any slice this long is contiguous.
pub(super) const TAIL: usize = 64 << 10;
/// What fillers and values are made of: readable in `redis-cli`, free of `{` and `}` so that
/// no filler ever forms a cluster hash tag.
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// A huge page of x86-64 and aarch64 Linux; the pool fits in one.
const HUGE_PAGE: usize = 2 << 20;

/// The pool of one stage.
pub(super) struct Pool {
    /// A zeroed allocation (untouched pages cost no memory) the pool is placed in.
    backing: Vec<u8>,
    /// Where the pool starts in `backing`: at a huge page boundary.
    start: usize,
}

impl Pool {
    /// The pool of the stage whose key is `stage_key`.
    pub(super) fn new(stage_key: u64) -> Pool {
        let mut pool = Pool::placed();
        let bytes = pool.bytes_mut();
        let mut state = stage_key;
        for eight in bytes[..LEN].chunks_exact_mut(8) {
            state = state.wrapping_add(GOLDEN);
            for (to, byte) in eight.iter_mut().zip(mix64(state).to_le_bytes()) {
                *to = ALPHABET[(usize::from(byte) * ALPHABET.len()) >> 8];
            }
        }
        bytes.copy_within(..TAIL, LEN);
        pool
    }

    /// A zeroed pool at the start of a huge page (made without a copy: a pool in flight
    /// twice would double its memory).
    fn placed() -> Pool {
        let mut backing = vec![0; 2 * HUGE_PAGE];
        let start = backing.as_ptr().align_offset(HUGE_PAGE).min(HUGE_PAGE);
        advise_huge_page(&mut backing[start..start + HUGE_PAGE]);
        Pool { backing, start }
    }

    /// The pool's bytes, to make them.
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.backing[self.start..self.start + LEN + TAIL]
    }

    /// The pool's bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.backing[self.start..self.start + LEN + TAIL]
    }

    /// Appends `len` bytes starting at `offset`, wrapping around the pool.
    #[inline]
    pub(super) fn push(&self, mut offset: usize, mut len: usize, out: &mut Vec<u8>) {
        if let Some(slice) = self.slice(offset, len) {
            // Within the tail: contiguous, one copy (every typed element of the benchmarks).
            out.extend_from_slice(slice);
            return;
        }
        let bytes = self.bytes();
        while len > 0 {
            let chunk = len.min(TAIL);
            out.extend_from_slice(&bytes[offset..offset + chunk]);
            len -= chunk;
            offset = (offset + chunk) & (LEN - 1);
        }
    }

    /// Bytes `offset..offset + len` as one slice, when they are (`len` up to the tail's).
    #[inline]
    pub(super) fn slice(&self, offset: usize, len: usize) -> Option<&[u8]> {
        (len <= TAIL).then(|| &self.bytes()[offset..offset + len])
    }

    /// Asks the CPU to bring bytes `offset..offset + len` into its cache (their first and
    /// last lines; it streams the ones between) ahead of copying them, so that the misses of
    /// many values overlap instead of coming one after the other. (Both lines are asked for
    /// even when they are one: cheaper than finding out.)
    #[inline]
    pub(super) fn prefetch(&self, offset: usize, len: usize) {
        let first = self.bytes().as_ptr().wrapping_add(offset);
        prefetch(first);
        prefetch(first.wrapping_add(len.saturating_sub(1)));
    }
}

impl Clone for Pool {
    fn clone(&self) -> Pool {
        let mut pool = Pool::placed();
        pool.bytes_mut().copy_from_slice(self.bytes());
        pool
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("len", &LEN).finish()
    }
}

/// Asks Linux for a transparent huge page behind `region` (where THP is `madvise`, the
/// common default; where it is `always` this changes nothing, where `never` nothing either).
fn advise_huge_page(region: &mut [u8]) {
    #[cfg(target_os = "linux")]
    // SAFETY: `region` is memory this process owns and keeps mapped (a live slice);
    // MADV_HUGEPAGE only changes how the kernel backs it, never its contents. Failure
    // (an unaligned region, THP compiled out) is harmless: the pool stays in small pages.
    unsafe {
        libc::madvise(
            region.as_mut_ptr().cast(),
            region.len(),
            libc::MADV_HUGEPAGE,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = region;
}

/// Asks the CPU to fetch the cache line of `address` (nothing on other architectures).
#[inline(always)]
fn prefetch(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults and changes no memory, whatever the
    // address (this one is near the pool, or in it). (Unsafe only for the
    // `#[target_feature(enable = "sse")]` of the intrinsic, which every x86-64 has.)
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(address.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

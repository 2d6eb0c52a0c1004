//! Appending many short pieces to a buffer: the hot loop of a typed stage writes a few
//! copies per element (a field name, a score, a value, `\r\n`), 2–64 bytes each.
//! `extend_from_slice` costs each of them a capacity check against the `Vec` in memory and
//! a call into the C library's `memcpy`, which then picks a strategy for the length.
//! [`Room`] keeps the write position in a register and copies a short piece inline, as two
//! overlapping moves of a width that fits it. It reads and writes exactly the piece's bytes:
//! what ends up in the buffer is what `extend_from_slice` would have appended.

use std::ptr;

use crate::decimal;

/// Appends to a `Vec` through room reserved ahead; the `Vec`'s length follows when the
/// `Room` is dropped.
pub(super) struct Room<'a> {
    out: &'a mut Vec<u8>,
    /// The `Vec`'s allocation.
    start: *mut u8,
    /// Bytes written so far (the `Vec`'s length once the `Room` is dropped).
    len: usize,
    /// Bytes allocated.
    capacity: usize,
}

impl<'a> Room<'a> {
    /// Room for about `bytes` more bytes in `out`. Appending more is allowed (the buffer
    /// grows), only slower.
    #[inline]
    pub(super) fn new(out: &'a mut Vec<u8>, bytes: usize) -> Room<'a> {
        out.reserve(bytes);
        Room {
            start: out.as_mut_ptr(),
            len: out.len(),
            capacity: out.capacity(),
            out,
        }
    }

    /// Appends `piece`.
    #[inline(always)]
    pub(super) fn put(&mut self, piece: &[u8]) {
        let n = piece.len();
        if n > self.capacity - self.len {
            self.grow(n);
        }
        // SAFETY: `len + n <= capacity` (checked above; `grow` makes it so), so the
        // destination lies within the allocation; `piece` is `n` readable bytes that cannot
        // overlap it (the `Vec` is borrowed mutably here).
        unsafe { copy_short(piece.as_ptr(), self.start.add(self.len), n) };
        self.len += n;
    }

    /// Appends the last `count` decimal digits of `n`, zero-padded when `n` has fewer. The
    /// digits go straight into the buffer: made in a small buffer first, they would be
    /// read back right after being stored byte by byte, which stalls the CPU.
    #[inline(always)]
    pub(super) fn put_digits(&mut self, mut n: u64, count: usize) {
        if count > self.capacity - self.len {
            self.grow(count);
        }
        let mut left = count;
        // SAFETY: every write lands in `len..len + count`, within the allocation
        // (`len + count <= capacity`, checked above); those bytes are all written (the
        // pairs cover `left..count` down to 0 or 1, and a last single digit covers 0).
        unsafe {
            let to = self.start.add(self.len);
            while left >= 2 {
                left -= 2;
                ptr::write_unaligned(to.add(left).cast::<[u8; 2]>(), decimal::pair(n % 100));
                n /= 100;
            }
            if left == 1 {
                *to = b'0' + (n % 10) as u8;
            }
        }
        self.len += count;
    }

    /// Appends `$<len>\r\n`, the header of a bulk string.
    #[inline(always)]
    pub(super) fn put_bulk_header(&mut self, len: usize) {
        self.put(b"$");
        self.put_digits(len as u64, decimal::digits(len as u64));
        self.put(b"\r\n");
    }

    /// Lends the buffer (holding exactly what was written so far) to `write`, for a rare
    /// piece made with the `Vec`'s own functions.
    pub(super) fn with_vec(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.settle();
        // Until `refresh`, the `Vec` keeps its own length: should `write` panic, dropping
        // the `Room` leaves it as `write` left it.
        self.len = 0;
        write(self.out);
        self.refresh();
    }

    /// Makes room for `n` more bytes.
    #[inline(always)]
    fn grow(&mut self, n: usize) {
        (self.start, self.capacity) = grow(self.out, self.len, n);
    }

    /// Gives the `Vec` the length written so far.
    fn settle(&mut self) {
        // SAFETY: the first `len` bytes are initialised: those the `Vec` held, then every
        // piece `put` copied in, back to back; and `len <= capacity`.
        unsafe { self.out.set_len(self.len) };
    }

    /// Takes the `Vec`'s allocation and length again after it was used directly.
    fn refresh(&mut self) {
        self.start = self.out.as_mut_ptr();
        self.len = self.out.len();
        self.capacity = self.out.capacity();
    }
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        // Only ever longer: what `put` appended since the `Vec` last had its length.
        if self.len > self.out.len() {
            self.settle();
        }
    }
}

/// Gives `out` its length `len` and room for `n` more bytes; returns its allocation and
/// capacity. (A function of its own, away from the `Room`: were the `Room`'s address to
/// reach code that is not inlined, its write position could no longer live in a register.)
#[cold]
#[inline(never)]
fn grow(out: &mut Vec<u8>, len: usize, n: usize) -> (*mut u8, usize) {
    // SAFETY: as `Room::settle`: the first `len` bytes were written, and `len <= capacity`.
    unsafe { out.set_len(len) };
    out.reserve(n.max(out.capacity() / 2));
    (out.as_mut_ptr(), out.capacity())
}

/// Copies `n` bytes from `from` to `to`: up to 64 bytes as two overlapping moves of the
/// widest size no larger than `n` (the call into `memcpy` costs more than the copy), a
/// longer piece with `memcpy`.
///
/// # Safety
/// `from` must be readable and `to` writable for `n` bytes, and the two must not overlap.
#[inline(always)]
unsafe fn copy_short(from: *const u8, to: *mut u8, n: usize) {
    // SAFETY (of every block below): each move reads `from[a..a + W]` and writes
    // `to[a..a + W]` with `0 <= a` and `a + W <= n`, within the caller's promise.
    unsafe {
        if n >= 16 {
            if n <= 32 {
                move_pair::<16>(from, to, n);
            } else if n <= 64 {
                move_pair::<32>(from, to, n);
            } else {
                ptr::copy_nonoverlapping(from, to, n);
            }
        } else if n >= 8 {
            move_pair::<8>(from, to, n);
        } else if n >= 4 {
            move_pair::<4>(from, to, n);
        } else if n > 0 {
            // 1 to 3 bytes: the first, the middle and the last (some the same byte).
            *to = *from;
            *to.add(n / 2) = *from.add(n / 2);
            *to.add(n - 1) = *from.add(n - 1);
        }
    }
}

/// Moves the first `W` and the last `W` of `n` bytes, `W <= n <= 2 * W`.
///
/// # Safety
/// As [`copy_short`], with `W <= n`.
#[inline(always)]
unsafe fn move_pair<const W: usize>(from: *const u8, to: *mut u8, n: usize) {
    // SAFETY: `W <= n`, so both blocks lie within the `n` bytes the caller vouches for.
    unsafe {
        let head = ptr::read_unaligned(from.cast::<[u8; W]>());
        let tail = ptr::read_unaligned(from.add(n - W).cast::<[u8; W]>());
        ptr::write_unaligned(to.cast::<[u8; W]>(), head);
        ptr::write_unaligned(to.add(n - W).cast::<[u8; W]>(), tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length from 0 to past the inline sizes, at every alignment, appended after
    /// what the buffer held, gives what `extend_from_slice` gives; and growing past the
    /// room reserved loses nothing.
    #[test]
    fn pieces_of_every_length_are_copied_exactly() {
        let source: Vec<u8> = (0..=255u8).cycle().take(600).collect();
        for reserve in [0, 10, 4096] {
            let mut expected = b"held".to_vec();
            let mut out = b"held".to_vec();
            {
                let mut room = Room::new(&mut out, reserve);
                for len in 0..=140 {
                    for offset in [0, 1, 7, 33] {
                        let piece = &source[offset..offset + len];
                        room.put(piece);
                        expected.extend_from_slice(piece);
                    }
                    if len % 50 == 0 {
                        room.with_vec(|vec| vec.extend_from_slice(b"|vec|"));
                        expected.extend_from_slice(b"|vec|");
                    }
                }
            }
            assert_eq!(out, expected, "reserved {reserve}");
        }
    }

    /// Numbers come out as `format!` makes them: digits padded to a width, bulk headers.
    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = Vec::new();
        let mut expected = String::new();
        {
            let mut room = Room::new(&mut out, 0);
            for n in [0, 7, 42, 100, 999_999, u64::MAX] {
                for count in [decimal::digits(n), decimal::digits(n) + 3] {
                    room.put_digits(n, count);
                    expected += &format!("{n:0count$}");
                }
                room.put_bulk_header(n as usize);
                expected += &format!("${}\r\n", n as usize);
            }
        }
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}

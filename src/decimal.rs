//! Decimal digits written right to left, two at a time, into a small buffer: zero-padded
//! indices (the dataset's keys, members and field names) and integers in RESP (scores) are
//! made per element, so they are made without `fmt` and without a division per digit.

/// "00" to "99", the two digits of every number below 100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Most digits of a u64.
pub(crate) const MAX_DIGITS: usize = 20;

/// How many decimal digits `n` has.
#[inline(always)]
pub(crate) fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// The two digits of `n`, below 100.
#[inline(always)]
pub(crate) fn pair(n: u64) -> [u8; 2] {
    let at = 2 * n as usize;
    [PAIRS[at], PAIRS[at + 1]]
}

/// Writes `n` in decimal so that it ends just before `buf[end]`; returns where it starts.
/// `buf[..end]` must have room for its digits ([`MAX_DIGITS`] at most).
#[inline(always)]
pub(crate) fn write_back(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    let mut at = end;
    while n >= 100 {
        let pair = 2 * (n % 100) as usize;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = 2 * n as usize;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_every_width_end_where_asked() {
        for n in [0, 7, 10, 99, 100, 12345, 1_700_000_000_123, u64::MAX] {
            let mut buf = [b'.'; MAX_DIGITS + 2];
            let start = write_back(&mut buf, MAX_DIGITS + 1, n);
            assert_eq!(&buf[start..MAX_DIGITS + 1], n.to_string().as_bytes());
            assert_eq!(buf[MAX_DIGITS + 1], b'.');
        }
    }
}

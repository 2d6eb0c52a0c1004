//! Listpacks (Redis `listpack.c`), the compact encoding of small hashes, sorted sets, sets
//! (7.2+) and of a list's nodes: a 6-byte header (total bytes, element count), the entries,
//! and `0xFF`. An entry is its encoding and data, then its own length backwards. A string
//! that is a canonical 64-bit integer is stored as an integer, as the server stores it.

/// A listpack being written at the end of a buffer; [`Listpack::finish`] fills in its header.
pub(super) struct Listpack {
    /// Where it starts in the buffer.
    start: usize,
    /// Entries so far.
    count: u64,
}

/// Bytes of the header: total bytes (u32) and element count (u16), little-endian.
const HEADER: usize = 6;
/// The element count a header holds when the count is 65,535 or more.
const COUNT_UNKNOWN: u16 = u16::MAX;
/// The byte that ends a listpack.
const END: u8 = 0xFF;

/// Bytes of an empty listpack.
pub(super) const EMPTY_BYTES: usize = HEADER + 1;

impl Listpack {
    /// Starts a listpack at the end of `out`.
    #[inline]
    pub(super) fn begin(out: &mut Vec<u8>) -> Listpack {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER]);
        Listpack { start, count: 0 }
    }

    /// Appends an element: as an integer when `bytes` are one (see [`as_integer`]).
    #[inline]
    pub(super) fn push(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        match as_integer(bytes) {
            Some(value) => self.push_integer(out, value),
            None => self.push_string(out, bytes),
        }
    }

    /// Appends an integer element in the smallest of the listpack's integer encodings.
    #[inline]
    pub(super) fn push_integer(&mut self, out: &mut Vec<u8>, value: i64) {
        let mut buf = [0u8; 10];
        let len = encode_integer(value, &mut buf);
        // Integer entries are at most 9 bytes: their back length is one byte.
        buf[len] = len as u8;
        out.extend_from_slice(&buf[..=len]);
        self.count += 1;
    }

    /// Appends a string element (its bytes as they are, even when they read as an integer).
    #[inline]
    pub(super) fn push_string(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        let len = bytes.len();
        let header = if len < 64 {
            out.push(0x80 | len as u8);
            1
        } else if len < 4096 {
            out.extend_from_slice(&[0xE0 | (len >> 8) as u8, len as u8]);
            2
        } else {
            out.push(0xF0);
            out.extend_from_slice(&(len as u32).to_le_bytes());
            5
        };
        out.extend_from_slice(bytes);
        push_back_len(out, (header + len) as u64);
        self.count += 1;
    }

    /// Appends `entries` entries encoded already (another listpack's, without its header).
    #[inline]
    pub(super) fn extend(&mut self, out: &mut Vec<u8>, encoded: &[u8], entries: u64) {
        out.extend_from_slice(encoded);
        self.count += entries;
    }

    /// Bytes of the listpack once finished, as it stands (with its header and end byte).
    #[inline]
    pub(super) fn bytes(&self, out: &[u8]) -> usize {
        out.len() - self.start + 1
    }

    /// Entries so far.
    #[inline]
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// Ends the listpack: its end byte, then its header.
    #[inline]
    pub(super) fn finish(self, out: &mut Vec<u8>) {
        out.push(END);
        let total = (out.len() - self.start) as u32;
        // 65,535 and more: unknown (`lpSetNumElements` leaves it so).
        let count = u16::try_from(self.count).unwrap_or(COUNT_UNKNOWN);
        out[self.start..self.start + 4].copy_from_slice(&total.to_le_bytes());
        out[self.start + 4..self.start + HEADER].copy_from_slice(&count.to_le_bytes());
    }
}

/// Bytes the entry of `bytes` takes in a listpack (encoding, data and back length).
#[inline]
pub(super) fn entry_bytes(bytes: &[u8]) -> usize {
    match as_integer(bytes) {
        Some(value) => integer_bytes(value),
        None => string_entry_bytes(bytes.len()),
    }
}

/// Bytes of an integer entry of `value`.
#[inline]
pub(super) fn integer_bytes(value: i64) -> usize {
    encode_integer(value, &mut [0; 10]) + 1
}

/// Bytes of a string entry of `len` bytes.
#[inline]
pub(super) fn string_entry_bytes(len: usize) -> usize {
    let header = match len {
        0..64 => 1,
        64..4096 => 2,
        _ => 5,
    };
    header + len + back_len_bytes((header + len) as u64)
}

/// Encodes `value` as an integer entry (without its back length) into `buf`; returns the
/// bytes it took (`lpEncodeIntegerGetType`): 7-bit unsigned in one byte, 13-bit signed in
/// two, then `0xF1`–`0xF4` and 16, 24, 32 or 64 bits little-endian.
#[inline]
fn encode_integer(value: i64, buf: &mut [u8; 10]) -> usize {
    if (0..=127).contains(&value) {
        buf[0] = value as u8;
        1
    } else if (-4096..=4095).contains(&value) {
        let v = (value as u64) & 0x1FFF;
        buf[0] = 0xC0 | (v >> 8) as u8;
        buf[1] = v as u8;
        2
    } else if (-32768..=32767).contains(&value) {
        buf[0] = 0xF1;
        buf[1..3].copy_from_slice(&(value as i16).to_le_bytes());
        3
    } else if (-8_388_608..=8_388_607).contains(&value) {
        buf[0] = 0xF2;
        buf[1..4].copy_from_slice(&(value as i32).to_le_bytes()[..3]);
        4
    } else if (-2_147_483_648..=2_147_483_647).contains(&value) {
        buf[0] = 0xF3;
        buf[1..5].copy_from_slice(&(value as i32).to_le_bytes());
        5
    } else {
        buf[0] = 0xF4;
        buf[1..9].copy_from_slice(&value.to_le_bytes());
        9
    }
}

/// Bytes of the back length of an entry of `len` bytes.
#[inline]
fn back_len_bytes(len: u64) -> usize {
    match len {
        0..=127 => 1,
        128..16383 => 2,
        16383..2_097_151 => 3,
        2_097_151..268_435_455 => 4,
        _ => 5,
    }
}

/// Appends the back length of an entry of `len` bytes (`lpEncodeBacklen`): 7 bits per byte,
/// the most significant first, every byte but the first with its top bit set (read from the
/// end of the entry backwards).
#[inline]
fn push_back_len(out: &mut Vec<u8>, len: u64) {
    let bytes = back_len_bytes(len);
    for k in (0..bytes).rev() {
        let seven = ((len >> (7 * k)) & 127) as u8;
        out.push(if k == bytes - 1 { seven } else { seven | 128 });
    }
}

/// `bytes` as the integer a server would store them as: a canonical decimal 64-bit integer
/// (`string2ll`, `lpStringToInt64`): at most 20 bytes, an optional `-`, no `+`, no leading
/// zero (but `0` itself), no `-0`, nothing else, within `i64`.
#[inline]
pub(super) fn as_integer(bytes: &[u8]) -> Option<i64> {
    let (&first, _) = bytes.split_first()?;
    // Most elements are rejected by their first byte or their length.
    if bytes.len() > 20 || !(first.is_ascii_digit() || first == b'-') {
        return None;
    }
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match first {
        b'-' => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_integers_are_integers() {
        for (text, expected) in [
            ("0", Some(0)),
            ("7", Some(7)),
            ("-7", Some(-7)),
            ("123456", Some(123_456)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("18446744073709551616", None),
            ("00", None),
            ("07", None),
            ("-0", None),
            ("+7", None),
            ("-", None),
            ("", None),
            (" 7", None),
            ("7a", None),
            ("1e3", None),
            ("123456789012345678901", None),
        ] {
            assert_eq!(as_integer(text.as_bytes()), expected, "{text:?}");
        }
    }

    /// The entry encodings of listpack.c, byte for byte.
    #[test]
    fn entries_are_encoded_as_listpack_c_encodes_them() {
        let entry = |bytes: &[u8]| {
            let mut out = Vec::new();
            let mut lp = Listpack::begin(&mut out);
            lp.push(&mut out, bytes);
            lp.finish(&mut out);
            assert_eq!(out.len(), EMPTY_BYTES + entry_bytes(bytes));
            out[HEADER..out.len() - 1].to_vec()
        };
        assert_eq!(entry(b"5"), [5, 1]);
        assert_eq!(entry(b"127"), [127, 1]);
        assert_eq!(entry(b"128"), [0xC0, 128, 2]);
        assert_eq!(entry(b"-1"), [0xDF, 0xFF, 2]);
        assert_eq!(entry(b"-4096"), [0xD0, 0x00, 2]);
        assert_eq!(entry(b"4096"), [0xF1, 0x00, 0x10, 3]);
        assert_eq!(entry(b"-32769"), [0xF2, 0xFF, 0x7F, 0xFF, 4]);
        assert_eq!(entry(b"8388608"), [0xF3, 0, 0, 0x80, 0, 5]);
        assert_eq!(entry(b"2147483648"), [0xF4, 0, 0, 0, 0x80, 0, 0, 0, 0, 9]);
        assert_eq!(entry(b"ab"), [0x82, b'a', b'b', 3]);
        assert_eq!(entry(b""), [0x80, 1]);
        let long = vec![b'x'; 100];
        let encoded = entry(&long);
        assert_eq!(&encoded[..2], &[0xE0, 100]);
        // 102 bytes of entry: one byte of back length.
        assert_eq!(encoded[102..], [102]);
        let longer = vec![b'y'; 200];
        let encoded = entry(&longer);
        // 202 bytes: two bytes, 1 then 202 - 128 = 74 with the top bit.
        assert_eq!(encoded[202..], [1, 74 | 128]);
        let huge = vec![b'z'; 5000];
        let encoded = entry(&huge);
        assert_eq!(&encoded[..5], &[0xF0, 0x88, 0x13, 0, 0]);
        // 5005 bytes: 5005 = 39 * 128 + 13.
        assert_eq!(encoded[5005..], [39, 13 | 128]);
    }

    #[test]
    fn back_lengths_switch_width_where_listpack_c_does() {
        for (len, bytes) in [
            (127u64, 1),
            (128, 2),
            (16382, 2),
            (16383, 3),
            (2_097_150, 3),
            (2_097_151, 4),
            (268_435_454, 4),
            (268_435_455, 5),
        ] {
            let mut out = Vec::new();
            push_back_len(&mut out, len);
            assert_eq!(out.len(), bytes, "{len}");
            // Decoded as lpDecodeBacklen does: from the last byte backwards.
            let mut value = 0u64;
            for (shift, byte) in out.iter().rev().enumerate() {
                value |= u64::from(byte & 127) << (7 * shift);
            }
            assert_eq!(value, len);
        }
    }

    #[test]
    fn the_header_counts_bytes_and_elements() {
        let mut out = b"before".to_vec();
        let mut lp = Listpack::begin(&mut out);
        lp.push(&mut out, b"a");
        lp.push(&mut out, b"12");
        assert_eq!(lp.bytes(&out), 6 + 3 + 2 + 1);
        lp.finish(&mut out);
        assert_eq!(&out[6..], &[12, 0, 0, 0, 2, 0, 0x81, b'a', 2, 12, 1, 0xFF]);
    }
}

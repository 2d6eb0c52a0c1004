//! Generic RESP encoding: bulk strings and commands appended to a reusable buffer.

use crate::decimal::write_back;

/// Appends `$<len>\r\n`, the header of a bulk string.
#[inline]
pub(crate) fn push_bulk_header(out: &mut Vec<u8>, len: usize) {
    // Short lengths (members, scores, IDs, field names) without formatting a number.
    if len < 10 {
        out.extend_from_slice(&[b'$', b'0' + len as u8, b'\r', b'\n']);
        return;
    }
    if len < 100 {
        let (tens, ones) = (b'0' + (len / 10) as u8, b'0' + (len % 10) as u8);
        out.extend_from_slice(&[b'$', tens, ones, b'\r', b'\n']);
        return;
    }
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole bulk string.
#[inline]
pub(crate) fn push_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    push_bulk_header(out, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// An integer as a bulk string (a sorted-set score), made right to left in a small buffer.
/// A batch of elements has its scores made while they are drawn, ahead of writing them:
/// made as they are written, a score's digits would hold up everything written after it.
#[derive(Clone, Copy)]
pub(super) struct BulkInteger {
    /// "$" + up to 2 digits of length + "\r\n" + sign + up to 19 digits + "\r\n", at the end.
    buf: [u8; 32],
    /// Where the bulk string starts in `buf`.
    start: u8,
}

impl BulkInteger {
    /// `value` in decimal as a bulk string.
    #[inline]
    pub(super) fn new(value: i64) -> BulkInteger {
        const END: usize = 32;
        let mut buf = [0u8; END];
        buf[END - 2..].copy_from_slice(b"\r\n");
        let mut start = write_back(&mut buf, END - 2, value.unsigned_abs());
        if value < 0 {
            start -= 1;
            buf[start] = b'-';
        }
        let len = END - 2 - start;
        buf[start - 2..start].copy_from_slice(b"\r\n");
        start = write_back(&mut buf, start - 2, len as u64) - 1;
        buf[start] = b'$';
        BulkInteger {
            buf,
            start: start as u8,
        }
    }

    /// The bulk string's bytes.
    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        &self.buf[usize::from(self.start)..]
    }
}

/// Appends what `write` appends as a bulk string, whose length is known only once it is
/// written (a `RESTORE` payload): room for the header of a bulk of up to 999,999,999
/// bytes is left before it, and the bytes move back over what the header did not need.
#[inline]
pub(super) fn push_bulk_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    const ROOM: usize = 12;
    let start = out.len();
    out.extend_from_slice(&[0; ROOM]);
    write(out);
    let len = out.len() - start - ROOM;
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(len).as_bytes();
    let header = digits.len() + 3;
    assert!(header <= ROOM, "a bulk string of {len} bytes");
    out[start] = b'$';
    out[start + 1..start + header - 2].copy_from_slice(digits);
    out[start + header - 2..start + header].copy_from_slice(b"\r\n");
    out.copy_within(start + ROOM.., start + header);
    out.truncate(out.len() - (ROOM - header));
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[test]
fn a_bulk_written_first_gets_its_header_after() {
    for len in [0usize, 9, 10, 99, 100, 70_000] {
        let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let mut out = b"*1\r\n".to_vec();
        push_bulk_with(&mut out, |out| out.extend_from_slice(&body));
        let mut expected = b"*1\r\n".to_vec();
        push_bulk(&mut expected, &body);
        assert_eq!(out, expected, "{len}");
    }
}

/// Appends `*<count>\r\n`, the header of a command of `count` arguments.
#[inline]
pub(crate) fn push_array_header(out: &mut Vec<u8>, count: u64) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a command given as its arguments.
pub(crate) fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    push_array_header(out, args.len() as u64);
    for arg in args {
        push_bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_encode_as_resp_arrays() {
        let mut out = Vec::new();
        push_command(&mut out, &[b"SET", b"k", b"value"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n");
    }

    #[test]
    fn bulk_headers_of_every_width() {
        for len in [0, 7, 9, 10, 42, 99, 100, 65536] {
            let mut out = Vec::new();
            push_bulk_header(&mut out, len);
            assert_eq!(out, format!("${len}\r\n").as_bytes());
        }
    }

    #[test]
    fn integers_are_bulk_strings_of_their_digits() {
        for value in [0, 7, -7, 1_000_000, -5_000_000, i64::MAX, i64::MIN] {
            let text = value.to_string();
            assert_eq!(
                BulkInteger::new(value).bytes(),
                format!("${}\r\n{text}\r\n", text.len()).as_bytes()
            );
        }
    }

    #[test]
    fn empty_bulk_strings_keep_their_terminator() {
        let mut out = Vec::new();
        push_bulk(&mut out, b"");
        assert_eq!(out, b"$0\r\n\r\n");
    }
}

//! Generic RESP encoding: bulk strings and commands appended to a reusable buffer.

/// Appends `$<len>\r\n`, the header of a bulk string.
#[inline]
pub fn push_bulk_header(out: &mut Vec<u8>, len: usize) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole bulk string.
#[inline]
pub fn push_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    push_bulk_header(out, bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Appends `*<count>\r\n`, the header of a command of `count` arguments.
#[inline]
pub fn push_array_header(out: &mut Vec<u8>, count: u64) {
    out.push(b'*');
    out.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a command given as its arguments.
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
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
    fn empty_bulk_strings_keep_their_terminator() {
        let mut out = Vec::new();
        push_bulk(&mut out, b"");
        assert_eq!(out, b"$0\r\n\r\n");
    }
}

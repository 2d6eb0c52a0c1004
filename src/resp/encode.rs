//! Generic RESP encoding: bulk strings and commands appended to a reusable buffer.

/// Appends `$<len>\r\n`, the header of a bulk string.
#[inline]
pub fn push_bulk_header(out: &mut Vec<u8>, len: usize) {
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
    fn bulk_headers_of_every_width() {
        for len in [0, 7, 9, 10, 42, 99, 100, 65536] {
            let mut out = Vec::new();
            push_bulk_header(&mut out, len);
            assert_eq!(out, format!("${len}\r\n").as_bytes());
        }
    }

    #[test]
    fn empty_bulk_strings_keep_their_terminator() {
        let mut out = Vec::new();
        push_bulk(&mut out, b"");
        assert_eq!(out, b"$0\r\n\r\n");
    }
}

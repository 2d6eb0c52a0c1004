//! Scanning replies without allocating: each reply is borrowed from the read buffer.

/// One reply, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+OK`.
    Ok,
    /// `-ERR …`: the line without the `-`.
    Error(&'a [u8]),
    /// `:n`, an integer.
    Integer(i64),
    /// Any other well-formed reply.
    Other,
}

/// The server sent something that is not RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server sent a malformed reply (starting with {0:?}); is this a Redis server?")]
pub struct ProtocolError(pub String);

fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr_crlf(&buf[from..]).map(|i| from + i)
}

#[inline]
fn memchr_crlf(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\r') {
        let at = start + i;
        if at + 1 >= buf.len() {
            return None;
        }
        if buf[at + 1] == b'\n' {
            return Some(at);
        }
        start = at + 1;
    }
    None
}

fn malformed(buf: &[u8]) -> ProtocolError {
    let shown = &buf[..buf.len().min(32)];
    ProtocolError(String::from_utf8_lossy(shown).into_owned())
}

/// The integer of a `:`, `$` or `*` line (an optional sign, then decimal digits), read
/// digit by digit: every write command's reply is one.
#[inline]
fn parse_int(buf: &[u8], line: &[u8]) -> Result<i64, ProtocolError> {
    let (negative, digits) = match line {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, line),
    };
    if digits.is_empty() {
        return Err(malformed(buf));
    }
    let mut value: i64 = 0;
    for &digit in digits {
        let d = digit.wrapping_sub(b'0');
        if d > 9 {
            return Err(malformed(buf));
        }
        // Accumulated negatively, so that i64::MIN parses too.
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(d)))
            .ok_or_else(|| malformed(buf))?;
    }
    if negative {
        Ok(value)
    } else {
        value.checked_neg().ok_or_else(|| malformed(buf))
    }
}

/// How deeply arrays may nest in a reply (write commands get flat replies).
const MAX_DEPTH: usize = 8;

/// Parses the reply at the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and how many bytes it took.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    if buf.starts_with(b"+OK\r\n") {
        return Ok(Some((Reply::Ok, 5)));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, 1) else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let after = end + 2;
    match kind {
        b'-' => Ok(Some((Reply::Error(line), after))),
        b':' => Ok(Some((Reply::Integer(parse_int(buf, line)?), after))),
        b'+' => Ok(Some((Reply::Other, after))),
        b'$' => {
            let len = parse_int(buf, line)?;
            if len < 0 {
                return Ok(Some((Reply::Other, after)));
            }
            let total = after.saturating_add(len as usize).saturating_add(2);
            if buf.len() < total {
                Ok(None)
            } else {
                Ok(Some((Reply::Other, total)))
            }
        }
        b'*' if depth < MAX_DEPTH => {
            let count = parse_int(buf, line)?;
            let mut at = after;
            for _ in 0..count.max(0) {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((_, used)) => at += used,
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Other, at)))
        }
        _ => Err(malformed(buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_or_ask_for_more() {
        assert_eq!(parse_reply(b"+OK\r\n+OK").unwrap(), Some((Reply::Ok, 5)));
        assert_eq!(parse_reply(b"+OK\r").unwrap(), None);
        assert_eq!(
            parse_reply(b"-OOM command not allowed\r\n").unwrap(),
            Some((Reply::Error(b"OOM command not allowed"), 26))
        );
        assert_eq!(
            parse_reply(b":12\r\n").unwrap(),
            Some((Reply::Integer(12), 5))
        );
        assert_eq!(parse_reply(b"$3\r\nab").unwrap(), None);
        assert_eq!(
            parse_reply(b"$3\r\nabc\r\n").unwrap(),
            Some((Reply::Other, 9))
        );
        assert_eq!(parse_reply(b"$-1\r\n").unwrap(), Some((Reply::Other, 5)));
        assert_eq!(
            parse_reply(b"*2\r\n:1\r\n$1\r\na\r\n").unwrap(),
            Some((Reply::Other, 15))
        );
        assert_eq!(parse_reply(b"*2\r\n:1\r\n").unwrap(), None);
        assert_eq!(
            parse_reply(b":-9223372036854775808\r\n").unwrap(),
            Some((Reply::Integer(i64::MIN), 23))
        );
        assert_eq!(
            parse_reply(b":9223372036854775807\r\n").unwrap(),
            Some((Reply::Integer(i64::MAX), 22))
        );
        for bad in [
            &b":\r\n"[..],
            b":-\r\n",
            b":1x\r\n",
            b":9223372036854775808\r\n",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(parse_reply(b"HTTP/1.1 400\r\n").is_err());
        assert!(
            parse_reply(&b"*1\r\n".repeat(100)).is_err(),
            "deep nesting is refused"
        );
    }
}

//! Scanning replies without allocating: each reply is borrowed from the read buffer, and a
//! reply beyond [`MAX_REPLY_BYTES`] (or any bound of [`super::protocol`]) is an error
//! instead of a reason to wait for more bytes.

use super::protocol::{Header, MAX_DEPTH, MAX_LINE_BYTES, Problem, ProtocolError};

/// The longest reply [`parse_reply`] accepts. Data connections and logins read the replies
/// to write commands, `AUTH`, `SELECT`, `EXISTS` and counts: a few bytes each.
pub(crate) const MAX_REPLY_BYTES: usize = 1 << 20;

/// One reply, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply<'a> {
    /// `+OK`.
    Ok,
    /// `-ERR …`: the line without the `-`.
    Error(&'a [u8]),
    /// `:n`, an integer.
    Integer(i64),
    /// Any other well-formed reply.
    Other,
}

/// The position of the CRLF that ends the line starting at `from`, if it is there.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut start = from;
    while let Some(i) = buf[start..].iter().position(|&b| b == b'\r') {
        let at = start + i;
        match buf.get(at + 1) {
            None => return None,
            Some(b'\n') => return Some(at),
            Some(_) => start = at + 1,
        }
    }
    None
}

/// The replies to most typed writes, read without the general path (which finds the line's
/// end, then converts its number through `str`): `:` and a few digits (`HSET`, `SADD`,
/// `ZADD`, `RPUSH`, `PEXPIRE`), or a short bulk string (the ID `XADD` answers). `None` for
/// anything else, including a reply not complete yet, which the general path then reads:
/// the result is the same either way.
#[inline]
fn short_reply(buf: &[u8]) -> Option<(Reply<'static>, usize)> {
    /// Digits that always fit an i64.
    const MOST_DIGITS: usize = 18;
    /// Longest bulk string read here.
    const SHORT_BULK: i64 = 4096;
    let (&kind, rest) = buf.split_first()?;
    if kind != b':' && kind != b'$' {
        return None;
    }
    let digits = rest
        .iter()
        .take(MOST_DIGITS + 1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > MOST_DIGITS || rest.get(digits..digits + 2)? != b"\r\n" {
        return None;
    }
    let n = rest[..digits]
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    let header = 1 + digits + 2;
    if kind == b':' {
        return Some((Reply::Integer(n), header));
    }
    if n > SHORT_BULK {
        return None;
    }
    let total = header + n as usize + 2;
    (buf.get(total - 2..total)? == b"\r\n").then_some((Reply::Other, total))
}

/// Parses the reply at the start of `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and how many bytes it took. `Ok(None)` only while `buf` is shorter than
/// [`MAX_REPLY_BYTES`], so a reader that keeps only the unparsed rest never holds more than
/// that and one read.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, ProtocolError> {
    match parse_at(buf, 0) {
        Ok(None) if buf.len() >= MAX_REPLY_BYTES => Err(Problem::TooLong(MAX_REPLY_BYTES as u64)),
        other => other,
    }
    .map_err(|problem| ProtocolError::new(problem, buf))
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Reply<'_>, usize)>, Problem> {
    match short_reply(buf) {
        Some(parsed) => Ok(Some(parsed)),
        None => parse_general(buf, depth),
    }
}

fn parse_general(buf: &[u8], depth: usize) -> Result<Option<(Reply<'_>, usize)>, Problem> {
    if buf.starts_with(b"+OK\r\n") {
        return Ok(Some((Reply::Ok, 5)));
    }
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    // The line ends within the bound, or the reply is refused without waiting for more.
    let searched = &buf[..buf.len().min(MAX_LINE_BYTES + 3)];
    let Some(end) = line_end(searched, 1) else {
        return match searched.len() {
            n if n > MAX_LINE_BYTES + 2 => Err(Problem::LineTooLong),
            _ => Header::known_type(kind).map(|()| None),
        };
    };
    let line = &buf[1..end];
    let after = end + 2;
    let reply = match Header::parse(kind, line)? {
        Header::Simple => Reply::Other,
        Header::Error => Reply::Error(line),
        Header::Integer(n) => Reply::Integer(n),
        Header::Bulk(None) | Header::Array(None) => Reply::Other,
        Header::Bulk(Some(len)) => {
            if len > (MAX_REPLY_BYTES - after) as u64 {
                return Err(Problem::TooLong(MAX_REPLY_BYTES as u64));
            }
            let total = after + len as usize + 2;
            return match buf.get(total - 2..total) {
                None => Ok(None),
                Some(b"\r\n") => Ok(Some((Reply::Other, total))),
                Some(_) => Err(Problem::BulkWithoutEnd),
            };
        }
        Header::Array(Some(count)) => {
            if depth >= MAX_DEPTH {
                return Err(Problem::TooDeep);
            }
            // Every element takes at least three bytes (`+\r\n`).
            if count > (MAX_REPLY_BYTES / 3) as u64 {
                return Err(Problem::TooLong(MAX_REPLY_BYTES as u64));
            }
            let mut at = after;
            for _ in 0..count {
                match parse_at(&buf[at..], depth + 1)? {
                    Some((_, used)) => at += used,
                    None => return Ok(None),
                }
            }
            return Ok(Some((Reply::Other, at)));
        }
    };
    Ok(Some((reply, after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short path for integers and bulk strings gives what the general one gives,
    /// whatever the digits and however the reply ends.
    #[test]
    fn short_replies_read_the_same_by_either_path() {
        for kind in [":", "$"] {
            for text in [
                "0",
                "7",
                "10",
                "15",
                "100",
                "000",
                "4096",
                "4097",
                "123456789012345678",
                "1234567890123456789",
                "9223372036854775807",
                "9223372036854775808",
                "-1",
                "-5",
                "+5",
                "",
                "1x",
            ] {
                for end in [
                    "\r\n",
                    "\r",
                    "",
                    "\rx",
                    "\r\n:1\r\n",
                    "\r\n1700000000000-0\r\n",
                ] {
                    let reply = format!("{kind}{text}{end}");
                    let (general, parsed) = (
                        parse_general(reply.as_bytes(), 0),
                        parse_at(reply.as_bytes(), 0),
                    );
                    assert_eq!(general, parsed, "{reply:?}");
                }
            }
        }
        assert_eq!(parse_at(b":42\r\n", 0), Ok(Some((Reply::Integer(42), 5))));
        let id = b"$15\r\n1700000000000-0\r\n";
        assert_eq!(parse_at(id, 0), Ok(Some((Reply::Other, id.len()))));
        assert_eq!(
            short_reply(id),
            Some((Reply::Other, id.len())),
            "the short path"
        );
        assert_eq!(parse_at(&id[..id.len() - 1], 0), Ok(None));
    }

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
            parse_reply(&b"*1\r\n".repeat(MAX_DEPTH)).unwrap(),
            None,
            "arrays nested {MAX_DEPTH} deep are fine"
        );
    }

    fn problem(buf: &[u8]) -> Problem {
        parse_reply(buf).unwrap_err().problem
    }

    #[test]
    fn what_is_not_resp_is_refused() {
        assert_eq!(problem(b"HTTP/1.1 400\r\n"), Problem::UnknownType(b'H'));
        assert_eq!(
            problem(b"HTTP/1.1"),
            Problem::UnknownType(b'H'),
            "before its CRLF"
        );
        assert_eq!(problem(b":12x\r\n"), Problem::BadNumber);
        assert_eq!(problem(b"$\r\n"), Problem::BadNumber);
        assert_eq!(problem(&b"*1\r\n".repeat(100)), Problem::TooDeep);
    }

    // Regressions: each of these used to be accepted, or waited for more bytes for ever.
    #[test]
    fn negative_lengths_other_than_null_are_refused() {
        assert_eq!(problem(b"$-5\r\n"), Problem::NegativeLength(-5));
        assert_eq!(problem(b"*-2\r\n"), Problem::NegativeLength(-2));
    }

    #[test]
    fn a_bulk_string_must_end_with_crlf() {
        assert_eq!(problem(b"$3\r\nabcXY"), Problem::BulkWithoutEnd);
    }

    #[test]
    fn a_huge_length_is_refused_without_waiting_for_its_bytes() {
        let bound = Problem::TooLong(MAX_REPLY_BYTES as u64);
        assert_eq!(problem(b"$9223372036854775807\r\n"), bound);
        assert_eq!(problem(b"$1048576\r\n"), bound);
        assert_eq!(problem(b"*9223372036854775807\r\n"), bound);
    }

    #[test]
    fn an_endless_line_is_refused_after_the_line_bound() {
        let mut line = b"+".to_vec();
        line.resize(MAX_LINE_BYTES + 2, b'x');
        assert_eq!(parse_reply(&line).unwrap(), None, "still within the bound");
        line.push(b'x');
        assert_eq!(problem(&line), Problem::LineTooLong);
        let mut longest = b"-".to_vec();
        longest.resize(MAX_LINE_BYTES + 1, b'e');
        longest.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_reply(&longest),
            Ok(Some((Reply::Error(_), _)))
        ));
    }

    #[test]
    fn an_unfinished_reply_is_refused_once_it_reaches_the_reply_bound() {
        let mut many = b"*100000\r\n".to_vec();
        while many.len() < MAX_REPLY_BYTES {
            many.extend_from_slice(b"$10\r\n0123456789\r\n");
        }
        assert_eq!(problem(&many), Problem::TooLong(MAX_REPLY_BYTES as u64));
        assert_eq!(parse_reply(&many[..MAX_REPLY_BYTES - 1]).unwrap(), None);
    }
}

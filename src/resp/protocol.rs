//! What every reader of replies shares: the bounds a reply must keep, the header line that
//! starts each reply (its type byte and number), and the one error for what is not RESP.
//! The bounds keep a broken or hostile peer from making cachefill wait for, or buffer,
//! more than they allow (docs/architecture.md, "Replies are bounded").

use std::fmt;

/// The longest line a reply may have (a simple string, an error, an integer or a length).
pub(crate) const MAX_LINE_BYTES: usize = 64 << 10;

/// How deeply arrays may nest in a reply (the deepest cachefill reads, `CLUSTER SHARDS`
/// in RESP2, nests four levels).
pub(crate) const MAX_DEPTH: usize = 8;

/// How many bytes of a reply an error shows.
const SHOWN_BYTES: usize = 24;

/// The line that starts a reply, after its type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Header {
    /// `+…`: a simple string.
    Simple,
    /// `-…`: an error.
    Error,
    /// `:n`: an integer.
    Integer(i64),
    /// `$n`: a bulk string of `n` bytes; `None` for `$-1`, the null bulk string.
    Bulk(Option<u64>),
    /// `*n`: an array of `n` replies; `None` for `*-1`, the null array.
    Array(Option<u64>),
}

impl Header {
    /// The header of type `kind` whose line (without the type byte and CRLF) is `line`.
    pub(super) fn parse(kind: u8, line: &[u8]) -> Result<Header, Problem> {
        Header::known_type(kind)?;
        match kind {
            b'+' => Ok(Header::Simple),
            b'-' => Ok(Header::Error),
            b':' => Ok(Header::Integer(number(line)?)),
            b'$' => Ok(Header::Bulk(length(line)?)),
            _ => Ok(Header::Array(length(line)?)),
        }
    }

    /// `Ok` when `kind` is a RESP2 type byte, so a reply can be refused before its line ends.
    pub(super) fn known_type(kind: u8) -> Result<(), Problem> {
        match kind {
            b'+' | b'-' | b':' | b'$' | b'*' => Ok(()),
            other => Err(Problem::UnknownType(other)),
        }
    }

    /// True when the type byte `kind` starts a line whose number matters (`:`, `$`, `*`).
    pub(super) fn has_number(kind: u8) -> bool {
        matches!(kind, b':' | b'$' | b'*')
    }
}

/// Digits of the longest number a header may hold (`-9223372036854775808`).
pub(super) const MAX_NUMBER_BYTES: usize = 20;

fn number(line: &[u8]) -> Result<i64, Problem> {
    if line.len() > MAX_NUMBER_BYTES {
        return Err(Problem::BadNumber);
    }
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Problem::BadNumber)
}

fn length(line: &[u8]) -> Result<Option<u64>, Problem> {
    match number(line)? {
        -1 => Ok(None),
        n if n < 0 => Err(Problem::NegativeLength(n)),
        n => Ok(Some(n.unsigned_abs())),
    }
}

/// What is wrong with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// A type byte RESP2 does not have.
    UnknownType(u8),
    /// A length or integer that is not a number in range.
    BadNumber,
    /// A length below -1.
    NegativeLength(i64),
    /// No CRLF within [`MAX_LINE_BYTES`].
    LineTooLong,
    /// A bulk string whose payload is not followed by CRLF.
    BulkWithoutEnd,
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A reply longer than the reader's bound (in bytes).
    TooLong(u64),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownType(byte) => {
                write!(f, "a reply of unknown type {:?}", char::from(*byte))
            }
            Problem::BadNumber => f.write_str("a length or integer that is not a number"),
            Problem::NegativeLength(n) => write!(f, "a negative length ({n})"),
            Problem::LineTooLong => write!(
                f,
                "a line longer than {} KiB without CRLF",
                MAX_LINE_BYTES >> 10
            ),
            Problem::BulkWithoutEnd => f.write_str("a bulk string not ended by CRLF"),
            Problem::TooDeep => write!(f, "arrays nested deeper than {MAX_DEPTH}"),
            Problem::TooLong(bound) => write!(f, "a reply longer than {}", human(*bound)),
        }
    }
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// The server sent something that is not RESP, or a reply beyond the bounds: retrying will
/// not help. One line: the first bytes of the reply (and what followed) are shown escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the server sent {problem} (at {start:?}); is this a Redis server?")]
pub(crate) struct ProtocolError {
    /// What is wrong.
    pub problem: Problem,
    /// The first bytes of the reply, lossily decoded.
    start: String,
}

impl ProtocolError {
    /// The error `problem` in the reply that starts with `reply`.
    pub(crate) fn new(problem: Problem, reply: &[u8]) -> ProtocolError {
        let shown = &reply[..reply.len().min(SHOWN_BYTES)];
        ProtocolError {
            problem,
            start: String::from_utf8_lossy(shown).into_owned(),
        }
    }
}

/// The first bytes of a reply read in pieces, kept for [`ProtocolError`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ReplyStart {
    bytes: [u8; SHOWN_BYTES],
    len: usize,
}

impl ReplyStart {
    /// Keeps what fits of `bytes`, which follow what was kept so far.
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        let take = bytes.len().min(SHOWN_BYTES - self.len);
        self.bytes[self.len..self.len + take].copy_from_slice(&bytes[..take]);
        self.len += take;
    }

    /// Forgets the reply, for the next one.
    pub(super) fn clear(&mut self) {
        self.len = 0;
    }

    /// The error `problem` in this reply, whose next bytes are `next`.
    pub(super) fn error(&self, problem: Problem, next: &[u8]) -> ProtocolError {
        let mut shown = *self;
        shown.keep(next);
        ProtocolError::new(problem, &shown.bytes[..shown.len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_give_their_type_and_number() {
        assert_eq!(Header::parse(b'+', b"OK"), Ok(Header::Simple));
        assert_eq!(Header::parse(b'-', b"ERR x"), Ok(Header::Error));
        assert_eq!(Header::parse(b':', b"-12"), Ok(Header::Integer(-12)));
        assert_eq!(Header::parse(b'$', b"3"), Ok(Header::Bulk(Some(3))));
        assert_eq!(Header::parse(b'$', b"-1"), Ok(Header::Bulk(None)));
        assert_eq!(Header::parse(b'*', b"-1"), Ok(Header::Array(None)));
        assert_eq!(
            Header::parse(b':', b"-9223372036854775808"),
            Ok(Header::Integer(i64::MIN))
        );
    }

    #[test]
    fn bad_headers_say_what_is_wrong() {
        assert_eq!(Header::parse(b'%', b"1"), Err(Problem::UnknownType(b'%')));
        assert_eq!(Header::parse(b'$', b"-5"), Err(Problem::NegativeLength(-5)));
        for line in [
            &b""[..],
            b"-",
            b"1x",
            b" 1",
            b"9223372036854775808",
            b"99999999999999999999999",
            b"\xff",
        ] {
            assert_eq!(
                Header::parse(b'*', line),
                Err(Problem::BadNumber),
                "{line:?}"
            );
        }
    }

    #[test]
    fn a_protocol_error_is_one_line_showing_the_start_of_the_reply() {
        let error = ProtocolError::new(
            Problem::NegativeLength(-5),
            b"$-5\r\nand much more after that",
        );
        assert_eq!(
            error.to_string(),
            "the server sent a negative length (-5) (at \"$-5\\r\\nand much more after\"); is this a Redis server?"
        );
        assert_eq!(
            Problem::TooLong(512 << 20).to_string(),
            "a reply longer than 512 MiB"
        );
        let mut start = ReplyStart::default();
        start.keep(b"$-5\r");
        start.keep(b"\n");
        assert_eq!(start.error(Problem::BadNumber, b"x").start, "$-5\r\nx");
    }
}

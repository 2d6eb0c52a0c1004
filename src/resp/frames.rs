//! Following a stream of replies as its bytes go by, without keeping them: a [`FrameCheck`]
//! knows where each reply ends, and refuses what is not RESP2 or goes beyond the bounds
//! before anything is built from it. The control connections (read by the `redis` crate)
//! pass their bytes through one, so a hostile server cannot make the crate wait for, or
//! buffer, more than one bounded reply.

use super::protocol::{
    Header, MAX_DEPTH, MAX_LINE_BYTES, MAX_NUMBER_BYTES, Problem, ProtocolError, ReplyStart,
};

/// Where the check is within the current reply.
#[derive(Debug, Clone, Copy)]
enum State {
    /// Expecting a type byte.
    Kind,
    /// Inside the line after type byte `kind`: `len` bytes so far, the last one a `\r`
    /// when `cr`; the first [`MAX_NUMBER_BYTES`] are kept in `number`.
    Line {
        kind: u8,
        len: usize,
        cr: bool,
        number: [u8; MAX_NUMBER_BYTES],
    },
    /// Inside a bulk string, `left` payload bytes to go.
    Bulk { left: u64 },
    /// After a bulk string's payload: its `\r` (`seen` 0) or `\n` (`seen` 1).
    BulkEnd { seen: u8 },
}

/// Follows the replies of one connection; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct FrameCheck {
    /// The longest reply accepted.
    max_reply: u64,
    state: State,
    /// Elements still to come in each open array, innermost last.
    open: [u64; MAX_DEPTH],
    depth: usize,
    /// Bytes of the current reply so far.
    reply_bytes: u64,
    /// The first bytes of the current reply, for the error.
    start: ReplyStart,
    /// Replies completed so far.
    replies: u64,
}

impl FrameCheck {
    /// A check that refuses replies longer than `max_reply` bytes.
    pub(crate) fn new(max_reply: u64) -> FrameCheck {
        FrameCheck {
            max_reply,
            state: State::Kind,
            open: [0; MAX_DEPTH],
            depth: 0,
            reply_bytes: 0,
            start: ReplyStart::default(),
            replies: 0,
        }
    }

    /// Replies completed so far.
    #[cfg(test)]
    pub(crate) fn replies(&self) -> u64 {
        self.replies
    }

    /// True when a reply has begun and not ended: the stream must not end here.
    pub(crate) fn in_reply(&self) -> bool {
        self.reply_bytes > 0
    }

    /// Follows `bytes`, the next bytes of the stream. After an error the stream is broken:
    /// the check is not to be fed again.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ProtocolError> {
        while !bytes.is_empty() {
            let used = self
                .step(bytes)
                .map_err(|problem| self.start.error(problem, bytes))?;
            self.start.keep(&bytes[..used]);
            self.reply_bytes += used as u64;
            if self.reply_bytes > self.max_reply {
                return Err(self.start.error(Problem::TooLong(self.max_reply), &[]));
            }
            if matches!(self.state, State::Kind) && self.depth == 0 && self.reply_bytes > 0 {
                self.replies += 1;
                self.reply_bytes = 0;
                self.start.clear();
            }
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// Takes what it can of `bytes` (at least one byte) and says how much.
    fn step(&mut self, bytes: &[u8]) -> Result<usize, Problem> {
        match self.state {
            State::Kind => {
                Header::known_type(bytes[0])?;
                self.state = State::Line {
                    kind: bytes[0],
                    len: 0,
                    cr: false,
                    number: [0; MAX_NUMBER_BYTES],
                };
                // The line usually follows in the same bytes: read it in the same step.
                match bytes.len() {
                    1 => Ok(1),
                    _ => self.step(&bytes[1..]).map(|used| used + 1),
                }
            }
            State::Line {
                kind,
                mut len,
                mut cr,
                mut number,
            } => {
                for (i, &byte) in bytes.iter().enumerate() {
                    if cr && byte == b'\n' {
                        // A number longer than the kept digits is refused as not a number.
                        let line = if len > MAX_NUMBER_BYTES && Header::has_number(kind) {
                            &b"x"[..]
                        } else {
                            &number[..len.min(MAX_NUMBER_BYTES)]
                        };
                        self.start_value(Header::parse(kind, line)?)?;
                        return Ok(i + 1);
                    }
                    if cr {
                        // A `\r` inside the line is part of it.
                        keep(&mut number, &mut len, b'\r');
                    }
                    cr = byte == b'\r';
                    if !cr {
                        keep(&mut number, &mut len, byte);
                    }
                    if len > MAX_LINE_BYTES {
                        return Err(Problem::LineTooLong);
                    }
                }
                self.state = State::Line {
                    kind,
                    len,
                    cr,
                    number,
                };
                Ok(bytes.len())
            }
            State::Bulk { left } => {
                let take = left.min(bytes.len() as u64);
                self.state = match left - take {
                    0 => State::BulkEnd { seen: 0 },
                    left => State::Bulk { left },
                };
                Ok(take as usize)
            }
            State::BulkEnd { seen: 0 } if bytes.starts_with(b"\r\n") => {
                self.value_done();
                Ok(2)
            }
            State::BulkEnd { seen: 0 } if bytes == b"\r" => {
                self.state = State::BulkEnd { seen: 1 };
                Ok(1)
            }
            State::BulkEnd { seen: 1 } if bytes[0] == b'\n' => {
                self.value_done();
                Ok(1)
            }
            State::BulkEnd { .. } => Err(Problem::BulkWithoutEnd),
        }
    }

    /// Goes on after a header line: into a bulk string or an array, or to the next value.
    fn start_value(&mut self, header: Header) -> Result<(), Problem> {
        match header {
            Header::Bulk(Some(len)) => {
                if len > self.max_reply {
                    return Err(Problem::TooLong(self.max_reply));
                }
                self.state = if len == 0 {
                    State::BulkEnd { seen: 0 }
                } else {
                    State::Bulk { left: len }
                };
            }
            Header::Array(Some(count)) if count > 0 => {
                if self.depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                // Every element takes at least three bytes (`+\r\n`).
                if count > self.max_reply / 3 {
                    return Err(Problem::TooLong(self.max_reply));
                }
                self.open[self.depth] = count;
                self.depth += 1;
                self.state = State::Kind;
            }
            _ => self.value_done(),
        }
        Ok(())
    }

    /// One value is complete: it counts in the arrays it is in.
    fn value_done(&mut self) {
        self.state = State::Kind;
        while self.depth > 0 {
            let left = &mut self.open[self.depth - 1];
            *left -= 1;
            if *left > 0 {
                break;
            }
            self.depth -= 1;
        }
    }
}

/// Counts one byte of a line, keeping it while there is room for a number.
fn keep(number: &mut [u8; MAX_NUMBER_BYTES], len: &mut usize, byte: u8) {
    if let Some(slot) = number.get_mut(*len) {
        *slot = byte;
    }
    *len += 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(bytes: &[u8]) -> Result<u64, ProtocolError> {
        let mut check = FrameCheck::new(1 << 20);
        check.feed(bytes)?;
        Ok(check.replies())
    }

    #[test]
    fn replies_are_counted_however_the_bytes_are_cut() {
        let stream: &[u8] =
            b"+OK\r\n:12\r\n$3\r\na\rb\r\n$-1\r\n*2\r\n*1\r\n:1\r\n$0\r\n\r\n*0\r\n-ERR x\r\n";
        assert_eq!(check(stream).unwrap(), 7);
        for size in 1..stream.len() {
            let mut check = FrameCheck::new(1 << 20);
            for piece in stream.chunks(size) {
                check.feed(piece).unwrap();
            }
            assert_eq!(check.replies(), 7, "pieces of {size}");
        }
        let mut open = FrameCheck::new(100);
        open.feed(b"*2\r\n:1\r\n").unwrap();
        assert_eq!(
            (open.replies(), open.in_reply()),
            (0, true),
            "an array still open"
        );
        open.feed(b"+\r\n").unwrap();
        assert_eq!((open.replies(), open.in_reply()), (1, false));
    }

    #[test]
    fn what_is_not_resp_is_refused_at_once() {
        let refused = |bytes: &[u8]| check(bytes).unwrap_err().problem;
        assert_eq!(refused(b"HTTP/1.1 400"), Problem::UnknownType(b'H'));
        assert_eq!(refused(b"$-5\r\n"), Problem::NegativeLength(-5));
        assert_eq!(refused(b":12x\r\n"), Problem::BadNumber);
        assert_eq!(refused(b"$3\r\nabcXY"), Problem::BulkWithoutEnd);
        assert_eq!(refused(&b"*1\r\n".repeat(9)), Problem::TooDeep);
        assert_eq!(
            refused(b"$9223372036854775807\r\n"),
            Problem::TooLong(1 << 20)
        );
        assert_eq!(refused(b"*1000000\r\n"), Problem::TooLong(1 << 20));
        assert_eq!(
            refused(b"$123456789012345678901234\r\n"),
            Problem::BadNumber
        );
        let mut endless = b"+".to_vec();
        endless.resize(MAX_LINE_BYTES + 2, b'x');
        assert_eq!(refused(&endless), Problem::LineTooLong);
    }

    #[test]
    fn a_reply_longer_than_the_bound_is_refused_once_it_passes_it() {
        let mut check = FrameCheck::new(50);
        check.feed(b"*10\r\n").unwrap();
        for _ in 0..2 {
            check.feed(b"$10\r\n0123456789\r\n").unwrap();
        }
        let error = check.feed(b"$10\r\n0123456789\r\n").unwrap_err();
        assert_eq!(error.problem, Problem::TooLong(50));
        assert!(error.to_string().contains("*10\\r\\n$10"), "{error}");
    }
}

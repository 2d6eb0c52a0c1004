//! When a connection's reader wakes up: not for every few replies, but when at least a
//! quarter window's worth of commands can have been answered. Every reply to SET/MSET is at
//! least 4 bytes, so `SO_RCVLOWAT = 4 × commands` is a lower bound that never waits for a
//! reply that will not come. This cuts the client's wake-ups (and CPU) several-fold.

use super::batching::WriterConfig;

/// The fewest bytes any reply to a write command takes (`:0\r\n`).
const MIN_REPLY_BYTES: u64 = 4;

/// The `SO_RCVLOWAT` of one data connection's socket.
pub(super) struct ReplyThreshold {
    fd: Option<std::os::fd::RawFd>,
    current: usize,
}

impl ReplyThreshold {
    /// A threshold for a TCP socket.
    pub(super) fn for_socket(stream: &tokio::net::TcpStream) -> ReplyThreshold {
        use std::os::fd::AsRawFd;
        ReplyThreshold {
            fd: Some(stream.as_raw_fd()),
            current: 1,
        }
    }

    /// Wakes the reader once `commands` replies (at most a quarter window's) could be there;
    /// 0 means "as soon as anything arrives" (a reply is partly read).
    pub(super) fn update(&mut self, commands: u64, config: &WriterConfig) {
        let Some(fd) = self.fd else { return };
        let bytes = threshold_bytes(commands, config);
        if bytes == self.current {
            return;
        }
        let value = bytes as libc::c_int;
        // SAFETY: `fd` is the open socket of the stream this session owns, and `value` is a
        // plain int that outlives the call.
        let status = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if status == 0 {
            self.current = bytes;
        } else {
            // Not supported here: wake on every reply, as without it.
            self.fd = None;
        }
    }
}

/// The bytes the replies to `commands` commands take at least, capped at a quarter window's
/// worth, and never 0 (which would wake the reader with nothing to read).
fn threshold_bytes(commands: u64, config: &WriterConfig) -> usize {
    let quarter = (u64::from(config.window) / config.group / 4).max(1);
    (MIN_REPLY_BYTES * commands.min(quarter)).max(1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(window: u32, group: u64) -> WriterConfig {
        WriterConfig {
            batch: 1,
            group,
            window,
            typed: false,
        }
    }

    #[test]
    fn the_reader_waits_for_at_most_a_quarter_window_of_replies() {
        assert_eq!(threshold_bytes(10, &config(1024, 1)), 40);
        assert_eq!(threshold_bytes(10_000, &config(1024, 1)), 4 * 256);
        assert_eq!(threshold_bytes(10_000, &config(1024, 16)), 4 * 16);
    }

    #[test]
    fn a_partly_read_reply_wakes_the_reader_on_any_byte() {
        assert_eq!(threshold_bytes(0, &config(1024, 1)), 1);
        assert_eq!(threshold_bytes(5, &config(1, 1)), 4);
    }
}

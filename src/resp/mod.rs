//! RESP, the protocol of Redis and Valkey: commands encoded into a reusable buffer (the
//! dataset's entries through the one [`EntryEncoder`]), replies scanned without allocating
//! and within bounds ([`parse_reply`], [`FrameCheck`]), and error replies classified once
//! ([`ErrorReply`]).

mod encode;
mod entries;
mod error_reply;
mod frames;
#[cfg(test)]
mod hostile_tests;
mod key_bulk;
mod protocol;
mod reply;
mod room;
pub mod typed;

pub use encode::{push_array_header, push_bulk, push_bulk_header, push_command};
pub use entries::EntryEncoder;
pub use error_reply::{ErrorReply, Redirect};
pub use frames::FrameCheck;
pub use protocol::{MAX_DEPTH, MAX_LINE_BYTES, Problem, ProtocolError};
pub use reply::{MAX_REPLY_BYTES, Reply, parse_reply};

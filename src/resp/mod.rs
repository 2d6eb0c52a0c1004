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
pub(crate) mod typed;

pub(crate) use encode::push_command;
pub(crate) use entries::EntryEncoder;
pub(crate) use error_reply::{ErrorReply, Redirect};
pub(crate) use frames::FrameCheck;
pub(crate) use reply::{MAX_REPLY_BYTES, Reply, parse_reply};

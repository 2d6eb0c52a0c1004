//! RESP, the protocol of Redis and Valkey: commands encoded into a reusable buffer (the
//! dataset's entries through the one [`EntryEncoder`]), replies scanned without allocating,
//! and error replies classified once ([`ErrorReply`]).

mod encode;
mod entries;
mod error_reply;
mod reply;

pub use encode::{push_array_header, push_bulk, push_bulk_header, push_command};
pub use entries::EntryEncoder;
pub use error_reply::{ErrorReply, Redirect};
pub use reply::{ProtocolError, Reply, parse_reply};

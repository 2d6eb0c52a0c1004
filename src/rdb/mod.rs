//! The server's own serialization: a dataset's typed keys as `DUMP` payloads in the
//! encodings the server itself would have chosen for them (listpacks, intsets, quicklists of
//! listpacks, or the plain RDB types past the compact encodings' limits), written with
//! `RESTORE`; and whole RDB files (`export --format rdb`).
//!
//! A payload is the object's RDB type and serialization (`rdb.c`), the RDB version (two
//! bytes) and a CRC-64 of both (eight bytes). The encoding decision is the server's: its
//! limits (`CONFIG GET`) and its version decide, key by key, what its commands would have
//! made, so that `OBJECT ENCODING` and `MEMORY USAGE` are the same either way and the
//! dataset (`DEBUG DIGEST`) is the same by construction.

mod elements;
mod encoding;
mod intset;
mod keys;
mod listpack;
mod quicklist;
mod restorable;
mod server;
mod stream;

pub(crate) use encoding::{Crc64Digest, push_len, push_string};
pub use keys::PayloadEncoder;
pub(crate) use restorable::{Restorable, restorable};
pub use server::ServerEncoding;

/// An object written: its RDB type (the first byte of a payload) and the lowest RDB
/// version that has it.
pub(crate) type Object = (u8, u16);

/// RDB object types (`rdb.h`), the first byte of a payload.
pub(crate) mod object_type {
    /// A set, member by member.
    pub(crate) const SET: u8 = 2;
    /// A hash, field and value by field and value.
    pub(crate) const HASH: u8 = 4;
    /// A sorted set, member and binary score by member and binary score.
    pub(crate) const ZSET_2: u8 = 5;
    /// A set of integers as an intset.
    pub(crate) const SET_INTSET: u8 = 11;
    /// A hash as one listpack (RDB 10).
    pub(crate) const HASH_LISTPACK: u8 = 16;
    /// A sorted set as one listpack (RDB 10).
    pub(crate) const ZSET_LISTPACK: u8 = 17;
    /// A list as a quicklist of listpack nodes (RDB 10).
    pub(crate) const LIST_QUICKLIST_2: u8 = 18;
    /// A stream as listpack nodes, with its first ID, deletions and entries added (RDB 10).
    pub(crate) const STREAM_LISTPACKS_2: u8 = 19;
    /// A set as one listpack (RDB 11).
    pub(crate) const SET_LISTPACK: u8 = 20;
}

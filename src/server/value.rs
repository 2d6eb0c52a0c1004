//! Reading `redis::Value` replies on control connections (topology, `profile`'s sample,
//! verify's reads, the key-cost sample): the few conversions every reader needs, with RESP2
//! and RESP3 forms treated alike.

use redis::Value;

use crate::plan::NodeAddr;
use crate::resp::ErrorReply;

/// Where a cluster sent a command: the node, and whether it needs `ASKING` first.
pub type Detour = (NodeAddr, bool);

/// Where `reply` sends its command, when it is a `MOVED` or an `ASK` from `answered`.
pub fn detour(reply: &Value, answered: &NodeAddr) -> Option<Detour> {
    let Value::ServerError(e) = reply else {
        return None;
    };
    let line = format!("{} {}", e.code(), e.details().unwrap_or_default());
    match ErrorReply::parse(line.as_bytes()) {
        ErrorReply::Moved(to) => Some((to.addr(answered), false)),
        ErrorReply::Ask(to) => Some((to.addr(answered), true)),
        _ => None,
    }
}

/// A reply as text: a bulk, simple or verbatim string, `OK`, or an integer's digits.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// A reply as an integer: an integer, or a string of one.
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The items of an array or set reply (none for a nil reply); `None` for anything else.
pub fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

//! Reading `redis::Value` replies on control connections (topology, `profile`'s sample,
//! verify's reads, the key-cost sample): the few conversions every reader needs, with RESP2
//! and RESP3 forms treated alike.

use redis::Value;

use crate::plan::NodeAddr;
use crate::resp::ErrorReply;

/// Where a cluster sent a command: the node, and whether it needs `ASKING` first.
pub(crate) type Detour = (NodeAddr, bool);

/// Where `reply` sends its command, when it is a `MOVED` or an `ASK` from `answered`.
pub(crate) fn detour(reply: &Value, answered: &NodeAddr) -> Option<Detour> {
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
pub(crate) fn text(value: &Value) -> Option<String> {
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
pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// The items of an array or set reply (none for a nil reply); `None` for anything else.
pub(crate) fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        Value::Nil => Some(&[]),
        _ => None,
    }
}

#[cfg(test)]
mod detour_tests {
    use super::*;

    fn error_reply(line: &str) -> Value {
        redis::Parser::new()
            .parse_value(format!("-{line}\r\n").as_bytes())
            .unwrap()
    }

    #[test]
    fn moved_and_ask_replies_name_where_the_command_goes() {
        let answered = NodeAddr {
            host: "127.0.0.1".into(),
            port: 7000,
        };
        let to = |port| NodeAddr {
            host: "127.0.0.1".into(),
            port,
        };
        let moved = error_reply("MOVED 3999 127.0.0.1:6381");
        assert_eq!(detour(&moved, &answered), Some((to(6381), false)));
        let ask = error_reply("ASK 12 127.0.0.1:6382");
        assert_eq!(detour(&ask, &answered), Some((to(6382), true)));
        // An empty host is the node that answered.
        let here = error_reply("MOVED 12 :6383");
        assert_eq!(detour(&here, &answered), Some((to(6383), false)));
        for other in [
            error_reply("WRONGTYPE Operation against a key holding the wrong kind of value"),
            Value::BulkString(b"v".to_vec()),
            Value::Nil,
        ] {
            assert_eq!(detour(&other, &answered), None);
        }
    }
}

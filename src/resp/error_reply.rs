//! What an error reply means, decided once from its line: a cluster redirection, a
//! transient refusal worth retrying, or an error that stops the stage.

use crate::plan::NodeAddr;

/// Where a `MOVED` or `ASK` reply sends a command, borrowed from the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redirect<'a> {
    /// The hash slot the command's key is in.
    pub slot: u16,
    /// The node's host, without brackets; empty means the node that answered.
    pub host: &'a str,
    /// The node's port.
    pub port: u16,
}

/// An error reply (the line without its `-`), classified by its first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorReply<'a> {
    /// `MOVED <slot> <host>:<port>`: the slot lives elsewhere now.
    Moved(Redirect<'a>),
    /// `ASK <slot> <host>:<port>`: this one command goes elsewhere, after `ASKING`.
    Ask(Redirect<'a>),
    /// `TRYAGAIN …`: the slot is being migrated; the same command may succeed shortly.
    TryAgain,
    /// `CLUSTERDOWN …`: the cluster cannot serve the slot right now.
    ClusterDown,
    /// `LOADING …`: the server is still loading its dataset.
    Loading,
    /// `OOM …`: `maxmemory` is reached and the policy evicts nothing.
    Oom,
    /// `NOPERM …`: the user may not run the command or touch the key.
    NoPermission,
    /// Anything else (`ERR`, `WRONGTYPE`, a malformed redirection …).
    Other,
}

impl<'a> ErrorReply<'a> {
    /// Classifies an error line such as `MOVED 3999 127.0.0.1:6381` (without the `-`).
    pub(crate) fn parse(line: &'a [u8]) -> ErrorReply<'a> {
        let mut words = line
            .split(u8::is_ascii_whitespace)
            .filter(|word| !word.is_empty());
        match words.next() {
            Some(b"MOVED") => Redirect::parse(words.next(), words.next())
                .map_or(ErrorReply::Other, ErrorReply::Moved),
            Some(b"ASK") => Redirect::parse(words.next(), words.next())
                .map_or(ErrorReply::Other, ErrorReply::Ask),
            Some(b"TRYAGAIN") => ErrorReply::TryAgain,
            Some(b"CLUSTERDOWN") => ErrorReply::ClusterDown,
            Some(b"LOADING") => ErrorReply::Loading,
            Some(b"OOM") => ErrorReply::Oom,
            Some(b"NOPERM") => ErrorReply::NoPermission,
            _ => ErrorReply::Other,
        }
    }

    /// True for refusals that clear up on their own (a migration, a failover, a restart):
    /// the command is worth sending again after a pause.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self,
            ErrorReply::TryAgain | ErrorReply::ClusterDown | ErrorReply::Loading
        )
    }
}

impl<'a> Redirect<'a> {
    /// The slot and `host:port` words of a redirection. The port follows the last `:`, so
    /// IPv6 hosts work with or without brackets.
    fn parse(slot: Option<&'a [u8]>, addr: Option<&'a [u8]>) -> Option<Redirect<'a>> {
        let slot = std::str::from_utf8(slot?).ok()?.parse().ok()?;
        let (host, port) = std::str::from_utf8(addr?).ok()?.rsplit_once(':')?;
        Some(Redirect {
            slot,
            host: host.trim_start_matches('[').trim_end_matches(']'),
            port: port.parse().ok()?,
        })
    }

    /// The node the redirection names; an empty host means the node that answered.
    pub(crate) fn addr(&self, answered: &NodeAddr) -> NodeAddr {
        let host = if self.host.is_empty() {
            answered.host.clone()
        } else {
            self.host.to_string()
        };
        NodeAddr {
            host,
            port: self.port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(slot: u16, host: &str, port: u16) -> Redirect<'_> {
        Redirect { slot, host, port }
    }

    #[test]
    fn moved_and_ask_name_the_slot_and_the_node() {
        assert_eq!(
            ErrorReply::parse(b"MOVED 3999 127.0.0.1:6381"),
            ErrorReply::Moved(redirect(3999, "127.0.0.1", 6381))
        );
        assert_eq!(
            ErrorReply::parse(b"ASK 3999 127.0.0.1:6381"),
            ErrorReply::Ask(redirect(3999, "127.0.0.1", 6381))
        );
    }

    #[test]
    fn redirections_to_ipv6_and_host_names_keep_the_whole_host() {
        assert_eq!(
            ErrorReply::parse(b"MOVED 3999 ::1:6381"),
            ErrorReply::Moved(redirect(3999, "::1", 6381))
        );
        assert_eq!(
            ErrorReply::parse(b"MOVED 3999 [::1]:6381"),
            ErrorReply::Moved(redirect(3999, "::1", 6381))
        );
        assert_eq!(
            ErrorReply::parse(b"MOVED 12182 redis-2.example:6379"),
            ErrorReply::Moved(redirect(12182, "redis-2.example", 6379))
        );
    }

    #[test]
    fn an_empty_host_means_the_node_that_answered() {
        assert_eq!(
            ErrorReply::parse(b"MOVED 3999 :6381"),
            ErrorReply::Moved(redirect(3999, "", 6381))
        );
    }

    #[test]
    fn malformed_redirections_are_plain_errors() {
        for line in [
            &b"MOVED"[..],
            b"MOVED 3999",
            b"MOVED x 127.0.0.1:6381",
            b"MOVED 3999 nonsense",
            b"MOVED 3999 127.0.0.1:port",
            b"ASK 99999 127.0.0.1:6381",
        ] {
            assert_eq!(ErrorReply::parse(line), ErrorReply::Other, "{line:?}");
        }
    }

    #[test]
    fn refusals_classify_by_their_first_word() {
        let cases: [(&[u8], ErrorReply); 7] = [
            (
                b"TRYAGAIN Multiple keys request during rehashing of slot",
                ErrorReply::TryAgain,
            ),
            (b"CLUSTERDOWN The cluster is down", ErrorReply::ClusterDown),
            (
                b"LOADING Redis is loading the dataset in memory",
                ErrorReply::Loading,
            ),
            (
                b"OOM command not allowed when used memory > 'maxmemory'.",
                ErrorReply::Oom,
            ),
            (
                b"NOPERM User x has no permissions to run the 'set' command",
                ErrorReply::NoPermission,
            ),
            (
                b"ERR wrong number of arguments for 'set' command",
                ErrorReply::Other,
            ),
            (
                b"WRONGTYPE Operation against a key holding the wrong kind of value",
                ErrorReply::Other,
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(ErrorReply::parse(line), expected, "{line:?}");
        }
        assert_eq!(ErrorReply::parse(b""), ErrorReply::Other);
        assert_eq!(ErrorReply::parse(b"MOVEDX 1 a:1"), ErrorReply::Other);
    }

    #[test]
    fn only_migrations_failovers_and_loading_are_worth_a_retry() {
        assert!(ErrorReply::TryAgain.is_transient());
        assert!(ErrorReply::ClusterDown.is_transient());
        assert!(ErrorReply::Loading.is_transient());
        assert!(!ErrorReply::Oom.is_transient());
        assert!(!ErrorReply::NoPermission.is_transient());
        assert!(!ErrorReply::Other.is_transient());
    }
}

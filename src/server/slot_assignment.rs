//! Giving a node of a launched cluster its slots: `CLUSTER ADDSLOTSRANGE` (Redis 7.0+,
//! Valkey), or on older servers, which do not know it, `CLUSTER ADDSLOTS` in batches.

/// Slots named in one `CLUSTER ADDSLOTS`: a bounded command however many slots a node gets.
const ADDSLOTS_BATCH: u16 = 1024;

/// Assigns the slots `first..=last` to the node behind `conn`.
pub(crate) fn assign(
    conn: &mut redis::Connection,
    first: u16,
    last: u16,
) -> redis::RedisResult<()> {
    let ranged = redis::cmd("CLUSTER")
        .arg("ADDSLOTSRANGE")
        .arg(first)
        .arg(last)
        .exec(conn);
    match ranged {
        Err(e) if is_unknown_subcommand(&e) => {
            for (start, end) in batches(first, last) {
                redis::cmd("CLUSTER")
                    .arg("ADDSLOTS")
                    .arg((start..=end).collect::<Vec<u16>>())
                    .exec(conn)?;
            }
            Ok(())
        }
        other => other,
    }
}

/// True for the refusal of a server that lacks the subcommand (Redis before 7.0 says
/// "Unknown subcommand or wrong number of arguments", later ones "unknown subcommand").
fn is_unknown_subcommand(error: &redis::RedisError) -> bool {
    let text = error.to_string().to_ascii_lowercase();
    text.contains("unknown subcommand") || text.contains("unknown command")
}

/// `first..=last` cut into ranges of at most [`ADDSLOTS_BATCH`] slots.
fn batches(first: u16, last: u16) -> impl Iterator<Item = (u16, u16)> {
    (first..=last)
        .step_by(usize::from(ADDSLOTS_BATCH))
        .map(move |start| (start, last.min(start.saturating_add(ADDSLOTS_BATCH - 1))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_cover_the_range_once_in_bounded_pieces() {
        let pieces: Vec<(u16, u16)> = batches(5461, 10922).collect();
        assert_eq!(
            pieces,
            vec![
                (5461, 6484),
                (6485, 7508),
                (7509, 8532),
                (8533, 9556),
                (9557, 10580),
                (10581, 10922)
            ]
        );
        assert_eq!(batches(0, 0).collect::<Vec<_>>(), vec![(0, 0)]);
        assert_eq!(batches(0, 1023).collect::<Vec<_>>(), vec![(0, 1023)]);
        let last = crate::slot::SLOTS - 1;
        let all: Vec<(u16, u16)> = batches(0, last).collect();
        assert_eq!(all.len(), 16);
        assert_eq!(all.last(), Some(&(15360, last)));
    }
}

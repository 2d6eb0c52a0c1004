//! Shards: `--shard I/N` writes the I-th of N disjoint parts of every stage, so N processes
//! on N machines together write exactly the dataset one would. A stage's index range is cut
//! into chunks of 4096 entries and chunk `c` belongs to shard `c mod N`: every shard gets
//! long runs of consecutive entries (cheap to write) spread over the whole range.

use std::ops::Range;

/// The variable Kubernetes Indexed Jobs set to the job's index, read with `--shards N`.
pub(crate) const JOB_INDEX_VARIABLE: &str = "JOB_COMPLETION_INDEX";

/// The shard a process writes: `--shard I/N`, or `--shards N` with the index from
/// `job_index` (the value of [`JOB_INDEX_VARIABLE`]), or the whole dataset.
pub(crate) fn resolve(
    shard: Option<&str>,
    shards: Option<u64>,
    job_index: Option<&str>,
) -> Result<Shard, String> {
    match (shard, shards) {
        (Some(text), count) => {
            let shard = Shard::parse(text)?;
            if let Some(count) = count.filter(|&n| n != u64::from(shard.count)) {
                return Err(format!("--shard {text} and --shards {count} disagree"));
            }
            Ok(shard)
        }
        (None, Some(count)) => {
            let index = job_index.ok_or_else(|| {
                format!(
                    "--shards {count} needs --shard I/{count} or the {JOB_INDEX_VARIABLE} variable"
                )
            })?;
            let index = index
                .trim()
                .parse()
                .map_err(|_| format!("{JOB_INDEX_VARIABLE} `{index}` is not a number"))?;
            Shard::new(index, count)
        }
        (None, None) => Ok(Shard::WHOLE),
    }
}

/// Entries per chunk.
pub(crate) const CHUNK: u64 = 4096;

/// The part of every stage's dataset this process writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, from 0.
    pub index: u32,
    /// How many parts.
    pub count: u32,
}

impl Default for Shard {
    /// The whole dataset.
    fn default() -> Shard {
        Shard::WHOLE
    }
}

impl Shard {
    /// The whole dataset.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// A shard from its index and count, checked.
    pub fn new(index: u64, count: u64) -> Result<Shard, String> {
        if count == 0 || count > 100_000 {
            return Err(format!(
                "the shard count must be between 1 and 100000, not {count}"
            ));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range: with {count} shards it is 0 to {}",
                count - 1
            ));
        }
        Ok(Shard {
            index: index as u32,
            count: count as u32,
        })
    }

    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let parsed = text
            .split_once('/')
            .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)));
        match parsed {
            Some((index, count)) => Shard::new(index, count),
            None => Err(format!("--shard takes I/N, such as 0/4, not `{text}`")),
        }
    }

    /// Entries of a stage of `keys` entries that belong to this shard.
    pub fn len(&self, keys: u64) -> u64 {
        if self.count == 1 {
            return keys;
        }
        let (index, count) = (u64::from(self.index), u64::from(self.count));
        let chunks = keys.div_ceil(CHUNK);
        if chunks <= index {
            return 0;
        }
        let mine = (chunks - 1 - index) / count + 1;
        let mut len = mine * CHUNK;
        let partial = keys % CHUNK;
        if partial != 0 && (chunks - 1) % count == index {
            len -= CHUNK - partial;
        }
        len
    }

    /// The stage index of this shard's `position`-th entry.
    pub fn global(&self, position: u64) -> u64 {
        if self.count == 1 {
            return position;
        }
        (position / CHUNK * u64::from(self.count) + u64::from(self.index)) * CHUNK
            + position % CHUNK
    }

    /// This shard's position of stage index `index` (one of its entries): the inverse of
    /// [`Shard::global`].
    pub fn position(&self, index: u64) -> u64 {
        if self.count == 1 {
            return index;
        }
        index / CHUNK / u64::from(self.count) * CHUNK + index % CHUNK
    }

    /// Consecutive stage indexes from this shard's `position`-th entry: at most `max`, not
    /// past the shard's `len` entries, and not past the end of a chunk.
    pub fn range(&self, position: u64, max: u64, len: u64) -> Range<u64> {
        let mut n = max.min(len.saturating_sub(position));
        if self.count > 1 {
            n = n.min(CHUNK - position % CHUNK);
        }
        let start = self.global(position);
        start..start + n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_takes_the_flag_the_job_index_or_the_whole() {
        assert_eq!(resolve(None, None, Some("3")), Ok(Shard::WHOLE));
        assert_eq!(resolve(Some("1/4"), None, None), Shard::new(1, 4));
        assert_eq!(resolve(Some("1/4"), Some(4), Some("2")), Shard::new(1, 4));
        assert_eq!(resolve(None, Some(4), Some(" 2\n")), Shard::new(2, 4));
        assert_eq!(
            resolve(Some("1/4"), Some(5), None),
            Err("--shard 1/4 and --shards 5 disagree".into())
        );
        assert!(
            resolve(None, Some(4), None)
                .unwrap_err()
                .contains(JOB_INDEX_VARIABLE)
        );
        assert!(
            resolve(None, Some(4), Some("x"))
                .unwrap_err()
                .contains("`x` is not a number")
        );
        assert!(
            resolve(None, Some(4), Some("4"))
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn shards_are_disjoint_and_cover_the_stage() {
        for keys in [0, 1, 4095, 4096, 4097, 10_000, 100_000] {
            for count in [1u32, 2, 3, 4, 7] {
                let mut seen = vec![false; keys as usize];
                let mut total = 0;
                for index in 0..count {
                    let shard = Shard { index, count };
                    let len = shard.len(keys);
                    total += len;
                    let mut position = 0;
                    while position < len {
                        let range = shard.range(position, 1000, len);
                        assert!(!range.is_empty());
                        for i in range.clone() {
                            assert_eq!(shard.position(i), position + (i - range.start));
                            assert!(
                                !seen[i as usize],
                                "{i} written twice ({keys} keys, {count} shards)"
                            );
                            seen[i as usize] = true;
                        }
                        position += range.end - range.start;
                    }
                }
                assert_eq!(total, keys);
                assert!(
                    seen.iter().all(|s| *s),
                    "{keys} keys, {count} shards: not covered"
                );
            }
        }
    }

    #[test]
    fn shard_arguments_are_checked() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert!(Shard::parse("4/4").unwrap_err().contains("out of range"));
        assert!(Shard::parse("1/0").is_err());
        assert!(Shard::parse("x").unwrap_err().contains("I/N"));
    }
}

//! The shape of a keyspace from its sample: keys grouped by (pattern, type, with or without
//! TTL), each group's estimated key count and the distributions of its sizes, the largest
//! groups by memory first and the small ones merged into one "other" group per type.

use std::collections::{BTreeMap, HashMap};

use super::patterns::{self, IdsSeen, Piece};
use super::sampling::KeyObservation;
use super::statistics::Distribution;
use crate::plan::DataType;

/// A group below both shares (of the sampled memory and of the sampled keys) is merged into
/// its type's "other" group.
pub(crate) const MIN_SHARE: f64 = 0.01;
/// Most groups kept apart (the largest by memory); the rest are merged.
pub(crate) const MAX_GROUPS: usize = 24;

/// A key observed on a server, with the number of the server's keys it stands for.
pub(crate) struct Weighted {
    /// What was seen.
    pub key: KeyObservation,
    /// Keys of the server per sampled key (`DBSIZE` / keys sampled there).
    pub weight: f64,
}

/// How a group's keys are named.
#[derive(Debug, Clone)]
pub(crate) enum Naming {
    /// One pattern, with what its ids held.
    Pattern(Vec<Piece>, IdsSeen),
    /// Patterns merged into "other".
    Other {
        /// How many.
        patterns: usize,
    },
}

/// One group of keys: a stage of the plan to be.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The pattern for people (`user:*:cart`), or `other`.
    pub label: String,
    /// How its keys are named.
    pub naming: Naming,
    /// The keys' type.
    pub data_type: DataType,
    /// Whether its keys expire.
    pub with_ttl: bool,
    /// Keys sampled.
    pub sampled: u64,
    /// Keys on the server(s), estimated.
    pub estimated_keys: f64,
    /// `MEMORY USAGE` of the sampled keys, summed.
    pub memory: u64,
    /// Its share of the sampled memory (0..=1).
    pub memory_share: f64,
    /// Share of the keys of its pattern and type without TTL (0..=1).
    pub pattern_share_without_ttl: f64,
    /// `OBJECT ENCODING` of the sampled keys, counted.
    pub encodings: BTreeMap<String, u64>,
    /// Key lengths.
    pub key_lengths: Distribution,
    /// Elements per key (typed keys).
    pub elements: Distribution,
    /// Lengths of values, members, items and stream values.
    pub values: Distribution,
    /// Lengths of hash fields and stream field names.
    pub fields: Distribution,
    /// Field/value pairs per stream entry.
    pub entry_fields: Distribution,
    /// Sorted-set scores.
    pub scores: Distribution,
    /// Remaining TTLs in milliseconds.
    pub ttls: Distribution,
}

impl Group {
    fn new(label: String, naming: Naming, data_type: DataType, with_ttl: bool) -> Group {
        Group {
            label,
            naming,
            data_type,
            with_ttl,
            sampled: 0,
            estimated_keys: 0.0,
            memory: 0,
            memory_share: 0.0,
            pattern_share_without_ttl: 0.0,
            encodings: BTreeMap::new(),
            key_lengths: Distribution::default(),
            elements: Distribution::default(),
            values: Distribution::default(),
            fields: Distribution::default(),
            entry_fields: Distribution::default(),
            scores: Distribution::default(),
            ttls: Distribution::default(),
        }
    }

    fn add(&mut self, observed: &Weighted) {
        let key = &observed.key;
        self.sampled += 1;
        self.estimated_keys += observed.weight;
        self.memory += key.memory.unwrap_or(0);
        if let Some(encoding) = &key.encoding {
            *self.encodings.entry(encoding.clone()).or_default() += 1;
        }
        self.key_lengths.push(key.key.len() as f64);
        if key.data_type != DataType::String {
            self.elements.push(key.elements as f64);
        }
        let push = |d: &mut Distribution, values: &[u64]| {
            values.iter().for_each(|v| d.push(*v as f64));
        };
        push(&mut self.values, &key.values);
        push(&mut self.fields, &key.fields);
        push(&mut self.entry_fields, &key.entry_fields);
        key.scores.iter().for_each(|s| self.scores.push(*s));
        if let Some(ttl) = key.ttl_ms {
            self.ttls.push(ttl as f64);
        }
    }

    fn absorb(&mut self, other: &Group) {
        self.sampled += other.sampled;
        self.estimated_keys += other.estimated_keys;
        self.memory += other.memory;
        for (encoding, n) in &other.encodings {
            *self.encodings.entry(encoding.clone()).or_default() += n;
        }
        for (to, from) in [
            (&mut self.key_lengths, &other.key_lengths),
            (&mut self.elements, &other.elements),
            (&mut self.values, &other.values),
            (&mut self.fields, &other.fields),
            (&mut self.entry_fields, &other.entry_fields),
            (&mut self.scores, &other.scores),
            (&mut self.ttls, &other.ttls),
        ] {
            to.merge(from);
        }
    }
}

/// What a group is: (pattern, type, with TTL).
type GroupKey = (Vec<Piece>, &'static str, bool);

/// The groups of a sample, largest by memory first (by estimated keys when the server
/// does not answer `MEMORY USAGE`).
pub(crate) fn groups(sample: &[Weighted]) -> Vec<Group> {
    let mut by_pattern: HashMap<GroupKey, (IdsSeen, Vec<usize>)> = HashMap::new();
    for (i, observed) in sample.iter().enumerate() {
        let split = patterns::split(&observed.key.key);
        let at = (
            split.pattern,
            observed.key.data_type.as_str(),
            observed.key.ttl_ms.is_some(),
        );
        let (seen, members) = by_pattern.entry(at).or_default();
        seen.add(&split.ids);
        members.push(i);
    }
    let mut groups: Vec<Group> = by_pattern
        .into_iter()
        .map(|((pattern, _, with_ttl), (seen, members))| {
            let label = patterns::label(&pattern, &seen);
            let data_type = sample[members[0]].key.data_type;
            let mut group = Group::new(label, Naming::Pattern(pattern, seen), data_type, with_ttl);
            members.iter().for_each(|i| group.add(&sample[*i]));
            group
        })
        .collect();
    let total_memory: u64 = groups.iter().map(|g| g.memory).sum();
    let total_keys = sample.len().max(1) as f64;
    for group in &mut groups {
        group.memory_share = group.memory as f64 / total_memory.max(1) as f64;
    }
    sort(&mut groups);
    let mut kept = Vec::new();
    let mut small: BTreeMap<(&'static str, bool), Vec<Group>> = BTreeMap::new();
    for group in groups {
        let big = group.memory_share >= MIN_SHARE || group.sampled as f64 / total_keys >= MIN_SHARE;
        if big && kept.len() < MAX_GROUPS {
            kept.push(group);
        } else {
            small
                .entry((group.data_type.as_str(), group.with_ttl))
                .or_default()
                .push(group);
        }
    }
    for (_, merged) in small {
        kept.push(match merged.as_slice() {
            [one] => one.clone(),
            _ => other(&merged, total_memory),
        });
    }
    share_without_ttl(&mut kept);
    sort(&mut kept);
    kept
}

/// The small groups of one type (and TTL or not) as one.
fn other(groups: &[Group], total_memory: u64) -> Group {
    let first = &groups[0];
    let naming = Naming::Other {
        patterns: groups.len(),
    };
    let mut other = Group::new("other".into(), naming, first.data_type, first.with_ttl);
    groups.iter().for_each(|g| other.absorb(g));
    other.memory_share = other.memory as f64 / total_memory.max(1) as f64;
    other
}

fn sort(groups: &mut [Group]) {
    groups.sort_by(|a, b| {
        (b.memory, b.estimated_keys)
            .partial_cmp(&(a.memory, a.estimated_keys))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.label.cmp(&b.label))
    });
}

/// Notes, on each group, the share of the keys of its pattern and type that have no TTL.
fn share_without_ttl(groups: &mut [Group]) {
    let mut totals: HashMap<(String, &'static str), (f64, f64)> = HashMap::new();
    for g in groups.iter() {
        let (with, without) = totals
            .entry((g.label.clone(), g.data_type.as_str()))
            .or_default();
        if g.with_ttl {
            *with += g.estimated_keys;
        } else {
            *without += g.estimated_keys;
        }
    }
    for g in groups.iter_mut() {
        let (with, without) = totals[&(g.label.clone(), g.data_type.as_str())];
        g.pattern_share_without_ttl = without / (with + without).max(f64::MIN_POSITIVE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, data_type: DataType, ttl: Option<u64>, memory: u64) -> Weighted {
        Weighted {
            key: KeyObservation {
                key: name.as_bytes().to_vec(),
                data_type,
                ttl_ms: ttl,
                memory: Some(memory),
                encoding: Some("listpack".into()),
                elements: 3,
                values: vec![10, 20],
                fields: Vec::new(),
                scores: Vec::new(),
                entry_fields: Vec::new(),
            },
            weight: 2.0,
        }
    }

    #[test]
    fn keys_group_by_pattern_type_and_ttl_largest_first() {
        let mut sample = Vec::new();
        for i in 0..300 {
            sample.push(key(&format!("user:{i}:cart"), DataType::Hash, None, 100));
            sample.push(key(
                &format!("sess:{i}"),
                DataType::String,
                Some(60_000),
                50,
            ));
        }
        for i in 0..100 {
            sample.push(key(
                &format!("user:{i}:cart"),
                DataType::Hash,
                Some(1000),
                100,
            ));
        }
        // Two small patterns of one type: merged into "other".
        sample.push(key("config:a", DataType::Set, None, 10));
        sample.push(key("flags:b", DataType::Set, None, 10));
        let groups = groups(&sample);
        let summary: Vec<_> = groups
            .iter()
            .map(|g| {
                (
                    g.label.as_str(),
                    g.data_type,
                    g.with_ttl,
                    g.sampled,
                    g.estimated_keys,
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                ("user:*:cart", DataType::Hash, false, 300, 600.0),
                ("sess:*", DataType::String, true, 300, 600.0),
                ("user:*:cart", DataType::Hash, true, 100, 200.0),
                ("other", DataType::Set, false, 2, 4.0),
            ]
        );
        assert_eq!(groups[0].pattern_share_without_ttl, 0.75);
        assert_eq!(groups[1].pattern_share_without_ttl, 0.0);
        assert_eq!(groups[0].encodings["listpack"], 300);
        assert!(matches!(groups[3].naming, Naming::Other { patterns: 2 }));
    }
}

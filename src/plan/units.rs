//! Units used in plan files: byte sizes ("1.5GiB") and durations ("10m").

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A number of bytes, written in a plan as an integer or as a string with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"5GiB"`, `"1.5 MB"`, `"512"`, `"64kib"`: decimal units are powers of 1000,
    /// binary units powers of 1024, case-insensitive.
    pub(crate) fn parse(text: &str) -> Result<ByteSize, String> {
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number = number.replace('_', "");
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" => 1000,
            "mb" => 1000_u64.pow(2),
            "gb" => 1000_u64.pow(3),
            "tb" => 1000_u64.pow(4),
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => {
                return Err(format!(
                    "`{text}` is not a size: use bytes or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
                ));
            }
        };
        let bytes = parse_scaled(&number, multiplier).ok_or_else(|| {
            format!("`{text}` is not a size: use bytes or a number with B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
        })?;
        Ok(ByteSize(bytes))
    }
}

/// `number * multiplier` for a decimal `number` ("1.5"), exact for whole results, rounded up otherwise.
fn parse_scaled(number: &str, multiplier: u64) -> Option<u64> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.len() > 18 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let digits: u128 = fraction.parse().ok()?;
        let scale = 10u128.pow(fraction.len() as u32);
        let part = (digits * multiplier as u128).div_ceil(scale);
        total = total.checked_add(u64::try_from(part).ok()?)?;
    }
    Some(total)
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", human_bytes(self.0))
    }
}

/// Bytes for people: "5.00 GiB", "512 B".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.2} {}", UNITS[unit])
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size: a number of bytes or a string such as \"5GiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("{v} is not a size: it must not be negative")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A duration written as a humantime string ("500ms", "1h 30m").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"10m\" or \"1h 30m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                humantime::parse_duration(v).map(HumanDuration).map_err(|e| {
                    E::custom(format!(
                        "`{v}` is not a duration ({e}): write e.g. \"500ms\", \"10m\" or \"1h 30m\""
                    ))
                })
            }
        }
        deserializer.deserialize_str(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_decimal_and_binary_units() {
        assert_eq!(ByteSize::parse("512").unwrap().0, 512);
        assert_eq!(ByteSize::parse("5GiB").unwrap().0, 5 << 30);
        assert_eq!(ByteSize::parse("5gib").unwrap().0, 5 << 30);
        assert_eq!(ByteSize::parse("1.5GiB").unwrap().0, 3 << 29);
        assert_eq!(ByteSize::parse("2 MB").unwrap().0, 2_000_000);
        assert_eq!(ByteSize::parse("64KiB").unwrap().0, 65536);
        assert_eq!(ByteSize::parse("10B").unwrap().0, 10);
        assert_eq!(ByteSize::parse("1TB").unwrap().0, 1_000_000_000_000);
    }

    #[test]
    fn sizes_reject_unknown_units_and_garbage() {
        for bad in ["5GiBs", "5 XB", "", "GiB", "1.2.3MB", "-5MB", "1e9"] {
            let err = ByteSize::parse(bad).unwrap_err();
            assert!(err.contains("is not a size"), "{bad}: {err}");
        }
    }

    #[test]
    fn human_bytes_is_readable() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(5 << 30), "5.00 GiB");
    }
}

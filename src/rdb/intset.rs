//! Intsets (Redis `intset.c`), the encoding of small sets of integers: the width of every
//! value (2, 4 or 8 bytes: the narrowest that holds them all), the count, then the values in
//! ascending order; everything little-endian.

/// Appends the intset of `values`, which must be sorted ascending and distinct.
pub(super) fn push_intset(out: &mut Vec<u8>, values: &[i64]) {
    debug_assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "sorted and distinct"
    );
    let width = values.iter().map(|&v| width_of(v)).max().unwrap_or(2);
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(values.len() as u32).to_le_bytes());
    for &value in values {
        out.extend_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// The narrowest width that holds `value` (`_intsetValueEncoding`).
fn width_of(value: i64) -> usize {
    if i16::try_from(value).is_ok() {
        2
    } else if i32::try_from(value).is_ok() {
        4
    } else {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_widest_value_sets_every_width() {
        let mut out = Vec::new();
        push_intset(&mut out, &[-3, 7]);
        assert_eq!(out, [2, 0, 0, 0, 2, 0, 0, 0, 0xFD, 0xFF, 7, 0]);
        out.clear();
        push_intset(&mut out, &[1, 70_000]);
        assert_eq!(&out[..8], &[4, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&out[8..], &[1, 0, 0, 0, 0x70, 0x11, 1, 0]);
        out.clear();
        push_intset(&mut out, &[i64::MIN]);
        assert_eq!(out.len(), 16);
        out.clear();
        push_intset(&mut out, &[]);
        assert_eq!(out, [2, 0, 0, 0, 0, 0, 0, 0]);
    }
}

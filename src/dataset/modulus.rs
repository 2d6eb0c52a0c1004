//! `draw % span` for a span fixed per stage, without a division: sorted-set scores and
//! ranged value lengths take one remainder per element, and a 64-bit division takes tens of
//! cycles. The remainder is computed directly from a 128-bit fraction made once (Lemire,
//! Kaser and Kurz, "Faster Remainder by Direct Computation", 2019): exact for every 64-bit
//! draw and span, so it changes no byte of any dataset.

/// Remainders by one span.
#[derive(Debug, Clone, Copy)]
pub(super) struct Modulus {
    span: u64,
    /// `ceil(2^128 / span)`, for spans above 1.
    fraction: u128,
}

impl Modulus {
    /// Remainders by `span` (at least 1).
    pub(super) fn new(span: u64) -> Modulus {
        assert!(span > 0, "a span of no values");
        let fraction = if span == 1 {
            0
        } else {
            u128::MAX / u128::from(span) + 1
        };
        Modulus { span, fraction }
    }

    /// `draw % span`.
    #[inline]
    pub(super) fn of(&self, draw: u64) -> u64 {
        if self.span == 1 {
            return 0;
        }
        // The fractional part of draw / span, as 128 bits, times span: its top 64 bits (of
        // 192) are the remainder.
        let low = self.fraction.wrapping_mul(u128::from(draw));
        let span = u128::from(self.span);
        let high = (low >> 64) * span;
        let carry = (u128::from(low as u64) * span) >> 64;
        ((high + carry) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::mix64;

    #[test]
    fn remainders_equal_those_of_a_division() {
        let mut spans = vec![
            1,
            2,
            3,
            7,
            10,
            100,
            1_000_001,
            10_000_001,
            u64::MAX,
            u64::MAX - 1,
        ];
        spans.extend((0..64).map(|bit| 1u64 << bit));
        spans.extend((0..64).map(|bit| (1u64 << bit) + 1));
        spans.extend((1..2000).map(|n| mix64(n) >> (n % 64)).filter(|&s| s > 0));
        for span in spans {
            let modulus = Modulus::new(span);
            let mut draws = vec![
                0,
                1,
                span - 1,
                span,
                span.wrapping_add(1),
                u64::MAX,
                u64::MAX - 1,
            ];
            draws.extend((0..200).map(|n| mix64(n ^ span)));
            for draw in draws {
                assert_eq!(modulus.of(draw), draw % span, "{draw} % {span}");
            }
        }
    }
}

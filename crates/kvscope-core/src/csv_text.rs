//! Numbers as CSV text without the formatter's general path: a
//! simulation's `stats.csv` has tens of thousands of rows of fifteen
//! numbers, and `write!` formats a float with a precision by Grisu, falling
//! back to Dragon's big integers where Grisu cannot decide.

/// Appends `n` in decimal.
pub(crate) fn push_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `x` with `decimals` digits after the point: the same text as
/// `format!("{x:.decimals$}")`, which rounds the exact binary value half to
/// even. Below 2^52 every half (k + 0.5) is a float and the one multiply
/// below rounds correctly, so it never carries the scaled value across a
/// half, only onto one: a value that lands on a half is left to the
/// formatter, as are negative, non-finite and huge ones.
pub(crate) fn push_fixed(out: &mut Vec<u8>, x: f64, decimals: u32) {
    debug_assert!(decimals <= 15, "10^decimals is exact in f64 and scaled values fit in u64");
    let unit = 10u64.pow(decimals);
    // 10^decimals has at most 15 significant digits: exact.
    let y = x * unit as f64;
    if x.is_sign_positive() && y < (1u64 << 52) as f64 {
        let whole = y.floor();
        // Exact below 2^52 (Sterbenz, or `whole` is 0).
        let frac = y - whole;
        if frac != 0.5 {
            let n = whole as u64 + u64::from(frac > 0.5);
            push_uint(out, n / unit);
            if decimals > 0 {
                let mut digits = [b'0'; 15];
                let mut rest = n % unit;
                for d in digits[..decimals as usize].iter_mut().rev() {
                    *d = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
                out.push(b'.');
                out.extend_from_slice(&digits[..decimals as usize]);
            }
            return;
        }
    }
    use std::io::Write;
    write!(out, "{x:.*}", decimals as usize).expect("writing to memory");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    fn fixed(x: f64, decimals: u32) -> String {
        let mut out = Vec::new();
        push_fixed(&mut out, x, decimals);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn fixed_text_is_the_formatters_for_every_kind_of_value() {
        let special = [
            0.0,
            -0.0,
            1.0,
            0.5,
            0.03125,
            0.00005,
            0.99995,
            0.999_95,
            1e-300,
            2.5e-7,
            12.345_675,
            1e10,
            4.5e15,
            1e300,
            -3.25,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
        ];
        let mut rng = SplitMix64::new(21);
        let random = (0..200_000).map(|i| {
            let u = rng.next_f64();
            match i % 5 {
                0 => u,                                   // occupancies
                1 => u * 3000.0,                          // simulated seconds
                2 => (u * 1e6).round() / 1e6,             // values printed before
                3 => (u * 20_000.0).round() / 20_000.0,   // near halves at 4 decimals
                _ => f64::from_bits(rng.next_u64() >> 2), // anything positive
            }
        });
        // The values closest to the rounding rule's edge: the floats nearest
        // to a half at 4 and 6 decimals, and their neighbours.
        let halves = (0..20_000u64).flat_map(|k| {
            let h = [(2 * k + 1) as f64 / 2e4, (2 * k + 1) as f64 / 2e6, (2 * k + 1) as f64 / 2e6 + 1000.0];
            h.into_iter().flat_map(|h| [h.next_down(), h, h.next_up()])
        });
        for x in special.into_iter().chain(random).chain(halves) {
            for decimals in [0, 1, 4, 6] {
                assert_eq!(fixed(x, decimals), format!("{x:.*}", decimals as usize), "{x:e} to {decimals} places");
            }
        }
    }

    #[test]
    fn integers_are_plain_decimal() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 4_294_967_296, u64::MAX] {
            out.clear();
            push_uint(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
}

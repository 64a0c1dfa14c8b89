//! Metadata values of model files and checkpoints, read strictly: a count is decimal digits
//! that fit its type (no sign, fraction, exponent or overflow: `"16.9"` is not 16), a number
//! is finite.

use std::str::FromStr;

/// `text` as a count of type `I`; `None` unless it is decimal digits only and fits `I`.
pub(crate) fn count<I: FromStr>(text: &str) -> Option<I> {
    // `FromStr` of the integers also accepts a leading `+`.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `text` as a finite number; `None` for anything else (`f64`'s `FromStr` also reads `NaN`
/// and `inf`).
pub(crate) fn finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_digits_that_fit_its_type() {
        assert_eq!(count::<usize>("16"), Some(16));
        assert_eq!(count::<u64>("18446744073709551615"), Some(u64::MAX));
        for text in ["16.9", "-1", "+5", "1e3", "", " 7", "18446744073709551616"] {
            assert_eq!(count::<u64>(text), None, "{text:?}");
        }
    }

    #[test]
    fn a_number_is_finite() {
        assert_eq!(finite("0.25"), Some(0.25));
        assert_eq!(finite("-1e-3"), Some(-1e-3));
        for text in ["NaN", "inf", "-inf", "infinity", "x", ""] {
            assert_eq!(finite(text), None, "{text:?}");
        }
    }
}

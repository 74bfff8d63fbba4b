//! A request's `timeout` parameter as the API server reads it: Go's
//! `time.ParseDuration` (`55s`, `1m30s`, `1.5h`, `250ms`), first value only,
//! and only for requests that are not long-running.

use std::time::Duration;

/// Why a `timeout` was refused (a 400, as the API server answers it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid timeout specified in the request URL: {0:?} is not a duration such as 30s or 1m30s"
)]
pub struct TimeoutError(pub String);

const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's `time.ParseDuration`. `Ok(None)` for a duration of zero or less, which
/// the API server reads as "no timeout of the caller's own".
pub fn parse_go_duration(text: &str) -> Result<Option<Duration>, TimeoutError> {
    let invalid = || TimeoutError(text.to_owned());
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(None);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    // Go's limit is i64 nanoseconds (about 292 years), one more below zero.
    let limit = i64::MAX as u128 + u128::from(negative);
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_end = rest
            .find(|character: char| !character.is_ascii_digit())
            .unwrap_or(rest.len());
        let (whole, after) = rest.split_at(whole_end);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => {
                let end = after
                    .find(|character: char| !character.is_ascii_digit())
                    .unwrap_or(after.len());
                after.split_at(end)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_end = after
            .find(|character: char| character == '.' || character.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, scale)| *scale)
            .ok_or_else(invalid)?;
        let mut value: u128 = 0;
        for digit in whole.bytes() {
            value = value * 10 + u128::from(digit - b'0');
            if value > limit {
                return Err(invalid());
            }
        }
        let mut part = value * scale;
        // Digits beyond nanosecond precision cannot change the result.
        let mut denominator: u128 = 1;
        let mut numerator: u128 = 0;
        for digit in fraction.bytes().take(20) {
            numerator = numerator * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        part += numerator * scale / denominator;
        total += part;
        if total > limit {
            return Err(invalid());
        }
        rest = after;
    }
    if negative || total == 0 {
        return Ok(None);
    }
    Ok(Some(Duration::from_nanos(total as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_durations_as_go_does() {
        let seconds = |text: &str| parse_go_duration(text).unwrap().map(|d| d.as_secs_f64());
        assert_eq!(seconds("55s"), Some(55.0));
        assert_eq!(seconds("1m30s"), Some(90.0));
        assert_eq!(seconds("1.5h"), Some(5400.0));
        assert_eq!(seconds("+2m"), Some(120.0));
        assert_eq!(seconds(".5s"), Some(0.5));
        assert_eq!(seconds("5.s"), Some(5.0));
        assert_eq!(seconds("250ms"), Some(0.25));
        assert_eq!(
            seconds("1h1m1s1ms1us1\u{b5}s1\u{3bc}s1ns"),
            Some(3661.001003001)
        );
        // Zero and negative durations mean the server's own default.
        assert_eq!(seconds("0"), None);
        assert_eq!(seconds("0s"), None);
        assert_eq!(seconds("-5s"), None);
        assert_eq!(seconds("-9223372036854775808ns"), None);
    }

    #[test]
    fn refuses_what_go_refuses() {
        for text in [
            "",
            "5",
            "s",
            ".s",
            "-",
            "1d",
            "9223372036854775808ns",
            "5 s",
            "5S",
            "1e3s",
            "0x10s",
            "10000000h",
            "1s.",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} must be refused");
        }
    }
}

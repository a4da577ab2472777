//! Policy durations: `90s`, `5m`, `36h`, `180d`, or `0` for never.

use chrono::Duration;

use super::KeyError;

/// The syntax the CRD schema enforces (at most 9 digits, so no value can overflow).
pub const DURATION_PATTERN: &str = "^(0|[0-9]{1,9}(s|m|h|d))$";

/// Parses a policy duration; `0` (with or without unit) is `Duration::zero()`, meaning never.
pub fn parse_duration(s: &str) -> Result<Duration, KeyError> {
    let invalid = || KeyError::InvalidDuration(s.to_owned());
    if s == "0" {
        return Ok(Duration::zero());
    }
    let (digits, unit_seconds) = match s.as_bytes().last() {
        Some(b's') => (&s[..s.len() - 1], 1),
        Some(b'm') => (&s[..s.len() - 1], 60),
        Some(b'h') => (&s[..s.len() - 1], 60 * 60),
        Some(b'd') => (&s[..s.len() - 1], 24 * 60 * 60),
        _ => return Err(invalid()),
    };
    // why: `u64::from_str` also accepts a leading `+`, which the schema pattern forbids.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let amount: i64 = digits.parse().map_err(|_| invalid())?;
    amount
        .checked_mul(unit_seconds)
        .and_then(Duration::try_seconds)
        .ok_or_else(invalid)
}

/// Parses a bound given as a flag (`--max-staleness 10s`): a duration of at least one second.
pub fn parse_bound(s: &str) -> Result<std::time::Duration, String> {
    let bound = parse_duration(s)
        .map_err(|e| e.to_string())?
        .to_std()
        .map_err(|e| e.to_string())?;
    if bound < std::time::Duration::from_secs(1) {
        return Err(format!("{s:?} is shorter than one second"));
    }
    Ok(bound)
}

/// Formats a duration in the largest unit that divides it exactly (`0` for zero).
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.num_seconds();
    if seconds == 0 {
        return "0".to_owned();
    }
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::minutes(5)));
        assert_eq!(parse_duration("36h"), Ok(Duration::hours(36)));
        assert_eq!(parse_duration("180d"), Ok(Duration::days(180)));
        assert_eq!(parse_duration("007s"), Ok(Duration::seconds(7)));
    }

    #[test]
    fn zero_means_never_with_or_without_unit() {
        for zero in ["0", "0s", "0m", "0h", "0d", "000d"] {
            assert_eq!(parse_duration(zero), Ok(Duration::zero()), "{zero}");
        }
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in [
            "", "s", "5", "10", "-5m", "+5m", "5 m", " 5m", "5m ", "5M", "1.5h", "5w", "1h30m",
            "5ms", "m5", "٣s",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(KeyError::InvalidDuration(bad.to_owned())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn overflowing_durations_are_rejected_not_wrapped() {
        for huge in [
            "99999999999999999999s",
            "9223372036854775807d",
            "106751991167301d",
        ] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
    }

    #[test]
    fn format_picks_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::zero()), "0");
        assert_eq!(format_duration(Duration::seconds(90)), "90s");
        assert_eq!(format_duration(Duration::minutes(5)), "5m");
        assert_eq!(format_duration(Duration::hours(36)), "36h");
        assert_eq!(format_duration(Duration::days(180)), "180d");
    }

    #[test]
    fn format_round_trips_through_parse() {
        for text in ["0", "1s", "61s", "2m", "25h", "7d"] {
            let parsed = parse_duration(text);
            assert_eq!(parsed.map(format_duration).as_deref(), Ok(text));
        }
    }
}

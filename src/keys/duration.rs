//! Policy durations: `90s`, `5m`, `36h`, `180d`, or `0` for never.

use chrono::Duration;

use super::KeyError;

/// Parses a policy duration; `0` (with or without unit) is `Duration::zero()`, meaning never.
pub fn parse_duration(_s: &str) -> Result<Duration, KeyError> {
    todo!()
}

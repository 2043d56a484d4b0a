//! Durations on the command line: "500ms", "5s", "2m", "1h 30m"
//! (humantime syntax).

use std::time::Duration;

/// Parse a human-written duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 5s: {e}"))
}

/// A duration in milliseconds for JSON, rounded to the microsecond (more
/// digits are noise, and `0.31837499999999996` is unreadable).
pub fn json_millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A number of seconds from a JSON document, for people: whole seconds
/// in humantime units ("10m", "1m 30s"); negative or not a number: "0s".
pub fn show_seconds(s: f64) -> String {
    let whole = if s.is_finite() && s > 0.0 {
        s.round() as u64
    } else {
        0
    };
    humantime::format_duration(Duration::from_secs(whole)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_for_people() {
        assert_eq!(show_seconds(600.0), "10m");
        assert_eq!(show_seconds(89.6), "1m 30s");
        assert_eq!(show_seconds(-1.0), "0s");
        assert_eq!(show_seconds(f64::NAN), "0s");
        assert_eq!(json_millis(Duration::from_nanos(318_374_999)), 318.375);
        assert_eq!(json_millis(Duration::from_nanos(1_250_499)), 1.25);
    }
}

//! Durations on the command line: "500ms", "5s", "2m", "1h 30m"
//! (humantime syntax).

use std::time::Duration;

/// Parse a human-written duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration like 500ms or 5s: {e}"))
}

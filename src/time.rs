//! Timestamps: RFC 3339 in UTC, the one format modstate writes.

use std::time::{Duration, SystemTime};

/// The current time as RFC 3339 UTC with microseconds (holder records, artifacts): the same
/// format and precision as every other stored or printed time.
pub fn now_rfc3339() -> String {
    timestamp(SystemTime::now())
}

/// `at` as RFC 3339 in UTC with microseconds: fixed width, so text order is time order.
pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
}

/// Now, or a microsecond after `previous` if the clock has not moved past it, so an update
/// always moves `updated_at` forward.
pub fn later_than(previous: &str) -> String {
    let now = timestamp(SystemTime::now());
    if now.as_str() > previous {
        return now;
    }
    match humantime::parse_rfc3339(previous) {
        Ok(at) => timestamp(at + Duration::from_micros(1)),
        Err(_) => now,
    }
}

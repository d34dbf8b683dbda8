//! The wall clock, in the unit every stored expiry and token lifetime uses (seconds), and in
//! milliseconds for records that order events within a second (the audit log).

/// Current time in Unix seconds (0 if the system clock is before 1970).
pub fn now() -> u64 {
    now_ms() / 1000
}

/// Current time in Unix milliseconds (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

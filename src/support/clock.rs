//! The wall clock, in the unit every stored expiry and token lifetime uses.

/// Current time in Unix seconds (0 if the system clock is before 1970).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

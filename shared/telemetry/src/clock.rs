//! UTC timestamps as RFC 3339 text, the one shape every API and log we write uses (no time crate needed
//! for it): bunyan's log lines, and Snyk's `created_gte` filter.

/// `unix_ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (what bunyan writes).
pub fn rfc3339_millis(unix_ms: u64) -> String {
    format!("{}.{:03}Z", seconds(unix_ms / 1000), unix_ms % 1000)
}

/// `unix_ms`, down to the second, as `YYYY-MM-DDTHH:MM:SSZ`. Texts of this one shape sort as their times.
pub fn rfc3339_secs(unix_ms: u64) -> String {
    format!("{}Z", seconds(unix_ms / 1000))
}

/// Whether `text` has the shape [`rfc3339_secs`] writes (so comparing it as text compares times).
pub fn is_rfc3339_secs(text: &str) -> bool {
    const SHAPE: &[u8; 20] = b"dddd-dd-ddTdd:dd:ddZ";
    text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, want)| match want {
            b'd' => c.is_ascii_digit(),
            other => c == *other,
        })
}

/// Now, in Unix milliseconds.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn seconds(unix_secs: u64) -> String {
    let (days, rest) = (unix_secs / 86_400, unix_secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(20_415), (2025, 11, 23));
        // 2025-11-23T12:34:56.789Z
        let ms = 20_415 * 86_400_000 + 45_296_789;
        assert_eq!(rfc3339_millis(ms), "2025-11-23T12:34:56.789Z");
        assert_eq!(rfc3339_secs(ms), "2025-11-23T12:34:56Z");
        assert!(is_rfc3339_secs(&rfc3339_secs(ms)));
        assert!(!is_rfc3339_secs("2025-11-23T12:34:56.789Z"));
        assert!(!is_rfc3339_secs("2025-11-23 12:34:56Z"));
        assert!(rfc3339_secs(ms) < rfc3339_secs(ms + 1000));
    }
}

//! Wall-clock time as the wire format writes it: unix seconds as a float
//! (`updated_timestamp`) and ISO 8601 strings (`timestamp` in error details). Small
//! enough not to warrant a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the unix epoch, with sub-second precision.
pub fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Splits unix seconds into a UTC civil date and time.
fn civil(unix: f64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let unix = if unix.is_finite() { unix } else { 0.0 };
    let secs = unix.floor() as i64;
    let micros = ((unix - unix.floor()) * 1e6).round().min(999_999.0) as u32;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400) as u32;
    // Howard Hinnant's civil_from_days: proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        micros,
    )
}

/// `2024-01-15T10:30:45.123456+00:00`: what Python's `datetime.isoformat()` writes for
/// an aware UTC time, so the old tool's readers parse it too.
pub fn iso8601(unix: f64) -> String {
    let (y, mo, d, h, mi, s, us) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{us:06}+00:00")
}

/// `2024-01-15 10:30:45` (UTC): the debug guide's `timestamp_human`.
pub fn human(unix: f64) -> String {
    let (y, mo, d, h, mi, s, _) = civil(unix);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000000+00:00");
        // date -u -d @1705314645 → 2024-01-15 10:30:45
        assert_eq!(
            iso8601(1_705_314_645.123_456),
            "2024-01-15T10:30:45.123456+00:00"
        );
        assert_eq!(human(1_705_314_645.9), "2024-01-15 10:30:45");
        // a leap day
        assert_eq!(human(951_782_400.0), "2000-02-29 00:00:00");
        assert!(now_unix() > 1_700_000_000.0);
    }
}

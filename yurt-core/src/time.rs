//! Kubernetes timestamps: `metav1.Time` (`2006-01-02T15:04:05Z`) and `metav1.MicroTime`
//! (`2006-01-02T15:04:05.000000Z`), always UTC, formatted without a date-time dependency.
//!
//! The hub writes MicroTime into the node Lease's `renewTime`; the test apiserver stamps
//! `creationTimestamp` and friends. Both must match what kube-apiserver writes byte for byte,
//! because clients compare and parse them.

use std::time::{SystemTime, UNIX_EPOCH};

/// `metav1.Time` for `t` (seconds precision; times before 1970 clamp to the epoch).
pub fn format_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format_unix_seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

/// `metav1.MicroTime` for `t` (microsecond precision; times before 1970 clamp to the epoch).
pub fn format_micro_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (date, (h, m, s)) = split(secs);
    format!("{date}T{h:02}:{m:02}:{s:02}.{:06}Z", d.subsec_micros())
}

/// `metav1.Time` for `secs` seconds since the Unix epoch (negative: before 1970).
pub fn format_unix_seconds(secs: i64) -> String {
    let (date, (h, m, s)) = split(secs);
    format!("{date}T{h:02}:{m:02}:{s:02}Z")
}

/// `YYYY-MM-DD` and (hour, minute, second) of a Unix time.
fn split(secs: i64) -> (String, (i64, i64, i64)) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    (
        format!("{y:04}-{mo:02}-{d:02}"),
        (rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_like_kube_apiserver() {
        assert_eq!(format_unix_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_unix_seconds(1_795_313_649), "2026-11-22T02:14:09Z");
        assert_eq!(format_unix_seconds(-1), "1969-12-31T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_795_313_649_252_001);
        assert_eq!(format_time(t), "2026-11-22T02:14:09Z");
        assert_eq!(format_micro_time(t), "2026-11-22T02:14:09.252001Z");
        assert_eq!(
            format_micro_time(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
    }
}

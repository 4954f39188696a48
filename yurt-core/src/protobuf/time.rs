//! `metav1.Time` and `metav1.MicroTime` between their protobuf form (`seconds`, `nanos`) and their
//! JSON form (RFC 3339 in UTC: `Z` with whole seconds for Time, six fractional digits for
//! MicroTime), with the apiserver's edge cases: an empty message and Go's zero time are JSON
//! `null`, and years outside 0000..=9999 cannot be written as JSON at all.

/// Seconds from 0000-01-01 to the Unix epoch subtracted, i.e. the Unix time of 0000-01-01T00:00:00Z.
const MIN_SECONDS: i64 = -62_167_219_200;
/// The Unix time of 9999-12-31T23:59:59Z.
const MAX_SECONDS: i64 = 253_402_300_799;
/// The Unix time of Go's zero `time.Time` (0001-01-01T00:00:00Z), which marshals as `null`.
const GO_ZERO_SECONDS: i64 = -62_135_596_800;

/// A protobuf timestamp normalised as Go's `time.Unix` does (nanos carried into seconds).
/// `None` when the message has no fields (Go's zero time) or is Go's zero time.
pub(super) fn normalise(
    seconds: Option<i64>,
    nanos: Option<i32>,
) -> Result<Option<(i64, u32)>, String> {
    if seconds.is_none() && nanos.is_none() {
        return Ok(None);
    }
    let nanos = i64::from(nanos.unwrap_or(0));
    let secs = seconds
        .unwrap_or(0)
        .checked_add(nanos.div_euclid(1_000_000_000))
        .ok_or("timestamp out of range")?;
    let nanos = u32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    if secs == GO_ZERO_SECONDS && nanos == 0 {
        return Ok(None);
    }
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&secs) {
        return Err(format!("year outside of range [0,9999] (seconds {secs})"));
    }
    Ok(Some((secs, nanos)))
}

/// `metav1.Time` JSON: whole seconds, `Z`.
pub(super) fn format_time(secs: i64) -> String {
    crate::time::format_unix_seconds(secs)
}

/// `metav1.MicroTime` JSON: six fractional digits, `Z`.
pub(super) fn format_micro(secs: i64, nanos: u32) -> String {
    let whole = crate::time::format_unix_seconds(secs);
    let stem = whole.strip_suffix('Z').unwrap_or(&whole);
    format!("{stem}.{:06}Z", nanos / 1000)
}

/// Parses an RFC 3339 date-time as Go's `time.Parse(time.RFC3339, ..)` does (fractional seconds
/// of 1 to 9 digits optional; `Z` or a `±hh:mm` offset) into UTC (seconds, nanos).
pub(super) fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 {
            return None;
        }
        let value: u32 = frac[..digits].parse().ok()?;
        nanos = value * 10u32.pow(u32::try_from(9 - digits).ok()?);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || ob[3] != b':' {
                return None;
            }
            let sign = match ob[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let two = |p: &str| -> Option<i64> {
                if p.len() == 2 && p.bytes().all(|c| c.is_ascii_digit()) {
                    p.parse().ok()
                } else {
                    None
                }
            };
            let (oh, om) = (two(&rest[1..3])?, two(&rest[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    Some((secs, nanos))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_like_go() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339("2026-11-22T02:14:09.252001Z"),
            Some((1_795_313_649, 252_001_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T03:14:09+01:00"),
            Some((1_795_313_649, 0))
        );
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00Z"),
            Some((MIN_SECONDS, 0))
        );
        assert_eq!(
            parse_rfc3339("9999-12-31T23:59:59Z"),
            Some((MAX_SECONDS, 0))
        );
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            Some((GO_ZERO_SECONDS, 0))
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-11-22 02:14:09Z",
            "2026-11-22T02:14:09",
            "2026-11-22T02:14:09.Z",
            "+026-11-22T02:14:09Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
        assert_eq!(
            format_micro(1_795_313_649, 252_001_999),
            "2026-11-22T02:14:09.252001Z"
        );
        assert_eq!(format_time(MIN_SECONDS), "0000-01-01T00:00:00Z");
        assert_eq!(normalise(Some(10), Some(-1)), Ok(Some((9, 999_999_999))));
        assert_eq!(normalise(None, None), Ok(None));
        assert_eq!(normalise(Some(GO_ZERO_SECONDS), Some(0)), Ok(None));
        assert!(normalise(Some(MAX_SECONDS + 1), None).is_err());
    }
}

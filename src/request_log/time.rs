//! UTC calendar arithmetic for the log's timestamps (Unix milliseconds): RFC 3339 strings,
//! day and hour buckets, and the `from` / `to` parameters.

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2025-01-02T03:04:05.678Z`.
pub(super) fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms.rem_euclid(1000)
    )
}

/// `2025-01-02`.
pub(super) fn day(ms: i64) -> String {
    let (y, mo, d) = civil(ms.div_euclid(86_400_000));
    format!("{y:04}-{mo:02}-{d:02}")
}

/// `2025-01-02T03:00Z`.
pub(super) fn hour(ms: i64) -> String {
    let h = ms.div_euclid(3_600_000);
    let (y, mo, d) = civil(h.div_euclid(24));
    format!("{y:04}-{mo:02}-{d:02}T{:02}:00Z", h.rem_euclid(24))
}

/// A `from` / `to` parameter: Unix seconds, `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM[:SS]Z` (UTC),
/// as Unix milliseconds.
pub(super) fn parse(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return secs.checked_mul(1000);
    }
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut secs = days_from_civil(y, m as u32, d as u32) * 86_400;
    let rest = &s[10..];
    if !rest.is_empty() {
        let rest = rest.strip_prefix('T')?.strip_suffix('Z')?;
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return None;
        }
        let mut unit = 3600;
        for p in parts {
            if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            secs += p.parse::<i64>().ok()? * unit;
            unit /= 60;
        }
    }
    Some(secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let ms = parse("2024-02-29T13:05:09Z").unwrap();
        assert_eq!(rfc3339(ms + 7), "2024-02-29T13:05:09.007Z");
        assert_eq!(day(ms), "2024-02-29");
        assert_eq!(hour(ms), "2024-02-29T13:00Z");
        assert_eq!(parse("1970-01-02"), Some(86_400_000));
        assert_eq!(parse("86400"), Some(86_400_000));
        for bad in [
            "",
            "2024-13-01",
            "2024-01-01T",
            "2024-01-01T1:00Z",
            "x",
            "2024-01-01T10:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

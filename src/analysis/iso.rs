//! ISO-8601 date / date-time recognition without regexes, producing nanoseconds since the epoch.
//!
//! Accepted: `YYYY-MM-DD`, optionally followed by `T` or space and `HH:MM[:SS[.f…]]`,
//! optionally followed by `Z` or `±HH[:MM]`. Values must be real calendar dates and fit
//! pandas' `datetime64[ns]` range (1677-09-21 … 2262-04-11).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IsoDate {
    pub ns: i64,
    pub has_time: bool,
    pub has_tz: bool,
}

#[inline]
fn digits(b: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub(super) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = (if y >= 0 { y } else { y - 399 }) / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Inverse of [`days_from_civil`].
pub(super) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = (if z >= 0 { z } else { z - 146096 }) / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an ISO-8601 date or date-time; `None` for anything else.
pub(super) fn parse(b: &[u8]) -> Option<IsoDate> {
    // Fast reject: every accepted value has `DDDD-DD-DD` at the front.
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])? as i64;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if m == 0 || m > 12 || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let mut secs = days_from_civil(y, m, d) * 86_400;
    let mut frac_ns: i64 = 0;
    let mut has_time = false;
    let mut has_tz = false;
    let mut rest = &b[10..];
    if !rest.is_empty() {
        if rest[0] != b'T' && rest[0] != b' ' {
            return None;
        }
        rest = &rest[1..];
        if rest.len() < 5 || rest[2] != b':' {
            return None;
        }
        let hh = digits(&rest[0..2])?;
        let mm = digits(&rest[3..5])?;
        if hh > 23 || mm > 59 {
            return None;
        }
        secs += (hh * 3600 + mm * 60) as i64;
        has_time = true;
        rest = &rest[5..];
        if rest.first() == Some(&b':') {
            if rest.len() < 3 {
                return None;
            }
            let ss = digits(&rest[1..3])?;
            if ss > 59 {
                return None;
            }
            secs += ss as i64;
            rest = &rest[3..];
            if matches!(rest.first(), Some(b'.') | Some(b',')) {
                let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                if n == 0 {
                    return None;
                }
                // Nanosecond resolution: digits past the ninth are dropped, as pandas does.
                let kept = n.min(9);
                let mut f = digits(&rest[1..1 + kept])? as i64;
                for _ in kept..9 {
                    f *= 10;
                }
                frac_ns = f;
                rest = &rest[1 + n..];
            }
        }
        if !rest.is_empty() {
            let offset = parse_tz(rest)?;
            secs -= offset;
            has_tz = true;
        }
    }
    let ns = (secs as i128) * 1_000_000_000 + frac_ns as i128;
    let ns = i64::try_from(ns).ok()?;
    Some(IsoDate { ns, has_time, has_tz })
}

/// `Z`, `±HH`, `±HHMM` or `±HH:MM` → offset in seconds.
fn parse_tz(b: &[u8]) -> Option<i64> {
    if b == b"Z" {
        return Some(0);
    }
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let b = &b[1..];
    let (h, m) = match b.len() {
        2 => (digits(b)?, 0),
        4 => (digits(&b[0..2])?, digits(&b[2..4])?),
        5 if b[2] == b':' => (digits(&b[0..2])?, digits(&b[3..5])?),
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h as i64 * 3600 + m as i64 * 60))
}

/// `YYYY-MM-DD` when `date_only`, else `YYYY-MM-DD HH:MM:SS[.fffffffff]` (pandas' Timestamp form).
pub(super) fn format(ns: i64, date_only: bool) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if date_only {
        return format!("{y:04}-{m:02}-{d:02}");
    }
    let (hh, mm, ss) = (sod / 3600, (sod / 60) % 60, sod % 60);
    if frac == 0 {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
    } else {
        let f = format!("{frac:09}");
        let f = f.trim_end_matches('0');
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}.{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_iso_forms() {
        let d = parse(b"2024-02-29").expect("leap day");
        assert!(!d.has_time);
        // 2024-01-01 is day 19723 (1_704_067_200 s); plus 31 days of January and 28 of February.
        assert_eq!(d.ns, 19_782 * 86_400 * 1_000_000_000);
        assert_eq!(parse(b"1969-12-31T23:59:59.999999999Z").map(|d| d.ns), Some(-1));
        assert_eq!(
            parse(b"2000-03-01 12:30:15-02:30").map(|d| d.ns),
            // 2000-03-01 is day 11_017; 12:30:15 at -02:30 is 15:00:15 UTC.
            Some((11_017 * 86_400 + 15 * 3600 + 15) * 1_000_000_000)
        );
        assert_eq!(parse(b"1970-01-01T00:00:01").map(|d| d.ns), Some(1_000_000_000));
        assert_eq!(parse(b"1970-01-01 00:00:00.5").map(|d| d.ns), Some(500_000_000));
        assert_eq!(parse(b"1970-01-01 00:00").map(|d| d.ns), Some(0));
        assert_eq!(
            parse(b"1970-01-01T01:00:00+01:00").map(|d| (d.ns, d.has_tz)),
            Some((0, true))
        );
        assert_eq!(parse(b"1970-01-01T00:00:00Z").map(|d| d.ns), Some(0));
    }

    #[test]
    fn rejects_non_dates() {
        for s in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-1-01",
            "2024/01/01",
            "01-02-2024",
            "2024-01-01X",
            "2024-01-01 25:00",
            "2024-01-01 10:61",
            "2024-01-01T",
            "20240101",
            "1500-01-01",
            "2300-01-01",
            "2024-01-01 10:00:00.",
            "abcd-ef-gh",
        ] {
            assert_eq!(parse(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn format_round_trips() {
        let d = parse(b"2021-03-04 05:06:07.25").expect("valid");
        assert_eq!(format(d.ns, false), "2021-03-04 05:06:07.25");
        assert_eq!(format(d.ns, true), "2021-03-04");
        let d = parse(b"1677-09-22").expect("in range");
        assert_eq!(format(d.ns, true), "1677-09-22");
    }

    /// chrono as the independent oracle: every day of the supported range (and past it)
    /// converts both ways as chrono's proleptic Gregorian calendar says.
    #[test]
    fn day_numbers_agree_with_chrono() {
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for days in -120_000i64..=120_000 {
            let date = epoch + chrono::Duration::days(days);
            let (y, m, d) = (
                chrono::Datelike::year(&date) as i64,
                chrono::Datelike::month(&date),
                chrono::Datelike::day(&date),
            );
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            assert_eq!(days_from_civil(y, m, d), days, "{date}");
        }
    }

    /// Date-times across the range, with and without fractions and offsets, parse to the
    /// nanoseconds chrono computes and format as chrono prints them.
    #[test]
    fn date_times_agree_with_chrono() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move |n: u64| {
            seed = super::super::sketch::mix(seed.wrapping_add(1));
            seed % n
        };
        let first = chrono::NaiveDate::from_ymd_opt(1678, 1, 1).unwrap();
        for _ in 0..20_000 {
            let date = first + chrono::Duration::days(next(583 * 365) as i64);
            let (h, mi, s, nanos) = (next(24), next(60), next(60), next(1_000_000_000));
            let offset_minutes = next(24 * 60) as i64 - 12 * 60;
            let with_frac = next(2) == 1;
            let frac = if with_frac {
                format!(".{nanos:09}")
            } else {
                String::new()
            };
            let tz = if offset_minutes == 0 {
                "Z".to_string()
            } else {
                let sign = if offset_minutes < 0 { '-' } else { '+' };
                format!(
                    "{sign}{:02}:{:02}",
                    offset_minutes.abs() / 60,
                    offset_minutes.abs() % 60
                )
            };
            let text = format!("{date}T{h:02}:{mi:02}:{s:02}{frac}{tz}");
            let want = chrono::DateTime::parse_from_rfc3339(&text)
                .expect("chrono parses it")
                .timestamp_nanos_opt()
                .expect("in range");
            let got = parse(text.as_bytes()).unwrap_or_else(|| panic!("{text} refused"));
            assert_eq!(got.ns, want, "{text}");
            assert!(got.has_time && got.has_tz);
            let utc = chrono::DateTime::from_timestamp_nanos(want).naive_utc();
            let printed = if with_frac && nanos != 0 {
                let f = format!("{nanos:09}");
                format!("{}.{}", utc.format("%Y-%m-%d %H:%M:%S"), f.trim_end_matches('0'))
            } else {
                utc.format("%Y-%m-%d %H:%M:%S").to_string()
            };
            assert_eq!(format(want, false), printed, "{text}");
        }
    }
}

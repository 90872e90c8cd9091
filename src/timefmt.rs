//! RFC 3339 timestamps and UTC calendar arithmetic, without `chrono` (size:
//! every wasm carried its parser, formatter and their tables for the three
//! things used here). Civil-date conversion after Howard Hinnant's
//! `days_from_civil` / `civil_from_days`, exact for every year.

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// ms since the epoch → RFC 3339 with milliseconds, UTC (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (y, mo, d) = civil_from_days(days);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    let year = if (0..=9999).contains(&y) { format!("{y:04}") } else { format!("{y:+05}") };
    format!("{year}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`) → nanoseconds since the
/// epoch. A leap second (`:60`) counts as the next second's start.
pub fn parse_rfc3339_ns(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    let num = |at: usize, len: usize| -> Option<u32> {
        let digits = b.get(at..at + len)?;
        digits.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if seps.iter().any(|&(at, c)| b.get(at) != Some(&c)) || !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let y = i64::from(y);
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut at = 19;
    let mut nanos: i128 = 0;
    if b.get(at) == Some(&b'.') {
        let digits = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for i in 0..9 {
            let digit = if i < digits { i128::from(b[at + 1 + i] - b'0') } else { 0 };
            nanos = nanos * 10 + digit;
        }
        at += 1 + digits;
    }
    let offset_min: i64 = match b.get(at) {
        Some(b'Z' | b'z') if at + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if at + 6 == b.len() && b[at + 3] == b':' => {
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let m = i64::from(oh * 60 + om);
            if sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s) - offset_min * 60;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// RFC 3339 → ms since the epoch (sub-millisecond digits dropped, toward the past).
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    i64::try_from(parse_rfc3339_ns(text)?.div_euclid(1_000_000)).ok()
}

/// Start of the calendar month (UTC) containing `now_ms`.
pub fn month_start_ms(now_ms: i64) -> i64 {
    let (y, m, _) = civil_from_days(now_ms.div_euclid(MS_PER_DAY));
    days_from_civil(y, m, 1) * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_767_323_045_678), "2026-01-02T03:04:05.678Z");
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_rfc3339_ms("2026-01-02T03:04:05.678Z"), Some(1_767_323_045_678));
        assert_eq!(parse_rfc3339_ms("2026-01-02T05:04:05.6789+02:00"), Some(1_767_323_045_678));
        assert_eq!(parse_rfc3339_ms("2024-02-29T00:00:00Z"), Some(1_709_164_800_000));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2026-01-02T03:04:05",
            "2026-01-02T24:00:00Z",
            "2026-01-02T03:04:05.Z",
            "2026-1-02T03:04:05Z",
            "2026-01-02T03:04:05+0200",
            "x",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        assert_eq!(month_start_ms(1_767_323_045_678), 1_767_225_600_000);
    }

    proptest! {
        // Years 0001..9999, the whole range RFC 3339 writes.
        #[test]
        fn format_then_parse_round_trips(ms in -62_135_596_800_000i64..253_402_300_799_999) {
            let text = rfc3339_ms(ms);
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(ms));
            let start = month_start_ms(ms);
            prop_assert!(start <= ms && rfc3339_ms(start).ends_with("-01T00:00:00.000Z"));
            prop_assert_eq!(&rfc3339_ms(start)[..7], &text[..7]);
        }
    }
}

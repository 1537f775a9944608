//! Civil (UTC) dates from Unix time, without a date library.

/// `(year, month, day, hour, minute, second)` in UTC for Unix seconds `secs`
/// (proleptic Gregorian, Howard Hinnant's civil-from-days).
///
/// ```
/// assert_eq!(rpcc_core::time::civil_utc(0), (1970, 1, 1, 0, 0, 0));
/// assert_eq!(rpcc_core::time::civil_utc(1_795_348_800), (2026, 11, 22, 12, 0, 0));
/// ```
pub fn civil_utc(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60)
}

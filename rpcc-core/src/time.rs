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

/// Unix seconds of a UTC date and time (the inverse of [`civil_utc`], Howard Hinnant's
/// days-from-civil); `None` for an impossible date or time.
///
/// ```
/// assert_eq!(rpcc_core::time::unix_utc(2026, 11, 22, 12, 0, 0), Some(1_795_348_800));
/// assert_eq!(rpcc_core::time::unix_utc(2026, 2, 30, 0, 0, 0), None);
/// ```
pub fn unix_utc(year: i64, month: i64, day: i64, hour: i64, minute: i64, second: i64) -> Option<i64> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let days_in_month = *month_days.get(usize::try_from(month.checked_sub(1)?).ok()?)?;
    if !(1..=days_in_month).contains(&day) || !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    if !(0..60).contains(&second) {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

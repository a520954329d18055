//! ISO-8601 timestamps as ASL accepts them (Wait and Timestamp* comparisons).
//!
//! AWS parses with Java's `ISO_OFFSET_DATE_TIME` ("ISO-8601 extended offset date-time
//! format" in its error messages): `YYYY-MM-DDTHH:MM[:SS[.fraction]]` followed by `Z` or
//! `±HH[:MM[:SS]]`, case-insensitive, with strict ranges (checked against the JDK). Hand-written because chrono's RFC 3339 parser differs
//! (it accepts a space for `T` and requires seconds), and the corpus pins down both:
//! `2016-12-05 21:29:29Z`, `2016-12-05T21:29:29` (no zone), month 13 and hour 25 are
//! rejected; nine fraction digits are accepted.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};

fn digits(bytes: &[u8], at: usize, n: usize) -> Option<u32> {
    let slice = bytes.get(at..at + n)?;
    slice.iter().try_fold(0u32, |acc, b| b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0')))
}

/// The timestamp with its offset, or `None` if ASL would reject the text.
pub fn parse(text: &str) -> Option<DateTime<FixedOffset>> {
    let b = text.as_bytes();
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    if !matches!(b.get(10), Some(b'T' | b't')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = digits(b, 14, 2)?;
    let mut pos = 16;
    let mut second = 0;
    let mut nano = 0;
    if b.get(pos) == Some(&b':') {
        second = digits(b, pos + 1, 2)?;
        pos += 3;
        if b.get(pos) == Some(&b'.') {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                pos += 1;
            }
            let len = pos - start;
            if len > 9 {
                return None;
            }
            nano = digits(b, start, len).unwrap_or(0) * 10u32.pow(u32::try_from(9 - len).ok()?);
        }
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nano)?;
    let offset_seconds = match b.get(pos)? {
        b'Z' | b'z' if pos + 1 == b.len() => 0,
        &sign @ (b'+' | b'-') => {
            // `+HH`, `+HH:MM` or `+HH:MM:SS`, as the JDK's offset parser takes them.
            let oh = digits(b, pos + 1, 2)?;
            let (mut om, mut os) = (0, 0);
            let mut end = pos + 3;
            if b.get(end) == Some(&b':') {
                om = digits(b, end + 1, 2)?;
                end += 3;
                if b.get(end) == Some(&b':') {
                    os = digits(b, end + 1, 2)?;
                    end += 3;
                }
            }
            if end != b.len() || oh > 18 || om > 59 || os > 59 {
                return None;
            }
            let total = i32::try_from(oh * 3600 + om * 60 + os).ok()?;
            if total > 18 * 3600 {
                return None;
            }
            if sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let offset = FixedOffset::east_opt(offset_seconds)?;
    date.and_time(time).and_local_timezone(offset).single()
}

/// Milliseconds since the Unix epoch, or `None` if ASL would reject the text.
pub fn parse_millis(text: &str) -> Option<i64> {
    parse(text).map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_offset_date_times() {
        assert_eq!(parse_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_millis("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_millis("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_millis("1970-01-01t00:01z"), Some(60_000));
        // corpus wait_timestamp.NANOSECONDS
        assert!(parse_millis("2016-03-05T21:29:29.243167252Z").is_some());
        assert!(parse_millis("2016-03-14T01:59:00Z").is_some());
        assert!(parse_millis("2012-10-09T19:00:55+01:00").is_some());
        assert!(parse_millis("2024-02-29T00:00:00-05:30").is_some());
        // Values from java.time.OffsetDateTime.parse(text, ISO_OFFSET_DATE_TIME).
        assert_eq!(parse_millis("2016-03-05T21:29:29.243167252Z"), Some(1_457_213_369_243));
        assert_eq!(parse_millis("2016-12-05T21:29:29+01"), Some(1_480_969_769_000));
        assert_eq!(parse_millis("2016-12-05T21:29:29+01:00:30"), Some(1_480_969_739_000));
        assert_eq!(parse_millis("2016-12-05T21:29:29.Z"), Some(1_480_973_369_000));
        assert_eq!(parse_millis("2016-12-05T21:29Z"), Some(1_480_973_340_000));
        assert_eq!(parse_millis("2016-12-05T21:29:29+18:00"), Some(1_480_908_569_000));
        assert_eq!(parse_millis("2016-12-05T21:29:29-00:00"), Some(1_480_973_369_000));
        assert_eq!(parse_millis("0000-01-01T00:00:00Z"), Some(-62_167_219_200_000));
    }

    #[test]
    fn rejects_what_aws_rejects() {
        for bad in [
            "2016-12-05 21:29:29Z",            // corpus NO_T
            "2016-12-05T21:29:29",             // corpus NO_Z
            "2016-13-05T21:29:29Z",            // corpus INVALID_DATE
            "2016-12-05T25:29:29Z",            // corpus INVALID_TIME
            "2023-02-24",                      // choice corpus: a date is not a timestamp
            "2023-02-24 12:15:56.832957",      // choice corpus
            "2023-02-29T00:00:00Z",            // not a leap year
            "2016-12-05T21:29:60Z",            // strict seconds
            "2016-12-05T21:29:29.1234567890Z", // ten fraction digits
            "2016-12-05T21:29:29+0100",
            "2016-12-05T24:00:00Z",
            "2016-12-05T21:29:29+19:00",
            "2016-12-05T21:29:29+1:00",
            "2016-1-05T21:29:29Z",
            "2016-12-05T21:29:29,5Z",
            "2016-12-05T21:29:29 Z",
            "+2016-12-05T21:29:29Z",
            "2016-12-05T21:29:29Zjunk",
            "",
        ] {
            assert_eq!(parse_millis(bad), None, "{bad}");
        }
    }
}

//! Times as the transcript and every record write them: RFC 3339, UTC, milliseconds.
//!
//! A leaf module: the spec, the transcript and the verifier all format times here.

/// Current time as RFC 3339 UTC with millisecond precision, e.g. `2026-11-23T19:04:08.123Z`.
pub fn now() -> String {
    format(time::OffsetDateTime::now_utc())
}

/// Formats a time in UTC as the transcript writes it.
pub fn format(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses what [`format()`] writes (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
pub fn parse(s: &str) -> Option<time::OffsetDateTime> {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    if s.len() != 24 {
        return None;
    }
    time::PrimitiveDateTime::parse(s, &fmt)
        .ok()
        .map(time::PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_and_parses_milliseconds_in_utc() {
        let t = time::macros::datetime!(2026-11-23 19:04:08.123 +02:00);
        assert_eq!(super::format(t), "2026-11-23T17:04:08.123Z");
        assert_eq!(super::parse("2026-11-23T17:04:08.123Z"), Some(t));
        assert_eq!(super::parse("2026-11-23T17:04:08Z"), None);
    }
}

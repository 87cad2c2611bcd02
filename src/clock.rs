//! The one place byok reads "now" for decisions: whether a ceremony file's `valid_to` is still
//! in the future when it is loaded (`check`, `run`, `policy`). `BYOK_NOW` (RFC 3339, UTC)
//! replaces the system clock there, so that expiries can be tested and rehearsed without
//! waiting for them.
//!
//! Never used for transcript record times: those stay the real time, so a transcript always
//! says when things really happened (docs/runbook.md).

use time::OffsetDateTime;

/// The variable that sets the decision clock.
pub const BYOK_NOW: &str = "BYOK_NOW";

/// `BYOK_NOW` was set but is not an RFC 3339 UTC time.
#[derive(Debug, thiserror::Error)]
#[error(
    "{BYOK_NOW}={value:?} is not an RFC 3339 UTC time; set it like 2030-01-31T12:00:00Z, or unset it to use the system clock"
)]
pub struct ClockError {
    pub value: String,
}

/// The time decisions are made at: `BYOK_NOW` when set, else the system clock.
pub fn now() -> Result<OffsetDateTime, ClockError> {
    match std::env::var(BYOK_NOW) {
        Ok(value) => parse(&value).ok_or(ClockError { value }),
        Err(_) => Ok(OffsetDateTime::now_utc()),
    }
}

/// Whether `BYOK_NOW` is set (the run says so: its decisions use a shifted clock).
pub fn is_shifted() -> bool {
    std::env::var_os(BYOK_NOW).is_some()
}

fn parse(value: &str) -> Option<OffsetDateTime> {
    let t = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()?;
    (t.offset().is_utc() && value.ends_with('Z')).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn only_utc_rfc3339_is_taken() {
        assert_eq!(
            parse("2030-01-31T12:00:00Z").map(|t| t.unix_timestamp()),
            Some(1_896_091_200)
        );
        assert_eq!(parse("2030-01-31T12:00:00+01:00"), None);
        assert_eq!(parse("2030-01-31"), None);
        assert_eq!(parse("yesterday"), None);
    }
}

//! MDE timestamps: UTC, `Z`, up to 7 fractional digits with trailing zeros dropped.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Ticks of 100 ns per second: MDE (.NET) resolution, and the unit the stores keep.
const TICKS_PER_SECOND: i64 = 10_000_000;

/// A point in time at MDE's 100-nanosecond resolution, counted from the Unix epoch.
///
/// Kept as an integer so that stores can index, compare and subtract it cheaply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_ticks(ticks: i64) -> Self {
        Timestamp(ticks)
    }

    pub const fn ticks(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let ticks =
            at.timestamp() * TICKS_PER_SECOND + i64::from(at.timestamp_subsec_nanos() / 100);
        Timestamp(ticks)
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        let secs = self.0.div_euclid(TICKS_PER_SECOND);
        let nanos = (self.0.rem_euclid(TICKS_PER_SECOND) * 100) as u32;
        Utc.timestamp_opt(secs, nanos)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// Whole seconds since the Unix epoch, as JWT times are.
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(TICKS_PER_SECOND)
    }

    pub fn minus_days(self, days: u32) -> Self {
        Timestamp(self.0 - i64::from(days) * 86_400 * TICKS_PER_SECOND)
    }

    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0 + seconds * TICKS_PER_SECOND)
    }

    pub fn plus_millis(self, millis: i64) -> Self {
        Timestamp(
            self.0
                .saturating_add(millis.saturating_mul(TICKS_PER_SECOND / 1000)),
        )
    }

    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| Self::from_datetime(at.with_timezone(&Utc)))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.to_datetime();
        let base = at.to_rfc3339_opts(SecondsFormat::Secs, true);
        let base = base.trim_end_matches('Z');
        let fraction = self.0.rem_euclid(TICKS_PER_SECOND);
        if fraction == 0 {
            write!(f, "{base}Z")
        } else {
            let digits = format!("{fraction:07}");
            write!(f, "{base}.{}Z", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid timestamp '{text}'")))
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                utoipa::openapi::KnownFormat::DateTime,
            )))
            .examples(["2023-05-04T12:47:48.3622932Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_mde() {
        let t = Timestamp::parse("2023-05-04T12:47:48.3622932Z").unwrap();
        assert_eq!(t.to_string(), "2023-05-04T12:47:48.3622932Z");
        let t = Timestamp::parse("2021-01-25T07:27:36.052313Z").unwrap();
        assert_eq!(t.to_string(), "2021-01-25T07:27:36.052313Z");
        let t = Timestamp::parse("2021-01-25T07:27:36.100Z").unwrap();
        assert_eq!(t.to_string(), "2021-01-25T07:27:36.1Z");
        let t = Timestamp::parse("2021-01-25T09:27:36+02:00").unwrap();
        assert_eq!(t.to_string(), "2021-01-25T07:27:36Z");
    }

    #[test]
    fn round_trips_through_ticks_and_json() {
        let t = Timestamp::parse("1999-12-31T23:59:59.9999999Z").unwrap();
        assert_eq!(Timestamp::from_ticks(t.ticks()), t);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"1999-12-31T23:59:59.9999999Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }
}

//! Conversions between chrono timestamps and protobuf `Timestamp`s.

use chrono::{DateTime, TimeZone, Utc};
use prost_types::Timestamp;

pub fn to_proto(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// `None` when the timestamp is outside chrono's range or its nanos are invalid.
pub fn from_proto(t: &Timestamp) -> Option<DateTime<Utc>> {
    let nanos = u32::try_from(t.nanos).ok()?;
    Utc.timestamp_opt(t.seconds, nanos).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_nanoseconds() {
        let now = Utc::now();
        assert_eq!(from_proto(&to_proto(now)), Some(now));
    }

    #[test]
    fn negative_nanos_are_rejected() {
        assert_eq!(
            from_proto(&Timestamp {
                seconds: 1,
                nanos: -1
            }),
            None
        );
    }
}

//! Conversion from `SystemTime` to the protobuf `Timestamp` containerd expects.

use std::time::{SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

/// A protobuf timestamp for `t`; times before the epoch (a broken clock) become the epoch.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keeps_seconds_and_nanos() {
        let ts = timestamp(UNIX_EPOCH + Duration::new(1_700_000_000, 42));
        assert_eq!(ts.seconds, 1_700_000_000);
        assert_eq!(ts.nanos, 42);
    }
}

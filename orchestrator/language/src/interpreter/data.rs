//! Small data helpers of the interpreter: lenient numbers read from data, time formatting,
//! compact JSON for messages, and payload size checks that avoid serializing when they can.

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::PAYLOAD_LIMIT_BYTES;

/// An integer, or a string holding one: AWS accepts `"1"` where a count is read from data.
pub(super) fn as_integer(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A number, or a string holding one.
pub(super) fn as_float(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// ISO-8601 with milliseconds, as `$$.Execution.StartTime` shows it.
pub(super) fn format_time(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)).unwrap_or_default()
}

pub(super) fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A value as AWS quotes it inside messages: strings bare, everything else as JSON.
pub(super) fn display_plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => compact(other),
    }
}

/// Whether a value's compact JSON text is over the payload limit.
pub(super) fn over_limit(value: &Value) -> bool {
    size_upper_bound(value, PAYLOAD_LIMIT_BYTES) > PAYLOAD_LIMIT_BYTES && json_size(value) > PAYLOAD_LIMIT_BYTES
}

/// An upper bound of the compact JSON size (every character escaped as `\uXXXX`, every
/// number at its longest), cheap to compute; stops counting once past `stop`.
pub(super) fn size_upper_bound(value: &Value, stop: usize) -> usize {
    fn walk(value: &Value, total: &mut usize, stop: usize) {
        if *total > stop {
            return;
        }
        match value {
            Value::Null | Value::Bool(_) => *total += 5,
            Value::Number(_) => *total += 24,
            Value::String(s) => *total += s.len() * 6 + 2,
            Value::Array(items) => {
                *total += 2 + items.len();
                for item in items {
                    walk(item, total, stop);
                }
            }
            Value::Object(map) => {
                *total += 2 + map.len() * 2;
                for (k, v) in map {
                    *total += k.len() * 6 + 2;
                    walk(v, total, stop);
                }
            }
        }
    }
    let mut total = 0;
    walk(value, &mut total, stop);
    total
}

/// Size of a value's compact JSON text, without building the text.
pub(super) fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

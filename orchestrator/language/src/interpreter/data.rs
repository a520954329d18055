//! Small data helpers of the interpreter: lenient numbers read from data, time formatting,
//! compact JSON for messages, payload size checks that avoid serializing when they can, and
//! history details built without a detour through `Serialize`.

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::PAYLOAD_LIMIT_BYTES;
use crate::limits::{NESTING_LIMIT, size_upper_bound, too_deep};

/// The object `{k1: v1, k2: v2, ...}`, keys in the order given. `json!` would turn each value
/// into a `Value` through `Serialize`, rebuilding a payload key by key (a hash per key); the
/// engine makes four such details per Task state, so they take the values as they are.
pub(super) fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(entries.into_iter().map(|(key, value)| (key.to_owned(), value)).collect())
}

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

/// Which payload limit a value breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Over {
    /// Its compact JSON text is over [`PAYLOAD_LIMIT_BYTES`].
    Size,
    /// It nests arrays and objects deeper than [`NESTING_LIMIT`].
    Depth,
}

impl Over {
    /// The cause of the `States.DataLimitExceeded` failure of state `state`; the size one is
    /// Step Functions' wording, word for word.
    pub(super) fn state_cause(self, state: &str) -> String {
        match self {
            Over::Size => format!(
                "The state/task '{state}' returned a result with a size exceeding the maximum number of bytes service limit."
            ),
            Over::Depth => format!(
                "The state/task '{state}' returned a result that nests arrays and objects more than {NESTING_LIMIT} \
                 levels deep, over the limit of {NESTING_LIMIT} levels."
            ),
        }
    }
}

/// The payload limit a value breaks, if any. Depth first: its walk is bounded, and the size
/// check serializes the value.
pub(super) fn over_limit(value: &Value) -> Option<Over> {
    if too_deep(value) {
        Some(Over::Depth)
    } else if size_upper_bound(value, PAYLOAD_LIMIT_BYTES) > PAYLOAD_LIMIT_BYTES
        && json_size(value) > PAYLOAD_LIMIT_BYTES
    {
        Some(Over::Size)
    } else {
        None
    }
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

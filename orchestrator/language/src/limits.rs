//! Every limit on what Sagaflow accepts or produces, in one place, so that each message can name
//! the limit it enforces and `docs/limits.md` can list them all.
//!
//! Sizes and the history length are Step Functions' own. Nesting depth is Sagaflow's: values
//! are stored as JSON and read back with `serde_json`, which refuses more than 128 levels, and
//! the stored forms wrap a payload in a few levels of their own (history details, execution
//! snapshots); code that walks values recursively must also stay well inside a thread's stack.
//! 64 levels leaves room for both, and no real document comes near it.

use serde_json::Value;

/// Largest definition source, in bytes (as in Step Functions: 1 MiB).
pub const DEFINITION_LIMIT_BYTES: usize = 1024 * 1024;
/// Largest input, output or task result, in bytes of compact JSON (as in Step Functions).
pub const PAYLOAD_LIMIT_BYTES: usize = 256 * 1024;
/// Most history events an execution may reach before it fails (as in Step Functions).
pub const HISTORY_EVENT_LIMIT: u64 = 25_000;
/// Deepest nesting of arrays and objects in JSON that Sagaflow reads (definitions, inputs) or
/// produces (template results, state outputs): `[]` is one level, `[{}]` two.
pub const NESTING_LIMIT: usize = 64;
/// Deepest nesting inside one expression string: intrinsic calls within calls, and brackets
/// or parentheses within a JSONPath filter. Also the most steps a reference path may have, so
/// that a ResultPath cannot build a value deeper than [`NESTING_LIMIT`] allows.
pub const EXPRESSION_NESTING_LIMIT: usize = 64;
/// Largest whole number a definition's durations and counts may hold (`TimeoutSeconds`,
/// `Seconds`, `IntervalSeconds`, `MaxAttempts`, ...), as in Step Functions.
pub const WHOLE_NUMBER_LIMIT: u64 = 99_999_999;

/// Most bytes one expression may build while it is evaluated, as [`size_upper_bound`] counts
/// them: the values of a payload template's `.$` entries together, or the arguments of one
/// intrinsic call. The bound overstates the real size at most 12.5 times (a one-digit number
/// counts 24 bytes), so running past this budget means the value is well over
/// [`PAYLOAD_LIMIT_BYTES`]; it stops data from multiplying without bound (intrinsics that copy
/// their input at every level of nesting, thousands of copies of a 256 KiB input) before the
/// memory is spent.
pub const EVALUATION_BUDGET_BYTES: usize = 32 * PAYLOAD_LIMIT_BYTES;

/// JSON text nested deeper than [`NESTING_LIMIT`], positioned at the bracket that went past it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the JSON nests arrays and objects more than {NESTING_LIMIT} levels deep (line {line}, column {column}); \
     {NESTING_LIMIT} levels is the limit"
)]
pub struct TooDeep {
    /// 1-based line of the first bracket past the limit.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// Check the nesting depth of JSON text before parsing it, so that too deep a document gets
/// a message naming the limit (serde_json's own, at 128 levels, says only "recursion limit
/// exceeded"). Linear and allocation-free; syntax is left to the parser, so text that is not
/// JSON passes unless its brackets nest too deep.
pub fn check_json_depth(text: &str) -> Result<(), TooDeep> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > NESTING_LIMIT {
                    let (line, column) = line_column(text, offset);
                    return Err(TooDeep { line, column });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Whether a value nests arrays and objects deeper than [`NESTING_LIMIT`]. The walk stops one
/// level past the limit, so it is safe on values of any depth.
pub fn too_deep(value: &Value) -> bool {
    fn exceeds(value: &Value, room: usize) -> bool {
        match value {
            Value::Array(items) => room == 0 || items.iter().any(|v| exceeds(v, room - 1)),
            Value::Object(map) => room == 0 || map.values().any(|v| exceeds(v, room - 1)),
            _ => false,
        }
    }
    exceeds(value, NESTING_LIMIT)
}

/// An upper bound of a value's compact JSON size (every character escaped as `\uXXXX`, every
/// number at its longest), cheap to compute; stops counting once past `stop`, so it is cheap on
/// huge values too.
pub fn size_upper_bound(value: &Value, stop: usize) -> usize {
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

/// Take `value`'s [`size_upper_bound`] from what is `left` of an [`EVALUATION_BUDGET_BYTES`]
/// budget; `Err` when it does not fit.
pub fn charge(value: &Value, left: &mut usize) -> Result<(), BudgetSpent> {
    let cost = size_upper_bound(value, *left);
    if cost > *left {
        return Err(BudgetSpent);
    }
    *left -= cost;
    Ok(())
}

/// An expression built far more data than a payload may hold (see [`EVALUATION_BUDGET_BYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the expression builds a value larger than the payload limit of {PAYLOAD_LIMIT_BYTES} bytes (256 KiB)")]
pub struct BudgetSpent;

/// 1-based line and column (in characters) of a byte offset; the offset of an ASCII byte in
/// the callers, so it is always a character boundary.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn depth_up_to_the_limit_passes() {
        assert_eq!(check_json_depth(&nested(NESTING_LIMIT)), Ok(()));
        let value: Value = serde_json::from_str(&nested(NESTING_LIMIT)).expect("valid");
        assert!(!too_deep(&value));
    }

    #[test]
    fn one_level_more_is_refused_at_its_bracket() {
        let text = format!("{{\n  \"a\": {}\n}}", nested(NESTING_LIMIT));
        // The object is level 1; the 64th '[' is level 65, at column 8 + 63 of line 2.
        assert_eq!(check_json_depth(&text), Err(TooDeep { line: 2, column: 8 + 63 }));
        let value: Value = serde_json::from_str(&text).expect("serde_json reads up to 128 levels");
        assert!(too_deep(&value));
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let text = format!("{{\"a\": \"{}\\\"{}\"}}", "[".repeat(500), "{".repeat(500));
        assert_eq!(check_json_depth(&text), Ok(()));
    }

    #[test]
    fn columns_count_characters() {
        let text = format!("\"é\" {}", "[".repeat(NESTING_LIMIT + 1));
        let err = check_json_depth(&text).expect_err("too deep");
        assert_eq!((err.line, err.column), (1, 4 + NESTING_LIMIT + 1));
        assert!(err.to_string().contains("more than 64 levels"), "{err}");
    }

    #[test]
    fn scalars_and_flat_values_are_shallow() {
        assert!(!too_deep(&json!(1)));
        assert!(!too_deep(&json!({"a": [1, 2, {"b": null}]})));
    }
}

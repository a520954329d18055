//! Evaluation of Choice rules against a scope.
//!
//! Rules pinned down by the choice corpus (~370 AWS recordings):
//! - a comparison whose value (or `...Path` operand) has the wrong JSON type is simply false:
//!   `NumericEquals` on `"1"`, `true` or `null`, `BooleanEquals` on `0`, `StringEquals` on
//!   `[]`, `Timestamp*` on a string that is not a timestamp, ...
//! - numbers compare by value (`1` equals `1.0`); strings compare exactly, by UTF-16 code
//!   units as Java does; timestamps by instant, whatever their offsets;
//! - `Is*` tests compare the type test with their boolean operand (`IsString: false` on a
//!   number is true).
//!
//! A `Variable` (or `...Path` operand) that names nothing is a `States.Runtime` error, except
//! under `IsPresent`, in AWS's words: `Invalid path '$.x': The choice state's condition path
//! references an invalid value.`

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::{EvalError, Path, Scope, timestamp};
use crate::model::{ChoiceRule, Operand, Operator};

pub fn evaluate(rule: &ChoiceRule, scope: &Scope<'_>) -> Result<bool, EvalError> {
    match rule {
        ChoiceRule::And(rules) => {
            for rule in rules {
                if !evaluate(rule, scope)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        ChoiceRule::Or(rules) => {
            for rule in rules {
                if evaluate(rule, scope)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        ChoiceRule::Not(rule) => Ok(!evaluate(rule, scope)?),
        ChoiceRule::Compare { variable, operator, operand } => compare(variable, *operator, operand, scope),
    }
}

fn invalid_path(path: &Path) -> EvalError {
    EvalError::runtime(format!(
        "Invalid path '{}': The choice state's condition path references an invalid value.",
        path.as_str()
    ))
}

fn compare(variable: &Path, operator: Operator, operand: &Operand, scope: &Scope<'_>) -> Result<bool, EvalError> {
    let value = variable.resolve(scope);
    if operator == Operator::IsPresent {
        return Ok(value.is_some() == operand_bool(operand));
    }
    let value = value.ok_or_else(|| invalid_path(variable))?;
    if operator.is_type_test() {
        let is = match operator {
            Operator::IsNull => value.is_null(),
            Operator::IsNumeric => value.is_number(),
            Operator::IsString => value.is_string(),
            Operator::IsBoolean => value.is_boolean(),
            Operator::IsTimestamp => value.as_str().is_some_and(|s| timestamp::parse(s).is_some()),
            _ => false,
        };
        return Ok(is == operand_bool(operand));
    }
    let operand: Cow<'_, Value> = match operand {
        Operand::Literal(v) => Cow::Borrowed(v),
        Operand::Path(path) => path.resolve(scope).ok_or_else(|| invalid_path(path))?,
    };
    Ok(test(operator, &value, &operand))
}

/// The boolean operand of a type test; the validator guarantees it is a boolean.
fn operand_bool(operand: &Operand) -> bool {
    matches!(operand, Operand::Literal(Value::Bool(true)))
}

fn test(operator: Operator, value: &Value, operand: &Value) -> bool {
    let ord = |ordering: Option<Ordering>, accept: fn(Ordering) -> bool| ordering.is_some_and(accept);
    let strings = || match (value, operand) {
        (Value::String(a), Value::String(b)) => Some(java_string_cmp(a, b)),
        _ => None,
    };
    let numbers = || match (value, operand) {
        (Value::Number(a), Value::Number(b)) => number_cmp(a, b),
        _ => None,
    };
    let timestamps = || match (value, operand) {
        (Value::String(a), Value::String(b)) => {
            let a = timestamp::parse(a)?;
            let b = timestamp::parse(b)?;
            Some(a.cmp(&b))
        }
        _ => None,
    };
    match operator {
        Operator::StringEquals => ord(strings(), Ordering::is_eq),
        Operator::StringLessThan => ord(strings(), Ordering::is_lt),
        Operator::StringGreaterThan => ord(strings(), Ordering::is_gt),
        Operator::StringLessThanEquals => ord(strings(), Ordering::is_le),
        Operator::StringGreaterThanEquals => ord(strings(), Ordering::is_ge),
        Operator::StringMatches => match (value, operand) {
            (Value::String(text), Value::String(pattern)) => string_matches(text, pattern),
            _ => false,
        },
        Operator::NumericEquals => ord(numbers(), Ordering::is_eq),
        Operator::NumericLessThan => ord(numbers(), Ordering::is_lt),
        Operator::NumericGreaterThan => ord(numbers(), Ordering::is_gt),
        Operator::NumericLessThanEquals => ord(numbers(), Ordering::is_le),
        Operator::NumericGreaterThanEquals => ord(numbers(), Ordering::is_ge),
        Operator::BooleanEquals => match (value, operand) {
            (Value::Bool(a), Value::Bool(b)) => a == b,
            _ => false,
        },
        Operator::TimestampEquals => ord(timestamps(), Ordering::is_eq),
        Operator::TimestampLessThan => ord(timestamps(), Ordering::is_lt),
        Operator::TimestampGreaterThan => ord(timestamps(), Ordering::is_gt),
        Operator::TimestampLessThanEquals => ord(timestamps(), Ordering::is_le),
        Operator::TimestampGreaterThanEquals => ord(timestamps(), Ordering::is_ge),
        Operator::IsNull
        | Operator::IsPresent
        | Operator::IsNumeric
        | Operator::IsString
        | Operator::IsBoolean
        | Operator::IsTimestamp => false,
    }
}

/// Java's `String.compareTo`: UTF-16 code units, which orders characters above U+FFFF
/// before U+E000..U+FFFF, unlike Rust's byte order.
fn java_string_cmp(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

/// Integers compare exactly; anything involving a fraction compares as `f64`.
fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    let exact = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (exact(a), exact(b)) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

/// `StringMatches`: `*` matches any run of characters; `\*` and `\\` are a literal star and
/// backslash. Greedy matching with backtracking to the last star, linear in practice.
pub fn string_matches(text: &str, pattern: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Char(char),
    }
    let mut toks: Vec<Tok> = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if toks.last() != Some(&Tok::Star) {
                    toks.push(Tok::Star);
                }
            }
            '\\' => match chars.next() {
                Some(next) => toks.push(Tok::Char(next)),
                None => toks.push(Tok::Char('\\')),
            },
            c => toks.push(Tok::Char(c)),
        }
    }
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::Char(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|tok| *tok == Tok::Star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::NoVariables;
    use serde_json::json;

    fn cmp(variable: &str, operator: Operator, operand: Operand, input: Value) -> Result<bool, EvalError> {
        let ctx = json!({"Execution": {"Input": input.clone()}});
        let scope = Scope { input: &input, context: &ctx, variables: &NoVariables };
        let rule = ChoiceRule::Compare { variable: Path::parse(variable).expect("should succeed"), operator, operand };
        evaluate(&rule, &scope)
    }

    fn lit(v: Value) -> Operand {
        Operand::Literal(v)
    }

    /// Rows of the choice corpus (`choice_operators.*`): operator, `$.Variable`, operand
    /// (also read from `$.Value` for the `...Path` form), whether the rule matched on AWS.
    #[test]
    fn corpus_type_mismatches_and_comparisons() {
        use Operator::*;
        let rows = [
            (BooleanEquals, json!(null), json!(true), false),
            (BooleanEquals, json!(""), json!(false), false),
            (BooleanEquals, json!(0.0), json!(false), false),
            (BooleanEquals, json!(1), json!(true), false),
            (BooleanEquals, json!({}), json!(true), false),
            (BooleanEquals, json!(false), json!(true), false),
            (BooleanEquals, json!(false), json!(false), true),
            (IsBoolean, json!(" "), json!(false), true),
            (IsBoolean, json!(false), json!(true), true),
            (IsBoolean, json!(false), json!(false), false),
            (IsNull, json!(null), json!(true), true),
            (IsNull, json!(null), json!(false), false),
            (IsNull, json!(0), json!(false), true),
            (IsNumeric, json!(0.0), json!(true), true),
            (IsNumeric, json!("2012-10-09T19:00:55Z"), json!(true), false),
            (IsNumeric, json!(true), json!(true), false),
            (IsPresent, json!(null), json!(true), true),
            (IsPresent, json!([]), json!(false), false),
            (IsString, json!(""), json!(true), true),
            (IsString, json!([""]), json!(false), true),
            (NumericEquals, json!(null), json!(0), false),
            (NumericEquals, json!(1), json!(1.0), true),
            (NumericEquals, json!(0.0), json!(0), true),
            (NumericEquals, json!(1.1), json!(1), false),
            (NumericEquals, json!(2.22), json!(2.22), true),
            (NumericEquals, json!(""), json!(0.0), false),
            (NumericEquals, json!([]), json!(0), false),
            (NumericEquals, json!(false), json!(0), false),
            (NumericEquals, json!(true), json!(1), false),
            (NumericGreaterThan, json!(1), json!(0), true),
            (NumericGreaterThan, json!(1), json!(1), false),
            (NumericGreaterThanEquals, json!(0.0), json!(0), true),
            (NumericLessThan, json!(0), json!(1), true),
            (NumericLessThanEquals, json!(1), json!(0), false),
            (StringEquals, json!(null), json!("HelloWorld"), false),
            (StringEquals, json!(" "), json!("     "), false),
            (StringEquals, json!("\t\n"), json!("\t\r\n"), false),
            (StringEquals, json!("Hello"), json!("Hello"), true),
            (StringGreaterThan, json!("A"), json!("A "), false),
            (StringGreaterThan, json!("AB"), json!("ABC"), false),
            (StringGreaterThanEquals, json!(""), json!(""), true),
            (StringGreaterThanEquals, json!("AB"), json!("A"), true),
            (StringLessThan, json!("A"), json!("AB"), true),
            (StringLessThanEquals, json!("AB"), json!("A"), false),
            (TimestampEquals, json!(0), json!("2012-10-09T19:00:55Z"), false),
            (TimestampEquals, json!("2023-02-24 12:15:56.832957"), json!("2012-10-09T19:00:55Z"), false),
            (TimestampEquals, json!("2012-10-09T19:00:55Z"), json!("2012-10-09T19:00:55Z"), true),
            (TimestampGreaterThan, json!("2012-10-09T19:00:56Z"), json!("2012-10-09T19:00:55Z"), true),
            (TimestampLessThanEquals, json!("2012-10-09T19:00:55Z"), json!("2012-10-09T19:00:56Z"), true),
            (TimestampLessThan, json!("2012-10-09T19:00:55Z"), json!("2012-10-09T19:00:55Z"), false),
        ];
        for (operator, variable, operand, expected) in rows {
            let input = json!({"Variable": variable, "Value": operand});
            let got = cmp("$.Variable", operator, lit(operand.clone()), input.clone()).expect("evaluates");
            assert_eq!(got, expected, "{operator:?} {variable} {operand}");
            if operator.has_path_form() {
                let path = Operand::Path(Path::parse("$.Value").expect("parses"));
                let got = cmp("$.Variable", operator, path, input).expect("evaluates");
                assert_eq!(got, expected, "{operator:?}Path {variable} {operand}");
            }
        }
    }

    #[test]
    fn timestamps_compare_by_instant_and_strings_like_java() {
        let input = json!({"a": "2012-10-09T19:00:55+01:00", "s": "\u{FF61}", "t": "\u{1F600}"});
        assert!(cmp("$.a", Operator::TimestampEquals, lit(json!("2012-10-09T18:00:55Z")), input.clone()).expect("ok"));
        assert!(cmp("$.a", Operator::IsTimestamp, lit(json!(true)), input.clone()).expect("ok"));
        assert!(cmp("$.s", Operator::IsTimestamp, lit(json!(false)), input.clone()).expect("ok"));
        // U+1F600 is a surrogate pair in UTF-16, which Java orders before U+FF61.
        let t = Operand::Path(Path::parse("$.t").expect("parses"));
        assert!(cmp("$.s", Operator::StringGreaterThan, t, input).expect("ok"));
    }

    #[test]
    fn composites_short_circuit() {
        // corpus scenarios.base_scenarios.choice_aws_docs_scenario
        let input = json!({"type": "Private", "value": 22});
        let ctx = json!({});
        let scope = Scope { input: &input, context: &ctx, variables: &NoVariables };
        let compare = |path: &str, operator, operand: Value| ChoiceRule::Compare {
            variable: Path::parse(path).expect("parses"),
            operator,
            operand: Operand::Literal(operand),
        };
        let not_private = ChoiceRule::Not(Box::new(compare("$.type", Operator::StringEquals, json!("Private"))));
        assert!(!evaluate(&not_private, &scope).expect("ok"));
        let twenties = ChoiceRule::And(vec![
            compare("$.value", Operator::NumericGreaterThanEquals, json!(20)),
            compare("$.value", Operator::NumericLessThan, json!(30)),
        ]);
        assert!(evaluate(&twenties, &scope).expect("ok"));
        // The missing path after a decided operand is never read.
        let or = ChoiceRule::Or(vec![
            compare("$.value", Operator::NumericEquals, json!(22)),
            compare("$.missing", Operator::NumericEquals, json!(1)),
        ]);
        assert!(evaluate(&or, &scope).expect("ok"));
        let and = ChoiceRule::And(vec![compare("$.missing", Operator::NumericEquals, json!(1))]);
        assert!(evaluate(&and, &scope).is_err());
    }

    #[test]
    fn string_matches_wildcards_and_escapes() {
        assert!(string_matches("log-2024.txt", "log-*.txt"));
        assert!(string_matches("anything", "*"));
        assert!(string_matches("", "*"));
        assert!(!string_matches("log.txt", "log-*.txt"));
        assert!(string_matches("a*b", "a\\*b"));
        assert!(!string_matches("axb", "a\\*b"));
        assert!(string_matches("a\\b", "a\\\\b"));
        assert!(string_matches("abcbc", "a*bc"));
        assert!(string_matches("xyz", "*y*"));
        assert!(!string_matches("xz", "*y*"));
    }

    #[test]
    fn missing_variable_is_an_error_except_is_present() {
        let input = json!({"a": 1});
        let e = cmp("$.b", Operator::NumericEquals, lit(json!(1)), input.clone()).expect_err("should fail");
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(e.message, "Invalid path '$.b': The choice state's condition path references an invalid value.");
        assert!(!cmp("$.b", Operator::IsPresent, lit(json!(true)), input.clone()).expect("should succeed"));
        assert!(cmp("$.b", Operator::IsPresent, lit(json!(false)), input.clone()).expect("should succeed"));
        let op = Operand::Path(Path::parse("$.missing").expect("should succeed"));
        assert!(cmp("$.a", Operator::NumericEquals, op, input).is_err());
    }
}

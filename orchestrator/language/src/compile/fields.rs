//! Typed access to the fields of a JSON object: each accessor reports a wrong type, range,
//! path or template at the field's position and hands back what it could read, so callers
//! keep going after a problem.

use serde_json::{Map, Value};

use super::{Ctx, Loc, suggest};
use crate::expr::{ExprError, Path, ReferencePath, Template};
use crate::limits::WHOLE_NUMBER_LIMIT;
use crate::model::PathField;

pub(crate) type Object = Map<String, Value>;

/// "a string", "an array", ... for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Variable names as AWS accepts them: a letter or `_`, then letters, digits or `_`.
pub(crate) fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && name.chars().count() <= 80
}

impl Ctx<'_> {
    /// Report a present field whose JSON type is wrong.
    pub(crate) fn wrong_type(&mut self, at: &Loc, field: &str, expected: &str, got: &Value) {
        self.error("invalid-type", at, format!("{field} must be {expected}, not {}", json_type(got)));
    }

    /// Report every key of `object` that is not in `allowed`, with a hint.
    pub(crate) fn unknown_fields(&mut self, object: &Object, at: &Loc, allowed: &[&str], what: &str) {
        for key in object.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = suggest::hint(key, allowed.iter().copied());
                self.error_key("unknown-field", &at.key(key), format!("unknown field \"{key}\" in {what}{hint}"));
            }
        }
    }

    pub(crate) fn string<'v>(&mut self, object: &'v Object, at: &Loc, key: &str) -> Option<&'v str> {
        match object.get(key)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(&at.key(key), key, "a string", other);
                None
            }
        }
    }

    /// A string field that must be there.
    pub(crate) fn required_string<'v>(
        &mut self,
        object: &'v Object,
        at: &Loc,
        key: &str,
        what: &str,
    ) -> Option<&'v str> {
        if !object.contains_key(key) {
            self.error_key("missing-field", at, format!("{what} needs a \"{key}\" field"));
            return None;
        }
        self.string(object, at, key)
    }

    pub(crate) fn boolean(&mut self, object: &Object, at: &Loc, key: &str) -> Option<bool> {
        match object.get(key)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(&at.key(key), key, "a boolean", other);
                None
            }
        }
    }

    /// A whole number from `min` to [`WHOLE_NUMBER_LIMIT`] (durations in seconds and counts;
    /// the bound also keeps every later `seconds * 1000` far from overflowing).
    pub(crate) fn whole(&mut self, object: &Object, at: &Loc, key: &str, min: u64) -> Option<u64> {
        let value = object.get(key)?;
        match value.as_u64() {
            Some(n) if (min..=WHOLE_NUMBER_LIMIT).contains(&n) => Some(n),
            _ if value.is_number() => {
                self.error(
                    "invalid-value",
                    &at.key(key),
                    format!("{key} must be a whole number from {min} to {WHOLE_NUMBER_LIMIT}; found {value}"),
                );
                None
            }
            _ => {
                self.wrong_type(&at.key(key), key, "a whole number", value);
                None
            }
        }
    }

    pub(crate) fn number(&mut self, object: &Object, at: &Loc, key: &str) -> Option<f64> {
        let value = object.get(key)?;
        match value.as_f64() {
            Some(n) => Some(n),
            None => {
                self.wrong_type(&at.key(key), key, "a number", value);
                None
            }
        }
    }

    /// Report `a` and `b` both present; true when they are.
    pub(crate) fn exclusive(&mut self, object: &Object, at: &Loc, a: &str, b: &str) -> bool {
        if object.contains_key(a) && object.contains_key(b) {
            self.error_key("exclusive-fields", &at.key(b), format!("{a} and {b} cannot both be set; keep one"));
            return true;
        }
        false
    }

    /// A reference path in a string value.
    pub(crate) fn reference_path(&mut self, value: &Value, at: &Loc, field: &str) -> Option<ReferencePath> {
        let Value::String(text) = value else {
            self.wrong_type(at, field, "a path string such as \"$.field\"", value);
            return None;
        };
        match ReferencePath::parse(text) {
            Ok(path) => Some(path),
            Err(err) => {
                self.expr_error("invalid-path", at, field, &err);
                None
            }
        }
    }

    /// A JSONPath query (Choice `Variable` and `...Path` operands).
    pub(crate) fn query_path(&mut self, value: &Value, at: &Loc, field: &str) -> Option<Path> {
        let Value::String(text) = value else {
            self.wrong_type(at, field, "a path string such as \"$.field\"", value);
            return None;
        };
        match Path::parse(text) {
            Ok(path) => Some(path),
            Err(err) => {
                self.expr_error("invalid-path", at, field, &err);
                None
            }
        }
    }

    pub(crate) fn expr_error(&mut self, code: &'static str, at: &Loc, field: &str, err: &ExprError) {
        self.error(code, &at.join(&err.pointer), format!("{field}: {}", err.message));
    }

    /// A reference path field that may be absent (`$`) or `null` when `allow_null`.
    /// `result` marks ResultPath, which writes into the state's input and so cannot name
    /// the context object or a variable.
    pub(crate) fn path_field(
        &mut self,
        object: &Object,
        at: &Loc,
        key: &str,
        allow_null: bool,
        result: bool,
    ) -> PathField {
        let Some(value) = object.get(key) else {
            return PathField::Identity;
        };
        let at = at.key(key);
        if value.is_null() {
            if allow_null {
                return PathField::Null;
            }
            self.wrong_type(&at, key, "a path string such as \"$.field\"", value);
            return PathField::Identity;
        }
        if result
            && let Some(text) = value.as_str()
            && !(text == "$" || text.starts_with("$.") || text.starts_with("$["))
        {
            self.error(
                "invalid-path",
                &at,
                format!(
                    "{key} must be a path into the state's input starting with \"$\" (e.g. \
                     \"$.result\"), not \"{text}\""
                ),
            );
            return PathField::Identity;
        }
        self.reference_path(value, &at, key).map_or(PathField::Identity, PathField::Path)
    }

    /// A payload template (Parameters, ResultSelector, ItemSelector, Assign, ...): an object
    /// whose `"key.$"` entries hold expressions. The expression compiler reports each bad
    /// entry (a non-string `.$` value included) with its pointer inside the template.
    pub(crate) fn template(&mut self, object: &Object, at: &Loc, key: &str) -> Option<Template> {
        let value = object.get(key)?;
        let at = at.key(key);
        if !value.is_object() {
            self.wrong_type(&at, key, "an object", value);
            return None;
        }
        if key == "Assign" {
            self.variable_names(value, &at);
        }
        match Template::compile(value) {
            Ok(template) => Some(template),
            Err(errors) => {
                for err in &errors {
                    self.expr_error("invalid-template", &at, key, err);
                }
                None
            }
        }
    }

    fn variable_names(&mut self, assign: &Value, at: &Loc) {
        let Value::Object(map) = assign else { return };
        for key in map.keys() {
            let name = key.strip_suffix(".$").unwrap_or(key);
            if !is_variable_name(name) {
                self.error_key(
                    "invalid-variable-name",
                    &at.key(key),
                    format!(
                        "\"{name}\" is not a valid variable name: use letters, digits and \
                         \"_\", starting with a letter or \"_\" (at most 80 characters)"
                    ),
                );
            }
        }
    }
}

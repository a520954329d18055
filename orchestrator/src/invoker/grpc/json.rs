//! JSON ⇄ protobuf for task calls, in the proto3 JSON mapping (DESIGN §2): the task's
//! effective input becomes the request message, the response becomes the task result.
//!
//! Requests refuse unknown fields: a misspelt Parameters key would otherwise be dropped
//! silently and the participant would see a default value (an amount of 0, say). When a
//! request does not convert, [`unknown_fields`] walks it against the descriptor to name every
//! stray field with its JSON path and a "did you mean" — the same walk the validator can run
//! over a task's `Parameters` ahead of time ([`unknown_parameter_fields`]).

use std::fmt;

use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, SerializeOptions};
use serde_json::Value;
use thiserror::Error;

/// How responses are rendered as JSON. The default renders 64-bit integers as numbers:
/// amounts and counts are int64 in the demo protos, and definitions compare and add them
/// (docs/decisions/0008-int64-as-json-numbers.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JsonOptions {
    /// Render 64-bit integers (int64, uint64, sint64, fixed64, sfixed64) as JSON strings, as
    /// the proto3 JSON mapping prescribes (`"amountCents": "1500"`). Turning it off renders
    /// them as numbers, which `Numeric*` Choice rules and `States.MathAdd` can use directly
    /// (serde_json keeps 64-bit integers exact). Requests accept both forms either way.
    pub int64_as_strings: bool,
}

/// The task input does not convert to the method's request message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the input does not fit {message_type}: {}", .problems.join("; "))]
pub struct RequestError {
    /// The request message's full name, e.g. `payment.v1.ChargeRequest`.
    pub message_type: String,
    /// One plain sentence per problem, at least one.
    pub problems: Vec<String>,
}

/// A JSON key that names no field of the message it sits in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// JSONPath of the key, e.g. `$.items[0].skuu`.
    pub path: String,
    /// The key as written.
    pub field: String,
    /// The message that lacks it, e.g. `payment.v1.ChargeRequest`.
    pub message_type: String,
    /// The closest field name (lowerCamelCase), when one is close.
    pub suggestion: Option<String>,
    /// Every field of the message (lowerCamelCase), for the error text.
    pub known_fields: Vec<String>,
}

impl fmt::Display for UnknownField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown field \"{}\" at {}: {} has no such field", self.field, self.path, self.message_type)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean \"{suggestion}\"?)")?;
        }
        if self.known_fields.is_empty() {
            write!(f, "; it has no fields, so send {{}}")
        } else {
            write!(f, "; its fields are {}", self.known_fields.join(", "))
        }
    }
}

/// Converts a task input to a request message (proto3 JSON mapping, unknown fields refused).
pub fn request_from_json(desc: &MessageDescriptor, input: &Value) -> Result<DynamicMessage, RequestError> {
    DynamicMessage::deserialize_with_options(desc.clone(), input, &DeserializeOptions::new()).map_err(|err| {
        let fail = |problems| RequestError { message_type: desc.full_name().to_owned(), problems };
        if !input.is_object() && !is_well_known(desc) {
            return fail(vec![format!(
                "the request must be a JSON object, not {} (check the task's InputPath and \
                     Parameters)",
                json_type(input)
            )]);
        }
        let unknown = unknown_fields(desc, input);
        if !unknown.is_empty() {
            return fail(unknown.iter().map(ToString::to_string).collect());
        }
        // serde's message says what is wrong but not where; find the field.
        fail(vec![locate_error(desc, input, "$").unwrap_or_else(|| err.to_string())])
    })
}

/// Renders a response message as JSON: proto3 JSON mapping, lowerCamelCase names, and every
/// field without presence included even when it holds its default value, so `$.amountCents`
/// resolves when the amount is 0 (the standard printer would omit it and the path would fail).
pub fn response_to_json(message: &DynamicMessage, options: &JsonOptions) -> Result<Value, serde_json::Error> {
    let options =
        SerializeOptions::new().skip_default_fields(false).stringify_64_bit_integers(options.int64_as_strings);
    message.serialize_with_options(serde_json::value::Serializer, &options)
}

/// Every key of `input`, at any depth, that names no field of the message it belongs to.
pub fn unknown_fields(desc: &MessageDescriptor, input: &Value) -> Vec<UnknownField> {
    let mut out = Vec::new();
    walk(desc, input, "$", false, &mut out);
    out
}

/// Like [`unknown_fields`], for a States Language `Parameters` template: a key ending in
/// `.$` names the field without the suffix, and its value (a path) is not walked.
pub fn unknown_parameter_fields(desc: &MessageDescriptor, parameters: &Value) -> Vec<UnknownField> {
    let mut out = Vec::new();
    walk(desc, parameters, "$", true, &mut out);
    out
}

fn walk(desc: &MessageDescriptor, value: &Value, path: &str, template: bool, out: &mut Vec<UnknownField>) {
    // Well-known types have their own JSON forms (Struct is any object, Timestamp a string);
    // their "fields" are not JSON keys.
    if is_well_known(desc) {
        return;
    }
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        let (name, is_path) = match key.strip_suffix(".$") {
            Some(name) if template => (name, true),
            _ => (key.as_str(), false),
        };
        let child_path = join_path(path, name);
        let Some(field) = find_field(desc, name) else {
            if desc.get_extension_by_json_name(name).is_none() {
                out.push(unknown(desc, name, child_path));
            }
            continue;
        };
        if is_path {
            continue;
        }
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_map() {
            let Kind::Message(value_type) = inner.map_entry_value_field().kind() else {
                continue;
            };
            if let Value::Object(entries) = child {
                for (k, v) in entries {
                    walk(&value_type, v, &join_path(&child_path, k), template, out);
                }
            }
        } else if field.is_list() {
            if let Value::Array(items) = child {
                for (i, item) in items.iter().enumerate() {
                    walk(&inner, item, &format!("{child_path}[{i}]"), template, out);
                }
            }
        } else {
            walk(&inner, child, &child_path, template, out);
        }
    }
}

/// Finds the innermost field whose value does not convert, by converting one key at a time
/// (only on the failure path, so the copying costs nothing on a good request).
fn locate_error(desc: &MessageDescriptor, value: &Value, path: &str) -> Option<String> {
    let Value::Object(map) = value else {
        return None;
    };
    for (key, child) in map {
        let single = Value::Object(serde_json::Map::from_iter([(key.clone(), child.clone())]));
        let Err(err) = DynamicMessage::deserialize(desc.clone(), &single) else {
            continue;
        };
        let field = find_field(desc, key)?;
        let child_path = join_path(path, key);
        if let Kind::Message(inner) = field.kind()
            && !is_well_known(&inner)
        {
            let deeper = if field.is_map() {
                match (inner.map_entry_value_field().kind(), child) {
                    (Kind::Message(value_type), Value::Object(entries)) => {
                        entries.iter().find_map(|(k, v)| locate_error(&value_type, v, &join_path(&child_path, k)))
                    }
                    _ => None,
                }
            } else if let (true, Value::Array(items)) = (field.is_list(), child) {
                items.iter().enumerate().find_map(|(i, item)| locate_error(&inner, item, &format!("{child_path}[{i}]")))
            } else {
                locate_error(&inner, child, &child_path)
            };
            if deeper.is_some() {
                return deeper;
            }
        }
        return Some(format!(
            "the value at {child_path} does not fit the {} field {}.{}: {err}",
            type_name(&field),
            desc.full_name(),
            field.json_name()
        ));
    }
    None
}

/// A field's type as written in a .proto file, e.g. `int64`, `repeated sagaflow.v1.OrderItem`.
fn type_name(field: &FieldDescriptor) -> String {
    let kind = |kind: Kind| match kind {
        Kind::Double => "double".to_owned(),
        Kind::Float => "float".to_owned(),
        Kind::Int32 => "int32".to_owned(),
        Kind::Int64 => "int64".to_owned(),
        Kind::Uint32 => "uint32".to_owned(),
        Kind::Uint64 => "uint64".to_owned(),
        Kind::Sint32 => "sint32".to_owned(),
        Kind::Sint64 => "sint64".to_owned(),
        Kind::Fixed32 => "fixed32".to_owned(),
        Kind::Fixed64 => "fixed64".to_owned(),
        Kind::Sfixed32 => "sfixed32".to_owned(),
        Kind::Sfixed64 => "sfixed64".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::String => "string".to_owned(),
        Kind::Bytes => "bytes (base64)".to_owned(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
    };
    match field.kind() {
        Kind::Message(entry) if field.is_map() => {
            format!("map<{}, {}>", kind(entry.map_entry_key_field().kind()), kind(entry.map_entry_value_field().kind()))
        }
        other if field.is_list() => format!("repeated {}", kind(other)),
        other => kind(other),
    }
}

/// The field a JSON key names: its lowerCamelCase JSON name or its proto name (both are
/// accepted by the proto3 JSON mapping).
fn find_field(desc: &MessageDescriptor, key: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_json_name(key).or_else(|| desc.get_field_by_name(key))
}

fn unknown(desc: &MessageDescriptor, key: &str, path: String) -> UnknownField {
    let known_fields: Vec<String> = desc.fields().map(|f| f.json_name().to_owned()).collect();
    UnknownField {
        path,
        field: key.to_owned(),
        message_type: desc.full_name().to_owned(),
        suggestion: closest(key, &known_fields),
        known_fields,
    }
}

/// The closest known name, compared case- and underscore-insensitively (so `OrderID` and
/// `order_id_` both find `orderId`) within an edit distance that grows with the length.
pub(crate) fn closest(key: &str, known: &[String]) -> Option<String> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let wanted = norm(key);
    let limit = (wanted.len() / 3).clamp(1, 3);
    known
        .iter()
        .map(|name| (strsim::levenshtein(&wanted, &norm(name)), name))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name.clone())
}

fn join_path(path: &str, key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { format!("{path}.{key}") } else { format!("{path}[{}]", Value::String(key.to_owned())) }
}

fn is_well_known(desc: &MessageDescriptor) -> bool {
    desc.package_name() == "google.protobuf"
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::DescriptorPool;
    use serde_json::json;

    fn pool() -> DescriptorPool {
        DescriptorPool::decode(sagaflow_proto::FILE_DESCRIPTOR_SET).expect("descriptor set")
    }

    fn message(pool: &DescriptorPool, name: &str) -> MessageDescriptor {
        pool.get_message_by_name(name).expect(name)
    }

    #[test]
    fn round_trips_with_defaults_and_camel_case() {
        let pool = pool();
        let desc = message(&pool, "payment.v1.ChargeRequest");
        let msg = request_from_json(&desc, &json!({"orderId": "o-1", "customer_id": "c-1", "amountCents": 0}))
            .expect("converts");
        let out = response_to_json(&msg, &JsonOptions::default()).expect("renders");
        assert_eq!(
            out,
            json!({"orderId": "o-1", "customerId": "c-1", "amountCents": 0, "currency": "",
                   "paymentToken": ""})
        );
        let strict = response_to_json(&msg, &JsonOptions { int64_as_strings: true }).expect("renders");
        assert_eq!(strict["amountCents"], json!("0"));
    }

    #[test]
    fn names_unknown_fields_with_path_and_suggestion() {
        let pool = pool();
        let desc = message(&pool, "sagaflow.v1.StartOrderRequest");
        let err =
            request_from_json(&desc, &json!({"orderId": "o", "items": [{"sku": "a"}, {"skuu": "b"}], "OrderID": "x"}))
                .expect_err("unknown fields");
        assert_eq!(err.problems.len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains("unknown field \"skuu\" at $.items[1].skuu"), "{text}");
        assert!(text.contains("(did you mean \"sku\"?)"), "{text}");
        assert!(text.contains("unknown field \"OrderID\" at $.OrderID"), "{text}");
        assert!(text.contains("(did you mean \"orderId\"?)"), "{text}");
    }

    #[test]
    fn explains_a_non_object_and_a_bad_value() {
        let pool = pool();
        let desc = message(&pool, "payment.v1.ChargeRequest");
        let err = request_from_json(&desc, &json!([1])).expect_err("not an object");
        assert!(err.to_string().contains("must be a JSON object, not an array"), "{err}");
        let err = request_from_json(&desc, &json!({"amountCents": "lots"})).expect_err("bad");
        assert!(
            err.to_string().contains(
                "the value at $.amountCents does not fit the int64 field \
                 payment.v1.ChargeRequest.amountCents"
            ),
            "{err}"
        );
        let desc = message(&pool, "sagaflow.v1.StartOrderRequest");
        let err = request_from_json(&desc, &json!({"items": [{"sku": "a"}, {"quantity": -1}]})).expect_err("bad");
        assert!(
            err.to_string().contains(
                "the value at $.items[1].quantity does not fit the uint32 field \
                 sagaflow.v1.OrderItem.quantity"
            ),
            "{err}"
        );
    }

    #[test]
    fn walks_parameter_templates() {
        let pool = pool();
        let desc = message(&pool, "payment.v1.ChargeRequest");
        let problems = unknown_parameter_fields(
            &desc,
            &json!({"orderId.$": "$.order.id", "amount.$": "$.total", "currency": "USD"}),
        );
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "amount");
        assert_eq!(problems[0].path, "$.amount");
    }
}

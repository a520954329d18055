//! Source text to JSON with positions: which text is valid JSON, the values it holds, where
//! each key and value sits (1-based line:column), and which objects repeat a key.
//!
//! Two well-kept parsers share the work instead of a hand-written one:
//! - `serde_json` is the authority on syntax and values. It is strict RFC 8259 (jsonc-parser
//!   accepts comments, single-quoted strings and trailing commas, which AWS rejects), reports
//!   line:column for every syntax error, and yields values exactly as the rest of Sagaflow
//!   reads them (`preserve_order`, `float_roundtrip`). Values are built through a small
//!   visitor that also notices repeated keys, which `Value`'s own would merge silently.
//! - `jsonc-parser`'s syntax tree of the same, already valid, text holds the byte range of
//!   every key and value. Positions are only needed when something is reported, so the tree
//!   is parsed lazily, on the first position asked for, and a pointer is resolved by walking
//!   it: a valid definition without warnings pays for one parse only.

use std::cell::{Cell, OnceCell};
use std::collections::HashMap;
use std::fmt;

use jsonc_parser::ast;
use jsonc_parser::common::Ranged;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::limits::NESTING_LIMIT;

/// Which part of an object member a diagnostic points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Focus {
    /// The key (`"Next"` in `"Next": "A"`): for fields that should not be there.
    Key,
    /// The value: for fields whose value is wrong.
    Value,
}

/// A syntax error, positioned.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) message: String,
    /// The text nests arrays and objects past [`NESTING_LIMIT`], at `line:column`.
    pub(crate) too_deep: bool,
}

/// A key that appears twice in one object.
#[derive(Debug, Clone)]
pub(crate) struct DuplicateKey {
    /// Pointer to the member (the later occurrence).
    pub(crate) pointer: String,
    pub(crate) key: String,
    /// Byte offset of the later occurrence's key.
    pub(crate) offset: usize,
    /// Byte offset of the first occurrence's key.
    pub(crate) first_offset: usize,
}

/// The text of a definition with its syntax tree, for positions.
#[derive(Debug)]
pub(crate) struct Source<'t> {
    text: &'t str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Parsed on first use. `None` inside only if jsonc-parser rejected text that serde_json
    /// accepted; positions then fall back to 1:1 rather than failing the compilation.
    tree: OnceCell<Option<ast::Value<'t>>>,
    has_duplicates: bool,
}

impl<'t> Source<'t> {
    /// Parse `text`; a syntax error is returned positioned.
    pub(crate) fn parse(text: &'t str) -> Result<(Value, Source<'t>), SyntaxError> {
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let mut source = Source { text, line_starts, tree: OnceCell::new(), has_duplicates: false };
        let duplicates = Cell::new(false);
        let too_deep = Cell::new(false);
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let parsed = ValueSeed { duplicates: &duplicates, too_deep: &too_deep, depth: 0 }
            .deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value));
        match parsed {
            Ok(value) => {
                source.has_duplicates = duplicates.get();
                Ok((value, source))
            }
            Err(err) => Err(SyntaxError { too_deep: too_deep.get(), ..source.syntax_error(&err) }),
        }
    }

    fn tree(&self) -> Option<&ast::Value<'t>> {
        self.tree
            .get_or_init(|| {
                jsonc_parser::parse_to_ast(
                    self.text,
                    &jsonc_parser::CollectOptions::default(),
                    &jsonc_parser::ParseOptions::default(),
                )
                .ok()
                .and_then(|result| result.value)
            })
            .as_ref()
    }

    fn syntax_error(&self, err: &serde_json::Error) -> SyntaxError {
        // serde_json counts columns in bytes; people count characters.
        let line = err.line().max(1);
        let (line, column) = match self.line_starts.get(line - 1) {
            Some(&start) => {
                let offset = (start + err.column().saturating_sub(1)).min(self.text.len());
                self.line_column(offset)
            }
            None => (line, err.column().max(1)),
        };
        let full = err.to_string();
        let message = match full.rfind(" at line ") {
            Some(cut) => full[..cut].to_string(),
            None => full,
        };
        SyntaxError { line, column, message: format!("invalid JSON: {message}"), too_deep: false }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&start| start <= offset).max(1);
        let start = self.line_starts[line - 1];
        let mut end = offset.min(self.text.len());
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text.get(start..end).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// Position of what `pointer` names. When the pointer does not resolve completely (a
    /// missing field), the deepest member that exists is used, at its key.
    pub(crate) fn position(&self, pointer: &str, focus: Focus) -> (usize, usize) {
        let Some(mut node) = self.tree() else {
            return (1, 1);
        };
        let mut key: Option<usize> = None;
        let mut complete = true;
        for segment in pointer.split('/').skip(1) {
            let segment = unescape(segment);
            let next = match node {
                ast::Value::Object(object) => object
                    .properties
                    .iter()
                    .rev()
                    .find(|p| p.name.as_str() == segment)
                    .map(|p| (Some(p.name.range().start), &p.value)),
                ast::Value::Array(array) => {
                    segment.parse::<usize>().ok().and_then(|i| array.elements.get(i)).map(|v| (None, v))
                }
                _ => None,
            };
            match next {
                Some((k, v)) => {
                    key = k;
                    node = v;
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        let offset = match (focus, key) {
            (Focus::Key, Some(k)) => k,
            (_, Some(k)) if !complete => k,
            _ => node.range().start,
        };
        self.line_column(offset)
    }

    /// Every key that appears more than once in its object, in source order.
    pub(crate) fn duplicate_keys(&self) -> Vec<DuplicateKey> {
        let mut found = Vec::new();
        if !self.has_duplicates {
            return found;
        }
        if let Some(root) = self.tree() {
            let mut pointer = String::new();
            collect_duplicates(root, &mut pointer, &mut found);
        }
        found
    }
}

/// Builds a `Value` as serde_json's own visitor does, notes repeated keys, and stops at the
/// first array or object past [`NESTING_LIMIT`] (serde_json's error then carries its position,
/// and nothing after the parser ever walks deeper).
#[derive(Clone, Copy)]
struct ValueSeed<'f> {
    duplicates: &'f Cell<bool>,
    too_deep: &'f Cell<bool>,
    /// Arrays and objects around the value being read.
    depth: usize,
}

impl ValueSeed<'_> {
    /// The seed for the members of an array or object opened here.
    fn inner<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= NESTING_LIMIT {
            self.too_deep.set(true);
            return Err(E::custom(format_args!("arrays and objects nest more than {NESTING_LIMIT} levels deep")));
        }
        Ok(ValueSeed { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(inner)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            let value = access.next_value_seed(inner)?;
            // Like serde_json: the first key keeps its place, the last value wins.
            if map.insert(key, value).is_some() {
                self.duplicates.set(true);
            }
        }
        Ok(Value::Object(map))
    }
}

fn collect_duplicates(node: &ast::Value<'_>, pointer: &mut String, found: &mut Vec<DuplicateKey>) {
    match node {
        ast::Value::Object(object) => {
            let mut seen: HashMap<&str, usize> = HashMap::with_capacity(object.properties.len());
            for prop in &object.properties {
                let name = prop.name.as_str();
                let offset = prop.name.range().start;
                let len = pointer.len();
                push_segment(pointer, name);
                if let Some(&first_offset) = seen.get(name) {
                    found.push(DuplicateKey { pointer: pointer.clone(), key: name.to_string(), offset, first_offset });
                } else {
                    seen.insert(name, offset);
                }
                collect_duplicates(&prop.value, pointer, found);
                pointer.truncate(len);
            }
        }
        ast::Value::Array(array) => {
            for (i, element) in array.elements.iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                collect_duplicates(element, pointer, found);
                pointer.truncate(len);
            }
        }
        _ => {}
    }
}

/// Append `/<key>` to a pointer, escaped per RFC 6901.
pub(crate) fn push_segment(pointer: &mut String, key: &str) {
    pointer.push('/');
    for c in key.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

fn unescape(segment: &str) -> std::borrow::Cow<'_, str> {
    if segment.contains('~') { segment.replace("~1", "/").replace("~0", "~").into() } else { segment.into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_and_values() {
        let text = "{\n  \"a\": {\"b/c\": [1, \"é\", true]},\n  \"d\": 2\n}";
        let (_, source) = Source::parse(text).expect("valid");
        assert_eq!(source.position("", Focus::Value), (1, 1));
        assert_eq!(source.position("/a", Focus::Key), (2, 3));
        assert_eq!(source.position("/a", Focus::Value), (2, 8));
        assert_eq!(source.position("/a/b~1c/2", Focus::Value), (2, 25));
        assert_eq!(source.position("/d", Focus::Value), (3, 8));
        // A missing member points at the deepest existing key.
        assert_eq!(source.position("/d/missing", Focus::Value), (3, 3));
    }

    #[test]
    fn syntax_errors_are_positioned() {
        let err = Source::parse("{\n  \"a\": 1,\n}").expect_err("trailing comma");
        assert_eq!((err.line, err.column), (3, 1));
        assert!(err.message.contains("trailing comma"), "{}", err.message);
    }

    #[test]
    fn duplicate_keys_are_found() {
        let (_, source) = Source::parse("{\"a\": 1, \"b\": {\"x\": 1, \"x\": 2}}").expect("valid");
        let dups = source.duplicate_keys();
        assert_eq!(dups.len(), 1);
        assert_eq!(dups[0].pointer, "/b/x");
    }
}

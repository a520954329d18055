//! JSONPath as Step Functions reads it: reference paths (definite, also the ResultPath setter)
//! and general queries, rooted at `$` (input), `$$` (context object) or `$name` (variable).
//!
//! The syntax is parsed by hand because AWS uses Jayway JsonPath, whose dot notation accepts
//! names RFC 9535 rejects (`$.delivery-partner`) and whose bracket strings keep backslashes
//! verbatim (`$['Test\""Name"']` names the key `Test\""Name"`). Definite paths are walked by
//! hand (no allocation, Jayway's error wording); indefinite ones are re-emitted in RFC 9535
//! normal form and handed to `serde_json_path`, which also parses the filter expressions.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde_json::Value;

use super::{EvalError, ExprError, Scope};
use crate::errors;
use crate::limits::EXPRESSION_NESTING_LIMIT;

/// Where a path starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// `$`: the value the expression applies to.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(Box<str>),
}

/// One step of a definite path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Name(Box<str>),
    /// Negative indices count from the end, as in Jayway.
    Index(i64),
}

/// A step as written, before we know whether the whole path is definite.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Name(String),
    Index(i64),
    Names(Vec<String>),
    Indices(Vec<i64>),
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Wildcard,
    /// The filter text from `?` to just before the closing `]`.
    Filter(String),
    Descendant(Box<Token>),
}

fn is_var_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_var_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Parses the root and the tokens; errors are plain sentences about `src`.
fn tokenize(src: &str) -> Result<(Root, Vec<Token>), String> {
    let Some(rest) = src.strip_prefix('$') else {
        return Err(format!("the path '{src}' must begin with '$'"));
    };
    let (root, mut pos) = if rest.starts_with('$') {
        (Root::Context, 2)
    } else if rest.chars().next().is_some_and(is_var_start) {
        let len = rest.find(|c: char| !is_var_char(c)).unwrap_or(rest.len());
        (Root::Variable(rest[..len].into()), 1 + len)
    } else {
        (Root::Input, 1)
    };
    let bytes = src.as_bytes();
    let mut tokens = Vec::new();
    while pos < bytes.len() {
        match bytes[pos] {
            b'.' if bytes.get(pos + 1) == Some(&b'.') => {
                pos += 2;
                let inner = match bytes.get(pos) {
                    Some(b'[') => parse_bracket(src, &mut pos)?,
                    Some(b'*') => {
                        pos += 1;
                        Token::Wildcard
                    }
                    _ => Token::Name(parse_dot_name(src, &mut pos)?),
                };
                tokens.push(Token::Descendant(Box::new(inner)));
            }
            b'.' => {
                pos += 1;
                if bytes.get(pos) == Some(&b'*') {
                    pos += 1;
                    tokens.push(Token::Wildcard);
                } else {
                    tokens.push(Token::Name(parse_dot_name(src, &mut pos)?));
                }
            }
            b'[' => tokens.push(parse_bracket(src, &mut pos)?),
            _ => {
                let c = src[pos..].chars().next().unwrap_or('?');
                return Err(format!("unexpected character '{c}' at position {pos} of the path '{src}'"));
            }
        }
    }
    Ok((root, tokens))
}

/// A name after `.`: Jayway reads up to the next `.` or `[`; we also stop at characters that
/// can only be a mistake here (whitespace, brackets, parentheses of a function call).
fn parse_dot_name(src: &str, pos: &mut usize) -> Result<String, String> {
    let rest = &src[*pos..];
    let len = rest.find(|c: char| matches!(c, '.' | '[' | ']' | '(' | ')') || c.is_whitespace()).unwrap_or(rest.len());
    if rest[len..].starts_with('(') {
        return Err(format!("JSONPath functions such as '{}' are not supported in the path '{src}'", &rest[..len]));
    }
    if len == 0 {
        return Err(format!("a property name is missing at position {} of the path '{src}'", *pos));
    }
    *pos += len;
    Ok(rest[..len].to_owned())
}

fn skip_ws(bytes: &[u8], pos: &mut usize) {
    while bytes.get(*pos).is_some_and(u8::is_ascii_whitespace) {
        *pos += 1;
    }
}

/// `[...]` starting at `*pos` (which points at `[`); leaves `*pos` after the `]`.
fn parse_bracket(src: &str, pos: &mut usize) -> Result<Token, String> {
    let bytes = src.as_bytes();
    let open = *pos;
    *pos += 1;
    skip_ws(bytes, pos);
    let unclosed = || format!("the '[' at position {open} of the path '{src}' is not closed");
    match bytes.get(*pos) {
        None => Err(unclosed()),
        Some(b'*') => {
            *pos += 1;
            skip_ws(bytes, pos);
            expect_close(src, pos)?;
            Ok(Token::Wildcard)
        }
        Some(b'?') => {
            let start = *pos;
            let mut depth = 0usize;
            let mut quote: Option<u8> = None;
            let mut escaped = false;
            while let Some(&c) = bytes.get(*pos) {
                if let Some(q) = quote {
                    if escaped {
                        escaped = false;
                    } else if c == b'\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                } else {
                    match c {
                        b'\'' | b'"' => quote = Some(c),
                        b'(' | b'[' => {
                            depth += 1;
                            // serde_json_path parses filters recursively: bound the nesting.
                            if depth > EXPRESSION_NESTING_LIMIT {
                                return Err(format!(
                                    "the filter at position {open} of the path '{src}' nests brackets and \
                                     parentheses more than {EXPRESSION_NESTING_LIMIT} levels deep \
                                     ({EXPRESSION_NESTING_LIMIT} is the limit)"
                                ));
                            }
                        }
                        b')' => depth = depth.saturating_sub(1),
                        b']' if depth == 0 => {
                            let filter = src[start..*pos].trim_end().to_owned();
                            *pos += 1;
                            return Ok(Token::Filter(filter));
                        }
                        b']' => depth -= 1,
                        _ => {}
                    }
                }
                *pos += 1;
            }
            Err(unclosed())
        }
        Some(&q @ (b'\'' | b'"')) => {
            let mut names = Vec::new();
            let mut quote = q;
            loop {
                // Jayway only uses the backslash to skip over the next character while looking
                // for the closing quote; the text between the quotes is the key, verbatim.
                *pos += 1;
                let start = *pos;
                let mut escaped = false;
                loop {
                    match bytes.get(*pos) {
                        None => return Err(unclosed()),
                        Some(_) if escaped => escaped = false,
                        Some(b'\\') => escaped = true,
                        Some(&c) if c == quote => break,
                        Some(_) => {}
                    }
                    *pos += 1;
                }
                names.push(src[start..*pos].to_owned());
                *pos += 1;
                skip_ws(bytes, pos);
                match bytes.get(*pos) {
                    Some(b',') => {
                        *pos += 1;
                        skip_ws(bytes, pos);
                        match bytes.get(*pos) {
                            Some(&c @ (b'\'' | b'"')) => quote = c,
                            _ => {
                                return Err(format!("expected a quoted name at position {} of the path '{src}'", *pos));
                            }
                        }
                    }
                    Some(b']') => {
                        *pos += 1;
                        break;
                    }
                    _ => return Err(unclosed()),
                }
            }
            if names.len() == 1 { Ok(Token::Name(names.remove(0))) } else { Ok(Token::Names(names)) }
        }
        Some(_) => {
            let start = *pos;
            let Some(len) = src[start..].find(']') else {
                return Err(unclosed());
            };
            *pos = start + len + 1;
            let inner = &src[start..start + len];
            let bad = || format!("'[{inner}]' is not a valid index or slice in the path '{src}'");
            let int = |s: &str| -> Result<Option<i64>, String> {
                let s = s.trim();
                if s.is_empty() { Ok(None) } else { s.parse::<i64>().map(Some).map_err(|_| bad()) }
            };
            if inner.contains(':') {
                let parts: Vec<&str> = inner.split(':').collect();
                if parts.len() > 3 {
                    return Err(bad());
                }
                let step = match parts.get(2) {
                    Some(s) => int(s)?,
                    None => None,
                };
                if step == Some(0) {
                    return Err(bad());
                }
                Ok(Token::Slice(int(parts[0])?, int(parts[1])?, step))
            } else if inner.contains(',') {
                let indices = inner.split(',').map(|s| int(s)?.ok_or_else(bad)).collect::<Result<Vec<_>, _>>()?;
                Ok(Token::Indices(indices))
            } else {
                Ok(Token::Index(int(inner)?.ok_or_else(bad)?))
            }
        }
    }
}

fn expect_close(src: &str, pos: &mut usize) -> Result<(), String> {
    if src.as_bytes().get(*pos) == Some(&b']') {
        *pos += 1;
        Ok(())
    } else {
        Err(format!("expected ']' at position {} of the path '{src}'", *pos))
    }
}

/// RFC 9535 string literal (single-quoted) for a member name.
fn push_rfc_name(out: &mut String, name: &str) {
    out.push('\'');
    for c in name.chars() {
        match c {
            '\'' => out.push_str("\\'"),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn push_rfc_selector(out: &mut String, token: &Token) {
    match token {
        Token::Name(name) => {
            out.push('[');
            push_rfc_name(out, name);
            out.push(']');
        }
        Token::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
        Token::Names(names) => {
            out.push('[');
            for (n, name) in names.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                push_rfc_name(out, name);
            }
            out.push(']');
        }
        Token::Indices(indices) => {
            out.push('[');
            for (n, i) in indices.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{i}");
            }
            out.push(']');
        }
        Token::Slice(start, end, step) => {
            out.push('[');
            if let Some(s) = start {
                let _ = write!(out, "{s}");
            }
            out.push(':');
            if let Some(e) = end {
                let _ = write!(out, "{e}");
            }
            if let Some(s) = step {
                let _ = write!(out, ":{s}");
            }
            out.push(']');
        }
        Token::Wildcard => out.push_str("[*]"),
        Token::Filter(filter) => {
            out.push('[');
            out.push_str(filter);
            out.push(']');
        }
        Token::Descendant(inner) => {
            out.push_str("..");
            push_rfc_selector(out, inner);
        }
    }
}

/// Jayway's rendering of a definite path (`$['a'][0]`), used in its error messages.
fn jayway_path(steps: &[Step]) -> String {
    let mut out = String::from("$");
    for step in steps {
        match step {
            Step::Name(name) => {
                let _ = write!(out, "['{name}']");
            }
            Step::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
    out
}

/// Java class names as Jayway's default JSON provider (json-smart) reports them.
fn java_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "java.lang.Boolean",
        Value::Number(n) if n.is_f64() => "java.lang.Double",
        Value::Number(_) => "java.lang.Integer",
        Value::String(_) => "java.lang.String",
        Value::Array(_) => "net.minidev.json.JSONArray",
        Value::Object(_) => "net.minidev.json.JSONObject",
    }
}

/// Why a definite path found nothing, in Jayway's words (AWS passes them through).
fn miss_reason(steps: &[Step], at: usize, value: &Value) -> String {
    let leaf = at + 1 == steps.len();
    let here = jayway_path(&steps[..at]);
    match (&steps[at], value) {
        (Step::Name(_), Value::Object(_)) | (Step::Index(_), Value::Array(_)) if leaf => {
            format!("No results for path: {}", jayway_path(steps))
        }
        (Step::Name(_), Value::Object(_)) => {
            format!("Missing property in path {}", jayway_path(&steps[..=at]))
        }
        (Step::Index(_), Value::Array(_)) => {
            format!("No results for path: {}", jayway_path(steps))
        }
        (Step::Name(name), other) => format!(
            "Expected to find an object with property ['{name}'] in path {here} but found '{}'. \
             This is not a json object according to the JsonProvider: \
             'com.jayway.jsonpath.spi.json.JsonSmartJsonProvider'.",
            java_type(other)
        ),
        (Step::Index(_), Value::Null) => format!("The path {here} is null"),
        (Step::Index(i), other) => format!(
            "Filter: [{i}] can only be applied to arrays. Current context is: {}",
            serde_json::to_string(other).unwrap_or_default()
        ),
    }
}

fn step_into<'v>(value: &'v Value, step: &Step) -> Option<&'v Value> {
    match (step, value) {
        (Step::Name(name), Value::Object(map)) => map.get(&**name),
        (Step::Index(i), Value::Array(items)) => {
            let idx = if *i < 0 { i64::try_from(items.len()).ok()? + i } else { *i };
            items.get(usize::try_from(idx).ok()?)
        }
        _ => None,
    }
}

/// The value a root names, or `None` for an unknown variable.
fn root_value<'v>(root: &Root, scope: &Scope<'v>) -> Option<&'v Value> {
    match root {
        Root::Input => Some(scope.input),
        Root::Context => Some(scope.context),
        Root::Variable(name) => scope.variables.get(name),
    }
}

/// Walks definite steps; on a miss says which step failed and on what value.
fn walk<'v>(mut value: &'v Value, steps: &[Step]) -> Result<&'v Value, (usize, &'v Value)> {
    for (at, step) in steps.iter().enumerate() {
        match step_into(value, step) {
            Some(next) => value = next,
            None => return Err((at, value)),
        }
    }
    Ok(value)
}

fn definite_steps(tokens: Vec<Token>) -> Result<Vec<Step>, Token> {
    tokens
        .into_iter()
        .map(|t| match t {
            Token::Name(n) => Ok(Step::Name(n.into())),
            Token::Index(i) => Ok(Step::Index(i)),
            other => Err(other),
        })
        .collect()
}

fn expr_error(message: String) -> ExprError {
    ExprError { pointer: String::new(), message }
}

fn runtime(message: String) -> EvalError {
    EvalError { error: errors::RUNTIME.to_owned(), message }
}

/// A reference path: a definite JSONPath (`$`, `$.a.b`, `$.a[0]`, `$['x y']`, `$$.Execution.Id`,
/// `$var.field`) that names at most one location. Used by InputPath, OutputPath, ResultPath,
/// ItemsPath and the `...Path` fields that expect one value.
#[derive(Debug, Clone)]
pub struct ReferencePath {
    source: String,
    root: Root,
    steps: Vec<Step>,
}

impl ReferencePath {
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        let (root, tokens) = tokenize(source).map_err(expr_error)?;
        let steps = definite_steps(tokens).map_err(|_| {
            expr_error(format!(
                "the reference path '{source}' must name a single value: wildcards, slices, \
                 filters, unions and '..' are not allowed here"
            ))
        })?;
        // A ResultPath builds one object per step: more steps than values may nest would only
        // build a value that every later check refuses.
        if steps.len() > EXPRESSION_NESTING_LIMIT {
            return Err(expr_error(format!(
                "the reference path '{source}' has {} steps, more than the limit of {EXPRESSION_NESTING_LIMIT}",
                steps.len()
            )));
        }
        Ok(ReferencePath { source: source.to_owned(), root, steps })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The value at this path; `EvalError` (States.Runtime) when nothing is there, worded as
    /// AWS does for OutputPath: `Invalid path '$.x' : No results for path: $['x']`.
    pub fn get(&self, scope: &Scope<'_>) -> Result<Value, EvalError> {
        self.get_ref(scope).cloned()
    }

    /// [`get`](Self::get) without the copy.
    pub fn get_ref<'v>(&self, scope: &Scope<'v>) -> Result<&'v Value, EvalError> {
        let Some(start) = root_value(&self.root, scope) else {
            return Err(runtime(format!(
                "Invalid path '{}' : The variable '{}' is not defined",
                self.source,
                match &self.root {
                    Root::Variable(name) => name,
                    _ => "",
                }
            )));
        };
        walk(start, &self.steps).map_err(|(at, value)| {
            runtime(format!("Invalid path '{}' : {}", self.source, miss_reason(&self.steps, at, value)))
        })
    }

    /// Like [`get`](Self::get) but `None` instead of an error when nothing is there.
    pub fn find(&self, scope: &Scope<'_>) -> Option<Value> {
        self.find_ref(scope).cloned()
    }

    /// [`find`](Self::find) without the copy.
    pub fn find_ref<'v>(&self, scope: &Scope<'v>) -> Option<&'v Value> {
        walk(root_value(&self.root, scope)?, &self.steps).ok()
    }

    /// ResultPath semantics: `target` with `value` placed at this path (creating objects on
    /// the way). `$` replaces the whole target. Fails with `States.ResultPathMatchFailure`
    /// (`Unable to apply ReferencePath $.a to input "text"`) when the way is blocked by a
    /// value that is not an object, or an array index is out of range.
    pub fn set(&self, target: Value, value: Value) -> Result<Value, EvalError> {
        if self.root != Root::Input {
            return Err(self.set_failure(&target));
        }
        let mut target = target;
        if place(&mut target, &self.steps, value) { Ok(target) } else { Err(self.set_failure(&target)) }
    }

    fn set_failure(&self, target: &Value) -> EvalError {
        EvalError {
            error: errors::RESULT_PATH_MATCH_FAILURE.to_owned(),
            message: format!(
                "Unable to apply ReferencePath {} to input {}",
                self.source,
                serde_json::to_string(target).unwrap_or_default()
            ),
        }
    }
}

/// Writes `value` at `steps` inside `target`; `false` (target untouched) if it cannot.
fn place(target: &mut Value, steps: &[Step], value: Value) -> bool {
    if !can_place(target, steps) {
        return false;
    }
    let mut slot = target;
    for step in steps {
        slot = match (step, slot) {
            (Step::Name(name), Value::Object(map)) => {
                map.entry(name.to_string()).or_insert_with(|| Value::Object(serde_json::Map::new()))
            }
            (Step::Index(i), Value::Array(items)) => {
                let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
                let idx = if *i < 0 { len + i } else { *i };
                match usize::try_from(idx).ok().and_then(|idx| items.get_mut(idx)) {
                    Some(item) => item,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    *slot = value;
    true
}

/// Checked before mutating so a failed ResultPath never leaves half-created objects behind.
fn can_place(target: &Value, steps: &[Step]) -> bool {
    let mut current = Some(target);
    for step in steps {
        match current {
            // Missing: everything below is created as objects, which only names can enter.
            None => {
                if matches!(step, Step::Index(_)) {
                    return false;
                }
            }
            Some(value) => {
                if !matches!((step, value), (Step::Name(_), Value::Object(_)) | (Step::Index(_), Value::Array(_))) {
                    return false;
                }
                if matches!(step, Step::Index(_)) && step_into(value, step).is_none() {
                    return false;
                }
                current = step_into(value, step);
            }
        }
    }
    true
}

#[derive(Debug, Clone)]
enum Query {
    Definite(Vec<Step>),
    /// The query in RFC 9535 form, rooted at the root value.
    Indefinite(Box<serde_json_path::JsonPath>),
}

/// A JSONPath query over `$`, `$$` or a variable; an indefinite query (wildcard, slice,
/// filter, recursive descent) yields an array of matches.
#[derive(Debug, Clone)]
pub struct Path {
    source: String,
    root: Root,
    query: Query,
    /// A final `['a','b']`: Jayway merges those members of each match into one object
    /// (and counts the path as definite when the rest is), where RFC 9535 would list them.
    merge: Option<Vec<String>>,
}

impl Path {
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        let (root, mut tokens) = tokenize(source).map_err(expr_error)?;
        let merge = match tokens.last() {
            Some(Token::Names(_)) => match tokens.pop() {
                Some(Token::Names(names)) => Some(names),
                _ => None,
            },
            _ => None,
        };
        let query = if tokens.iter().all(|t| matches!(t, Token::Name(_) | Token::Index(_))) {
            Query::Definite(definite_steps(tokens).unwrap_or_default())
        } else {
            let mut rfc = String::from("$");
            for token in &tokens {
                push_rfc_selector(&mut rfc, token);
            }
            let compiled = serde_json_path::JsonPath::parse(&rfc)
                .map_err(|e| expr_error(format!("the JSONPath '{source}' is not supported: {}", e.message())))?;
            Query::Indefinite(Box::new(compiled))
        };
        Ok(Path { source: source.to_owned(), root, query, merge })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn root(&self) -> &Root {
        &self.root
    }

    /// Whether the path names at most one value (no wildcard, slice, filter, union or `..`).
    pub fn is_definite(&self) -> bool {
        matches!(self.query, Query::Definite(_))
    }

    /// `None` when a definite path names nothing.
    pub fn find(&self, scope: &Scope<'_>) -> Option<Value> {
        self.resolve(scope).map(Cow::into_owned)
    }

    /// [`find`](Self::find), borrowing when the path is definite.
    pub fn resolve<'v>(&self, scope: &Scope<'v>) -> Option<Cow<'v, Value>> {
        let start = root_value(&self.root, scope);
        match (&self.query, &self.merge) {
            (Query::Definite(steps), None) => walk(start?, steps).ok().map(Cow::Borrowed),
            (Query::Definite(steps), Some(names)) => merge_members(walk(start?, steps).ok()?, names).map(Cow::Owned),
            // Jayway answers an indefinite query with a (possibly empty) list, even when its
            // start is missing (corpus: `$.items[1:]` on `{}` gives `[]`).
            (Query::Indefinite(query), merge) => {
                let matches = start.map(|start| query.query(start));
                let items = matches.iter().flat_map(|nodes| nodes.iter());
                Some(Cow::Owned(Value::Array(match merge {
                    None => items.map(|v| (*v).clone()).collect(),
                    Some(names) => items.filter_map(|v| merge_members(v, names)).collect(),
                })))
            }
        }
    }
}

/// The listed members of an object that it has, in the order listed.
fn merge_members(value: &Value, names: &[String]) -> Option<Value> {
    let map = value.as_object()?;
    Some(Value::Object(names.iter().filter_map(|n| map.get(n).map(|v| (n.clone(), v.clone()))).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::NoVariables;
    use serde_json::json;

    fn scope<'a>(input: &'a Value, context: &'a Value) -> Scope<'a> {
        Scope { input, context, variables: &NoVariables }
    }

    fn query(path: &str, input: Value) -> Option<Value> {
        let ctx = json!({});
        Path::parse(path).unwrap_or_else(|e| panic!("{path}: {e}")).find(&scope(&input, &ctx))
    }

    #[test]
    fn parses_roots() {
        assert_eq!(ReferencePath::parse("$").expect("should succeed").root, Root::Input);
        assert_eq!(ReferencePath::parse("$$").expect("should succeed").root, Root::Context);
        let p = ReferencePath::parse("$$.Execution.Id").expect("should succeed");
        assert_eq!(p.root, Root::Context);
        assert_eq!(p.steps, vec![Step::Name("Execution".into()), Step::Name("Id".into())]);
        let p = ReferencePath::parse("$var.a[0]").expect("should succeed");
        assert_eq!(p.root, Root::Variable("var".into()));
        assert_eq!(p.steps, vec![Step::Name("a".into()), Step::Index(0)]);
        let p = ReferencePath::parse("$.delivery-partner").expect("should succeed");
        assert_eq!(p.steps, vec![Step::Name("delivery-partner".into())]);
    }

    #[test]
    fn rejects_bad_paths() {
        for bad in ["", "a", "$.", "$..", "$[", "$['a'", "$.a b", "$.a[x]", "$[1:2:0]", "$.a.length()"] {
            assert!(Path::parse(bad).is_err(), "{bad:?} should not parse");
        }
        for indefinite in ["$.a[*]", "$..a", "$.a[1:]", "$.a[?(@.b)]", "$.*", "$[0,1]"] {
            assert!(ReferencePath::parse(indefinite).is_err(), "{indefinite}");
            assert!(Path::parse(indefinite).is_ok(), "{indefinite}");
        }
    }

    #[test]
    fn bracket_names_keep_backslashes() {
        // corpus: scenarios.base_scenarios.escape_sequence_parsing.ESCAPE_SEQUENCES_JSONPATH
        let input = json!({"Test\\\"\"Name\"": "Value\"\\"});
        assert_eq!(query("$['Test\\\"\"Name\"']", input), Some(json!("Value\"\\")));
    }

    #[test]
    fn definite_array_access() {
        // corpus: base.json_path_array_access.items_10_484dcc
        let items: Vec<Value> = (0..11).map(|i| json!({"item_key": i})).collect();
        let input = json!({ "items": items });
        assert_eq!(query("$.items[10]", input.clone()), Some(json!({"item_key": 10})));
        assert_eq!(query("$.items[-1]", input.clone()), Some(json!({"item_key": 10})));
        assert_eq!(query("$.items[11]", input), None);
    }

    #[test]
    fn indefinite_on_missing_input_is_empty() {
        // corpus: base.json_path_array_wildcard_or_slice_with_no_input.*
        for p in [
            "$.item.items[1:5]",
            "$.item.items[1:5].itemValue",
            "$.item.items[:1]",
            "$.item.items[1:]",
            "$.items[1:]",
            "$.items[:1]",
            "$.items[1:].itemValue",
            "$.items[*]",
            "$.items[*].itemValue",
        ] {
            assert_eq!(query(p, json!({})), Some(json!([])), "{p}");
        }
    }

    #[test]
    fn slices_wildcards_and_filters() {
        let input = json!({"items": [{"v": 1}, {"v": 2}, {"w": 3}, {"v": 4}]});
        assert_eq!(query("$.items[1:].v", input.clone()), Some(json!([2, 4])));
        assert_eq!(query("$.items[:1]", input.clone()), Some(json!([{"v": 1}])));
        assert_eq!(query("$.items[*].v", input.clone()), Some(json!([1, 2, 4])));
        assert_eq!(query("$..w", input.clone()), Some(json!([3])));
        assert_eq!(query("$.items[0,3]", input.clone()), Some(json!([{"v": 1}, {"v": 4}])));
        // Jayway merges a final multi-name selector into one object.
        let obj = json!({"o": {"a": 1, "b": 2, "c": 3}, "l": [{"a": 1, "c": 2}, 5, {"b": 3}]});
        assert_eq!(query("$.o['c','a','x']", obj.clone()), Some(json!({"c": 3, "a": 1})));
        assert_eq!(query("$.l[*]['a','b']", obj.clone()), Some(json!([{"a": 1}, {"b": 3}])));
        assert_eq!(query("$.l['a','b']", obj.clone()), None);
        assert_eq!(query("$['o','l'].a", obj), Some(json!([1])));
        // corpus: base.state_pass_regex_json_path_base
        let users = json!({"users": [{"year": 1997, "status": 0}, {"year": 1998, "status": 1}]});
        assert_eq!(query("$.users[?(@.status == 0)]", users.clone()), Some(json!([{"year": 1997, "status": 0}])));
        assert_eq!(query("$.users[?(@.year > 1997 && @.status == 1)].year", users.clone()), Some(json!([1998])));
        assert_eq!(query("$.users[?(@.name == 'x')]", users), Some(json!([])));
    }

    #[test]
    fn reference_path_errors_use_jayway_wording() {
        let input = json!({"a": {"b": 1}, "s": "text", "arr": [1]});
        let ctx = json!({});
        let sc = scope(&input, &ctx);
        let err = |p: &str| ReferencePath::parse(p).expect("should succeed").get(&sc).expect_err("should fail");
        // corpus: ST_INVALID_JSONPATH_IN_OUTPUTPATH
        let e = err("$.NoSuchOutputPath");
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(e.message, "Invalid path '$.NoSuchOutputPath' : No results for path: $['NoSuchOutputPath']");
        assert_eq!(err("$.x.y").message, "Invalid path '$.x.y' : Missing property in path $['x']");
        assert_eq!(err("$.arr[3]").message, "Invalid path '$.arr[3]' : No results for path: $['arr'][3]");
        assert!(err("$.s.t").message.contains("but found 'java.lang.String'"));
    }

    #[test]
    fn set_creates_objects_and_replaces() {
        let p = |s: &str| ReferencePath::parse(s).expect("should succeed");
        assert_eq!(p("$").set(json!({"a": 1}), json!(2)).expect("should succeed"), json!(2));
        assert_eq!(p("$.a.b").set(json!({"x": 1}), json!(2)).expect("should succeed"), json!({"x": 1, "a": {"b": 2}}));
        assert_eq!(p("$.x").set(json!({"x": 1}), json!([2])).expect("should succeed"), json!({"x": [2]}));
        assert_eq!(p("$.a[1]").set(json!({"a": [0, 1]}), json!("z")).expect("should succeed"), json!({"a": [0, "z"]}));
        let e = p("$.a").set(json!("text"), json!(1)).expect_err("should fail");
        assert_eq!(e.error, "States.ResultPathMatchFailure");
        assert_eq!(e.message, "Unable to apply ReferencePath $.a to input \"text\"");
        assert!(p("$.x.y").set(json!({"x": 1}), json!(1)).is_err());
        assert!(p("$.a[2]").set(json!({"a": [0]}), json!(1)).is_err());
        assert!(p("$$.a").set(json!({}), json!(1)).is_err());
    }
}

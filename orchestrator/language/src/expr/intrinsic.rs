//! `States.*` intrinsic functions: parsing of call expressions and evaluation.
//!
//! The call syntax is parsed once into a tree of [`Arg`]s (literals, paths, nested calls);
//! evaluation only walks it. Literal strings are single-quoted; inside them `\'`, `\{`, `\}`
//! and `\\` are escapes, and an escaped brace is never a `States.Format` placeholder.
//! Every run-time failure is `States.Runtime`, the name AWS gives every other
//! data-expression failure in the corpus; the corpus records no failing intrinsic, so this
//! (rather than the specification's `States.IntrinsicFailure`) is a judgement, not a
//! recording. Limits follow AWS's documentation: 10,000 characters for Base64 and Hash
//! input, 1,000 items for `States.ArrayRange`, shallow `States.JsonMerge` only.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine as _;
use serde_json::{Map, Number, Value};

use super::{EvalError, ExprError, Path, Rng, Scope, path_not_found};
use crate::errors;
use crate::limits::{self, EVALUATION_BUDGET_BYTES, EXPRESSION_NESTING_LIMIT};

/// The 18 functions AWS offers in JSONPath mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Function {
    pub const ALL: [Function; 18] = [
        Function::Format,
        Function::StringToJson,
        Function::JsonToString,
        Function::Array,
        Function::ArrayPartition,
        Function::ArrayContains,
        Function::ArrayRange,
        Function::ArrayGetItem,
        Function::ArrayLength,
        Function::ArrayUnique,
        Function::Base64Encode,
        Function::Base64Decode,
        Function::Hash,
        Function::JsonMerge,
        Function::MathRandom,
        Function::MathAdd,
        Function::StringSplit,
        Function::Uuid,
    ];

    /// The full name as written, e.g. `States.Format`.
    pub fn name(self) -> &'static str {
        match self {
            Function::Format => "States.Format",
            Function::StringToJson => "States.StringToJson",
            Function::JsonToString => "States.JsonToString",
            Function::Array => "States.Array",
            Function::ArrayPartition => "States.ArrayPartition",
            Function::ArrayContains => "States.ArrayContains",
            Function::ArrayRange => "States.ArrayRange",
            Function::ArrayGetItem => "States.ArrayGetItem",
            Function::ArrayLength => "States.ArrayLength",
            Function::ArrayUnique => "States.ArrayUnique",
            Function::Base64Encode => "States.Base64Encode",
            Function::Base64Decode => "States.Base64Decode",
            Function::Hash => "States.Hash",
            Function::JsonMerge => "States.JsonMerge",
            Function::MathRandom => "States.MathRandom",
            Function::MathAdd => "States.MathAdd",
            Function::StringSplit => "States.StringSplit",
            Function::Uuid => "States.UUID",
        }
    }

    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Allowed argument counts (inclusive); `None` as the maximum means unbounded.
    fn arity(self) -> (usize, Option<usize>) {
        match self {
            Function::Format => (1, None),
            Function::Array => (0, None),
            Function::Uuid => (0, Some(0)),
            Function::StringToJson
            | Function::JsonToString
            | Function::ArrayLength
            | Function::ArrayUnique
            | Function::Base64Encode
            | Function::Base64Decode => (1, Some(1)),
            Function::ArrayPartition
            | Function::ArrayContains
            | Function::ArrayGetItem
            | Function::Hash
            | Function::MathAdd
            | Function::StringSplit => (2, Some(2)),
            Function::ArrayRange | Function::JsonMerge => (3, Some(3)),
            Function::MathRandom => (2, Some(3)),
        }
    }
}

/// One argument of a call.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A quoted string, number, `true`, `false` or `null`.
    Literal(Value),
    Path(Path),
    Call(Call),
}

/// A piece of a `States.Format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder,
}

/// A parsed intrinsic call such as `States.Format('{}', $.name)`.
#[derive(Debug, Clone)]
pub struct Call {
    /// The function's full name, e.g. `States.Format`.
    pub function: String,
    func: Function,
    args: Vec<Arg>,
    /// The template of `States.Format` when it is a literal, split at its placeholders.
    format: Option<Vec<Piece>>,
    source: String,
}

/// AWS limits the text that Base64 and Hash functions accept.
const MAX_TEXT_CHARS: usize = 10_000;
/// AWS limits `States.ArrayRange` results.
const MAX_RANGE_ITEMS: usize = 1000;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// Calls open around the current position; bounded so that nesting cannot exhaust the stack.
    depth: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at position {} of the intrinsic function '{}'", self.pos, self.src)
    }

    fn call(&mut self) -> Result<Call, String> {
        let start = self.pos;
        let len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .unwrap_or(self.rest().len());
        let name = &self.rest()[..len];
        let Some(func) = Function::from_name(name) else {
            return Err(if name.starts_with("States.") {
                format!("'{name}' is not an intrinsic function")
            } else {
                format!(
                    "'{}' is neither a JSONPath (which starts with '$') nor an intrinsic \
                     function (States.Format(...), ...)",
                    self.src
                )
            });
        };
        self.pos += len;
        self.skip_ws();
        if self.peek() != Some(b'(') {
            return Err(self.err(&format!("expected '(' after '{name}'")));
        }
        self.pos += 1;
        self.skip_ws();
        let mut args = Vec::new();
        if self.peek() == Some(b')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.skip_ws();
                    }
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    None => return Err(self.err("missing ')'")),
                    Some(_) => return Err(self.err("expected ',' or ')'")),
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || max.is_some_and(|max| args.len() > max) {
            let expected = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            return Err(format!(
                "{} takes {expected} argument{}, but {} {} given",
                func.name(),
                if expected == "1" { "" } else { "s" },
                args.len(),
                if args.len() == 1 { "was" } else { "were" }
            ));
        }
        let mut format = None;
        if func == Function::Format {
            match args.first() {
                Some(Arg::Literal(Value::String(_))) => {}
                Some(Arg::Path(_)) => {}
                _ => {
                    return Err("the first argument of States.Format must be a string".to_owned());
                }
            }
        }
        check_literals(func, &args)?;
        let source = self.src[start..self.pos].to_owned();
        if func == Function::Format
            && let Some(Arg::Literal(Value::String(_))) = args.first()
        {
            // Re-read the template with its escapes to tell `{}` from `\{\}`.
            let raw = literal_source(&source);
            let pieces = format_pieces(&raw);
            let placeholders = pieces.iter().filter(|p| **p == Piece::Placeholder).count();
            if placeholders != args.len() - 1 {
                return Err(format!(
                    "States.Format has {placeholders} placeholder{} but {} value{}",
                    if placeholders == 1 { "" } else { "s" },
                    args.len() - 1,
                    if args.len() == 2 { "" } else { "s" }
                ));
            }
            format = Some(pieces);
        }
        Ok(Call { function: func.name().to_owned(), func, args, format, source })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        match self.peek() {
            None => Err(self.err("missing argument")),
            Some(b'\'') => Ok(Arg::Literal(Value::String(self.string()?))),
            Some(b'$') => {
                let start = self.pos;
                let bytes = self.src.as_bytes();
                let mut depth = 0usize;
                let mut quote: Option<u8> = None;
                let mut escaped = false;
                while let Some(&c) = bytes.get(self.pos) {
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
                            b'\'' | b'"' if depth > 0 => quote = Some(c),
                            b'[' | b'(' => depth += 1,
                            b']' => depth = depth.saturating_sub(1),
                            b')' if depth == 0 => break,
                            b')' => depth -= 1,
                            b',' if depth == 0 => break,
                            _ => {}
                        }
                    }
                    self.pos += 1;
                }
                let text = self.src[start..self.pos].trim_end();
                Path::parse(text).map(Arg::Path).map_err(|e| e.message)
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => {
                let start = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')) {
                    self.pos += 1;
                }
                let text = &self.src[start..self.pos];
                serde_json::from_str::<Number>(text)
                    .map(|n| Arg::Literal(Value::Number(n)))
                    .map_err(|_| format!("'{text}' is not a number"))
            }
            Some(_) => {
                let rest = self.rest();
                for (word, value) in [("true", Value::Bool(true)), ("false", Value::Bool(false)), ("null", Value::Null)]
                {
                    if let Some(after) = rest.strip_prefix(word)
                        && !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                    {
                        self.pos += word.len();
                        return Ok(Arg::Literal(value));
                    }
                }
                if rest.starts_with("States.") {
                    if self.depth >= EXPRESSION_NESTING_LIMIT {
                        return Err(self.err(&format!(
                            "intrinsic functions nest more than {EXPRESSION_NESTING_LIMIT} calls deep \
                             ({EXPRESSION_NESTING_LIMIT} is the limit)"
                        )));
                    }
                    self.depth += 1;
                    let call = self.call().map(Arg::Call);
                    self.depth -= 1;
                    return call;
                }
                Err(self.err("expected a quoted string, a number, true, false, null, a path or an intrinsic function"))
            }
        }
    }

    /// A single-quoted literal with its escapes resolved.
    fn string(&mut self) -> Result<String, String> {
        let open = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('\'' | '{' | '}' | '\\'))) => out.push(e),
                    // Anything else keeps its backslash: AWS documents only these four escapes.
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.pos = open;
        Err(self.err("unterminated string"))
    }
}

/// The raw text (escapes kept) of the first quoted literal in `call_source`.
fn literal_source(call_source: &str) -> String {
    let Some(open) = call_source.find('\'') else {
        return String::new();
    };
    let mut raw = String::new();
    let mut chars = call_source[open + 1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => break,
            '\\' => {
                raw.push('\\');
                if let Some(next) = chars.next() {
                    raw.push(next);
                }
            }
            c => raw.push(c),
        }
    }
    raw
}

/// Splits a raw template at unescaped `{}`; escapes are resolved in the text pieces.
fn format_pieces(raw: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('\'' | '{' | '}' | '\\')) => text.push(e),
                Some(other) => {
                    text.push('\\');
                    text.push(other);
                }
                None => text.push('\\'),
            },
            '{' if chars.peek() == Some(&'}') => {
                chars.next();
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(Piece::Placeholder);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// Compile-time checks of literal arguments, so the validator catches obvious mistakes.
fn check_literals(func: Function, args: &[Arg]) -> Result<(), String> {
    let literal = |i: usize| match args.get(i) {
        Some(Arg::Literal(v)) => Some(v),
        _ => None,
    };
    match func {
        Function::Hash => {
            if let Some(v) = literal(1) {
                match v.as_str() {
                    Some(alg) if HashAlgorithm::parse(alg).is_some() => {}
                    _ => {
                        return Err(format!(
                            "States.Hash does not support the algorithm {v}; use one of MD5, \
                             SHA-1, SHA-256, SHA-384, SHA-512"
                        ));
                    }
                }
            }
        }
        Function::JsonMerge => {
            if let Some(v) = literal(2) {
                if *v == Value::Bool(true) {
                    return Err("States.JsonMerge only supports shallow merging: its third \
                                argument must be false"
                        .to_owned());
                }
                if !v.is_boolean() {
                    return Err("the third argument of States.JsonMerge must be a boolean".to_owned());
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum HashAlgorithm {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "MD5" => HashAlgorithm::Md5,
            "SHA-1" => HashAlgorithm::Sha1,
            "SHA-256" => HashAlgorithm::Sha256,
            "SHA-384" => HashAlgorithm::Sha384,
            "SHA-512" => HashAlgorithm::Sha512,
            _ => return None,
        })
    }

    fn hex_digest(self, data: &[u8]) -> String {
        use sha2::Digest as _;
        let bytes: Vec<u8> = match self {
            HashAlgorithm::Md5 => md5::Md5::digest(data).to_vec(),
            HashAlgorithm::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlgorithm::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlgorithm::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlgorithm::Sha512 => sha2::Sha512::digest(data).to_vec(),
        };
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        out
    }
}

/// How `States.Format` prints a value: strings bare, other scalars as JSON, objects and
/// arrays as Java's `Map`/`List` `toString()` (corpus `generic.context_json_path`:
/// `{Id=arn:..., Name=...}`).
fn format_value(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                format_value(out, v);
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// serde_json reads `-0` as the float `-0.0`; AWS (Jackson) reads it as the integer `0`
/// (corpus json_manipulation.string_to_json.3).
fn positive_zero(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => {
            *value = Value::from(0);
        }
        Value::Array(items) => items.iter_mut().for_each(positive_zero),
        Value::Object(map) => map.values_mut().for_each(positive_zero),
        _ => {}
    }
}

/// `java.lang.Math.round`: halves go up (`-1.5` → `-1`), which the MathAdd corpus pins down.
fn java_round(x: f64) -> f64 {
    (x + 0.5).floor()
}

/// `java.util.Random(seed).nextInt(bound)`, so a seeded `States.MathRandom` is reproducible
/// the way AWS's Java implementation is.
fn java_random_next_int(seed: i64, bound: i32) -> i32 {
    const MULTIPLIER: i64 = 0x5DEE_CE66D;
    const MASK: i64 = (1 << 48) - 1;
    let mut state = (seed ^ MULTIPLIER) & MASK;
    let mut next = |bits: u32| -> i32 {
        state = (state.wrapping_mul(MULTIPLIER).wrapping_add(0xB)) & MASK;
        (state >> (48 - bits)) as i32
    };
    if bound & bound.wrapping_neg() == bound {
        return ((i64::from(bound) * i64::from(next(31))) >> 31) as i32;
    }
    loop {
        let bits = next(31);
        let val = bits % bound;
        if bits.wrapping_sub(val).wrapping_add(bound - 1) >= 0 {
            return val;
        }
    }
}

impl Call {
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        let mut parser = Parser { src: source, pos: 0, depth: 1 };
        let to_error = |message: String| ExprError { pointer: String::new(), message };
        let call = parser.call().map_err(to_error)?;
        parser.skip_ws();
        if parser.pos != source.len() {
            return Err(to_error(parser.err("unexpected text after the call")));
        }
        Ok(call)
    }

    pub fn function(&self) -> Function {
        self.func
    }

    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Evaluates the call; a path argument that names nothing is reported for the
    /// intrinsic as a whole.
    pub fn eval(&self, scope: &Scope<'_>, rng: Rng<'_>) -> Result<Value, EvalError> {
        self.eval_in_field(scope, "", rng)
    }

    /// Like [`eval`](Self::eval); `field` (`value.$`, `ErrorPath`) names the field in error
    /// messages, as AWS does.
    pub fn eval_in_field(&self, scope: &Scope<'_>, field: &str, rng: Rng<'_>) -> Result<Value, EvalError> {
        let mut values: Vec<Cow<'_, Value>> = Vec::with_capacity(self.args.len());
        for arg in &self.args {
            values.push(match arg {
                Arg::Literal(v) => Cow::Borrowed(v),
                Arg::Path(path) => {
                    path.resolve(scope).ok_or_else(|| path_not_found(path.as_str(), field, scope.input))?
                }
                Arg::Call(call) => Cow::Owned(call.eval_in_field(scope, field, &mut *rng)?),
            });
        }
        // Every function's result is at most a few times the size of its arguments: bounding
        // the arguments bounds what nested calls can multiply.
        let mut budget = EVALUATION_BUDGET_BYTES;
        for value in &values {
            limits::charge(value, &mut budget).map_err(|spent| EvalError {
                error: errors::DATA_LIMIT_EXCEEDED.to_owned(),
                message: format!("The arguments of {} in '{}': {spent}.", self.function, self.source),
            })?;
        }
        self.apply(values, rng)
    }

    fn fail(&self, detail: impl std::fmt::Display) -> EvalError {
        EvalError::runtime(format!("Invalid arguments in {}: {detail} (in '{}')", self.function, self.source))
    }

    fn arg_type(&self, index: usize, expected: &str, got: &Value) -> EvalError {
        self.fail(format_args!(
            "argument {} must be {expected}, but it is {} {}",
            index + 1,
            match type_name(got) {
                "array" | "object" => "an",
                _ => "a",
            },
            type_name(got)
        ))
    }

    fn string_arg<'v>(&self, values: &'v [Cow<'_, Value>], i: usize) -> Result<&'v str, EvalError> {
        values[i].as_str().ok_or_else(|| self.arg_type(i, "a string", &values[i]))
    }

    fn array_arg<'v>(&self, values: &'v [Cow<'_, Value>], i: usize) -> Result<&'v Vec<Value>, EvalError> {
        values[i].as_array().ok_or_else(|| self.arg_type(i, "an array", &values[i]))
    }

    fn number_arg(&self, values: &[Cow<'_, Value>], i: usize) -> Result<f64, EvalError> {
        values[i].as_f64().ok_or_else(|| self.arg_type(i, "a number", &values[i]))
    }

    /// An integer argument; a number with a fraction is refused.
    fn integer_arg(&self, values: &[Cow<'_, Value>], i: usize) -> Result<i64, EvalError> {
        let n = self.number_arg(values, i)?;
        if n.fract() != 0.0 || !n.is_finite() || n.abs() > 9.007_199_254_740_992e15 {
            return Err(self.arg_type_integer(i, n));
        }
        Ok(n as i64)
    }

    fn arg_type_integer(&self, i: usize, n: f64) -> EvalError {
        self.fail(format_args!("argument {} must be an integer, but it is {n}", i + 1))
    }

    fn apply(&self, values: Vec<Cow<'_, Value>>, rng: Rng<'_>) -> Result<Value, EvalError> {
        match self.func {
            Function::Format => {
                let dynamic;
                let pieces = match &self.format {
                    Some(pieces) => pieces,
                    None => {
                        dynamic = format_pieces(self.string_arg(&values, 0)?);
                        let holes = dynamic.iter().filter(|p| **p == Piece::Placeholder).count();
                        if holes != values.len() - 1 {
                            return Err(self.fail(format_args!(
                                "the template has {holes} placeholders but {} values were given",
                                values.len() - 1
                            )));
                        }
                        &dynamic
                    }
                };
                let mut out = String::new();
                let mut next = values.iter().skip(1);
                for piece in pieces {
                    match piece {
                        Piece::Text(text) => out.push_str(text),
                        Piece::Placeholder => {
                            if let Some(v) = next.next() {
                                format_value(&mut out, v);
                            }
                        }
                    }
                }
                Ok(Value::String(out))
            }
            Function::StringToJson => {
                let text = self.string_arg(&values, 0)?;
                // corpus json_manipulation.string_to_json.0/1: blank text is null.
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                let mut value: Value = serde_json::from_str(text)
                    .map_err(|e| self.fail(format_args!("the string is not valid JSON: {e}")))?;
                positive_zero(&mut value);
                Ok(value)
            }
            Function::JsonToString => Ok(Value::String(serde_json::to_string(&values[0]).unwrap_or_default())),
            Function::Array => Ok(Value::Array(values.into_iter().map(Cow::into_owned).collect())),
            Function::ArrayPartition => {
                let items = self.array_arg(&values, 0)?;
                let size = self.integer_arg(&values, 1)?;
                if size <= 0 {
                    return Err(self.fail(format_args!("the chunk size must be a positive integer, but it is {size}")));
                }
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                Ok(Value::Array(items.chunks(size).map(|chunk| Value::Array(chunk.to_vec())).collect()))
            }
            Function::ArrayContains => {
                let items = self.array_arg(&values, 0)?;
                Ok(Value::Bool(items.contains(&values[1])))
            }
            Function::ArrayRange => {
                let mut ends = [0i64; 3];
                for (i, end) in ends.iter_mut().enumerate() {
                    let n = java_round(self.number_arg(&values, i)?);
                    if !n.is_finite() || n.abs() > 9.007_199_254_740_992e15 {
                        return Err(self.arg_type_integer(i, n));
                    }
                    *end = n as i64;
                }
                let [first, last, step] = ends;
                if step == 0 {
                    return Err(self.fail("the step must not be 0"));
                }
                let count = if (step > 0 && last < first) || (step < 0 && last > first) {
                    0
                } else {
                    (last - first) / step + 1
                };
                if count > MAX_RANGE_ITEMS as i64 {
                    return Err(
                        self.fail(format_args!("the range has {count} items, more than the {MAX_RANGE_ITEMS} allowed"))
                    );
                }
                Ok(Value::Array((0..count).map(|i| Value::from(first + i * step)).collect()))
            }
            Function::ArrayGetItem => {
                let items = self.array_arg(&values, 0)?;
                let index = self.integer_arg(&values, 1)?;
                usize::try_from(index).ok().and_then(|i| items.get(i)).cloned().ok_or_else(|| {
                    self.fail(format_args!("the index {index} is out of bounds for an array of {} items", items.len()))
                })
            }
            Function::ArrayLength => Ok(Value::from(self.array_arg(&values, 0)?.len())),
            Function::ArrayUnique => {
                let items = self.array_arg(&values, 0)?;
                let mut unique: Vec<Value> = Vec::with_capacity(items.len());
                for item in items {
                    if !unique.contains(item) {
                        unique.push(item.clone());
                    }
                }
                Ok(Value::Array(unique))
            }
            Function::Base64Encode => {
                let text = self.string_arg(&values, 0)?;
                self.check_length(text)?;
                Ok(Value::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes())))
            }
            Function::Base64Decode => {
                let text = self.string_arg(&values, 0)?;
                self.check_length(text)?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| self.fail(format_args!("the string is not valid Base64: {e}")))?;
                String::from_utf8(bytes)
                    .map(Value::String)
                    .map_err(|_| self.fail("the decoded bytes are not UTF-8 text"))
            }
            Function::Hash => {
                let text = self.string_arg(&values, 0)?;
                self.check_length(text)?;
                let alg = self.string_arg(&values, 1)?;
                let alg = HashAlgorithm::parse(alg).ok_or_else(|| {
                    self.fail(format_args!(
                        "the hash algorithm '{alg}' is not one of MD5, SHA-1, SHA-256, SHA-384, \
                         SHA-512"
                    ))
                })?;
                Ok(Value::String(alg.hex_digest(text.as_bytes())))
            }
            Function::JsonMerge => {
                let Some(first) = values[0].as_object() else {
                    return Err(self.arg_type(0, "an object", &values[0]));
                };
                let Some(second) = values[1].as_object() else {
                    return Err(self.arg_type(1, "an object", &values[1]));
                };
                match &*values[2] {
                    Value::Bool(false) => {}
                    Value::Bool(true) => {
                        return Err(self.fail("only shallow merging is supported: the third argument must be false"));
                    }
                    other => return Err(self.arg_type(2, "a boolean", other)),
                }
                let mut merged: Map<String, Value> = first.clone();
                for (k, v) in second {
                    merged.insert(k.clone(), v.clone());
                }
                Ok(Value::Object(merged))
            }
            Function::MathRandom => {
                let start = java_round(self.number_arg(&values, 0)?);
                let end = java_round(self.number_arg(&values, 1)?);
                let in_int = |n: f64| n >= f64::from(i32::MIN) && n <= f64::from(i32::MAX);
                if !in_int(start) || !in_int(end) {
                    return Err(self.fail("the start and end must be 32-bit integers"));
                }
                let (start, end) = (start as i64, end as i64);
                if end <= start {
                    return Err(self.fail(format_args!("the end ({end}) must be greater than the start ({start})")));
                }
                let span = end - start;
                let offset = if values.len() == 3 {
                    let seed = java_round(self.number_arg(&values, 2)?) as i64;
                    match i32::try_from(span) {
                        Ok(bound) => i64::from(java_random_next_int(seed, bound)),
                        Err(_) => seed.rem_euclid(span),
                    }
                } else {
                    (rng.next_u64() % span as u64) as i64
                };
                Ok(Value::from(start + offset))
            }
            Function::MathAdd => {
                let a = java_round(self.number_arg(&values, 0)?);
                let b = java_round(self.number_arg(&values, 1)?);
                let sum = a + b;
                if sum.abs() > 9.007_199_254_740_992e15 {
                    return Err(self.fail("the sum is too large"));
                }
                Ok(Value::from(sum as i64))
            }
            Function::StringSplit => {
                let text = self.string_arg(&values, 0)?;
                let delimiters = self.string_arg(&values, 1)?;
                // Every character of the second argument is a delimiter and empty pieces
                // are dropped (corpus string_split.3: ",,,," gives []; .5: ".+,=").
                Ok(Value::Array(
                    text.split(|c: char| delimiters.contains(c))
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_owned()))
                        .collect(),
                ))
            }
            Function::Uuid => {
                let mut bytes = [0u8; 16];
                rng.fill_bytes(&mut bytes);
                Ok(Value::String(uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()))
            }
        }
    }

    fn check_length(&self, text: &str) -> Result<(), EvalError> {
        let chars = text.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(
                self.fail(format_args!("the string has {chars} characters, more than the {MAX_TEXT_CHARS} allowed"))
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;
    use rand_chacha::rand_core::SeedableRng;
    use serde_json::json;

    fn eval_with(expr: &str, input: Value, context: Value) -> Result<Value, EvalError> {
        let vars = json!({"name": "John", "place": "LocalStack", "csv": "a,b,c,d,e"});
        let vars = vars.as_object().cloned().unwrap_or_default();
        let scope = Scope { input: &input, context: &context, variables: &vars };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        Expr::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}")).eval(&scope, "FunctionResult.$", &mut rng)
    }

    fn eval(expr: &str, input: Value) -> Value {
        eval_with(expr, input, json!({})).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn two(f: &str, fst: Value, snd: Value) -> Value {
        eval(
            &format!("States.{f}($.FunctionInput.fst, $.FunctionInput.snd)"),
            json!({"FunctionInput": {"fst": fst, "snd": snd}}),
        )
    }

    fn parse_err(expr: &str) -> String {
        match Expr::parse(expr) {
            Ok(_) => panic!("{expr} should not parse"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn parses_call_syntax() {
        let Ok(Expr::Intrinsic(call)) =
            Expr::parse("States.Format('a {} \\' \\{\\} {}', $.x, States.Array(1, -2.5, true, false, null, 'x'))")
        else {
            panic!("should parse");
        };
        assert_eq!(call.function, "States.Format");
        assert_eq!(call.function(), Function::Format);
        assert_eq!(call.args().len(), 3);
        assert_eq!(
            call.format,
            Some(vec![Piece::Text("a ".into()), Piece::Placeholder, Piece::Text(" ' {} ".into()), Piece::Placeholder,])
        );
        assert!(Expr::parse("States.UUID()").is_ok());
        assert!(Expr::parse("States.Array()").is_ok());
        assert!(Expr::parse("States.Array( $.a , $['b,c'] , $.d[?(@.x == 'a, b')] )").is_ok());
    }

    #[test]
    fn rejects_bad_calls() {
        assert!(parse_err("States.Nope(1)").contains("not an intrinsic function"));
        assert!(parse_err("States.UUID(1)").contains("takes 0 arguments"));
        assert!(parse_err("States.ArrayGetItem($.a)").contains("takes 2 arguments"));
        assert!(parse_err("States.Format()").contains("at least 1"));
        assert!(parse_err("States.Format('{} {}', $.a)").contains("2 placeholders"));
        assert!(parse_err("States.Format(1)").contains("must be a string"));
        assert!(parse_err("States.Hash('x', 'SHA-999')").contains("algorithm"));
        assert!(parse_err("States.JsonMerge($.a, $.b, true)").contains("shallow"));
        assert!(Expr::parse("States.Array(1").is_err());
        assert!(Expr::parse("States.Array('x)").is_err());
        assert!(Expr::parse("States.Array(1) x").is_err());
        assert!(Expr::parse("States.Array(1,)").is_err());
        assert!(Expr::parse("States.Array(abc)").is_err());
        assert!(Expr::parse("States.Array($.[)").is_err());
    }

    #[test]
    fn format() {
        // corpus intrinsic_functions.generic.format_*
        let f = "States.Format('Formatting argument {}.', $.FunctionInput)";
        for (input, out) in [
            (json!(""), "Formatting argument ."),
            (json!(null), "Formatting argument null."),
            (json!(1), "Formatting argument 1."),
            (json!(1.1), "Formatting argument 1.1."),
            (json!("{\"Arg1\": 1, \"Arg2\": []}"), "Formatting argument {\"Arg1\": 1, \"Arg2\": []}."),
            (json!({"Arg1": 1, "Arg2": [1, "x", {"y": null}]}), "Formatting argument {Arg1=1, Arg2=[1, x, {y=null}]}."),
        ] {
            assert_eq!(eval(f, json!({ "FunctionInput": input })), json!(out));
        }
        // corpus generic.context_json_path: objects print as Java maps.
        let ctx = json!({"Execution": {"Name": "exec"}, "StateMachine": {"Id": "arn:sm", "Name": "sm"}});
        assert_eq!(
            eval_with(
                "States.Format('Formatting arguments fst={} and snd={}.', $$.Execution.Name, $$.StateMachine)",
                json!({}),
                ctx
            )
            .expect("should succeed"),
            json!("Formatting arguments fst=exec and snd={Id=arn:sm, Name=sm}.")
        );
        // variables (corpus reference_assign.BASE_REFERENCE_IN_INTRINSIC_FUNCTION)
        assert_eq!(
            eval("States.Format('Hello {}, welcome to {}!', $name, $place)", json!({})),
            json!("Hello John, welcome to LocalStack!")
        );
        assert_eq!(eval("States.Format('\\{\\} {} \\\\', 'x')", json!({})), json!("{} x \\"));
        assert_eq!(eval("States.Format($.t, 1, 'b')", json!({"t": "{}-{}"})), json!("1-b"));
    }

    #[test]
    fn json_functions() {
        // corpus json_manipulation.string_to_json.*
        for (text, out) in [
            ("", json!(null)),
            (" ", json!(null)),
            ("-0", json!(0)),
            ("1", json!(1)),
            ("1.1", json!(1.1)),
            ("true", json!(true)),
            ("\"HelloWorld\"", json!("HelloWorld")),
            ("[1, 2, \"HelloWorld\"]", json!([1, 2, "HelloWorld"])),
        ] {
            assert_eq!(eval("States.StringToJson($.FunctionInput)", json!({ "FunctionInput": text })), out, "{text:?}");
        }
        // corpus json_manipulation.json_to_string.*
        for (value, out) in [
            (json!(null), "null"),
            (json!(1), "1"),
            (json!(true), "true"),
            (json!("HelloWorld"), "\"HelloWorld\""),
            (json!([1, 2, "HelloWorld"]), "[1,2,\"HelloWorld\"]"),
            (json!({"z": 1, "a": 2.5}), "{\"z\":1,\"a\":2.5}"),
        ] {
            assert_eq!(eval("States.JsonToString($.FunctionInput)", json!({ "FunctionInput": value })), json!(out));
        }
        // corpus json_manipulation.json_merge
        assert_eq!(
            eval(
                "States.JsonMerge($.FunctionInput.fst, $.FunctionInput.snd, false)",
                json!({"FunctionInput": {"fst": {"a": {"a1": 1, "a2": 2}, "b": 2, "d": 3}, "snd": {"a": {"a3": 1, "a4": 2}, "c": 3, "d": 4}}})
            ),
            json!({"a": {"a3": 1, "a4": 2}, "b": 2, "c": 3, "d": 4})
        );
        // corpus json_manipulation.json_merge_escaped_argument
        assert_eq!(
            eval_with(
                "States.JsonMerge(States.StringToJson('{\"constant_in_literal\": \"false\"}'), $$.Execution.Input.input_field, false)",
                json!({}),
                json!({"Execution": {"Input": {"input_field": {"constant_input_field": "constant_value"}}}})
            )
            .expect("should succeed"),
            json!({"constant_in_literal": "false", "constant_input_field": "constant_value"})
        );
        assert!(eval_with("States.StringToJson($.s)", json!({"s": "{"}), json!({})).is_err());
    }

    #[test]
    fn array_functions() {
        assert_eq!(eval("States.Array()", json!({})), json!([]));
        assert_eq!(two("Array", json!({"Arg1": 1, "Arg2": []}), json!(null)), json!([{"Arg1": 1, "Arg2": []}, null]));
        // corpus array.array_partition.*
        for (items, size, out) in [
            (json!([0, 1]), 2, json!([[0, 1]])),
            (json!([0, 1]), 5, json!([[0, 1]])),
            (json!([0, 1, 2]), 2, json!([[0, 1], [2]])),
            (json!([0, 1, 2, 3]), 3, json!([[0, 1, 2], [3]])),
            (json!([]), 3, json!([])),
        ] {
            assert_eq!(two("ArrayPartition", items, json!(size)), out);
        }
        // corpus array.array_contains.*
        for (items, value, out) in [
            (json!([]), json!([]), false),
            (json!([]), json!(1), false),
            (json!([[1, 2, 3], 2]), json!(null), false),
            (json!([[1, 2, 3], 2]), json!([1, 2, 3]), true),
            (json!([{"1": 2, "2": []}]), json!([]), false),
            (json!([{"1": 2, "2": []}]), json!({"2": [], "1": 2}), true),
            (json!([true, false]), json!(false), true),
        ] {
            assert_eq!(two("ArrayContains", items, value), json!(out));
        }
        // corpus array.array_range.*
        let range =
            |a: Value, b: Value, c: Value| eval("States.ArrayRange($.a, $.b, $.c)", json!({"a": a, "b": b, "c": c}));
        assert_eq!(range(json!(0), json!(9), json!(3)), json!([0, 3, 6, 9]));
        assert_eq!(range(json!(1), json!(9), json!(9)), json!([1]));
        assert_eq!(range(json!(1), json!(9), json!(2)), json!([1, 3, 5, 7, 9]));
        assert_eq!(range(json!(5), json!(1), json!(-2)), json!([5, 3, 1]));
        assert!(eval_with("States.ArrayRange(0, 1000, 1)", json!({}), json!({})).is_err());
        assert!(eval_with("States.ArrayRange(0, 999, 1)", json!({}), json!({})).is_ok());
        assert!(eval_with("States.ArrayRange(0, 1, 0)", json!({}), json!({})).is_err());
        // corpus array.array_get_item / array_length / array_unique
        assert_eq!(two("ArrayGetItem", json!([1, 2, 3, 4, 5, 6, 7, 8, 9]), json!(5)), json!(6));
        let e = eval_with("States.ArrayGetItem($.a, 3)", json!({"a": [1, 2, 3]}), json!({})).expect_err("should fail");
        assert_eq!(e.error, "States.Runtime");
        assert!(e.message.contains("out of bounds"), "{}", e.message);
        assert_eq!(eval("States.ArrayLength($.a)", json!({"a": [1, 2, 3, 4, 5, 6, 7, 8, 9]})), json!(9));
        assert_eq!(
            eval(
                "States.ArrayUnique($.a)",
                json!({"a": [null, null, true, true, false, 1, 1, 1.1, 0, "H", "H", [], [], [null], [null], {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "b": 1}]})
            ),
            json!([null, true, false, 1, 1.1, 0, "H", [], [null], {"a": 1, "b": 2}, {"a": 1, "b": 1}])
        );
        // corpus generic.nested_calls_2
        let ctx = json!({"StateMachine": {"Name": "first-middle-last"}});
        assert_eq!(
            eval_with(
                "States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), States.MathAdd(States.ArrayLength(States.StringSplit($$.StateMachine.Name, '-')), -1))",
                json!({}),
                ctx.clone()
            )
            .expect("should succeed"),
            json!("last")
        );
        assert_eq!(
            eval_with("States.ArrayGetItem(States.StringSplit($$.StateMachine.Name, '-'), 0)", json!({}), ctx)
                .expect("should succeed"),
            json!("first")
        );
    }

    #[test]
    fn encoding_and_hashing() {
        // corpus encode_decode.*
        let enc = |s: &str| eval("States.Base64Encode($.s)", json!({ "s": s }));
        let dec = |s: &str| eval("States.Base64Decode($.s)", json!({ "s": s }));
        assert_eq!(enc(""), json!(""));
        assert_eq!(enc("Data to encode"), json!("RGF0YSB0byBlbmNvZGU="));
        assert_eq!(dec(""), json!(""));
        assert_eq!(dec("RGF0YSB0byBlbmNvZGU="), json!("Data to encode"));
        assert!(eval_with("States.Base64Decode('%%%')", json!({}), json!({})).is_err());
        // corpus hash_calculations.hash.*, reference_assign.BASE_REFERENCE_IN_INTRINSIC_FUNCTION
        assert_eq!(two("Hash", json!("input data"), json!("SHA-1")), json!("aaff4a450a104cd177d28d18d74485e8cae074b7"));
        assert_eq!(
            two("Hash", json!("input data"), json!("SHA-384")),
            json!("d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562")
        );
        assert_eq!(
            eval("States.Hash('Hash this string', 'SHA-256')", json!({})),
            json!("1cac63f39fd68d8c531f27b807610fb3d50f0fc3f186995767fb6316e7200a3e")
        );
        assert_eq!(eval("States.Hash('', 'MD5')", json!({})), json!("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(eval("States.Hash('abc', 'SHA-512')", json!({})).as_str().map(str::len), Some(128));
        let long = "x".repeat(10_001);
        assert!(eval_with("States.Base64Encode($.s)", json!({ "s": long }), json!({})).is_err());
    }

    #[test]
    fn math_add_rounds_like_java() {
        // corpus math_operations.math_add.*
        for (a, b, out) in [
            (json!(-9), json!(3), -6),
            (json!(1.49), json!(1.5), 3),
            (json!(1.5), json!(1.51), 4),
            (json!(-1.5), json!(0), -1),
            (json!(-1.51), json!(0), -2),
            (json!(0.5), json!(0), 1),
            (json!(2.5), json!(0), 3),
            (json!(-0.5), json!(0.5), 1),
            (json!(-0.5), json!(0), 0),
            (json!(-2.5), json!(0), -2),
            (json!(-3.5), json!(0), -3),
            (json!(1.49), json!(0), 1),
            (json!(-1.49), json!(0), -1),
        ] {
            assert_eq!(two("MathAdd", a.clone(), b.clone()), json!(out), "{a} + {b}");
        }
        assert!(eval_with("States.MathAdd('1', 2)", json!({}), json!({})).is_err());
    }

    #[test]
    fn math_random_and_uuid_use_the_injected_source() {
        let a = eval("States.MathRandom(1, 999)", json!({}));
        let b = eval("States.MathRandom(1, 999)", json!({}));
        assert_eq!(a, b, "same rng seed, same value");
        let n = a.as_i64().expect("should succeed");
        assert!((1..999).contains(&n));
        let seeded = eval("States.MathRandom(0, 100, 7)", json!({}));
        assert_eq!(seeded, eval("States.MathRandom(0, 100, 7)", json!({})));
        assert!(eval_with("States.MathRandom(5, 5)", json!({}), json!({})).is_err());
        let id = eval("States.UUID()", json!({}));
        let id = uuid::Uuid::parse_str(id.as_str().expect("should succeed")).expect("should succeed");
        assert_eq!(id.get_version_num(), 4);
    }

    #[test]
    fn java_random_matches_the_jdk() {
        // Values printed by the JDK for `new java.util.Random(seed).nextInt(bound)`.
        assert_eq!(java_random_next_int(42, 100), 30);
        assert_eq!(java_random_next_int(0, 10), 0);
        assert_eq!(java_random_next_int(1, 100), 85);
        assert_eq!(java_random_next_int(7, 64), 46);
        assert_eq!(java_random_next_int(-5, 1000), 411);
        assert_eq!(java_random_next_int(123_456_789, 7), 1);
    }

    #[test]
    fn string_split() {
        // corpus string_operations.string_split.*
        for (text, delims, out) in [
            (" ", ",", json!([" "])),
            (" , ", ",", json!([" ", " "])),
            (",,,,", ",", json!([])),
            ("1,2,3,4,5", ",", json!(["1", "2", "3", "4", "5"])),
            ("This.is+a,test=string", ".+,=", json!(["This", "is", "a", "test", "string"])),
            ("split on T and \nnew line", "T\n", json!(["split on ", " and ", "new line"])),
        ] {
            assert_eq!(two("StringSplit", json!(text), json!(delims)), out, "{text:?}");
        }
        // corpus generic.escape_sequence: a real newline inside the literal.
        assert_eq!(eval("States.StringSplit('Hello\nWorld', '\n')", json!({})), json!(["Hello", "World"]));
        assert_eq!(eval("States.StringSplit($csv, ',')", json!({})), json!(["a", "b", "c", "d", "e"]));
    }

    #[test]
    fn missing_argument_path_is_reported_for_the_field() {
        let e = eval_with("States.Format('{}', $.nope)", json!({"a": 1}), json!({})).expect_err("should fail");
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.message,
            "The JSONPath '$.nope' specified for the field 'FunctionResult.$' could not be found \
             in the input '{\"a\":1}'"
        );
    }

    #[test]
    fn type_errors_are_runtime_errors() {
        for expr in [
            "States.ArrayLength('x')",
            "States.ArrayPartition($.a, 0)",
            "States.ArrayGetItem($.a, 1.5)",
            "States.Base64Encode(1)",
            "States.JsonMerge($.a, 1, false)",
            "States.StringSplit(1, ',')",
            "States.Hash(1, 'MD5')",
        ] {
            let e = eval_with(expr, json!({"a": [1, 2]}), json!({})).expect_err("should fail");
            assert_eq!(e.error, "States.Runtime", "{expr}");
            assert!(e.message.starts_with("Invalid arguments in States."), "{}", e.message);
        }
    }
}

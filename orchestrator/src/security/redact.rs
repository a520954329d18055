//! Field redaction: values at configured JSON paths (`$.paymentToken`, `$.card.number`,
//! `$..cvv`, `$.items[*].serial`) are replaced by [`MASK`] in what leaves the process for
//! people (API answers when configured, CLI output, history exports). The database keeps the
//! real values: participants, retries and redrives need them.
//!
//! Masking by path alone misses a secret copied elsewhere (a Pass state renaming the field, a
//! participant echoing it in an error cause), so a [`Redactor`] also collects the values it
//! masked ([`Secrets`]) and scrubs them out of every other string of the same execution.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;

/// What a masked value becomes.
pub const MASK: &str = "***";

/// The paths the CLI masks unless told otherwise: the demo order's payment token in both its
/// spellings (saga input and protobuf), and card data wherever it sits.
pub const DEFAULT_PATHS: &[&str] =
    &["$..paymentToken", "$..payment_token", "$..cardNumber", "$..card_number", "$..cvv", "$..cvc"];

/// Secrets shorter than this are masked where their path points but not scrubbed out of
/// other text: replacing every "12" in a cause would garble it without protecting anything.
pub const MIN_SCRUB_LEN: usize = 4;

/// Keys whose values are payloads inside a history event's details and cause: the state or
/// task input and output, the execution input (`Started`) and a call's answer.
const PAYLOAD_KEYS: [&str; 2] = ["input", "output"];

/// A redaction path that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "redaction path {path:?} is not valid: {reason}; write paths such as $.paymentToken, $.card.number, \
     $['odd key'], $.items[*].serial or $..cvv (any depth)"
)]
pub struct PathError {
    pub path: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `.name` or `['name']`.
    Key(String),
    /// `.*`: every member of an object, or every element of an array.
    Any,
    /// `[N]`.
    Index(usize),
    /// `..`: the segments after it, at this node and at every node below it.
    Descend,
}

/// One parsed path. The grammar is the JSONPath subset that names fields: `$`, then `.name`,
/// `['name']`, `[N]`, `[*]`, `.*` and `..` (recursive descent) in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedactPath {
    text: String,
    segments: Vec<Segment>,
}

impl RedactPath {
    pub fn parse(text: &str) -> Result<RedactPath, PathError> {
        let fail = |reason: &str| PathError { path: text.to_owned(), reason: reason.to_owned() };
        let trimmed = text.trim();
        let mut rest = trimmed.strip_prefix('$').ok_or_else(|| fail("it must start with $"))?;
        let mut segments = Vec::new();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("..") {
                segments.push(Segment::Descend);
                // `..name` and `..*` name their field without a dot; `..[...]` keeps its bracket.
                if after.starts_with('[') {
                    rest = after;
                } else {
                    let (segment, tail) = name(after).ok_or_else(|| fail("`..` must be followed by a name or *"))?;
                    segments.push(segment);
                    rest = tail;
                }
            } else if let Some(after) = rest.strip_prefix('.') {
                let (segment, tail) = name(after).ok_or_else(|| fail("`.` must be followed by a name or *"))?;
                segments.push(segment);
                rest = tail;
            } else if let Some(after) = rest.strip_prefix('[') {
                let close = after.find(']').ok_or_else(|| fail("a `[` is not closed"))?;
                let inside = after[..close].trim();
                segments.push(bracket(inside).ok_or_else(|| fail("use [N], [*] or ['name'] in brackets"))?);
                rest = &after[close + 1..];
            } else {
                return Err(fail("expected `.`, `..` or `[` after the previous segment"));
            }
        }
        if segments.is_empty() {
            return Err(fail("`$` alone would mask the whole payload; name a field"));
        }
        if segments.last() == Some(&Segment::Descend) {
            return Err(fail("it must not end with `..`"));
        }
        Ok(RedactPath { text: trimmed.to_owned(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Replace every value this path reaches in `value` by [`MASK`], collecting what it held.
    fn mask(&self, value: &mut Value, found: &mut Vec<String>) {
        mask_at(value, &self.segments, found);
    }
}

/// A `.name` segment: letters, digits, `_`, `-`, `$` up to the next `.` or `[`; or `*`.
fn name(text: &str) -> Option<(Segment, &str)> {
    if let Some(tail) = text.strip_prefix('*') {
        return Some((Segment::Any, tail));
    }
    let end = text.find(['.', '[']).unwrap_or(text.len());
    let key = &text[..end];
    if key.is_empty() || !key.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '$')) {
        return None;
    }
    Some((Segment::Key(key.to_owned()), &text[end..]))
}

fn bracket(inside: &str) -> Option<Segment> {
    if inside == "*" {
        return Some(Segment::Any);
    }
    if let Ok(index) = inside.parse::<usize>() {
        return Some(Segment::Index(index));
    }
    let quoted = inside
        .strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
    Some(Segment::Key(quoted.to_owned()))
}

fn mask_at(value: &mut Value, segments: &[Segment], found: &mut Vec<String>) {
    let Some((first, rest)) = segments.split_first() else {
        collect_leaves(value, found);
        *value = Value::String(MASK.to_owned());
        return;
    };
    match first {
        Segment::Key(key) => {
            if let Some(child) = value.as_object_mut().and_then(|o| o.get_mut(key)) {
                mask_at(child, rest, found);
            }
        }
        Segment::Index(index) => {
            if let Some(child) = value.as_array_mut().and_then(|a| a.get_mut(*index)) {
                mask_at(child, rest, found);
            }
        }
        Segment::Any => for_each_child(value, |child| mask_at(child, rest, found)),
        Segment::Descend => {
            // Match here first: a masked node becomes a string, which has nothing below it.
            mask_at(value, rest, found);
            for_each_child(value, |child| mask_at(child, segments, found));
        }
    }
}

fn for_each_child(value: &mut Value, mut f: impl FnMut(&mut Value)) {
    match value {
        Value::Object(members) => members.values_mut().for_each(&mut f),
        Value::Array(elements) => elements.iter_mut().for_each(&mut f),
        _ => {}
    }
}

/// The texts a masked value held (strings and numbers, at any depth), for scrubbing.
fn collect_leaves(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(s) if s != MASK => found.push(s.clone()),
        Value::Number(n) => found.push(n.to_string()),
        Value::Object(members) => members.values().for_each(|v| collect_leaves(v, found)),
        Value::Array(elements) => elements.iter().for_each(|v| collect_leaves(v, found)),
        _ => {}
    }
}

/// Masks payloads at a list of paths. Cheap to clone; an empty one changes nothing.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    paths: Arc<[RedactPath]>,
}

impl Redactor {
    /// Parse every path; the first bad one is the error. Blank entries and `none` (how a
    /// flag or variable says "no paths") are skipped.
    pub fn new<S: AsRef<str>>(paths: &[S]) -> Result<Redactor, PathError> {
        let parsed: Result<Vec<RedactPath>, PathError> = paths
            .iter()
            .map(|p| p.as_ref().trim())
            .filter(|p| !p.is_empty() && !p.eq_ignore_ascii_case("none"))
            .map(RedactPath::parse)
            .collect();
        Ok(Redactor { paths: parsed?.into() })
    }

    /// Masks nothing.
    pub fn none() -> Redactor {
        Redactor::default()
    }

    /// [`DEFAULT_PATHS`].
    pub fn default_paths() -> Redactor {
        Redactor::new(DEFAULT_PATHS).expect("the default redaction paths parse")
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(RedactPath::as_str)
    }

    /// Mask `payload` (an execution's input or output, a state's input or output, a call's
    /// request or answer) and return the values it held.
    pub fn mask(&self, payload: &mut Value) -> Secrets {
        let mut found = Vec::new();
        for path in self.paths.iter() {
            path.mask(payload, &mut found);
        }
        Secrets::from_values(found)
    }

    /// The values [`Redactor::mask`] would hide in `payload`, leaving it as it is.
    pub fn secrets(&self, payload: &Value) -> Secrets {
        if self.is_empty() {
            return Secrets::default();
        }
        self.mask(&mut payload.clone())
    }

    /// Mask the payloads (`input`, `output`) of a history event's details or cause.
    pub fn mask_event_part(&self, part: &mut Value) -> Secrets {
        let mut secrets = Secrets::default();
        if let Value::Object(members) = part {
            for key in PAYLOAD_KEYS {
                if let Some(payload) = members.get_mut(key) {
                    secrets.extend(self.mask(payload));
                }
            }
        }
        secrets
    }

    /// Mask a payload given as JSON text; text that is not JSON is only scrubbed.
    pub fn mask_text(&self, text: &str, secrets: &Secrets) -> String {
        if self.is_empty() && secrets.is_empty() {
            return text.to_owned();
        }
        match serde_json::from_str::<Value>(text) {
            Ok(mut value) => {
                self.mask(&mut value);
                secrets.scrub_value(&mut value);
                value.to_string()
            }
            Err(_) => secrets.scrub(text),
        }
    }
}

/// Whether the JSON `text` holds a [`MASK`] value anywhere: a payload someone masked, which
/// must not be sent back as if it were the real one.
pub fn holds_mask(text: &str) -> bool {
    fn walk(value: &Value) -> bool {
        match value {
            Value::String(s) => s == MASK,
            Value::Object(members) => members.values().any(walk),
            Value::Array(elements) => elements.iter().any(walk),
            _ => false,
        }
    }
    serde_json::from_str::<Value>(text).is_ok_and(|v| walk(&v))
}

/// Values that were masked somewhere in an execution, to be scrubbed from its other strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Longest first, so a secret that contains another is replaced whole.
    values: Vec<String>,
}

impl Secrets {
    fn from_values(values: Vec<String>) -> Secrets {
        let mut secrets = Secrets::default();
        secrets.add(values);
        secrets
    }

    fn add(&mut self, values: Vec<String>) {
        for v in values {
            if v.chars().count() >= MIN_SCRUB_LEN && !self.values.contains(&v) {
                self.values.push(v);
            }
        }
        self.values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    pub fn extend(&mut self, other: Secrets) {
        self.add(other.values);
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret replaced by [`MASK`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.values {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }

    /// Scrub every string in `value` (object keys are left alone: they are field names).
    pub fn scrub_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) if self.values.iter().any(|secret| s.contains(secret.as_str())) => *s = self.scrub(s),
            Value::Object(members) => members.values_mut().for_each(|v| self.scrub_value(v)),
            Value::Array(elements) => elements.iter_mut().for_each(|v| self.scrub_value(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn masked(paths: &[&str], mut value: Value) -> Value {
        Redactor::new(paths).expect("paths parse").mask(&mut value);
        value
    }

    #[test]
    fn a_top_level_field_is_masked() {
        assert_eq!(
            masked(&["$.paymentToken"], json!({"orderId": "o-1", "paymentToken": "tok_ok"})),
            json!({"orderId": "o-1", "paymentToken": "***"})
        );
    }

    #[test]
    fn nested_fields_brackets_and_indexes_are_followed() {
        let order = json!({"card": {"number": "4111111111111111", "expiry": "12/30"},
                           "items": [{"serial": "A1"}, {"serial": "B2"}], "odd key": 7});
        assert_eq!(
            masked(&["$.card.number", "$['odd key']", "$.items[1].serial"], order.clone()),
            json!({"card": {"number": "***", "expiry": "12/30"},
                   "items": [{"serial": "A1"}, {"serial": "***"}], "odd key": "***"})
        );
        assert_eq!(
            masked(&["$.items[*].serial"], order.clone())["items"],
            json!([{"serial": "***"}, {"serial": "***"}])
        );
        assert_eq!(masked(&["$.card.*"], order)["card"], json!({"number": "***", "expiry": "***"}));
    }

    #[test]
    fn recursive_descent_finds_a_field_at_any_depth() {
        let event = json!({"input": {"paymentToken": "tok_a", "payment": {"paymentToken": "tok_b"}},
                           "list": [{"paymentToken": "tok_c"}]});
        assert_eq!(
            masked(&["$..paymentToken"], event),
            json!({"input": {"paymentToken": "***", "payment": {"paymentToken": "***"}},
                   "list": [{"paymentToken": "***"}]})
        );
    }

    #[test]
    fn a_whole_object_can_be_masked_and_its_values_are_collected() {
        let redactor = Redactor::new(&["$.card"]).expect("parses");
        let mut order = json!({"card": {"number": "4111111111111111", "cvv": 123}, "orderId": "o-1"});
        let secrets = redactor.mask(&mut order);
        assert_eq!(order, json!({"card": "***", "orderId": "o-1"}));
        // 123 is shorter than MIN_SCRUB_LEN: masked where it was, not scrubbed elsewhere.
        assert_eq!(secrets.scrub("card 4111111111111111 cvv 123"), "card *** cvv 123");
    }

    #[test]
    fn missing_fields_and_other_types_are_left_alone() {
        let value = json!({"paymentToken": null, "list": "not an array", "n": 5});
        assert_eq!(masked(&["$.card.number", "$.list[0]", "$.n.x"], value.clone()), value);
        // A present null is masked like any value: its presence is all that shows.
        assert_eq!(masked(&["$.paymentToken"], value)["paymentToken"], json!("***"));
    }

    #[test]
    fn secrets_are_scrubbed_from_free_text_and_copies() {
        let redactor = Redactor::default_paths();
        let secrets = redactor.secrets(&json!({"paymentToken": "tok_decline"}));
        assert_eq!(
            secrets.scrub("the card issuer declined the charge (demo token tok_decline)"),
            "the card issuer declined the charge (demo token ***)"
        );
        let mut copy = json!({"token": "tok_decline", "note": ["x tok_decline y"], "n": 1});
        secrets.scrub_value(&mut copy);
        assert_eq!(copy, json!({"token": "***", "note": ["x *** y"], "n": 1}));
    }

    #[test]
    fn event_payloads_are_masked_under_input_and_output() {
        let redactor = Redactor::default_paths();
        let mut details = json!({"callId": 3, "input": {"paymentToken": "tok_ok", "amountCents": 10},
                                 "idempotencyKey": "k"});
        let secrets = redactor.mask_event_part(&mut details);
        assert_eq!(details["input"]["paymentToken"], json!("***"));
        assert_eq!(details["idempotencyKey"], json!("k"));
        assert_eq!(secrets.scrub("tok_ok!"), "***!");
        let mut cause = json!({"type": "Started", "input": {"card_number": "4242424242424242"}});
        redactor.mask_event_part(&mut cause);
        assert_eq!(cause["input"]["card_number"], json!("***"));
    }

    #[test]
    fn json_text_is_masked_and_other_text_scrubbed() {
        let redactor = Redactor::default_paths();
        let secrets = redactor.secrets(&json!({"paymentToken": "tok_secret"}));
        assert_eq!(
            redactor.mask_text(r#"{"paymentToken":"tok_secret","copy":"tok_secret"}"#, &secrets),
            r#"{"paymentToken":"***","copy":"***"}"#
        );
        assert_eq!(redactor.mask_text("not json tok_secret", &secrets), "not json ***");
        assert_eq!(Redactor::none().mask_text("tok_secret", &Secrets::default()), "tok_secret");
    }

    #[test]
    fn a_masked_payload_is_recognised() {
        assert!(holds_mask(r#"{"order": {"paymentToken": "***"}}"#));
        assert!(holds_mask(r#"["***"]"#));
        assert!(!holds_mask(r#"{"paymentToken": "tok_ok", "note": "*** is fine inside text"}"#));
        assert!(!holds_mask("not json"));
    }

    #[test]
    fn bad_paths_say_what_to_write() {
        for bad in ["paymentToken", "$", "$.", "$..", "$.a[", "$.a[x]", "$.a b", "$a"] {
            let err = Redactor::new(&[bad]).expect_err(bad);
            assert!(err.to_string().contains("$.paymentToken"), "{bad}: {err}");
        }
        assert!(Redactor::new(&["none"]).expect("none").is_empty());
        let ok = Redactor::new(&["$.a", " ", "$..b", "$..[0]", "$[\"c d\"]"]).expect("valid");
        assert_eq!(ok.paths().collect::<Vec<_>>(), ["$.a", "$..b", "$..[0]", "$[\"c d\"]"]);
    }
}

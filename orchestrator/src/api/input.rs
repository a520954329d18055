//! Checks of the API's requests before anything acts on them: JSON payloads (size, nesting,
//! syntax), names and ids, free text, the order's contents, and the `grpc-timeout` metadata.
//! Every problem becomes an [`Invalid`] that names the field and, for a limit, the limit;
//! a value too long to repeat is never echoed back whole.
//!
//! Pure functions of the request messages, so the `api` fuzz target compiles this very file
//! on its own (`#[path]` in fuzz/fuzz_targets/api.rs) without building the server: it may use
//! nothing from this crate, only `sagaflow_proto`, `sagaflow_language`, `serde_json`, `uuid`,
//! `chrono` and `thiserror`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sagaflow_language::limits::{self, NESTING_LIMIT, PAYLOAD_LIMIT_BYTES};
use sagaflow_proto::sagaflow::v1 as pb;
use serde_json::{Value, json};
use uuid::Uuid;

/// Most items in one order.
pub const MAX_ITEMS: usize = 100;
/// Longest order id, customer id, SKU, payment token or address line, in bytes. With
/// [`MAX_ITEMS`] it keeps an order's saga input far below the payload limit.
pub const TEXT_FIELD_LIMIT_BYTES: usize = 256;
/// Longest caller-supplied idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_LIMIT_BYTES: usize = 256;
/// Longest reason given for cancel, terminate, skip or resolve (kept in the history), in bytes.
pub const REASON_LIMIT_BYTES: usize = 4096;
/// Longest definition or state name, in characters (as in Step Functions).
pub const NAME_LIMIT_CHARS: usize = 80;
/// The longest execution id (a UUID with dashes); prefixes are shorter.
const EXECUTION_ID_CHARS: usize = 36;
/// How much of a refused value a message repeats.
const SHOWN_CHARS: usize = 64;

/// ISO 4217 codes the demo accepts.
pub const CURRENCIES: &[&str] = &[
    "USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "CNY", "HKD",
    "SGD", "INR", "BRL", "MXN", "ZAR", "KRW",
];

/// A request that cannot be served as sent: a summary and one description per field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub message: String,
    /// `(field, what is wrong with it)`, in the order found.
    pub violations: Vec<(String, String)>,
}

impl Invalid {
    fn one(field: &str, message: String, description: String) -> Self {
        Invalid { message, violations: vec![(field.to_owned(), description)] }
    }
}

/// What StartExecution asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct StartExecution {
    pub input: Value,
    pub execution_id: Option<Uuid>,
}

/// A value as messages show it: quoted, and cut to its first characters when it is long.
pub fn shown(text: &str) -> String {
    if text.chars().count() <= SHOWN_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(SHOWN_CHARS).collect();
        format!("{head:?}… ({} bytes)", text.len())
    }
}

/// A JSON payload field (execution input): at most [`PAYLOAD_LIMIT_BYTES`], nested at most
/// [`NESTING_LIMIT`] levels, valid JSON; empty means `{}`.
pub fn payload(field: &str, text: &str) -> Result<Value, Invalid> {
    if text.len() > PAYLOAD_LIMIT_BYTES {
        return Err(Invalid::one(
            field,
            format!("{field} is {} bytes, over the limit of {PAYLOAD_LIMIT_BYTES} bytes (256 KiB)", text.len()),
            format!("at most {PAYLOAD_LIMIT_BYTES} bytes, got {}", text.len()),
        ));
    }
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    if let Err(deep) = limits::check_json_depth(text) {
        return Err(Invalid::one(
            field,
            format!(
                "{field} nests arrays and objects more than {NESTING_LIMIT} levels deep (line {}, column {}); \
                 {NESTING_LIMIT} levels is the limit",
                deep.line, deep.column
            ),
            format!("at most {NESTING_LIMIT} levels of nested arrays and objects"),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        Invalid::one(
            field,
            format!("{field} is not valid JSON: {e}"),
            format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()),
        )
    })
}

/// A definition name: 1 to [`NAME_LIMIT_CHARS`] letters, digits, `-`, `_` or `.`.
pub fn definition_name(field: &str, name: &str) -> Result<(), Invalid> {
    let valid = (1..=NAME_LIMIT_CHARS).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        return Ok(());
    }
    let rule = format!("1-{NAME_LIMIT_CHARS} letters, digits, '-', '_' or '.'");
    Err(Invalid::one(field, format!("{field} {} is not a definition name: use {rule}", shown(name)), rule))
}

/// An execution id or a unique prefix of one: hex digits and dashes, at most a UUID long.
pub fn execution_ref(field: &str, text: &str) -> Result<(), Invalid> {
    let trimmed = text.trim();
    let valid = !trimmed.is_empty()
        && trimmed.len() <= EXECUTION_ID_CHARS
        && trimmed.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if valid {
        return Ok(());
    }
    let rule = format!("an execution id or a prefix of one: hex digits and dashes, at most {EXECUTION_ID_CHARS}");
    Err(Invalid::one(field, format!("{field} {} is not {rule}", shown(text)), rule))
}

/// Free text kept in the history (a reason): at most [`REASON_LIMIT_BYTES`].
pub fn reason(field: &str, text: &str) -> Result<(), Invalid> {
    if text.len() <= REASON_LIMIT_BYTES {
        return Ok(());
    }
    Err(Invalid::one(
        field,
        format!("{field} is {} bytes, over the limit of {REASON_LIMIT_BYTES} bytes", text.len()),
        format!("at most {REASON_LIMIT_BYTES} bytes, got {}", text.len()),
    ))
}

/// A state name (fork's `from_state`): 1 to [`NAME_LIMIT_CHARS`] characters.
pub fn state_name(field: &str, text: &str) -> Result<(), Invalid> {
    let length = text.trim().chars().count();
    if (1..=NAME_LIMIT_CHARS).contains(&length) {
        return Ok(());
    }
    let rule = format!("a top-level state name of 1-{NAME_LIMIT_CHARS} characters");
    Err(Invalid::one(field, format!("{field} {} is not {rule}", shown(text)), rule))
}

/// StartExecution's fields.
pub fn start_execution(r: &pb::StartExecutionRequest) -> Result<StartExecution, Invalid> {
    if r.definition_name.is_empty() {
        return Err(Invalid::one("definition_name", "definition_name is required".into(), "required".into()));
    }
    definition_name("definition_name", &r.definition_name)?;
    if r.idempotency_key.len() > IDEMPOTENCY_KEY_LIMIT_BYTES {
        return Err(Invalid::one(
            "idempotency_key",
            format!(
                "idempotency_key is {} bytes, over the limit of {IDEMPOTENCY_KEY_LIMIT_BYTES} bytes",
                r.idempotency_key.len()
            ),
            format!("at most {IDEMPOTENCY_KEY_LIMIT_BYTES} bytes"),
        ));
    }
    let input = payload("input_json", &r.input_json)?;
    let execution_id = match r.execution_id.as_str() {
        "" => None,
        text => Some(Uuid::parse_str(text).map_err(|e| {
            Invalid::one(
                "execution_id",
                format!("execution_id {} is not a UUID: {e}", shown(text)),
                "a UUID such as 0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d".into(),
            )
        })?),
    };
    Ok(StartExecution { input, execution_id })
}

/// Check an order; every problem is reported as a field violation at once. Returns the
/// order's total in cents.
pub fn order(order: &pb::StartOrderRequest) -> Result<i64, Invalid> {
    let mut violations: Vec<(String, String)> = Vec::new();
    let mut bad = |field: &str, description: String| violations.push((field.to_owned(), description));
    let too_long = |text: &str| format!("at most {TEXT_FIELD_LIMIT_BYTES} bytes, got {}", text.len());
    if order.order_id.is_empty() {
        bad("order_id", "required: the order id is the saga's idempotency key".into());
    } else if order.order_id.len() > 128
        || !order.order_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        bad("order_id", "use 1-128 letters, digits, '-', '_', '.' or ':'".into());
    }
    if order.customer_id.trim().is_empty() {
        bad("customer_id", "required".into());
    } else if order.customer_id.len() > TEXT_FIELD_LIMIT_BYTES {
        bad("customer_id", too_long(&order.customer_id));
    }
    if order.items.is_empty() {
        bad("items", "an order needs at least one item".into());
    }
    if order.items.len() > MAX_ITEMS {
        bad("items", format!("at most {MAX_ITEMS} items, got {}", order.items.len()));
    }
    let mut total: i64 = 0;
    // Past the item limit the order is refused anyway: do not list a violation per item.
    for (i, item) in order.items.iter().enumerate().take(MAX_ITEMS) {
        if item.sku.trim().is_empty() {
            bad(&format!("items[{i}].sku"), "required".into());
        } else if item.sku.len() > TEXT_FIELD_LIMIT_BYTES {
            bad(&format!("items[{i}].sku"), too_long(&item.sku));
        }
        if item.quantity == 0 {
            bad(&format!("items[{i}].quantity"), "must be at least 1".into());
        }
        if item.unit_price_cents < 0 {
            bad(
                &format!("items[{i}].unit_price_cents"),
                format!("must not be negative, got {}", item.unit_price_cents),
            );
        }
        match item.unit_price_cents.checked_mul(i64::from(item.quantity)).and_then(|line| total.checked_add(line)) {
            Some(t) => total = t,
            None => bad(&format!("items[{i}]"), "the order total overflows".into()),
        }
    }
    if !order.items.is_empty() && total <= 0 {
        bad("items", "the order total must be more than 0 cents".into());
    }
    if !CURRENCIES.contains(&order.currency.as_str()) {
        bad(
            "currency",
            format!(
                "{} is not a supported ISO 4217 code; use one of {}",
                shown(&order.currency),
                CURRENCIES.join(", ")
            ),
        );
    }
    if order.payment_token.trim().is_empty() {
        bad("payment_token", "required (demo tokens: tok_ok, tok_decline, tok_insufficient)".into());
    } else if order.payment_token.len() > TEXT_FIELD_LIMIT_BYTES {
        bad("payment_token", too_long(&order.payment_token));
    }
    match &order.shipping_address {
        None => bad("shipping_address", "required".into()),
        Some(a) => {
            if a.line1.trim().is_empty() {
                bad("shipping_address.line1", "required".into());
            }
            if a.city.trim().is_empty() {
                bad("shipping_address.city", "required".into());
            }
            for (field, text) in [
                ("shipping_address.line1", &a.line1),
                ("shipping_address.city", &a.city),
                ("shipping_address.postal_code", &a.postal_code),
                ("shipping_address.country", &a.country),
            ] {
                if text.len() > TEXT_FIELD_LIMIT_BYTES {
                    bad(field, too_long(text));
                }
            }
        }
    }
    if violations.is_empty() {
        Ok(total)
    } else {
        let summary = violations.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; ");
        Err(Invalid { message: format!("the order is invalid: {summary}"), violations })
    }
}

/// The saga input for an order (proto3 JSON names, amount computed).
pub fn saga_input(order: &pb::StartOrderRequest, amount_cents: i64) -> Value {
    let address = order.shipping_address.clone().unwrap_or_default();
    json!({
        "orderId": order.order_id,
        "customerId": order.customer_id,
        "items": order.items.iter().map(|i| json!({
            "sku": i.sku, "quantity": i.quantity, "unitPriceCents": i.unit_price_cents,
        })).collect::<Vec<_>>(),
        "currency": order.currency,
        "amountCents": amount_cents,
        "paymentToken": order.payment_token,
        "shippingAddress": {
            "line1": address.line1, "city": address.city, "postalCode": address.postal_code, "country": address.country,
        },
    })
}

/// A `grpc-timeout` header value as the gRPC spec defines it: 1 to 8 ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`). Anything else is no deadline (`None`).
pub fn grpc_timeout(text: &str) -> Option<Duration> {
    // The unit is the last character, which need not be one byte long in text from outside.
    let mut chars = text.chars();
    let unit = chars.next_back()?;
    let digits = chars.as_str();
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 99,999,999 of any unit: no product below can overflow, and the deadline it
    // sets (about 11,000 years at most) still fits an `Instant`.
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(n * 3600),
        'M' => Duration::from_secs(n * 60),
        'S' => Duration::from_secs(n),
        'm' => Duration::from_millis(n),
        'u' => Duration::from_micros(n),
        'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A page token this server issued (`{started_at micros}:{execution id}`).
pub fn page_token(token: &str) -> Result<(DateTime<Utc>, Uuid), Invalid> {
    let parsed = token.split_once(':').and_then(|(micros, id)| {
        let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
        Some((at, Uuid::parse_str(id).ok()?))
    });
    parsed.ok_or_else(|| {
        Invalid::one(
            "page_token",
            "page_token is not one this server issued".into(),
            "use next_page_token as given".into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    fn good() -> pb::StartOrderRequest {
        pb::StartOrderRequest {
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: vec![pb::OrderItem { sku: "SKU-RED-MUG".into(), quantity: 2, unit_price_cents: 1250 }],
            currency: "USD".into(),
            payment_token: "tok_ok".into(),
            shipping_address: Some(pb::Address {
                line1: "1 Main St".into(),
                city: "Springfield".into(),
                postal_code: "12345".into(),
                country: "US".into(),
            }),
            wait_for_completion: false,
        }
    }

    fn fields(e: &Invalid) -> Vec<&str> {
        e.violations.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_good_order_totals_its_lines() {
        assert_eq!(order(&good()).expect("valid"), 2500);
    }

    #[test]
    fn every_problem_is_a_field_violation() {
        let mut o = good();
        o.items = vec![pb::OrderItem { sku: String::new(), quantity: 0, unit_price_cents: -5 }];
        o.currency = "XYZ".into();
        o.shipping_address = None;
        let e = order(&o).expect_err("invalid");
        assert_eq!(
            fields(&e),
            ["items[0].sku", "items[0].quantity", "items[0].unit_price_cents", "items", "currency", "shipping_address"]
        );
    }

    #[test]
    fn huge_strings_in_an_order_are_refused_with_the_limit_and_not_echoed() {
        let huge = "x".repeat(1_000_000);
        let mut o = good();
        o.customer_id = huge.clone();
        o.items[0].sku = huge.clone();
        o.currency = huge.clone();
        o.payment_token = huge.clone();
        o.shipping_address = Some(pb::Address {
            line1: huge.clone(),
            city: huge.clone(),
            postal_code: huge.clone(),
            country: huge.clone(),
        });
        let e = order(&o).expect_err("invalid");
        assert_eq!(
            fields(&e),
            [
                "customer_id",
                "items[0].sku",
                "currency",
                "payment_token",
                "shipping_address.line1",
                "shipping_address.city",
                "shipping_address.postal_code",
                "shipping_address.country"
            ]
        );
        assert!(e.violations[0].1.contains("at most 256 bytes, got 1000000"), "{:?}", e.violations[0]);
        assert!(e.message.len() < 4096, "the message repeats the input: {} bytes", e.message.len());
    }

    #[test]
    fn an_order_of_too_many_items_lists_the_limit_not_every_item() {
        let mut o = good();
        o.items = vec![pb::OrderItem { sku: String::new(), quantity: 0, unit_price_cents: 1 }; 100_000];
        let e = order(&o).expect_err("invalid");
        assert!(e.violations.iter().any(|(f, d)| f == "items" && d == "at most 100 items, got 100000"));
        assert!(e.violations.len() <= 2 * MAX_ITEMS + 5, "{} violations", e.violations.len());
    }

    #[test]
    fn order_totals_that_overflow_are_refused() {
        let mut o = good();
        o.items = vec![pb::OrderItem { sku: "A".into(), quantity: u32::MAX, unit_price_cents: i64::MAX }];
        assert_eq!(fields(&order(&o).expect_err("overflow")), ["items[0]", "items"]);
    }

    #[test]
    fn payloads_name_each_limit() {
        assert_eq!(payload("input_json", "  "), Ok(json!({})));
        let big = format!("\"{}\"", "a".repeat(PAYLOAD_LIMIT_BYTES));
        let e = payload("input_json", &big).expect_err("too large");
        assert!(e.message.contains("over the limit of 262144 bytes (256 KiB)"), "{}", e.message);
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = payload("input_json", &deep).expect_err("too deep");
        assert_eq!(
            e.message,
            "input_json nests arrays and objects more than 64 levels deep (line 1, column 65); 64 levels is the limit"
        );
        let e = payload("input_json", "{\"a\": 1e400}").expect_err("out of range");
        assert!(e.message.contains("number out of range"), "{}", e.message);
        assert!(e.violations[0].1.starts_with("invalid JSON at line 1 column"), "{:?}", e.violations);
        let e = payload("input_json", "{\"a\": tru}").expect_err("syntax");
        assert!(e.violations[0].1.contains("line 1 column"), "{:?}", e.violations);
    }

    #[test]
    fn names_ids_and_reasons_are_bounded_and_never_echoed_whole() {
        let huge = "é".repeat(100_000);
        for e in [
            definition_name("name", &huge).expect_err("name"),
            execution_ref("execution_id", &huge).expect_err("id"),
            state_name("from_state", &huge).expect_err("state"),
            reason("reason", &huge).expect_err("reason"),
        ] {
            assert!(e.message.len() < 512, "{} bytes: {}", e.message.len(), &e.message[..200]);
            assert_eq!(e.violations.len(), 1);
        }
        assert!(execution_ref("execution_id", "0190b4d2").is_ok());
        assert!(execution_ref("execution_id", "0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d").is_ok());
        assert!(execution_ref("execution_id", "../etc").is_err());
        assert!(execution_ref("execution_id", "").is_err());
        assert!(definition_name("name", "order").is_ok());
        assert!(definition_name("name", "order v2").is_err());
        assert_eq!(shown(&huge), format!("{:?}… (200000 bytes)", "é".repeat(64)));
    }

    #[test]
    fn start_execution_checks_every_field() {
        let request = |name: &str, input: &str, id: &str, key: &str| pb::StartExecutionRequest {
            definition_name: name.into(),
            input_json: input.into(),
            execution_id: id.into(),
            idempotency_key: key.into(),
            ..Default::default()
        };
        let ok = start_execution(&request("order", "{\"a\":1}", "0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d", "k"))
            .expect("valid");
        assert_eq!(ok.input, json!({"a": 1}));
        assert!(ok.execution_id.is_some());
        let refused = |r: pb::StartExecutionRequest| start_execution(&r).expect_err("invalid").violations[0].0.clone();
        assert_eq!(refused(request("", "", "", "")), "definition_name");
        assert_eq!(refused(request(&"n".repeat(81), "", "", "")), "definition_name");
        assert_eq!(refused(request("order", "[", "", "")), "input_json");
        assert_eq!(refused(request("order", "", &"z".repeat(10_000), "")), "execution_id");
        assert_eq!(refused(request("order", "", "", &"k".repeat(257))), "idempotency_key");
        let e = start_execution(&request("order", "", &"z".repeat(10_000), "")).expect_err("bad id");
        assert!(e.message.len() < 512, "{}", e.message);
    }

    /// Regressions: the header parser multiplied without bounds (overflow panics in debug
    /// builds; in release a deadline so far that adding it to `Instant::now()` panicked in
    /// `Engine::wait`) and split the text at a byte that need not be a character boundary.
    #[test]
    fn grpc_timeout_follows_the_spec_and_never_overflows() {
        assert_eq!(grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(grpc_timeout("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        for text in ["99999999999999999H", "18446744073709551615S", "123456789n", "1é", "é", "", "S", "-1S", "+1S"] {
            assert_eq!(grpc_timeout(text), None, "{text:?}");
        }
        let longest = grpc_timeout("99999999H").expect("valid");
        assert!(std::time::Instant::now().checked_add(longest).is_some());
    }

    #[test]
    fn page_tokens_are_checked() {
        assert!(page_token("1700000000000000:0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d").is_ok());
        for token in ["", ":", "x:y", "99999999999999999999:0190b4d2-1b7e-7c3a-9a5e-3f4c2a1b0c9d", "1:zz"] {
            assert_eq!(page_token(token).expect_err(token).violations[0].0, "page_token");
        }
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => ".{0,20}",
            1 => "[a-zA-Z0-9_.:-]{0,140}",
            1 => (0usize..300_000).prop_map(|n| "x".repeat(n)),
            1 => Just(String::new()),
        ]
    }

    fn any_item() -> impl Strategy<Value = pb::OrderItem> {
        (any_text(), any::<u32>(), any::<i64>()).prop_map(|(sku, quantity, unit_price_cents)| pb::OrderItem {
            sku,
            quantity,
            unit_price_cents,
        })
    }

    fn any_order() -> impl Strategy<Value = pb::StartOrderRequest> {
        (
            (any_text(), any_text(), any_text(), any_text()),
            prop::collection::vec(any_item(), 0..120),
            prop::option::of((any_text(), any_text(), any_text(), any_text())),
        )
            .prop_map(|((order_id, customer_id, currency, payment_token), items, address)| {
                pb::StartOrderRequest {
                    order_id,
                    customer_id,
                    items,
                    currency,
                    payment_token,
                    shipping_address: address.map(|(line1, city, postal_code, country)| pb::Address {
                        line1,
                        city,
                        postal_code,
                        country,
                    }),
                    wait_for_completion: false,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any order is accepted within the limits (its saga input fits the payload limit and
        /// its total is the sum of its lines) or refused with small field violations.
        #[test]
        fn any_order_is_accepted_within_limits_or_refused_clearly(o in any_order()) {
            match order(&o) {
                Ok(total) => {
                    let lines: i128 =
                        o.items.iter().map(|i| i128::from(i.unit_price_cents) * i128::from(i.quantity)).sum();
                    prop_assert_eq!(i128::from(total), lines);
                    let input = serde_json::to_string(&saga_input(&o, total)).expect("serializes");
                    prop_assert!(input.len() <= PAYLOAD_LIMIT_BYTES);
                }
                Err(e) => {
                    prop_assert!(!e.violations.is_empty());
                    for (field, description) in &e.violations {
                        prop_assert!(field.len() <= 64 && description.len() <= 1024, "{} {}", field, description);
                    }
                }
            }
        }

        /// Arbitrary bytes as a StartExecution request: decoding fails, or the checks accept
        /// an input within the limits, or refuse with field violations.
        #[test]
        fn any_start_execution_bytes_are_handled(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = pb::StartExecutionRequest::decode(bytes.as_slice()) {
                match start_execution(&request) {
                    Ok(start) => prop_assert!(!limits::too_deep(&start.input)),
                    Err(e) => prop_assert!(!e.violations.is_empty()),
                }
            }
        }

        /// Deep nesting, brackets in strings and arbitrary text as input_json.
        #[test]
        fn any_payload_text_is_parsed_within_limits_or_refused(
            depth in 0usize..200,
            filler in ".{0,40}",
            close in any::<bool>(),
        ) {
            let text = format!(
                "{}{}{}",
                "[{\"k\":".repeat(depth / 2),
                serde_json::to_string(&filler).expect("a string"),
                if close { "}]".repeat(depth / 2) } else { String::new() }
            );
            let levels = 2 * (depth / 2);
            let result = payload("input_json", &text);
            if levels > NESTING_LIMIT {
                let e = result.expect_err("too deep");
                prop_assert!(e.message.contains("more than 64 levels deep"), "{}", e.message);
            } else if close || levels == 0 {
                prop_assert!(!limits::too_deep(&result.expect("valid JSON within the limit")));
            } else {
                let e = result.expect_err("unclosed");
                prop_assert!(e.message.starts_with("input_json is not valid JSON"), "{}", e.message);
            }
        }
    }
}

//! The expression parsers and evaluators: reference paths (and the ResultPath setter), JSONPath
//! queries, intrinsic functions and payload templates, on arbitrary text and data.
//!
//! Input: the expression on the first line; the rest, when it is JSON, is the data the
//! expression is evaluated on (and, when it is an object, also compiled as a template).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_core::SeedableRng;
use sagaflow_language::expr::{Expr, Path, ReferencePath, Scope, Template, intrinsic};
use sagaflow_language::limits;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (source, rest) = text.split_once('\n').unwrap_or((text, ""));
    // What the service would have accepted as data: within the limits, valid JSON.
    let input = if limits::check_json_depth(rest).is_ok() {
        serde_json::from_str::<Value>(rest).unwrap_or_else(|_| Value::String(rest.to_owned()))
    } else {
        Value::Null
    };
    let context = json!({"Execution": {"Id": "fuzz", "Input": input.clone()}, "State": {"Name": "S"}});
    let mut variables = Map::new();
    variables.insert("x".into(), input.clone());
    let scope = Scope { input: &input, context: &context, variables: &variables };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);

    if let Ok(path) = ReferencePath::parse(source) {
        let _ = path.get(&scope);
        assert!(path.steps().len() <= limits::EXPRESSION_NESTING_LIMIT, "a reference path past the step limit");
        let _ = path.set(input.clone(), json!({"placed": true}));
    }
    if let Ok(path) = Path::parse(source) {
        let _ = path.find(&scope);
    }
    if let Ok(call) = intrinsic::Call::parse(source) {
        let _ = call.eval(&scope, &mut rng);
    }
    if let Ok(expr) = Expr::parse(source) {
        let _ = expr.eval(&scope, "value.$", &mut rng);
    }
    if input.is_object()
        && let Ok(template) = Template::compile(&input)
        && let Ok(value) = template.eval(&scope, &mut rng)
    {
        assert!(!limits::too_deep(&value), "a template result past the nesting limit was handed out");
    }
});

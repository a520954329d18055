//! Payload templates (Parameters, ResultSelector, ItemSelector, Assign, compensation
//! Arguments): literal JSON in which every `"key.$": expr` entry becomes `"key": value`.
//!
//! Objects nested in arrays are templates too (AWS evaluates `[{"a.$": "$.x"}]`); plain
//! strings are always literal, even when they look like a path (`"$.a"`, corpus
//! `assign_base.base_cases.BASE_CONSTANT_LITERALS`).

use serde_json::{Map, Value};

use super::{EvalError, Expr, ExprError, Rng, Scope};
use crate::errors;
use crate::limits::{self, NESTING_LIMIT};

/// A template precompiled into literal subtrees and expressions.
#[derive(Debug, Clone)]
enum Node {
    /// A subtree without any `.$` key: copied as is.
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    /// `field` is the key as written (`value.$`), for error messages.
    Expr {
        field: String,
        expr: Expr,
    },
}

/// A compiled payload template (Parameters, ResultSelector, ItemSelector, Assign, Arguments
/// of a compensation): literal JSON where each `"key.$"` entry is replaced by the value of its
/// expression under `"key"`.
#[derive(Debug, Clone)]
pub struct Template {
    raw: Value,
    root: Node,
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn has_dynamic(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k.ends_with(".$") || has_dynamic(v)),
        Value::Array(items) => items.iter().any(has_dynamic),
        _ => false,
    }
}

fn compile_node(value: &Value, pointer: &str, errors: &mut Vec<ExprError>) -> Node {
    if !has_dynamic(value) {
        return Node::Literal(value.clone());
    }
    match value {
        Value::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, child) in map {
                let child_pointer = format!("{pointer}/{}", escape_pointer(key));
                if let Some(name) = key.strip_suffix(".$") {
                    let Some(source) = child.as_str() else {
                        errors.push(ExprError {
                            pointer: child_pointer,
                            message: format!(
                                "the value of the field '{key}' must be a string holding a \
                                 JSONPath or an intrinsic function"
                            ),
                        });
                        continue;
                    };
                    match Expr::parse(source) {
                        Ok(expr) => entries.push((name.to_owned(), Node::Expr { field: key.clone(), expr })),
                        Err(e) => errors.push(ExprError {
                            pointer: child_pointer,
                            message: format!(
                                "the value of the field '{key}' is not a valid JSONPath or \
                                 intrinsic function: {}",
                                e.message
                            ),
                        }),
                    }
                } else {
                    entries.push((key.clone(), compile_node(child, &child_pointer, errors)));
                }
            }
            Node::Object(entries)
        }
        Value::Array(items) => Node::Array(
            items.iter().enumerate().map(|(i, item)| compile_node(item, &format!("{pointer}/{i}"), errors)).collect(),
        ),
        other => Node::Literal(other.clone()),
    }
}

/// `budget`: what is left of [`limits::EVALUATION_BUDGET_BYTES`] for the values of `.$`
/// entries (literal parts are bounded by the definition's size).
fn eval_node(node: &Node, scope: &Scope<'_>, rng: Rng<'_>, budget: &mut usize) -> Result<Value, EvalError> {
    match node {
        Node::Literal(value) => Ok(value.clone()),
        Node::Object(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, child) in entries {
                map.insert(key.clone(), eval_node(child, scope, &mut *rng, budget)?);
            }
            Ok(Value::Object(map))
        }
        Node::Array(items) => items
            .iter()
            .map(|item| eval_node(item, scope, &mut *rng, budget))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Expr { field, expr } => {
            let value = expr.eval(scope, field, rng)?;
            limits::charge(&value, budget).map_err(|spent| EvalError {
                error: errors::DATA_LIMIT_EXCEEDED.to_owned(),
                message: format!("The payload template field '{field}': {spent}."),
            })?;
            Ok(value)
        }
    }
}

impl Template {
    /// Every problem in the template at once.
    pub fn compile(raw: &Value) -> Result<Self, Vec<ExprError>> {
        let mut errors = Vec::new();
        let root = compile_node(raw, "", &mut errors);
        if errors.is_empty() { Ok(Template { raw: raw.clone(), root }) } else { Err(errors) }
    }

    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Whether evaluation can depend on the scope (some `.$` entry exists).
    pub fn is_dynamic(&self) -> bool {
        !matches!(self.root, Node::Literal(_))
    }

    /// The template's value; a value nested deeper than [`NESTING_LIMIT`] is refused with
    /// `States.DataLimitExceeded`, since what a template builds (a task's input, an item,
    /// variables) is kept in history and snapshots that must stay readable. Every template
    /// result is checked, so repeating a state cannot nest data deeper and deeper.
    pub fn eval(&self, scope: &Scope<'_>, rng: Rng<'_>) -> Result<Value, EvalError> {
        let mut budget = limits::EVALUATION_BUDGET_BYTES;
        let value = eval_node(&self.root, scope, rng, &mut budget)?;
        if self.is_dynamic() && limits::too_deep(&value) {
            return Err(EvalError {
                error: errors::DATA_LIMIT_EXCEEDED.to_owned(),
                message: format!(
                    "The payload template built a value that nests arrays and objects more than {NESTING_LIMIT} \
                     levels deep, over the limit of {NESTING_LIMIT} levels."
                ),
            });
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use serde_json::json;

    fn eval(template: Value, input: Value) -> Result<Value, EvalError> {
        let ctx = json!({"Execution": {"Input": input.clone(), "Id": "arn:x"}});
        let vars = json!({"x": 42}).as_object().expect("should succeed").clone();
        let scope = Scope { input: &input, context: &ctx, variables: &vars };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        Template::compile(&template).expect("should succeed").eval(&scope, &mut rng)
    }

    #[test]
    fn literal_and_dynamic_entries() {
        // corpus: base.state_pass_result_null_input_output_paths (State0)
        assert_eq!(
            eval(json!({"Arg1": "argument1", "FromInput.$": "$"}), json!({"InputValue": 0})).expect("should succeed"),
            json!({"Arg1": "argument1", "FromInput": {"InputValue": 0}})
        );
        assert_eq!(
            eval(
                json!({"a": {"b.$": "$.v", "c": "$.v"}, "l": [{"d.$": "$$.Execution.Id"}, 1], "v.$": "$x"}),
                json!({"v": [1]})
            )
            .expect("should succeed"),
            json!({"a": {"b": [1], "c": "$.v"}, "l": [{"d": "arn:x"}, 1], "v": 42})
        );
    }

    #[test]
    fn plain_strings_are_never_evaluated() {
        // corpus: assign.assign_base.base_cases.BASE_CONSTANT_LITERALS
        let t = json!({"p": "$", "q": "$$.Execution.Id", "r": "States.Format('{}', $x)", "s": ["$x"]});
        assert_eq!(eval(t.clone(), json!({})).expect("should succeed"), t);
        assert!(!Template::compile(&t).expect("should succeed").is_dynamic());
    }

    #[test]
    fn missing_path_wording() {
        // corpus: scenarios.base_scenarios.invalid_jsonpath.INVALID_JSONPATH_IN_STRING_EXPR_JSONPATH
        let e = eval(json!({"value.$": "$.no_such_jsonpath"}), json!({"input_value": 1})).expect_err("should fail");
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.message,
            "The JSONPath '$.no_such_jsonpath' specified for the field 'value.$' could not be \
             found in the input '{\"input_value\":1}'"
        );
    }

    #[test]
    fn compile_reports_every_problem_with_pointers() {
        let errors = Template::compile(&json!({
            "a.$": 1,
            "b": {"c/d.$": "nope"},
            "e": [{"f.$": "$.["}],
            "ok.$": "$.fine"
        }))
        .expect_err("should fail");
        let pointers: Vec<&str> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(pointers, vec!["/a.$", "/b/c~1d.$", "/e/0/f.$"]);
    }
}

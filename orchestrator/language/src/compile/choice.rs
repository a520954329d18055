//! Choice states and their rules: one comparison per data test, `Variable` on every data
//! test, non-empty `And`/`Or`, an object under `Not`, `Next` on top-level rules only, and
//! operands of the right type (paths that parse, timestamps that parse, booleans for type
//! tests).

use serde_json::Value;

use super::fields::Object;
use super::states::{Compiler, Edge, EdgeKind, StateSk};
use super::{Loc, suggest};
use crate::expr::timestamp;
use crate::model::{ChoiceBranch, ChoiceRule, ChoiceState, Operand, Operator};

/// The operator a rule key names, and whether it is the `...Path` form.
fn operator(key: &str) -> Option<(Operator, bool)> {
    Operator::ALL.into_iter().find_map(|op| {
        if key == op.name() {
            Some((op, false))
        } else if op.has_path_form() && key.strip_suffix("Path") == Some(op.name()) {
            Some((op, true))
        } else {
            None
        }
    })
}

/// Every key a rule may have, for "did you mean".
fn rule_keys() -> Vec<String> {
    let mut keys: Vec<String> =
        ["Variable", "And", "Or", "Not", "Next", "Comment", "Assign"].into_iter().map(str::to_string).collect();
    for op in Operator::ALL {
        keys.push(op.name().to_string());
        if op.has_path_form() {
            keys.push(format!("{}Path", op.name()));
        }
    }
    keys
}

impl Compiler<'_, '_> {
    pub(crate) fn choice(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Option<ChoiceState> {
        let choices = match object.get("Choices") {
            None => {
                self.ctx.error_key("missing-field", at, "a Choice state needs \"Choices\": a non-empty array of rules");
                None
            }
            Some(Value::Array(items)) => {
                let choices_at = at.key("Choices");
                if items.is_empty() {
                    self.ctx.error("invalid-value", &choices_at, "Choices must hold at least one rule");
                }
                let mut branches = Some(Vec::with_capacity(items.len()));
                for (i, item) in items.iter().enumerate() {
                    let branch = self.choice_branch(item, &choices_at.index(i), skeleton);
                    match (branch, branches.as_mut()) {
                        (Some(branch), Some(list)) => list.push(branch),
                        _ => branches = None,
                    }
                }
                branches.filter(|b| !b.is_empty())
            }
            Some(other) => {
                self.ctx.wrong_type(&at.key("Choices"), "Choices", "an array", other);
                None
            }
        };
        let default = self.ctx.string(object, at, "Default").map(str::to_string);
        if let Some(default) = &default {
            skeleton.edges.push(Edge {
                target: default.clone(),
                loc: at.key("Default"),
                kind: EdgeKind::Default,
                errors: Vec::new(),
            });
        }
        Some(ChoiceState { choices: choices?, default })
    }

    fn choice_branch(&mut self, value: &Value, at: &Loc, skeleton: &mut StateSk) -> Option<ChoiceBranch> {
        let Value::Object(object) = value else {
            self.ctx.wrong_type(at, "a choice rule", "an object", value);
            return None;
        };
        let next = self.ctx.required_string(object, at, "Next", "a top-level choice rule");
        if let Some(next) = next {
            skeleton.edges.push(Edge {
                target: next.to_string(),
                loc: at.key("Next"),
                kind: EdgeKind::Choice,
                errors: Vec::new(),
            });
        }
        let assign = self.ctx.template(object, at, "Assign");
        let rule = self.rule(object, at, true);
        Some(ChoiceBranch { rule: rule?, next: next?.to_string(), assign })
    }

    fn rule(&mut self, object: &Object, at: &Loc, top: bool) -> Option<ChoiceRule> {
        let mut combinators: Vec<&str> = Vec::new();
        let mut operators: Vec<(&str, Operator, bool)> = Vec::new();
        let mut misspelled = false;
        for key in object.keys() {
            let key = key.as_str();
            match key {
                "And" | "Or" | "Not" => combinators.push(key),
                "Variable" | "Comment" => {}
                "Next" | "Assign" if top => {}
                "Next" => self.ctx.error_key(
                    "nested-choice-next",
                    &at.key(key),
                    "only top-level choice rules have Next; remove it from this nested rule",
                ),
                "Assign" => {
                    self.ctx.error_key("field-not-allowed", &at.key(key), "only top-level choice rules have Assign")
                }
                _ => match operator(key) {
                    Some((op, is_path)) => operators.push((key, op, is_path)),
                    None => {
                        let keys = rule_keys();
                        let hint = suggest::hint(key, keys.iter().map(String::as_str));
                        misspelled |= !hint.is_empty();
                        self.ctx.error_key(
                            "unknown-field",
                            &at.key(key),
                            format!("unknown field \"{key}\" in a choice rule{hint}"),
                        );
                    }
                },
            }
        }
        if let [first, second, ..] = combinators.as_slice() {
            self.ctx.error_key(
                "invalid-choice-rule",
                &at.key(second),
                format!("a choice rule has one of And, Or and Not, but this one has {first} and {second}"),
            );
            return None;
        }
        if let Some(&combinator) = combinators.first() {
            if object.contains_key("Variable") || !operators.is_empty() {
                self.ctx.error_key(
                    "invalid-choice-rule",
                    &at.key(combinator),
                    format!(
                        "a choice rule either combines rules ({combinator}) or compares data \
                         (Variable and one comparison), not both; move the comparison into \
                         {combinator}"
                    ),
                );
                return None;
            }
            return self.combinator(object, at, combinator);
        }
        let variable = match object.get("Variable") {
            None => {
                self.ctx.error_key(
                    "missing-field",
                    at,
                    "this choice rule compares data, so it needs \"Variable\": the path of the \
                     value to compare",
                );
                None
            }
            Some(value) => self.ctx.query_path(value, &at.key("Variable"), "Variable"),
        };
        let (key, operator, is_path) = match operators.as_slice() {
            [] => {
                if !misspelled {
                    self.ctx.error_key(
                        "missing-choice-operator",
                        at,
                        "this choice rule has no comparison; add one such as \"StringEquals\", \
                         \"NumericLessThan\" or \"IsPresent\"",
                    );
                }
                return None;
            }
            [single] => *single,
            [(first, ..), (second, ..), ..] => {
                self.ctx.error_key(
                    "multiple-choice-operators",
                    &at.key(second),
                    format!(
                        "a choice rule has exactly one comparison, but this one has {first} and \
                         {second}; combine two rules with And"
                    ),
                );
                return None;
            }
        };
        let operand_at = at.key(key);
        let value = &object[key];
        let operand = if is_path {
            self.ctx.query_path(value, &operand_at, key).map(Operand::Path)
        } else {
            self.literal(operator, key, value, &operand_at)
        };
        Some(ChoiceRule::Compare { variable: variable?, operator, operand: operand? })
    }

    fn combinator(&mut self, object: &Object, at: &Loc, combinator: &str) -> Option<ChoiceRule> {
        let value = &object[combinator];
        let at = at.key(combinator);
        if combinator == "Not" {
            let Value::Object(inner) = value else {
                self.ctx.wrong_type(&at, "Not", "an object (one choice rule)", value);
                return None;
            };
            return self.rule(inner, &at, false).map(|rule| ChoiceRule::Not(Box::new(rule)));
        }
        let Value::Array(items) = value else {
            self.ctx.wrong_type(&at, combinator, "an array of choice rules", value);
            return None;
        };
        if items.is_empty() {
            self.ctx.error("invalid-value", &at, format!("{combinator} must hold at least one choice rule"));
            return None;
        }
        let mut rules = Some(Vec::with_capacity(items.len()));
        for (i, item) in items.iter().enumerate() {
            let item_at = at.index(i);
            let rule = match item {
                Value::Object(inner) => self.rule(inner, &item_at, false),
                other => {
                    self.ctx.wrong_type(&item_at, "a choice rule", "an object", other);
                    None
                }
            };
            match (rule, rules.as_mut()) {
                (Some(rule), Some(list)) => list.push(rule),
                _ => rules = None,
            }
        }
        let rules = rules?;
        Some(if combinator == "And" { ChoiceRule::And(rules) } else { ChoiceRule::Or(rules) })
    }

    /// The literal operand of a comparison, checked against the operator's type.
    fn literal(&mut self, operator: Operator, key: &str, value: &Value, at: &Loc) -> Option<Operand> {
        use Operator as O;
        let (ok, expected) = match operator {
            O::StringEquals
            | O::StringLessThan
            | O::StringGreaterThan
            | O::StringLessThanEquals
            | O::StringGreaterThanEquals
            | O::StringMatches => (value.is_string(), "a string"),
            O::NumericEquals
            | O::NumericLessThan
            | O::NumericGreaterThan
            | O::NumericLessThanEquals
            | O::NumericGreaterThanEquals => (value.is_number(), "a number"),
            O::TimestampEquals
            | O::TimestampLessThan
            | O::TimestampGreaterThan
            | O::TimestampLessThanEquals
            | O::TimestampGreaterThanEquals => (value.is_string(), "a timestamp string"),
            O::BooleanEquals => (value.is_boolean(), "true or false"),
            O::IsNull | O::IsPresent | O::IsNumeric | O::IsString | O::IsBoolean | O::IsTimestamp => {
                (value.is_boolean(), "true or false")
            }
        };
        if !ok {
            self.ctx.wrong_type(at, key, expected, value);
            return None;
        }
        if let Some(text) = value.as_str()
            && key.starts_with("Timestamp")
            && timestamp::parse_millis(text).is_none()
        {
            self.ctx.error(
                "invalid-timestamp",
                at,
                format!(
                    "{key} compares timestamps, but \"{text}\" is not one; write it like \
                     \"2016-03-14T01:59:00Z\""
                ),
            );
            return None;
        }
        Some(Operand::Literal(value.clone()))
    }
}

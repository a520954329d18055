//! Retry and Catch: retriers with their defaults and bounds, catchers and their targets, and
//! `ErrorEquals` (`States.ALL` alone and last, predefined names spelled right).

use serde_json::Value;

use super::fields::Object;
use super::states::{Compiler, Edge, EdgeKind, StateSk};
use super::{Loc, suggest};
use crate::errors;
use crate::model::{Catcher, JitterStrategy, Resilience, Retrier};

const RETRY_FIELDS: &[&str] =
    &["ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"];
const CATCH_FIELDS: &[&str] = &["ErrorEquals", "Next", "ResultPath", "Assign", "Comment"];

impl Compiler<'_, '_> {
    pub(crate) fn resilience(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Resilience {
        Resilience {
            result_selector: self.ctx.template(object, at, "ResultSelector"),
            result_path: self.ctx.path_field(object, at, "ResultPath", true, true),
            retry: self.retriers(object, at),
            catch: self.catchers(object, at, skeleton),
        }
    }

    /// The `Retry` array of `object`.
    pub(crate) fn retriers(&mut self, object: &Object, at: &Loc) -> Vec<Retrier> {
        let Some(items) = self.array(object, at, "Retry") else {
            return Vec::new();
        };
        let at = at.key("Retry");
        let last = items.len().saturating_sub(1);
        let mut retriers = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_at = at.index(i);
            let Value::Object(retrier) = item else {
                self.ctx.wrong_type(&item_at, "a retrier", "an object", item);
                continue;
            };
            self.ctx.unknown_fields(retrier, &item_at, RETRY_FIELDS, "a retrier");
            let error_equals = self.error_equals(retrier, &item_at, i == last, "retrier");
            let interval_seconds = self.ctx.whole(retrier, &item_at, "IntervalSeconds", 1);
            let max_attempts = self.ctx.whole(retrier, &item_at, "MaxAttempts", 0);
            let backoff_rate = self.ctx.number(retrier, &item_at, "BackoffRate");
            if let Some(rate) = backoff_rate
                && rate < 1.0
            {
                self.ctx.error(
                    "invalid-value",
                    &item_at.key("BackoffRate"),
                    format!("BackoffRate must be at least 1.0; found {rate}"),
                );
            }
            let max_delay_seconds = self.ctx.whole(retrier, &item_at, "MaxDelaySeconds", 1);
            let jitter = match self.ctx.string(retrier, &item_at, "JitterStrategy") {
                None | Some("NONE") => JitterStrategy::None,
                Some("FULL") => JitterStrategy::Full,
                Some(other) => {
                    self.ctx.error(
                        "invalid-value",
                        &item_at.key("JitterStrategy"),
                        format!("JitterStrategy must be \"FULL\" or \"NONE\", not \"{other}\""),
                    );
                    JitterStrategy::None
                }
            };
            retriers.push(Retrier {
                error_equals,
                interval_seconds: interval_seconds.unwrap_or(1),
                max_attempts: max_attempts.unwrap_or(3),
                backoff_rate: backoff_rate.unwrap_or(2.0),
                max_delay_seconds,
                jitter,
            });
        }
        retriers
    }

    fn catchers(&mut self, object: &Object, at: &Loc, skeleton: &mut StateSk) -> Vec<Catcher> {
        let Some(items) = self.array(object, at, "Catch") else {
            return Vec::new();
        };
        let at = at.key("Catch");
        let last = items.len().saturating_sub(1);
        let mut catchers = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_at = at.index(i);
            let Value::Object(catcher) = item else {
                self.ctx.wrong_type(&item_at, "a catcher", "an object", item);
                continue;
            };
            self.ctx.unknown_fields(catcher, &item_at, CATCH_FIELDS, "a catcher");
            let error_equals = self.error_equals(catcher, &item_at, i == last, "catcher");
            let next = self.ctx.required_string(catcher, &item_at, "Next", "a catcher");
            let result_path = self.ctx.path_field(catcher, &item_at, "ResultPath", true, true);
            let assign = self.ctx.template(catcher, &item_at, "Assign");
            if let Some(next) = next {
                skeleton.edges.push(Edge {
                    target: next.to_string(),
                    loc: item_at.key("Next"),
                    kind: EdgeKind::Catch,
                    errors: error_equals.clone(),
                });
                catchers.push(Catcher { error_equals, next: next.to_string(), result_path, assign });
            }
        }
        catchers
    }

    /// An optional array field; reports other types.
    fn array<'v>(&mut self, object: &'v Object, at: &Loc, key: &str) -> Option<&'v Vec<Value>> {
        match object.get(key)? {
            Value::Array(items) => Some(items),
            other => {
                self.ctx.wrong_type(&at.key(key), key, "an array", other);
                None
            }
        }
    }

    fn error_equals(&mut self, object: &Object, at: &Loc, is_last: bool, what: &str) -> Vec<String> {
        let Some(value) = object.get("ErrorEquals") else {
            self.ctx.error_key(
                "missing-field",
                at,
                format!("a {what} needs \"ErrorEquals\": the error names it handles"),
            );
            return Vec::new();
        };
        let at = at.key("ErrorEquals");
        let Value::Array(items) = value else {
            self.ctx.wrong_type(&at, "ErrorEquals", "an array of error names", value);
            return Vec::new();
        };
        if items.is_empty() {
            self.ctx.error("invalid-value", &at, "ErrorEquals must list at least one error name");
        }
        let mut names = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Value::String(name) = item else {
                self.ctx.wrong_type(&at.index(i), "an error name", "a string", item);
                continue;
            };
            if name.is_empty() {
                self.ctx.error("invalid-value", &at.index(i), "an error name cannot be empty");
            } else if name.starts_with("States.") && !errors::PREDEFINED.contains(&name.as_str()) {
                let hint = suggest::hint(name, errors::PREDEFINED);
                self.ctx.error(
                    "unknown-error-name",
                    &at.index(i),
                    format!(
                        "\"{name}\" is not a predefined error{hint}; names starting with \
                         \"States.\" are reserved"
                    ),
                );
            }
            names.push(name.clone());
        }
        if let Some(i) = names.iter().position(|n| n == errors::ALL) {
            if names.len() > 1 {
                self.ctx.error(
                    "states-all-not-alone",
                    &at.index(i),
                    format!(
                        "States.ALL must be the only name in its ErrorEquals: it already matches \
                         every error, so give the other names their own earlier {what}"
                    ),
                );
            } else if !is_last {
                self.ctx.error(
                    "states-all-not-last",
                    &at,
                    format!(
                        "the {what} with States.ALL must come last: it matches every error, so \
                         the ones after it could never apply"
                    ),
                );
            }
        }
        names
    }
}

//! Data expressions of JSONPath-mode ASL: reference paths, JSONPath queries, payload
//! templates (`"key.$": ...`), intrinsic functions and Choice-rule evaluation.
//!
//! Everything here is pure: evaluation reads a [`Scope`] and, for `States.UUID` and
//! `States.MathRandom` only, an injected random source, so the same scope always yields the
//! same value. Strings are parsed once (`parse`/`compile`); evaluation never re-parses.
//!
//! # Layout
//! - [`path`]: `$`/`$$`/`$var` JSONPath, reference paths and the ResultPath setter.
//! - [`template`]: payload templates (Parameters, ResultSelector, ItemSelector, Assign).
//! - [`intrinsic`]: the 18 `States.*` functions, their call syntax and evaluation.
//! - [`choice`]: Choice rules, with AWS's type-mismatch rules.
//! - [`timestamp`]: the ISO-8601 forms AWS accepts.

use serde_json::Value;

pub mod choice;
pub mod intrinsic;
pub mod path;
pub mod template;
pub mod timestamp;

pub use path::{Path, ReferencePath, Root, Step};
pub use template::Template;

use crate::errors;

/// What an expression can see while it is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `$`: the value the expression applies to (state input, raw result, ...).
    pub input: &'a Value,
    /// `$$`: the context object.
    pub context: &'a Value,
    /// `$name`: workflow variables visible from the state.
    pub variables: &'a dyn Variables,
}

/// Read access to workflow variables (`$name`).
pub trait Variables: std::fmt::Debug {
    fn get(&self, name: &str) -> Option<&Value>;
}

/// No variables at all.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoVariables;

impl Variables for NoVariables {
    fn get(&self, _name: &str) -> Option<&Value> {
        None
    }
}

impl Variables for serde_json::Map<String, Value> {
    fn get(&self, name: &str) -> Option<&Value> {
        serde_json::Map::get(self, name)
    }
}

/// The random source for `States.UUID` and `States.MathRandom`; the interpreter seeds it
/// from the event.
pub type Rng<'a> = &'a mut dyn rand_core::RngCore;

/// An expression failed at run time. The message is AWS's wording of the problem (the part
/// after "An error occurred while executing the state ..."); the name is the ASL error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{error}: {message}")]
pub struct EvalError {
    /// `States.Runtime`, `States.ResultPathMatchFailure`, ...
    pub error: String,
    pub message: String,
}

impl EvalError {
    /// A `States.Runtime` error, the name AWS gives every data-expression failure except
    /// ResultPath's.
    pub fn runtime(message: impl Into<String>) -> Self {
        EvalError { error: errors::RUNTIME.to_owned(), message: message.into() }
    }
}

/// A compile-time problem with an expression; `pointer` is relative to the field that held
/// it (empty for a plain string field, `/a.$` for a template entry).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub pointer: String,
    pub message: String,
}

/// The value of a `.$` field, `ErrorPath` or `CausePath`: a path or an intrinsic call.
#[derive(Debug, Clone)]
pub enum Expr {
    Path(Path),
    Intrinsic(intrinsic::Call),
}

impl Expr {
    /// A string starting with `$` is a path; anything else must be an intrinsic call.
    pub fn parse(source: &str) -> Result<Self, ExprError> {
        if source.starts_with('$') {
            Path::parse(source).map(Expr::Path)
        } else {
            intrinsic::Call::parse(source).map(Expr::Intrinsic)
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Expr::Path(path) => path.as_str(),
            Expr::Intrinsic(call) => call.as_str(),
        }
    }

    /// `field` names the field for error messages (`value.$`, `ErrorPath`).
    pub fn eval(&self, scope: &Scope<'_>, field: &str, rng: Rng<'_>) -> Result<Value, EvalError> {
        match self {
            Expr::Path(path) => path.find(scope).ok_or_else(|| path_not_found(path.as_str(), field, scope.input)),
            Expr::Intrinsic(call) => call.eval_in_field(scope, field, rng),
        }
    }
}

/// AWS's wording when a template path or `ErrorPath`/`CausePath` names nothing:
/// `The JSONPath '$.x' specified for the field 'value.$' could not be found in the input '{}'`.
pub(crate) fn path_not_found(path: &str, field: &str, input: &Value) -> EvalError {
    EvalError::runtime(format!(
        "The JSONPath '{path}' specified for the field '{field}' could not be found in the input \
         '{}'",
        serde_json::to_string(input).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expr_parses_paths_and_calls() {
        assert!(matches!(Expr::parse("$.a"), Ok(Expr::Path(_))));
        assert!(matches!(Expr::parse("$$.Execution.Id"), Ok(Expr::Path(_))));
        assert!(matches!(Expr::parse("$var"), Ok(Expr::Path(_))));
        assert!(matches!(Expr::parse("States.Format('{}', $.a)"), Ok(Expr::Intrinsic(_))));
        assert!(Expr::parse("ConditionTrue").is_err());
        assert!(Expr::parse("").is_err());
    }

    #[test]
    fn error_path_not_found_wording() {
        // corpus: scenarios.base_scenarios.invalid_jsonpath.INVALID_JSONPATH_IN_ERRORPATH
        let input = json!({"Error": "e", "Cause": "c"});
        let ctx = json!({});
        let scope = Scope { input: &input, context: &ctx, variables: &NoVariables };
        let mut rng = rand_chacha::rand_core::SeedableRng::seed_from_u64(1);
        let rng: &mut rand_chacha::ChaCha8Rng = &mut rng;
        let e =
            Expr::parse("$.ErrorX").expect("should succeed").eval(&scope, "ErrorPath", rng).expect_err("should fail");
        assert_eq!(e.error, "States.Runtime");
        assert_eq!(
            e.message,
            "The JSONPath '$.ErrorX' specified for the field 'ErrorPath' could not be found in \
             the input '{\"Error\":\"e\",\"Cause\":\"c\"}'"
        );
    }
}

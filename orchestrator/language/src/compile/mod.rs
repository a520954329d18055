//! From source text to a validated [`Definition`]: JSON parsing with positions, structural
//! checks of every state and field, graph checks, and the saga soundness checks.
//!
//! Every check runs and reports; nothing stops at the first problem. The model is assembled
//! alongside the checks with placeholders where a field is wrong, and handed out only when
//! no error was reported.
//!
//! # Layout
//! - `source`: JSON syntax, values, positions of pointers, duplicate keys.
//! - `fields`: typed field accessors that report wrong types, unknown fields, bad paths and
//!   templates.
//! - `states`: one definition, machine and state at a time: the fields each state type
//!   allows and requires; it also records the skeleton the graph and saga checks walk.
//! - `task`: Task states, `Resource`, `Compensate`, `SagaRole`.
//! - `resilience`: Retry, Catch, `ErrorEquals`.
//! - `choice`: Choice states and their rules.
//! - `graph`: transition targets, `StartAt`, reachability.
//! - `saga`: saga soundness (pivots, what follows them, Catch routes that skip compensation).
//! - `suggest`: "did you mean" hints.

mod choice;
mod fields;
mod graph;
mod resilience;
mod saga;
mod source;
mod states;
mod suggest;
mod task;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use serde_json::Value;

use crate::diagnostic::{Diagnostic, Diagnostics, Severity};
use crate::limits::{self, DEFINITION_LIMIT_BYTES, NESTING_LIMIT};
use crate::model::Definition;

use source::{Focus, Source};

/// A definition that passed validation, with the warnings it still deserves.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub definition: Definition,
    pub warnings: Vec<Diagnostic>,
}

/// 1-based line and column of the key `pointer` names in `source` (of its deepest existing
/// ancestor when it does not resolve), for positioning findings made outside the compiler.
pub fn position_of(source: &str, pointer: &str) -> (usize, usize) {
    match Source::parse(source) {
        Ok((_, index)) => index.position(pointer, Focus::Key),
        Err(_) => (1, 1),
    }
}

/// Parse and validate a definition given as bytes (a file as read from disk): text that is
/// not UTF-8 is reported at the first byte that is not, then [`compile`] takes over.
pub fn compile_bytes(source: &[u8]) -> Result<Compiled, Diagnostics> {
    if let Some(too_large) = over_size(source.len()) {
        return Err(too_large);
    }
    match std::str::from_utf8(source) {
        Ok(text) => compile(text),
        Err(err) => {
            let valid = err.valid_up_to();
            // The prefix up to the bad byte is valid UTF-8, so positions count its characters.
            let prefix = std::str::from_utf8(&source[..valid]).unwrap_or_default();
            let (line, column) = limits::line_column(prefix, valid);
            Err(only(
                "invalid-utf8",
                line,
                column,
                format!(
                    "the definition is not valid UTF-8: byte 0x{:02X} cannot appear here; save the file as UTF-8",
                    source[valid]
                ),
            ))
        }
    }
}

/// Parse and validate a definition's source text. On failure every problem is reported.
pub fn compile(source: &str) -> Result<Compiled, Diagnostics> {
    if let Some(too_large) = over_size(source.len()) {
        return Err(too_large);
    }
    // The parser stops at the limit, so the validator's recursive walks stay far inside the
    // stack; the message names the limit (serde_json's own, at 128 levels, would not).
    let (value, source) = match Source::parse(source) {
        Ok(parsed) => parsed,
        Err(err) if err.too_deep => {
            return Err(only(
                "json-too-deep",
                err.line,
                err.column,
                format!(
                    "arrays and objects nest more than {NESTING_LIMIT} levels deep here; {NESTING_LIMIT} levels is \
                     the limit, flatten the definition"
                ),
            ));
        }
        Err(err) => return Err(only("json-syntax", err.line, err.column, err.message)),
    };
    let mut ctx = Ctx::new(&source);
    for dup in source.duplicate_keys() {
        let (first_line, first_column) = source.line_column(dup.first_offset);
        let (line, column) = source.line_column(dup.offset);
        ctx.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            code: "duplicate-key",
            line,
            column,
            state: state_of_pointer(&dup.pointer),
            pointer: dup.pointer,
            message: format!(
                "duplicate key \"{}\" (first at {first_line}:{first_column}); each key, and \
                 each state name, may appear only once",
                dup.key
            ),
        });
    }
    let (definition, skeleton) = states::Compiler::new(&mut ctx).definition(&value);
    if let Some(skeleton) = &skeleton {
        graph::check(&mut ctx, skeleton);
        saga::check(&mut ctx, skeleton);
    }
    ctx.finish(definition)
}

/// The definition-size limit, checked before anything else reads the text.
fn over_size(len: usize) -> Option<Diagnostics> {
    (len > DEFINITION_LIMIT_BYTES).then(|| {
        only(
            "definition-too-large",
            1,
            1,
            format!(
                "the definition is {len} bytes, over the limit of {DEFINITION_LIMIT_BYTES} bytes (1 MiB); split it \
                 into smaller state machines"
            ),
        )
    })
}

/// A single error about the document as a whole (it could not be read far enough for more).
fn only(code: &'static str, line: usize, column: usize, message: String) -> Diagnostics {
    Diagnostics(vec![Diagnostic {
        severity: Severity::Error,
        code,
        line,
        column,
        pointer: String::new(),
        state: None,
        message,
    }])
}

/// Validate a definition already parsed as JSON (positions are then those of its pretty form).
pub fn compile_value(definition: &Value) -> Result<Compiled, Diagnostics> {
    let text = serde_json::to_string_pretty(definition).unwrap_or_default();
    compile(&text)
}

/// Where a check is looking: a JSON pointer and the nearest enclosing state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Loc {
    pub(crate) pointer: String,
    /// Shared because every field of a state carries it.
    pub(crate) state: Option<Rc<str>>,
}

impl Loc {
    pub(crate) fn key(&self, key: &str) -> Loc {
        let mut pointer = String::with_capacity(self.pointer.len() + key.len() + 1);
        pointer.push_str(&self.pointer);
        source::push_segment(&mut pointer, key);
        Loc { pointer, state: self.state.clone() }
    }

    pub(crate) fn index(&self, index: usize) -> Loc {
        Loc { pointer: format!("{}/{index}", self.pointer), state: self.state.clone() }
    }

    /// The member `name` of a `States` object: a state, which becomes the enclosing one.
    pub(crate) fn state(&self, name: &str) -> Loc {
        let mut loc = self.key(name);
        loc.state = Some(Rc::from(name));
        loc
    }

    /// A pointer relative to this location (`/a.$` from a template error).
    pub(crate) fn join(&self, relative: &str) -> Loc {
        Loc { pointer: format!("{}{relative}", self.pointer), state: self.state.clone() }
    }
}

/// Collects diagnostics, positioned through the source.
#[derive(Debug)]
pub(crate) struct Ctx<'s> {
    source: &'s Source<'s>,
    diagnostics: Vec<Diagnostic>,
}

impl<'s> Ctx<'s> {
    fn new(source: &'s Source<'s>) -> Self {
        Ctx { source, diagnostics: Vec::new() }
    }

    /// An error about the value at `at`.
    pub(crate) fn error(&mut self, code: &'static str, at: &Loc, message: impl Into<String>) {
        self.push(Severity::Error, code, at, Focus::Value, message.into());
    }

    /// An error about the key at `at` (a field that should not be there, a state as a whole).
    pub(crate) fn error_key(&mut self, code: &'static str, at: &Loc, message: impl Into<String>) {
        self.push(Severity::Error, code, at, Focus::Key, message.into());
    }

    pub(crate) fn warn(&mut self, code: &'static str, at: &Loc, message: impl Into<String>) {
        self.push(Severity::Warning, code, at, Focus::Value, message.into());
    }

    pub(crate) fn warn_key(&mut self, code: &'static str, at: &Loc, message: impl Into<String>) {
        self.push(Severity::Warning, code, at, Focus::Key, message.into());
    }

    fn push(&mut self, severity: Severity, code: &'static str, at: &Loc, focus: Focus, message: String) {
        let (line, column) = self.source.position(&at.pointer, focus);
        self.diagnostics.push(Diagnostic {
            severity,
            code,
            line,
            column,
            pointer: at.pointer.clone(),
            state: at.state.as_deref().map(str::to_string),
            message,
        });
    }

    fn finish(mut self, definition: Option<Definition>) -> Result<Compiled, Diagnostics> {
        // Errors first, then warnings, each in source order; the sort is stable so two
        // problems at one place keep the order they were found in.
        self.diagnostics.sort_by_key(|d| (d.severity, d.line, d.column));
        self.diagnostics.dedup();
        let has_errors = self.diagnostics.iter().any(Diagnostic::is_error);
        match definition {
            Some(definition) if !has_errors => Ok(Compiled { definition, warnings: self.diagnostics }),
            _ => {
                if !has_errors {
                    // The model could not be built yet nothing said why: never hand out
                    // an unchecked definition, and say so rather than fail silently.
                    self.diagnostics.insert(
                        0,
                        Diagnostic {
                            severity: Severity::Error,
                            code: "internal",
                            line: 1,
                            column: 1,
                            pointer: String::new(),
                            state: None,
                            message: "the definition could not be compiled; please report \
                                      this as a Sagaflow bug"
                                .to_string(),
                        },
                    );
                }
                Err(Diagnostics(self.diagnostics))
            }
        }
    }
}

/// The state a pointer belongs to, found by following the machine structure (`States`,
/// `Branches/<n>`, `ItemProcessor`, `Iterator`) so that a `States` key inside a payload is
/// not mistaken for one. Used where no [`Loc`] was at hand (duplicate keys).
fn state_of_pointer(pointer: &str) -> Option<String> {
    let segments: Vec<&str> = pointer.split('/').skip(1).collect();
    let mut state = None;
    let mut i = 0;
    while segments.get(i) == Some(&"States") {
        let Some(name) = segments.get(i + 1) else {
            break;
        };
        state = Some(name.replace("~1", "/").replace("~0", "~"));
        i += 2;
        match segments.get(i) {
            Some(&"Branches") => i += 2,
            Some(&"ItemProcessor") | Some(&"Iterator") => i += 1,
            _ => break,
        }
    }
    state
}

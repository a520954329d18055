//! The Amazon States Language, as Sagaflow speaks it: JSONPath mode plus the saga extensions
//! (`grpc://` resources, `Compensate`, `SagaRole`).
//!
//! This crate is pure: no clock, no randomness, no I/O. Time and entropy arrive inside the
//! events given to the interpreter, so a recorded history always replays to the same actions.
//!
//! # Layout
//! - [`model`]: the typed, validated definition the rest of the crate works on.
//! - [`diagnostic`]: positioned validation messages (file, line:column, pointer, state).
//! - [`compile`]: source text to [`model::Definition`], reporting every problem at once.
//! - [`expr`]: paths, payload templates, intrinsic functions and Choice rules.
//! - [`errors`]: the predefined `States.*` error names and how `ErrorEquals` matches them.
//! - [`limits`]: every size, depth and count limit, and the checks that name them.
//! - [`interpreter`]: the step function `(definition, state, event) -> actions`.
//! - [`driver`]: runs a definition to completion in memory with a virtual clock and task stubs.
//! - [`testcase`]: the definition test-case format (`sagaflow test`, the conformance corpus).

pub mod compile;
pub mod diagnostic;
pub mod driver;
pub mod errors;
pub mod expr;
pub mod interpreter;
pub mod limits;
pub mod model;
pub mod testcase;

pub use compile::{Compiled, compile, compile_bytes, compile_value, position_of};
pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use model::Definition;

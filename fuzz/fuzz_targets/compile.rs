//! The definition parser and validator on arbitrary bytes (invalid UTF-8, broken JSON, deep
//! nesting, wrong types anywhere): every input ends in a definition or in positioned errors,
//! never a panic, a hang or unbounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sagaflow_language::compile_bytes;

fuzz_target!(|data: &[u8]| {
    match compile_bytes(data) {
        Ok(compiled) => {
            for warning in &compiled.warnings {
                assert!(!warning.is_error(), "an accepted definition carries an error: {warning:?}");
            }
        }
        Err(diagnostics) => {
            assert!(diagnostics.errors().next().is_some(), "a refused definition says why");
            for d in diagnostics.errors() {
                assert!(d.line >= 1 && d.column >= 1, "every error is positioned: {d:?}");
                assert!(!d.message.is_empty(), "every error says what is wrong: {d:?}");
            }
        }
    }
});

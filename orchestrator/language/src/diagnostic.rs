//! Diagnostics: what the validator says about a definition, positioned in its source.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, with everything a person needs to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `unknown-state`, `missing-next`, `json-syntax`.
    pub code: &'static str,
    /// 1-based line and column of the offending value (or key) in the source.
    pub line: usize,
    pub column: usize,
    /// RFC 6901 pointer into the definition, e.g. `/States/ChargePayment/Next`.
    pub pointer: String,
    /// The state the problem belongs to, when there is one.
    pub state: Option<String>,
    /// A plain sentence saying what is wrong (and, where possible, what to do).
    pub message: String,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Human form: `file:line:col pointer: message`, with `warning: ` for warnings.
    pub fn display_in<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        DisplayIn { diagnostic: self, file }
    }
}

struct DisplayIn<'a> {
    diagnostic: &'a Diagnostic,
    file: &'a str,
}

impl fmt::Display for DisplayIn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diagnostic;
        write!(f, "{}:{}:{} ", self.file, d.line, d.column)?;
        if d.pointer.is_empty() {
            write!(f, "/")?;
        } else {
            write!(f, "{}", d.pointer)?;
        }
        if d.severity == Severity::Warning {
            write!(f, ": warning")?;
        }
        write!(f, ": {}", d.message)
    }
}

/// All diagnostics of one definition; errors first, then warnings, each in source order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| !d.is_error())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{}", d.display_in("<definition>"))?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

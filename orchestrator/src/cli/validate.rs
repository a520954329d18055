//! `sagaflow validate FILE...`: every diagnostic of every file, errors and warnings apart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use std::collections::BTreeMap;

use sagaflow_language::{Diagnostic, Severity, compile_bytes, position_of};

use crate::invoker::grpc::GrpcInvoker;
use crate::invoker::typecheck::check_definition;
use serde::Serialize;

use super::Output;

#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    states: Option<usize>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

pub(super) fn run(files: &[PathBuf], output: Output, participants: &[String]) -> anyhow::Result<ExitCode> {
    let typecheck = if participants.is_empty() { None } else { Some(TypeCheck::new(participants)?) };
    let mut reports = Vec::new();
    for path in files {
        // Bytes, not text: a file that is not UTF-8 gets a positioned diagnostic like any other.
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let text = String::from_utf8_lossy(&bytes);
        let file = path.display().to_string();
        let report = match compile_bytes(&bytes) {
            Ok(compiled) => {
                let mut report = FileReport {
                    file,
                    valid: true,
                    states: Some(count_states(&compiled.definition.machine)),
                    errors: Vec::new(),
                    warnings: compiled.warnings,
                };
                if let Some(check) = &typecheck {
                    check.apply(&text, &compiled.definition, &mut report);
                }
                report
            }
            Err(diagnostics) => {
                let (errors, warnings) = diagnostics.0.into_iter().partition(Diagnostic::is_error);
                FileReport { file, valid: false, states: None, errors, warnings }
            }
        };
        reports.push(report);
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Output::Human => {
            for r in &reports {
                for d in r.errors.iter().chain(&r.warnings) {
                    println!("{}", d.display_in(&r.file));
                }
                match r.states {
                    Some(states) => println!(
                        "{}: valid ({states} states, {} warning{})",
                        r.file,
                        r.warnings.len(),
                        if r.warnings.len() == 1 { "" } else { "s" }
                    ),
                    None => println!(
                        "{}: invalid ({} error{}, {} warning{})",
                        r.file,
                        r.errors.len(),
                        if r.errors.len() == 1 { "" } else { "s" },
                        r.warnings.len(),
                        if r.warnings.len() == 1 { "" } else { "s" }
                    ),
                }
            }
        }
    }
    let ok = reports.iter().all(|r| r.valid);
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Field names checked against live participants' message types.
struct TypeCheck {
    runtime: tokio::runtime::Runtime,
    invoker: GrpcInvoker,
}

impl TypeCheck {
    fn new(participants: &[String]) -> anyhow::Result<Self> {
        let mut endpoints = BTreeMap::new();
        for entry in participants {
            let (name, url) = entry.split_once('=').with_context(|| {
                format!("--participant {entry:?} must read NAME=URL, e.g. payment=http://127.0.0.1:50061")
            })?;
            endpoints.insert(name.trim().to_owned(), url.trim().to_owned());
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let invoker = GrpcInvoker::try_new(endpoints, Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(TypeCheck { runtime, invoker })
    }

    /// Unknown field names become errors; tasks that could not be checked, warnings.
    fn apply(&self, text: &str, definition: &sagaflow_language::Definition, report: &mut FileReport) {
        let findings = self.runtime.block_on(check_definition(&self.invoker, definition));
        for f in findings {
            let (line, column) = position_of(text, &f.pointer);
            let diagnostic = Diagnostic {
                severity: if f.is_problem { Severity::Error } else { Severity::Warning },
                code: if f.is_problem { "unknown-message-field" } else { "types-not-checked" },
                line,
                column,
                pointer: f.pointer,
                state: Some(f.state),
                message: f.message,
            };
            if f.is_problem {
                report.valid = false;
                report.errors.push(diagnostic);
            } else {
                report.warnings.push(diagnostic);
            }
        }
        if !report.valid {
            report.states = None;
        }
    }
}

fn count_states(machine: &sagaflow_language::model::StateMachine) -> usize {
    use sagaflow_language::model::StateKind;
    machine
        .states
        .values()
        .map(|s| {
            1 + match &s.kind {
                StateKind::Parallel(p) => p.branches.iter().map(count_states).sum(),
                StateKind::Map(m) => count_states(&m.processor),
                _ => 0,
            }
        })
        .sum()
}

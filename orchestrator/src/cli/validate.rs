//! `sagaflow validate FILE...`: every diagnostic of every file, errors and warnings apart.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use sagaflow_language::{Diagnostic, compile};
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

pub(super) fn run(files: &[PathBuf], output: Output) -> anyhow::Result<ExitCode> {
    let mut reports = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file = path.display().to_string();
        let report = match compile(&text) {
            Ok(compiled) => FileReport {
                file,
                valid: true,
                states: Some(count_states(&compiled.definition.machine)),
                errors: Vec::new(),
                warnings: compiled.warnings,
            },
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

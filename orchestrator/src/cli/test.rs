//! `sagaflow test PATH...`: run definition test cases, show each failure with a diff of
//! expected against actual, and end with `N passed, M failed`.

use std::path::PathBuf;
use std::process::ExitCode;

use sagaflow_language::testcase::{CaseFailure, suite};
use serde_json::json;
use similar::{ChangeTag, TextDiff};

use super::Output;

pub(super) fn run(paths: &[PathBuf], output: Output, verbose: bool) -> anyhow::Result<ExitCode> {
    for path in paths {
        anyhow::ensure!(path.exists(), "{} does not exist", path.display());
    }
    let files = suite::discover(paths)?;
    let results: Vec<_> = files.iter().flat_map(|f| suite::run_file(f)).collect();
    let totals = suite::totals(&results);
    let passed = results.iter().filter(|r| r.outcome.is_ok()).count();
    let failed = results.len() - passed;
    match output {
        Output::Json => {
            let cases: Vec<_> = results
                .iter()
                .map(|r| {
                    json!({
                        "file": r.file.display().to_string(),
                        "name": r.name,
                        "category": r.category,
                        "passed": r.outcome.is_ok(),
                        "failure": r.outcome.as_ref().err().map(|f| f.to_string()),
                    })
                })
                .collect();
            let categories: serde_json::Map<_, _> =
                totals.iter().map(|(c, (p, f))| (c.clone(), json!({ "passed": p, "failed": f }))).collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "passed": passed, "failed": failed, "categories": categories, "cases": cases,
                }))?
            );
        }
        Output::Human => {
            for r in &results {
                match &r.outcome {
                    Ok(()) if verbose => println!("ok   {}", r.name),
                    Ok(()) => {}
                    Err(failure) => {
                        println!("FAIL {} ({})", r.name, r.file.display());
                        print_failure(failure);
                    }
                }
            }
            if totals.len() > 1 {
                for (category, (p, f)) in &totals {
                    let total = p + f;
                    println!("  {category:<12} {p:>4}/{total:<4} {:>6.1}%", 100.0 * *p as f64 / total.max(1) as f64);
                }
            }
            println!("{passed} passed, {failed} failed");
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_failure(failure: &CaseFailure) {
    match failure {
        CaseFailure::Mismatch(m) => {
            for p in &m.problems {
                println!("     {p}");
            }
            let e = serde_json::to_string_pretty(&m.expected).unwrap_or_default();
            let a = serde_json::to_string_pretty(&m.actual).unwrap_or_default();
            println!("     --- expected  +++ actual");
            for change in TextDiff::from_lines(&e, &a).iter_all_changes() {
                let sign = match change.tag() {
                    ChangeTag::Delete => "-",
                    ChangeTag::Insert => "+",
                    ChangeTag::Equal => " ",
                };
                print!("     {sign} {change}");
            }
        }
        other => {
            for line in other.to_string().lines() {
                println!("     {line}");
            }
        }
    }
}

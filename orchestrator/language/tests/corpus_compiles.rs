//! Every JSONPath-mode definition of the conformance corpus compiles without errors: AWS
//! accepted them all (a few fail at run time, which is not this test's concern). JSONata
//! definitions are refused with one clear error each.

use std::path::PathBuf;

use serde_json::Value;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/cases")
}

fn case_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![corpus()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_jsonpath_definition_compiles() {
    let mut compiled = 0;
    let mut failures = Vec::new();
    for path in case_files() {
        let text = std::fs::read_to_string(&path).expect("readable case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        if case.get("query_language").and_then(Value::as_str) != Some("JSONPath") {
            continue;
        }
        let definition = case.get("definition").expect("case has a definition");
        match sagaflow_language::compile_value(definition) {
            Ok(result) => {
                compiled += 1;
                // The corpus is plain Step Functions: its Tasks declare no saga role, which
                // deserves the `no-saga-role` warning (DESIGN §2) and nothing else.
                let unexpected: Vec<_> = result.warnings.into_iter().filter(|w| w.code != "no-saga-role").collect();
                if !unexpected.is_empty() {
                    failures.push(format!(
                        "{}: unexpected warnings:\n{}",
                        path.display(),
                        sagaflow_language::Diagnostics(unexpected)
                    ));
                }
            }
            Err(diagnostics) => {
                failures.push(format!("{}:\n{diagnostics}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of the corpus failed:\n{}", failures.len(), failures.join("\n"));
    assert!(compiled >= 580, "only {compiled} JSONPath definitions found; is the corpus there?");
}

#[test]
fn every_jsonata_definition_is_refused_once() {
    let mut refused = 0;
    for path in case_files() {
        let text = std::fs::read_to_string(&path).expect("readable case");
        let case: Value = serde_json::from_str(&text).expect("case is JSON");
        if case.get("query_language").and_then(Value::as_str) == Some("JSONPath") {
            continue;
        }
        let definition = case.get("definition").expect("case has a definition");
        let diagnostics =
            sagaflow_language::compile_value(definition).err().unwrap_or_else(|| panic!("{} compiled", path.display()));
        let codes: Vec<&str> = diagnostics.errors().map(|d| d.code).collect();
        assert_eq!(codes, ["unsupported-query-language"], "{}", path.display());
        refused += 1;
    }
    assert!(refused > 0, "no JSONata case found");
}

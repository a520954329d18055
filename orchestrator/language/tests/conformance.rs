//! Runs every case of the shared conformance corpus (recorded against AWS Step Functions)
//! and holds the line: a case fails only if `conformance-known-failures.txt` lists it with
//! a reason, and a listed case that starts passing must be removed from the list.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use sagaflow_language::testcase::suite;

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/cases")
}

/// `name reason...` lines, or `category:NAME reason...` for a whole category.
fn known_failures() -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let text = include_str!("conformance-known-failures.txt");
    let mut cases = BTreeMap::new();
    let mut categories = BTreeMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        assert!(!reason.trim().is_empty(), "known failure {name} needs a reason");
        match name.strip_prefix("category:") {
            Some(category) => categories.insert(category.to_owned(), reason.trim().to_owned()),
            None => cases.insert(name.to_owned(), reason.trim().to_owned()),
        };
    }
    (cases, categories)
}

#[test]
fn conformance_corpus() {
    let root = corpus();
    assert!(root.is_dir(), "the conformance corpus is missing at {}", root.display());
    let files = suite::discover(&[root]).expect("corpus readable");
    let results: Vec<_> = files.iter().flat_map(|f| suite::run_file(f)).collect();
    let (known, known_categories) = known_failures();

    let mut unexpected = Vec::new();
    let mut fixed = Vec::new();
    for r in &results {
        let listed = known.contains_key(&r.name) || known_categories.contains_key(&r.category);
        match (&r.outcome, listed) {
            (Err(failure), false) => unexpected.push(format!("{} ({}):\n{failure}", r.name, r.file.display())),
            (Ok(()), true) => fixed.push(r.name.clone()),
            _ => {}
        }
    }
    let listed_missing: Vec<_> = known.keys().filter(|k| !results.iter().any(|r| &r.name == *k)).collect();

    // Written to the stdout handle rather than with println!, which the test harness
    // captures: the pass rate is meant to be seen on every run.
    let mut report = String::from("\nconformance pass rate by category (AWS-recorded cases):\n");
    let totals = suite::totals(&results);
    let (mut jsonpath_pass, mut jsonpath_total) = (0, 0);
    for (category, (pass, fail)) in &totals {
        let total = pass + fail;
        report +=
            &format!("  {category:<12} {pass:>4}/{total:<4} {:>6.1}%\n", 100.0 * *pass as f64 / total.max(1) as f64);
        if category != "jsonata" {
            jsonpath_pass += pass;
            jsonpath_total += total;
        }
    }
    report += &format!(
        "  all JSONPath {jsonpath_pass:>4}/{jsonpath_total:<4} {:>6.1}%\n",
        100.0 * jsonpath_pass as f64 / jsonpath_total.max(1) as f64
    );
    let _ = std::io::stdout().write_all(report.as_bytes());
    assert!(unexpected.is_empty(), "{} unlisted case(s) fail:\n\n{}", unexpected.len(), unexpected.join("\n\n"));
    assert!(fixed.is_empty(), "these listed cases now pass; remove them from the known failures: {fixed:?}");
    assert!(listed_missing.is_empty(), "known failures that are not in the corpus: {listed_missing:?}");
}

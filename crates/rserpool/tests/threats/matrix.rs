//! The threat matrix (`docs/threat-matrix.md`) against the tests of this
//! target, both ways: every row names tests that exist here (or is a
//! `cluster` row, which names none), and every test here is named by a
//! row. A row's result says what its tests show:
//!
//! * `passes`: the attack is defeated; its tests run and pass.
//! * `cluster`: needs a second registrar; tested with the cluster. Names
//!   no test.
//! * `pending`: the defence is being built; the row names the test to
//!   come, which does not exist yet. Allowed only for the rows in
//!   [`PENDING`].
//! * `gap`: the mechanism is missing; the tests show what exists.
//!   Allowed only for the rows in [`GAPS`].
//! * `bug`: an attack that shows a bug; its tests are
//!   `#[ignore = "bug: ..."]` until it is fixed. Allowed only for the rows
//!   in [`BUGS`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Rows whose defence is being implemented: each names the test that
/// will prove it. Empty this list as the features land (and mark the
/// rows `passes`).
const PENDING: &[&str] = &[];

/// Rows whose mechanism does not exist yet in the client library.
const GAPS: &[&str] = &[];

/// Rows whose attack shows a bug (their tests are ignored).
const BUGS: &[&str] = &[];

const RESULTS: &[&str] = &["passes", "cluster", "pending", "gap", "bug"];

/// One row of the matrix.
#[derive(Debug)]
struct Row {
    line: usize,
    id: String,
    tests: Vec<String>,
    result: String,
}

/// A test function of this target.
#[derive(Debug)]
struct TestFn {
    file: String,
    ignored_for_bug: bool,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The names in backticks of a cell.
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The rows of the table whose header starts with `| id |`.
fn rows(text: &str) -> Vec<Row> {
    let mut out = Vec::new();
    let mut columns: Option<Vec<String>> = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        match &columns {
            None if cells.first() == Some(&"id") => {
                columns = Some(cells.iter().map(|c| c.to_string()).collect());
            }
            None => {}
            Some(_)
                if cells
                    .iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) => {}
            Some(cols) => {
                assert_eq!(
                    cells.len(),
                    cols.len(),
                    "docs/threat-matrix.md line {}: {} cells, the header has {}",
                    i + 1,
                    cells.len(),
                    cols.len()
                );
                let cell = |name: &str| {
                    let at = cols
                        .iter()
                        .position(|c| c == name)
                        .unwrap_or_else(|| panic!("the table has no column {name:?}"));
                    cells[at]
                };
                out.push(Row {
                    line: i + 1,
                    id: cell("id").trim_matches('`').to_owned(),
                    tests: names(cell("tests")),
                    result: cell("result").trim_matches('`').to_owned(),
                });
            }
        }
    }
    out
}

/// The test functions (`#[test]`, `#[tokio::test]`) of the files in
/// `dir` but this one.
fn test_functions(dir: &Path) -> BTreeMap<String, TestFn> {
    let mut out = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("tests/threats")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    for path in files {
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        if file == "matrix.rs" {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let (mut in_test, mut ignored) = (false, false);
        for line in text.lines() {
            let l = line.trim();
            if l == "#[test]" || l.starts_with("#[tokio::test") {
                in_test = true;
                continue;
            }
            if !in_test {
                continue;
            }
            if l.starts_with("#[ignore") {
                ignored = l.contains("\"bug");
                continue;
            }
            // Other attributes, their continuation lines, comments.
            let Some(rest) = l
                .strip_prefix("async fn ")
                .or_else(|| l.strip_prefix("fn "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let before = out.insert(
                name.clone(),
                TestFn {
                    file: file.clone(),
                    ignored_for_bug: ignored,
                },
            );
            assert!(before.is_none(), "two tests named {name}");
            in_test = false;
            ignored = false;
        }
    }
    out
}

#[test]
fn the_threat_matrix_names_every_attack_test_and_only_tests_that_exist() {
    let path = root().join("docs/threat-matrix.md");
    let text = std::fs::read_to_string(&path).expect("docs/threat-matrix.md");
    let rows = rows(&text);
    let tests = test_functions(&root().join("crates/rserpool/tests/threats"));
    assert!(!rows.is_empty(), "no rows in docs/threat-matrix.md");

    let mut problems = Vec::new();
    let mut named = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for r in &rows {
        let at = format!("docs/threat-matrix.md line {} ({})", r.line, r.id);
        if !ids.insert(r.id.clone()) {
            problems.push(format!("{at}: the id appears twice"));
        }
        if !RESULTS.contains(&r.result.as_str()) {
            problems.push(format!(
                "{at}: result {:?} is none of {RESULTS:?}",
                r.result
            ));
            continue;
        }
        let listed = |list: &[&str]| list.contains(&r.id.as_str());
        match r.result.as_str() {
            "cluster" if !r.tests.is_empty() => {
                problems.push(format!("{at}: a cluster row names no test"))
            }
            "cluster" => {}
            "pending" if !listed(PENDING) => problems.push(format!(
                "{at}: pending, but not in PENDING: write its test and mark it passes"
            )),
            "gap" if !listed(GAPS) => problems.push(format!("{at}: gap, but not in GAPS")),
            "bug" if !listed(BUGS) => problems.push(format!("{at}: bug, but not in BUGS")),
            _ if r.tests.is_empty() => problems.push(format!("{at}: names no test")),
            _ => {}
        }
        for t in &r.tests {
            named.insert(t.clone());
            match (r.result.as_str(), tests.get(t)) {
                ("cluster", _) => {}
                ("pending", Some(f)) => problems.push(format!(
                    "{at}: {t} exists now (in {}): mark the row passes and take it out of PENDING",
                    f.file
                )),
                ("pending", None) => {}
                (_, None) => problems.push(format!(
                    "{at}: no test fn {t} in crates/rserpool/tests/threats"
                )),
                ("bug", Some(f)) if !f.ignored_for_bug => problems.push(format!(
                    "{at}: {t} is no longer ignored for a bug: mark the row passes, \
                     take it out of BUGS"
                )),
                (_, Some(f)) if r.result != "bug" && f.ignored_for_bug => problems.push(format!(
                    "{at}: {t} is ignored for a bug: its row must be a bug row"
                )),
                _ => {}
            }
        }
    }
    for (list, result) in [(PENDING, "pending"), (GAPS, "gap"), (BUGS, "bug")] {
        for id in list {
            if !rows.iter().any(|r| r.id == *id && r.result == result) {
                problems.push(format!(
                    "{id} is listed as {result} here but is no {result} row of the matrix"
                ));
            }
        }
    }
    // Every threat of RFC 5355 section 2 has its row.
    for n in 1..=17 {
        let id = format!("RFC5355-2.{n}");
        if !rows
            .iter()
            .any(|r| r.id == id || r.id.starts_with(&format!("{id}-")))
        {
            problems.push(format!("no row for {id}"));
        }
    }
    for (t, f) in &tests {
        if !named.contains(t) {
            problems.push(format!(
                "test {t} (in {}) is in no row of docs/threat-matrix.md",
                f.file
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checker_reads_cells_rows_and_test_attributes() {
    assert_eq!(names("`a_b`, `c` and text"), ["a_b", "c"]);
    let table = "| id | threat | tests | result |\n|---|---|---|---|\n\
                 | `X-1` | t | `one`, `two` | passes |\n| X-2 | t | - | cluster |\n";
    let r = rows(table);
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].id.as_str(), r[0].result.as_str()), ("X-1", "passes"));
    assert_eq!(r[0].tests, ["one", "two"]);
    assert!(r[1].tests.is_empty());
    let tests = test_functions(&root().join("crates/rserpool/tests/threats"));
    assert!(!tests.contains_key("the_checker_reads_cells_rows_and_test_attributes"));
    assert!(
        tests["a_node_without_a_key_cannot_register_and_the_registrar_keeps_serving"]
            .file
            .starts_with("rfc5355_2_1")
    );
}

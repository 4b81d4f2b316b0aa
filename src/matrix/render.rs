//! The matrix's three reports: the grid for people, JSON for programs and
//! JUnit XML for CI systems.

use super::{Cell, CellResult, Matrix, Verdict, short, status_name};
use anstyle::{AnsiColor, Style};
use std::fmt::Write as _;

const MATCHED: Style = AnsiColor::Green.on_default();
const MISMATCHED: Style = AnsiColor::Red.on_default().bold();
const UNCHECKED: Style = AnsiColor::Yellow.on_default();

/// The grid: modules as rows, policies as columns, each cell its outcome and
/// a mark (`✓` matched, `✗` mismatched, `?` unchecked), then the mismatches
/// with the command that reproduces each.
///
/// `colour` adds ANSI colours; the caller decides, since only it knows
/// whether the text goes to a terminal (the CLI asks `anstream`, which also
/// honours `NO_COLOR`).
pub fn render_table(matrix: &Matrix, colour: bool) -> String {
    let paint = |text: &str, style: Style| {
        if colour {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    };
    let mut out = render_grid(matrix, &paint);
    let (ok, bad, unchecked) = matrix.counts();
    let _ = writeln!(
        out,
        "\n{} cells: {ok} matched, {bad} mismatched, {unchecked} unchecked",
        matrix.cells.len()
    );
    if unchecked > 0 {
        let _ = writeln!(
            out,
            "unchecked cells have no [[cell]] expectation; they are never counted as passed"
        );
    }
    let _ = writeln!(out, "{}", wall_line(matrix));
    render_learned(&mut out, matrix);
    if bad > 0 {
        let _ = writeln!(out, "\n{}", paint("mismatches:", MISMATCHED));
        for cell in matrix.mismatches() {
            render_mismatch(&mut out, cell);
        }
    }
    out
}

/// The header row and one row per module.
fn render_grid(matrix: &Matrix, paint: &dyn Fn(&str, Style) -> String) -> String {
    let cell_at = |m: &str, p: &str| matrix.cells.iter().find(|c| c.module == m && c.policy == p);
    let first = matrix
        .modules
        .iter()
        .map(|m| m.chars().count())
        .max()
        .unwrap_or(0)
        .max("module".len());
    let widths: Vec<usize> = matrix.policies.iter().map(|p| p.chars().count().max(8)).collect();

    let mut out = String::new();
    let _ = write!(out, "{:<first$}", "module");
    for (p, w) in matrix.policies.iter().zip(&widths) {
        let _ = write!(out, "  {p:<w$}");
    }
    end_row(&mut out);
    for m in &matrix.modules {
        let _ = write!(out, "{m:<first$}");
        for (p, w) in matrix.policies.iter().zip(&widths) {
            let Some(cell) = cell_at(m, p) else {
                let _ = write!(out, "  {:<w$}", "");
                continue;
            };
            let (mark, style) = match cell.verdict {
                Verdict::Match => ("✓", MATCHED),
                Verdict::Mismatch(_) => ("✗", MISMATCHED),
                Verdict::Unchecked => ("?", UNCHECKED),
            };
            let text = format!("{} {mark}", short(&cell.result));
            let pad = w.saturating_sub(text.chars().count());
            let _ = write!(out, "  {}{}", paint(&text, style), " ".repeat(pad));
        }
        end_row(&mut out);
    }
    out
}

/// What the second wall was around the cells: off when they ran in this
/// process; otherwise on, or the layers some workers were missing.
pub fn wall_line(matrix: &Matrix) -> String {
    if matrix.in_process {
        return "wall: off (cells ran inside this process, not each in a confined worker)".to_string();
    }
    let walls = matrix.cells.iter().filter_map(|c| match &c.result {
        CellResult::Ran(o) => o.wall.as_ref(),
        _ => None,
    });
    let mut partial = walls.filter(|w| !w.complete()).peekable();
    match partial.peek().and_then(|w| w.missing_line()) {
        None => "wall: on (each cell in its own confined worker process)".to_string(),
        Some(missing) => format!(
            "wall: partial (each cell in its own worker process; in {} of {} cells {missing})",
            partial.count(),
            matrix.cells.len()
        ),
    }
}

/// With `--learn`: each module's learned policy and its proof.
fn render_learned(out: &mut String, matrix: &Matrix) {
    if matrix.learned.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nlearned policies:");
    for learned in &matrix.learned {
        let file = learned
            .file
            .as_ref()
            .map_or("-".to_string(), |f| f.display().to_string());
        let _ = match &learned.verdict {
            Verdict::Match => writeln!(out, "  {}: {file}: proven", learned.module),
            Verdict::Unchecked => writeln!(
                out,
                "  {}: {file}: not proven (every cell had refusals or did not run)",
                learned.module
            ),
            Verdict::Mismatch(why) => writeln!(out, "  {}: {file}: NOT PROVEN: {}", learned.module, why.join("; ")),
        };
    }
}

/// One entry of the mismatch list: what differed and how to rerun the cell.
fn render_mismatch(out: &mut String, cell: &Cell) {
    let _ = writeln!(
        out,
        "  {} under {}: got {}",
        cell.module,
        cell.policy,
        short(&cell.result)
    );
    if let Verdict::Mismatch(failures) = &cell.verdict {
        for f in failures {
            let _ = writeln!(out, "    {f}");
        }
    }
    if let CellResult::LoadFailed(e) | CellResult::Failed(e) = &cell.result {
        // Load and run errors can quote the module's own names.
        let _ = writeln!(out, "    error: {}", crate::term::sanitize(e));
    }
    let _ = writeln!(out, "    reproduce: {}", cell.reproduce);
}

/// Ends a grid row without the padding of its last column.
fn end_row(out: &mut String) {
    out.truncate(out.trim_end_matches(' ').len());
    out.push('\n');
}

fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Match => "match",
        Verdict::Mismatch(_) => "mismatch",
        Verdict::Unchecked => "unchecked",
    }
}

/// The matrix as JSON: a summary, the axes, and every cell with its outcome
/// report (as `wasmcell run --report` writes it) and verdict.
pub fn render_json(matrix: &Matrix) -> String {
    let (ok, bad, unchecked) = matrix.counts();
    let cells: Vec<_> = matrix
        .cells
        .iter()
        .map(|c| {
            let failures = match &c.verdict {
                Verdict::Mismatch(f) => f.clone(),
                _ => Vec::new(),
            };
            let (outcome, error) = match &c.result {
                CellResult::Ran(o) => (o.to_json(), None),
                CellResult::LoadFailed(e) | CellResult::Failed(e) => (serde_json::Value::Null, Some(e)),
            };
            serde_json::json!({
                "module": c.module,
                "policy": c.policy,
                "short": short(&c.result),
                "status": status_name(&c.result),
                "verdict": verdict_name(&c.verdict),
                "failures": failures,
                "outcome": outcome,
                "error": error,
                "reproduce": c.reproduce,
            })
        })
        .collect();
    let json = serde_json::json!({
        "summary": { "cells": matrix.cells.len(), "matched": ok, "mismatched": bad, "unchecked": unchecked },
        "expectations": matrix.expectations.as_ref().map(|p| p.display().to_string()),
        "isolation": if matrix.in_process { "in-process" } else { "worker" },
        "wall": wall_line(matrix),
        "modules": matrix.modules,
        "policies": matrix.policies,
        "cells": cells,
        "learned": matrix.learned.iter().map(|l| serde_json::json!({
            "module": l.module,
            "file": l.file.as_ref().map(|f| f.display().to_string()),
            "verdict": verdict_name(&l.verdict),
            "failures": match &l.verdict { Verdict::Mismatch(f) => f.clone(), _ => Vec::new() },
        })).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&json).expect("a JSON value serializes") + "\n"
}

/// The matrix as JUnit XML: one test case per cell (class = module, name =
/// policy); mismatches are failures and unchecked cells are skipped.
///
/// Text XML 1.0 cannot carry (control characters, terminal escapes) is
/// dropped, so a guest's output cannot break the report.
pub fn render_junit(matrix: &Matrix) -> String {
    use quick_junit::{Report, TestCase, TestSuite};
    let mut suite = TestSuite::new("wasmcell matrix");
    for c in &matrix.cells {
        let reproduce = format!("reproduce: {}", c.reproduce);
        let status = junit_status(&c.verdict, "no expectation", Some(&reproduce));
        let mut case = TestCase::new(c.policy.as_str(), status);
        case.set_classname(c.module.as_str());
        if let CellResult::Ran(o) = &c.result {
            case.set_time(o.elapsed);
            if let Some(wall) = &o.wall {
                case.add_property(quick_junit::Property::new("wall", wall.to_json().to_string()));
            }
        }
        suite.add_test_case(case);
    }
    for learned in &matrix.learned {
        let status = junit_status(&learned.verdict, "every cell had refusals or did not run", None);
        let mut case = TestCase::new("learned policy", status);
        case.set_classname(learned.module.as_str());
        suite.add_test_case(case);
    }
    let mut report = Report::new("wasmcell matrix");
    report.add_test_suite(suite);
    report.to_string().expect("a JUnit report of strings serializes")
}

/// A JUnit status for `verdict`: a skip saying `unchecked` when nothing was
/// held to, a failure naming what differed (and `also`, its description's
/// last line, when given).
fn junit_status(verdict: &Verdict, unchecked: &str, also: Option<&str>) -> quick_junit::TestCaseStatus {
    use quick_junit::{NonSuccessKind, TestCaseStatus};
    match verdict {
        Verdict::Match => TestCaseStatus::success(),
        Verdict::Unchecked => {
            let mut status = TestCaseStatus::skipped();
            status.set_message(unchecked);
            status
        }
        Verdict::Mismatch(failures) => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
            status.set_message(failures.join("; "));
            if let Some(also) = also {
                status.set_description(format!("{}\n{also}", failures.join("\n")));
            }
            status
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_cell(result: CellResult, verdict: Verdict) -> Matrix {
        Matrix {
            modules: vec!["m".into()],
            policies: vec!["p".into()],
            cells: vec![Cell {
                module: "m".into(),
                policy: "p".into(),
                result,
                verdict,
                reproduce: "wasmcell run --policy p.toml m.wasm".into(),
            }],
            expectations: None,
            in_process: true,
            learned: Vec::new(),
        }
    }

    /// `--learn`'s verdicts reach every format, and a disproven one fails.
    #[test]
    fn learned_policies_are_listed_in_every_format() {
        let mut matrix = one_cell(CellResult::LoadFailed("x".into()), Verdict::Unchecked);
        let learned = |module: &str, verdict| super::super::LearnedPolicy {
            module: module.into(),
            file: Some(format!("/l/{module}.toml").into()),
            verdict,
        };
        matrix.learned = vec![
            learned("a", Verdict::Match),
            learned("b", Verdict::Mismatch(vec!["1 use(s) were refused".into()])),
            learned("c", Verdict::Unchecked),
        ];
        let table = render_table(&matrix, false);
        assert!(table.contains("a: /l/a.toml: proven"), "{table}");
        assert!(
            table.contains("b: /l/b.toml: NOT PROVEN: 1 use(s) were refused"),
            "{table}"
        );
        assert!(
            table.contains("c: /l/c.toml: not proven (every cell had refusals"),
            "{table}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&matrix)).unwrap();
        let verdicts: Vec<&str> = json["learned"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l["verdict"].as_str())
            .collect();
        assert_eq!(
            verdicts,
            [
                verdict_name(&Verdict::Match),
                verdict_name(&Verdict::Mismatch(vec![])),
                verdict_name(&Verdict::Unchecked)
            ]
        );
        let junit = render_junit(&matrix);
        assert_eq!(junit.matches("name=\"learned policy\"").count(), 3, "{junit}");
        assert!(junit.contains("1 use(s) were refused"), "{junit}");
        assert_eq!(matrix.exit_code(), 1);
        matrix.learned.remove(1);
        assert_eq!(matrix.exit_code(), 0);
    }

    #[test]
    fn colour_only_when_asked_for() {
        let matrix = one_cell(
            CellResult::LoadFailed("not wasm".into()),
            Verdict::Mismatch(vec!["status: expected exited, got load-error".into()]),
        );
        let plain = render_table(&matrix, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(plain.contains("load ✗") && plain.contains("reproduce: wasmcell run --policy p.toml m.wasm"));
        let coloured = render_table(&matrix, true);
        assert!(coloured.contains("\x1b[1m\x1b[31mload ✗\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn junit_escapes_markup_and_drops_control_characters() {
        let matrix = one_cell(
            CellResult::LoadFailed("not wasm".into()),
            Verdict::Mismatch(vec!["stdout: expected <a href=\"x\">&'</a>\u{1b}[31m\u{7}".into()]),
        );
        let xml = render_junit(&matrix);
        assert!(xml.starts_with("<?xml"), "{xml}");
        assert!(
            xml.contains("&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"),
            "{xml}"
        );
        assert!(
            !xml.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')),
            "{xml:?}"
        );
        assert!(xml.contains("<testcase name=\"p\" classname=\"m\""), "{xml}");
        assert!(xml.contains("reproduce: wasmcell run --policy p.toml m.wasm"), "{xml}");
    }
}

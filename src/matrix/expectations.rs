//! The expectations file: how each module is invoked and what each cell must
//! show, with the name patterns that pick the most specific entry.

use super::bad_input;
use anyhow::Result;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

/// The name of the expectations file looked for beside the policies; it is
/// never taken for a policy.
pub const EXPECTATIONS_FILE: &str = "expectations.toml";

/// An expectations file as written.
///
/// ```toml
/// [[module]]                 # how to invoke a module (glob allowed)
/// name = "fs_read"
/// args = ["/data/hello.txt"]
/// stdin = "optional text"
///
/// [[cell]]                   # what a cell must show; the most specific match wins
/// module = "fs_*"
/// policy = "deny-all"
/// status = "exited"
/// exit-code = 1
/// stderr-contains = "NotFound"
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ExpectationsFile {
    /// How modules are invoked. Absent: no arguments, stdin closed.
    #[serde(default)]
    pub module: Vec<ModuleSetup>,
    /// Expected outcomes. A cell no entry matches is reported as unchecked.
    #[serde(default)]
    pub cell: Vec<CellExpectation>,
}

/// Arguments, stdin and the export to invoke for the modules whose name
/// matches `name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModuleSetup {
    /// Module name (file name without extension); `*` and `?` are wildcards.
    pub name: String,
    /// Arguments after `argv[0]`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Text fed to stdin. Absent: the policy's stdin.
    pub stdin: Option<String>,
    /// Call this export instead of running the module as a command, as
    /// `wasmcell run --invoke` does: for a core module the export's name,
    /// with `args` as its numeric arguments; for a component a call in WAVE
    /// syntax such as `add(1, 2)`. The results follow the guest's output
    /// in the cell's stdout, one per line.
    pub invoke: Option<String>,
}

/// What one or more cells must show. Every key given must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CellExpectation {
    /// Module name pattern (`*` and `?` are wildcards).
    pub module: Spanned<String>,
    /// Policy name pattern: the policy file's name without `.toml`.
    pub policy: String,
    /// `exited`, `trap`, `timeout`, `fuel-exhausted`, `memory-limit`,
    /// `output-limit` or `load-error`.
    pub status: Option<Spanned<String>>,
    /// The code `wasmcell run` would exit with.
    pub exit_code: Option<u8>,
    /// Substring stdout must contain.
    pub stdout_contains: Option<String>,
    /// Regular expression stdout must match.
    pub stdout_matches: Option<Spanned<String>>,
    /// Substring stderr must contain.
    pub stderr_contains: Option<String>,
    /// Regular expression stderr must match.
    pub stderr_matches: Option<Spanned<String>>,
    /// Most fuel the run may use (the policy must meter fuel).
    pub fuel_used_at_most: Option<u64>,
    /// A denial of this kind (such as `tcp-connect`) must be reported.
    pub denial: Option<String>,
}

const STATUS_NAMES: &[&str] = &[
    "exited",
    "trap",
    "timeout",
    "fuel-exhausted",
    "memory-limit",
    "output-limit",
    "cancelled",
    "wall-stopped",
    "load-error",
];

/// A `[[cell]]` ready to judge with: its patterns and regular expressions
/// compiled once.
#[derive(Debug, Clone)]
pub(super) struct Expected {
    pub(super) cell: CellExpectation,
    module: Pattern,
    policy: Pattern,
    pub(super) stdout_re: Option<regex::Regex>,
    pub(super) stderr_re: Option<regex::Regex>,
}

/// A validated expectations file.
#[derive(Debug, Default, Clone)]
pub struct Expectations {
    modules: Vec<(ModuleSetup, Pattern)>,
    cells: Vec<Expected>,
}

impl Expectations {
    /// Reads and validates an expectations file.
    ///
    /// # Errors
    ///
    /// A [`RequestError`](crate::RequestError) of kind `MatrixInput` naming the file and line for TOML
    /// errors, unknown keys, unknown statuses and invalid regular expressions.
    pub fn from_file(path: &Path) -> Result<Expectations> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad_input(format!("cannot read expectations `{}`: {e}", path.display())))?;
        let at = |span: Option<std::ops::Range<usize>>| match span {
            Some(s) => format!("{}:{}", path.display(), text[..s.start].matches('\n').count() + 1),
            None => path.display().to_string(),
        };
        let file: ExpectationsFile =
            toml::from_str(&text).map_err(|e| bad_input(format!("{}: {}", at(e.span()), e.message().trim())))?;
        let modules = file
            .module
            .into_iter()
            .map(|m| Pattern::new(&m.name).map(|p| (m, p)))
            .collect::<Result<_>>()?;
        let cells = file
            .cell
            .into_iter()
            .map(|cell| compile_cell(cell, &at))
            .collect::<Result<_>>()?;
        Ok(Expectations { modules, cells })
    }

    /// The setup for `module`: the most specific `[[module]]` entry matching it.
    pub(super) fn setup_for(&self, module: &str) -> Option<&ModuleSetup> {
        best_match(self.modules.iter(), |(_, p)| p.specificity(module)).map(|(m, _)| m)
    }

    /// The expectation for a cell: the most specific `[[cell]]` whose module
    /// and policy patterns both match; among equals, the later entry.
    pub(super) fn expectation_for(&self, module: &str, policy: &str) -> Option<&Expected> {
        best_match(self.cells.iter(), |c| {
            let m = c.module.specificity(module)?;
            let p = c.policy.specificity(policy)?;
            Some((m.0 + p.0, m.1 + p.1))
        })
    }
}

/// Validates one `[[cell]]`; `at` turns a span into `file:line`.
fn compile_cell(cell: CellExpectation, at: &dyn Fn(Option<std::ops::Range<usize>>) -> String) -> Result<Expected> {
    // An entry that expects nothing would turn every cell it names into
    // a "match" that checked nothing, so it is refused.
    let expects_something = cell.status.is_some()
        || cell.exit_code.is_some()
        || cell.stdout_contains.is_some()
        || cell.stdout_matches.is_some()
        || cell.stderr_contains.is_some()
        || cell.stderr_matches.is_some()
        || cell.fuel_used_at_most.is_some()
        || cell.denial.is_some();
    if !expects_something {
        return Err(bad_input(format!(
            "{}: this [[cell]] expects nothing; give it at least one of status, exit-code, stdout-contains, stdout-matches, stderr-contains, stderr-matches, fuel-used-at-most, denial",
            at(Some(cell.module.span()))
        )));
    }
    if let Some(status) = &cell.status
        && !STATUS_NAMES.contains(&status.get_ref().as_str())
    {
        return Err(bad_input(format!(
            "{}: unknown status `{}`; expected one of {}",
            at(Some(status.span())),
            status.get_ref(),
            STATUS_NAMES.join(", ")
        )));
    }
    let regex = |r: &Option<Spanned<String>>| -> Result<Option<regex::Regex>> {
        r.as_ref()
            .map(|r| {
                regex::Regex::new(r.get_ref())
                    .map_err(|e| bad_input(format!("{}: invalid regular expression: {e}", at(Some(r.span())))))
            })
            .transpose()
    };
    Ok(Expected {
        module: Pattern::new(cell.module.get_ref())?,
        policy: Pattern::new(&cell.policy)?,
        stdout_re: regex(&cell.stdout_matches)?,
        stderr_re: regex(&cell.stderr_matches)?,
        cell,
    })
}

/// The highest-scoring item; later items win ties.
fn best_match<T>(items: impl Iterator<Item = T>, score: impl Fn(&T) -> Option<(usize, usize)>) -> Option<T> {
    items
        .filter_map(|item| score(&item).map(|s| (s, item)))
        .fold(None, |best, (s, item)| match best {
            Some((bs, _)) if bs > s => best,
            _ => Some((s, item)),
        })
        .map(|(_, item)| item)
}

/// A module or policy name pattern: `*` matches any run of characters, `?`
/// any one character, and every other character only itself (so `[`, `{`
/// and `\` in a file name are literal, unlike in a shell glob).
///
/// Compiled to a regular expression rather than with `globset`: globset
/// matches bytes, so its `?` is one byte and `fs_r?ad` would stop matching
/// `fs_réad`, and it gives `[`, `{`, `\` and `**` meanings that names would
/// have to be escaped from. A language of just `*` and `?` is what a regex
/// says exactly (globset compiles to the same `regex` crate).
#[derive(Debug, Clone)]
pub(super) struct Pattern {
    re: regex::Regex,
    /// 1 for a name without wildcards, else 0.
    exact: usize,
    /// Characters other than `*` and `?`.
    literal: usize,
}

impl Pattern {
    pub(super) fn new(pattern: &str) -> Result<Pattern> {
        let re = crate::policy::name_regex(pattern)
            .map_err(|e| bad_input(format!("invalid name pattern `{pattern}`: {e}")))?;
        let literal = pattern.chars().filter(|c| !matches!(c, '*' | '?')).count();
        let exact = usize::from(literal == pattern.chars().count());
        Ok(Pattern { re, exact, literal })
    }

    pub(super) fn is_match(&self, text: &str) -> bool {
        self.re.is_match(text)
    }

    /// How specifically this pattern names `text`: `None` when it does not
    /// match; otherwise (1 for an exact name, number of literal characters).
    fn specificity(&self, text: &str) -> Option<(usize, usize)> {
        self.is_match(text).then_some((self.exact, self.literal))
    }
}

/// Whether `text` matches `pattern`: `*` matches any run of characters, `?`
/// any one character; every other character matches only itself.
///
/// This compiles the pattern on every call; the matrix compiles each of its
/// patterns once.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).is_ok_and(|p| p.is_match(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match("fs_*", "fs_read"));
        assert!(glob_match("fs_?ead", "fs_read"));
        assert!(glob_match("*_read", "fs_read"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("fs_*", "env_vars"));
        assert!(!glob_match("fs_read", "fs_read2"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn globs_keep_the_matrix_semantics() {
        // `*` crosses the `/` of a `module/policy` filter.
        assert!(glob_match("fs_*", "fs_read/deny-all"));
        assert!(glob_match("*/tight", "hello/tight"));
        assert!(glob_match("a**b", "a/x/b"));
        // `?` is one character, not one byte.
        assert!(glob_match("fs_r?ad", "fs_réad"));
        assert!(!glob_match("fs_r??ad", "fs_réad"));
        // Shell-glob syntax is literal.
        assert!(glob_match("a[bc]", "a[bc]"));
        assert!(!glob_match("a[bc]", "ab"));
        assert!(glob_match("{a,b}", "{a,b}"));
        assert!(!glob_match("{a,b}", "a"));
        assert!(glob_match(r"a\*", r"a\xyz"));
        assert!(!glob_match("A*", "a"));
        assert!(glob_match("a?b*", "a\nb\n"));
        assert!(glob_match("a.c", "a.c") && !glob_match("a.c", "abc"));
    }

    #[test]
    fn most_specific_expectation_wins_and_later_breaks_ties() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        std::fs::write(
            &path,
            r#"
[[cell]]
module = "fs_read"
policy = "read-only"
exit-code = 0

[[cell]]
module = "*"
policy = "*"
exit-code = 1

[[cell]]
module = "fs_*"
policy = "*"
exit-code = 2

[[cell]]
module = "fs_*"
policy = "*"
exit-code = 3
"#,
        )
        .unwrap();
        let e = Expectations::from_file(&path).unwrap();
        let code = |m, p| e.expectation_for(m, p).and_then(|c| c.cell.exit_code);
        assert_eq!(code("fs_read", "read-only"), Some(0), "exact names beat globs");
        assert_eq!(
            code("fs_read", "deny-all"),
            Some(3),
            "more literal characters win; ties go to the later entry"
        );
        assert_eq!(code("env_vars", "deny-all"), Some(1));
    }

    #[test]
    fn expectation_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.toml");
        let err = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Expectations::from_file(&path).unwrap_err().to_string()
        };
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nstatus = \"crashed\"\n");
        assert!(
            msg.contains("e.toml:4: unknown status `crashed`; expected one of exited"),
            "{msg}"
        );
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nstdout-matches = \"(\"\n");
        assert!(msg.contains("e.toml:4: invalid regular expression"), "{msg}");
        let msg = err("[[cell]]\nmodule = \"*\"\npolicy = \"*\"\nexit = 1\n");
        assert!(msg.contains("e.toml:4:") && msg.contains("exit-code"), "{msg}");
    }
}

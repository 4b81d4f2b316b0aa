//! Rules inside a directory grant (`deny`, `read-only`, `hide` in
//! `[[fs.dirs]]`) and the one pure decision every filesystem operation of a
//! guest passes: [`FsRules::decide`].
//!
//! Paths here are relative to the grant's root, normalized: components joined
//! by `/`, no `.`, `..` or empty components, `""` for the root itself. The
//! capability layer turns what the guest wrote into that form (lexically, and
//! once more after following links itself) and asks for both.

use super::error::invalid;
use super::{Access, PolicyError};

/// What a guest operation does to the path it names; each kind of refusal is
/// recorded under [`FsOp::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsOp {
    /// Opening for reading, listing a directory, reading a link.
    Read,
    /// Reading metadata (`stat`).
    Stat,
    /// Opening for writing or truncating, changing size or times.
    Write,
    /// Creating a file or directory.
    Create,
    /// Removing a file or directory.
    Remove,
    /// Either end of a rename.
    Rename,
    /// Either end of a hard link.
    Link,
    /// Where a symbolic link is created.
    Symlink,
}

impl FsOp {
    /// The denial kind recorded for a refusal of this operation.
    pub fn kind(self) -> &'static str {
        match self {
            FsOp::Read | FsOp::Stat => "fs-read",
            FsOp::Write => "fs-write",
            FsOp::Create => "fs-create",
            FsOp::Remove => "fs-remove",
            FsOp::Rename => "fs-rename",
            FsOp::Link => "fs-link",
            FsOp::Symlink => "fs-symlink",
        }
    }

    /// Whether the operation changes the tree (what `read-only` refuses).
    pub fn modifies(self) -> bool {
        !matches!(self, FsOp::Read | FsOp::Stat)
    }
}

/// The answer for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsDecision {
    /// wasmtime-wasi may perform the operation (and still refuse it on its own).
    Allow,
    /// Refused.
    Deny {
        /// The rule as written, e.g. `deny "**/.env"`.
        rule: String,
        /// The guest is told the path does not exist.
        hide: bool,
    },
}

/// The rules of one `[[fs.dirs]]` grant. Deny wins over everything; a
/// `read-only` rule refuses changes below a read-write grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsRules {
    /// Paths the guest may not touch at all: not read, stat, list, create,
    /// change, remove, rename or link.
    pub deny: Vec<PathGlob>,
    /// Paths the guest may read but not change, inside a read-write grant.
    pub read_only: Vec<PathGlob>,
    /// Denied paths look absent: `NotFound` on open and stat, left out of
    /// directory listings.
    pub hide: bool,
    /// Bytes the run may add below a read-write grant (`quota`): growth of
    /// files by writes, appends and resizing, counted over the whole run;
    /// removing or truncating gives nothing back.
    pub quota: Option<u64>,
    /// Files, directories and links the run may create (`max-files`).
    pub max_files: Option<u64>,
    /// For the folder of `[[fs.files]]` grants: the only entries the guest
    /// sees there, each with its own access; everything else is hidden.
    /// Empty for a directory grant.
    pub files: Vec<FileRule>,
}

/// One file granted by `[[fs.files]]`: its name in its guest folder, its
/// name in the host folder, and its access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRule {
    /// The name the guest sees (one path component): every decision is
    /// about this name.
    pub name: String,
    /// The host file's name in the granted host folder, which the guest
    /// never sees: the same as `name` unless the grant renames the file.
    pub host: String,
    /// What the guest may do with it.
    pub access: Access,
}

impl FsRules {
    /// Whether there is no path rule (paths in such a grant are not decided).
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty() && self.read_only.is_empty() && self.files.is_empty()
    }

    /// Whether a file grant here shows a file under another name than the
    /// host's: then every name the guest gives must be translated
    /// ([`host_name`](Self::host_name)) before the host is asked.
    pub fn renames(&self) -> bool {
        self.files.iter().any(|f| f.name != f.host)
    }

    /// The host's name for `name`, an entry of the folder of file grants as
    /// the guest calls it: a granted file's host name, else `name` itself
    /// (hidden, so never handed to the host).
    pub fn host_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.files
            .iter()
            .find(|f| f.name == name)
            .map_or(name, |f| f.host.as_str())
    }

    /// The name the guest sees for `host`, an entry of the folder of file
    /// grants as the host lists it: `None` when no grant shows it.
    pub fn guest_name(&self, host: &str) -> Option<&str> {
        self.files.iter().find(|f| f.host == host).map(|f| f.name.as_str())
    }

    /// Refuses file grants of one folder that cannot be told apart: one
    /// guest name for two host files, or one host file under two guest
    /// names (a listing shows each host entry once).
    pub fn check_files(&self) -> Result<(), String> {
        for (i, f) in self.files.iter().enumerate() {
            for g in &self.files[..i] {
                if f.name == g.name && f.host != g.host {
                    return Err(format!(
                        "guest name `{}` is given to two host files, `{}` and `{}`; give each its own guest name",
                        f.name, g.host, f.host
                    ));
                }
                if f.host == g.host && f.name != g.name {
                    return Err(format!(
                        "host file `{}` is granted twice in one guest folder, as `{}` and `{}`; grant it once, or \
                         under another guest folder",
                        f.host, g.name, f.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the grant counts what the run adds (`quota`, `max-files`).
    pub fn has_quota(&self) -> bool {
        self.quota.is_some() || self.max_files.is_some()
    }

    /// Adds `other`'s rules to these (a grant repeated across layers keeps
    /// every rule any layer gave it: deny wins).
    pub fn merge(&mut self, other: FsRules) {
        for g in other.deny {
            if !self.deny.contains(&g) {
                self.deny.push(g);
            }
        }
        for g in other.read_only {
            if !self.read_only.contains(&g) {
                self.read_only.push(g);
            }
        }
        self.hide |= other.hide;
        for f in other.files {
            if !self.files.contains(&f) {
                self.files.push(f);
            }
        }
        let stricter = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.quota = stricter(self.quota, other.quota);
        self.max_files = stricter(self.max_files, other.max_files);
    }

    /// Decides `op` on `rel` (normalized, relative to the grant). A rule
    /// applies to the path it matches and to everything below it.
    pub fn decide(&self, rel: &str, op: FsOp) -> FsDecision {
        if !self.files.is_empty() {
            return self.decide_file(rel, op);
        }
        if let Some(g) = self.deny.iter().find(|g| g.covers(rel)) {
            return FsDecision::Deny {
                rule: format!("deny \"{}\"", g.text),
                hide: self.hide,
            };
        }
        if op.modifies()
            && let Some(g) = self.read_only.iter().find(|g| g.covers(rel))
        {
            return FsDecision::Deny {
                rule: format!("read-only \"{}\"", g.text),
                hide: false,
            };
        }
        FsDecision::Allow
    }

    /// In the folder of file grants: the folder itself can be listed, each
    /// granted file used as its access says but not removed, renamed or
    /// linked, and nothing else is there.
    fn decide_file(&self, rel: &str, op: FsOp) -> FsDecision {
        let deny = |rule: String, hide: bool| FsDecision::Deny { rule, hide };
        let names = || {
            self.files
                .iter()
                .map(|f| format!("`{}`", f.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let only = || format!("[[fs.files]] grants only {} in this folder", names());
        if rel.is_empty() {
            return match op {
                FsOp::Read | FsOp::Stat => FsDecision::Allow,
                _ => deny(only(), false),
            };
        }
        // Every access to a name counts, the most restrictive winning, so a
        // file granted twice with different access stays read-only.
        let mut granted = self.files.iter().filter(|f| f.name == rel).map(|f| f.access);
        let Some(first) = granted.next() else {
            return deny(only(), true);
        };
        let read_only = first == Access::ReadOnly || granted.any(|a| a == Access::ReadOnly);
        match op {
            FsOp::Read | FsOp::Stat => FsDecision::Allow,
            FsOp::Write if !read_only => FsDecision::Allow,
            FsOp::Write => deny(format!("[[fs.files]] grants `{rel}` read-only"), false),
            _ => deny(
                format!("[[fs.files]] grants `{rel}` itself: it cannot be created, removed, renamed or linked"),
                false,
            ),
        }
    }

    /// A rule that could match something strictly inside directory `rel`
    /// and depends on where that directory is: moving the directory (or
    /// moving one there) could carry files out from under the rule or into
    /// it, so such a rename is refused. `**/NAME` rules match the same
    /// entries wherever the directory goes and never count.
    pub fn rule_inside(&self, rel: &str) -> Option<String> {
        let comps: Vec<&str> = components(rel).collect();
        let check = |list: &[PathGlob], label: &str| {
            list.iter()
                .find(|g| g.could_match_below(&comps))
                .map(|g| format!("{label} \"{}\"", g.text))
        };
        check(&self.deny, "deny").or_else(|| check(&self.read_only, "read-only"))
    }
}

fn components(rel: &str) -> impl Iterator<Item = &str> {
    rel.split('/').filter(|c| !c.is_empty())
}

/// A path pattern relative to a grant: `*` matches any run of characters
/// within one component, `?` one character, a whole `**` component any
/// number of components (none included); everything else matches itself.
#[derive(Debug, Clone)]
pub struct PathGlob {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    AnyDepth,
    Literal(String),
    Wild(regex::Regex),
}

impl PartialEq for PathGlob {
    fn eq(&self, other: &PathGlob) -> bool {
        self.text == other.text
    }
}
impl Eq for PathGlob {}

/// Longest pattern accepted, in bytes.
const MAX_PATTERN: usize = 1024;

impl PathGlob {
    /// Parses a rule pattern, refusing what could never match a normalized
    /// path: absolute patterns, `.`/`..` and empty components, `**` inside
    /// a component.
    pub fn new(pattern: &str) -> Result<PathGlob, PolicyError> {
        let what = |why: &str| invalid(format!("rule pattern `{pattern}` {why}"));
        if pattern.is_empty() || pattern.len() > MAX_PATTERN || pattern.contains('\0') {
            return Err(what("must be 1 to 1024 bytes without NUL, e.g. \"**/.env\""));
        }
        if pattern.starts_with('/') {
            return Err(what(
                "is absolute; rules are relative to the grant, e.g. \"secret.txt\"",
            ));
        }
        let trimmed = pattern.strip_suffix('/').unwrap_or(pattern);
        let mut parts = Vec::new();
        for c in trimmed.split('/') {
            match c {
                "" | "." | ".." => {
                    return Err(what(
                        "has an empty, `.` or `..` component; write the path as the guest sees it below the grant",
                    ));
                }
                "**" => {
                    if !matches!(parts.last(), Some(Part::AnyDepth)) {
                        parts.push(Part::AnyDepth);
                    }
                }
                c if c.contains("**") => {
                    return Err(what(
                        "has `**` inside a component; `**` must stand alone, as in \"a/**/b\"",
                    ));
                }
                c if c.contains(['*', '?']) => parts.push(Part::Wild(component_regex(c))),
                c => parts.push(Part::Literal(c.to_string())),
            }
        }
        Ok(PathGlob {
            text: pattern.to_string(),
            parts,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern matches `rel` or one of its ancestors.
    pub fn covers(&self, rel: &str) -> bool {
        let comps: Vec<&str> = components(rel).collect();
        matches(&self.parts, &comps).contains(&true)
    }

    fn could_match_below(&self, dir: &[&str]) -> bool {
        if let [Part::AnyDepth, last] = self.parts.as_slice()
            && !matches!(last, Part::AnyDepth)
        {
            return false;
        }
        could_match_below(&self.parts, dir)
    }
}

/// A name pattern as a regex: `*` any run of characters, `?` one, the rest
/// literal, matched against the whole name (policy globs' components and
/// the matrix's module and policy names).
pub(crate) fn name_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    // `(?s)`: a wildcard also matches a newline in a name.
    let mut re = String::from("(?s)^");
    for ch in pattern.chars() {
        match ch {
            '*' if re.ends_with(".*") => {}
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            ch => re.push_str(&regex::escape(ch.encode_utf8(&mut [0; 4]))),
        }
    }
    re.push('$');
    regex::Regex::new(&re)
}

fn component_regex(c: &str) -> regex::Regex {
    // Built only from escaped literals, `.` and `.*`: always valid.
    name_regex(c).unwrap_or_else(|e| unreachable!("component pattern {c}: {e}"))
}

fn part_matches(part: &Part, comp: &str) -> bool {
    match part {
        Part::AnyDepth => true,
        Part::Literal(l) => l == comp,
        Part::Wild(re) => re.is_match(comp),
    }
}

/// For each prefix of `comps` (by length), whether `parts` match it
/// exactly: one table over both, so a pattern with many `**` costs parts ×
/// components, not exponential time, and all prefixes come in one pass.
fn matches(parts: &[Part], comps: &[&str]) -> Vec<bool> {
    // ok[j]: parts[..i] match comps[..j].
    let mut ok = vec![false; comps.len() + 1];
    ok[0] = true;
    for part in parts {
        let mut next = vec![false; comps.len() + 1];
        for j in 0..=comps.len() {
            next[j] = match part {
                Part::AnyDepth => ok[j] || (j > 0 && next[j - 1]),
                p => j > 0 && ok[j - 1] && part_matches(p, comps[j - 1]),
            };
        }
        ok = next;
    }
    ok
}

/// Whether `parts` could match some path strictly below `dir`.
fn could_match_below(parts: &[Part], dir: &[&str]) -> bool {
    match (parts.first(), dir.first()) {
        (None, _) => false,
        (Some(Part::AnyDepth), _) => true,
        (Some(_), None) => true,
        (Some(p), Some(c)) => part_matches(p, c) && could_match_below(&parts[1..], &dir[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(deny: &[&str], read_only: &[&str], hide: bool) -> FsRules {
        FsRules {
            deny: deny.iter().map(|p| PathGlob::new(p).unwrap()).collect(),
            read_only: read_only.iter().map(|p| PathGlob::new(p).unwrap()).collect(),
            hide,
            ..FsRules::default()
        }
    }

    #[test]
    fn a_file_grants_folder_shows_its_files_only() {
        let r = FsRules {
            files: vec![
                FileRule {
                    name: "app.conf".into(),
                    host: "one.conf".into(),
                    access: Access::ReadOnly,
                },
                FileRule {
                    name: "state.json".into(),
                    host: "state.json".into(),
                    access: Access::ReadWrite,
                },
            ],
            hide: true,
            ..FsRules::default()
        };
        let denied = |d: FsDecision, want: bool| matches!(d, FsDecision::Deny { hide, .. } if hide == want);
        assert_eq!(r.decide("", FsOp::Read), FsDecision::Allow);
        assert!(denied(r.decide("", FsOp::Create), false));
        assert_eq!(r.decide("app.conf", FsOp::Read), FsDecision::Allow);
        assert!(denied(r.decide("app.conf", FsOp::Write), false));
        assert_eq!(r.decide("state.json", FsOp::Write), FsDecision::Allow);
        for op in [FsOp::Remove, FsOp::Rename, FsOp::Link, FsOp::Create] {
            assert!(denied(r.decide("state.json", op), false), "{op:?}");
        }
        for path in ["other.txt", "app.conf/x", "sub/app.conf", "one.conf"] {
            assert!(denied(r.decide(path, FsOp::Stat), true), "{path}");
        }
        assert!(r.renames());
        assert_eq!(r.host_name("app.conf"), "one.conf");
        assert_eq!(r.guest_name("one.conf"), Some("app.conf"));
        assert_eq!(r.guest_name("app.conf"), None, "the host's own `app.conf` stays hidden");
    }

    #[test]
    fn file_grants_that_cannot_be_told_apart_are_refused() {
        let file = |name: &str, host: &str| FileRule {
            name: name.into(),
            host: host.into(),
            access: Access::ReadOnly,
        };
        let rules = |files: Vec<FileRule>| FsRules {
            files,
            ..FsRules::default()
        };
        // Two files of one folder, even swapping names, are fine.
        let swap = rules(vec![file("a.conf", "b.conf"), file("b.conf", "a.conf")]);
        assert_eq!(swap.check_files(), Ok(()));
        let e = rules(vec![file("app.conf", "one.conf"), file("app.conf", "two.conf")]).check_files();
        assert!(
            e.unwrap_err()
                .contains("guest name `app.conf` is given to two host files")
        );
        let e = rules(vec![file("a.conf", "one.conf"), file("b.conf", "one.conf")]).check_files();
        assert!(e.unwrap_err().contains("host file `one.conf` is granted twice"));
    }

    #[test]
    fn globs_match_paths_and_everything_below() {
        let cases: &[(&str, &str, bool)] = &[
            ("secret.txt", "secret.txt", true),
            ("secret.txt", "a/secret.txt", false),
            ("secret", "secret/inner/file", true),
            ("**/.env", ".env", true),
            ("**/.env", "a/b/.env", true),
            ("**/.env", "a/b/.envrc", false),
            ("**/.env", "a/.env/x", true),
            (".git/hooks/**", ".git/hooks", true),
            (".git/hooks/**", ".git/hooks/pre-commit", true),
            (".git/hooks/**", ".git/hook", false),
            (".git/hooks/**", ".git", false),
            ("*.key", "id.key", true),
            ("*.key", "dir/id.key", false),
            ("**/*.key", "dir/id.key", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("**", "", true),
            ("x", "", false),
            ("dir/", "dir/f", true),
            ("[x]", "[x]", true),
        ];
        for (pattern, path, want) in cases {
            let g = PathGlob::new(pattern).unwrap();
            assert_eq!(g.covers(path), *want, "{pattern} on {path:?}");
        }
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (pattern, says) in [
            ("", "1 to 1024 bytes"),
            ("/etc/passwd", "absolute"),
            ("a/../b", "`..`"),
            ("./a", "`.`"),
            ("a//b", "empty"),
            ("a**", "inside a component"),
        ] {
            let e = PathGlob::new(pattern).unwrap_err().to_string();
            assert!(e.contains(says), "{pattern}: {e}");
        }
    }

    #[test]
    fn deny_wins_and_read_only_refuses_only_changes() {
        let r = rules(&["**/.env", "keys"], &["config/**", "keys"], false);
        let deny = |rule: &str| FsDecision::Deny {
            rule: rule.to_string(),
            hide: false,
        };
        let table: &[(&str, FsOp, FsDecision)] = &[
            ("src/main.rs", FsOp::Write, FsDecision::Allow),
            ("a/.env", FsOp::Read, deny("deny \"**/.env\"")),
            ("a/.env", FsOp::Stat, deny("deny \"**/.env\"")),
            ("keys/id", FsOp::Read, deny("deny \"keys\"")),
            ("config/app.toml", FsOp::Read, FsDecision::Allow),
            ("config/app.toml", FsOp::Stat, FsDecision::Allow),
            ("config/app.toml", FsOp::Write, deny("read-only \"config/**\"")),
            ("config", FsOp::Remove, deny("read-only \"config/**\"")),
            ("config/new", FsOp::Create, deny("read-only \"config/**\"")),
            ("config/x", FsOp::Symlink, deny("read-only \"config/**\"")),
            ("configure", FsOp::Write, FsDecision::Allow),
        ];
        for (path, op, want) in table {
            assert_eq!(&r.decide(path, *op), want, "{op:?} {path}");
        }
        let hidden = rules(&["secret.txt"], &[], true);
        assert_eq!(
            hidden.decide("secret.txt", FsOp::Read),
            FsDecision::Deny {
                rule: "deny \"secret.txt\"".into(),
                hide: true
            }
        );
    }

    #[test]
    fn renaming_a_directory_that_a_rule_reaches_into_is_caught() {
        let r = rules(&[".git/hooks/**", "**/.env"], &["config/**"], false);
        // `.git` holds `hooks`; `config` is ruled itself; `src/**` no rule reaches.
        assert_eq!(r.rule_inside(".git").as_deref(), Some("deny \".git/hooks/**\""));
        assert_eq!(r.rule_inside("").as_deref(), Some("deny \".git/hooks/**\""));
        assert_eq!(r.rule_inside("config").as_deref(), Some("read-only \"config/**\""));
        assert_eq!(r.rule_inside("src"), None, "`**/.env` matches wherever src goes");
        assert_eq!(r.rule_inside(".github"), None);
        let deep = rules(&["**/.git/hooks/**"], &[], false);
        assert!(deep.rule_inside("any/dir").is_some());
    }

    #[test]
    fn many_double_stars_stay_cheap() {
        let g = PathGlob::new(&["**", "a"].repeat(40).join("/")).unwrap();
        let long = vec!["b"; 200].join("/");
        assert!(!g.covers(&long));
    }
}

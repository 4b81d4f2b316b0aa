//! Finding the matrix's axes: module and policy files named directly or found
//! in directories, and the expectations file beside the policies.

use super::{EXPECTATIONS_FILE, MatrixOptions, bad_input};
use anyhow::{Context as _, Result};
use std::path::{Path, PathBuf};

/// A module or policy in the matrix: its name and file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// File name without extension.
    pub name: String,
    /// The file.
    pub path: PathBuf,
}

/// Modules named by `paths`: `.wasm` and `.wat` files, or every such file
/// directly inside a directory.
///
/// # Errors
///
/// A [`RequestError`](crate::RequestError) of kind `MatrixInput` for a missing path, no modules at
/// all, or two modules with the same name.
pub fn discover_modules(paths: &[PathBuf]) -> Result<Vec<Entry>> {
    discover(paths, &["wasm", "wat"], "modules", |_| true)
}

/// Policies named by `paths`: `.toml` files, or every such file directly
/// inside a directory except [`EXPECTATIONS_FILE`].
///
/// # Errors
///
/// As [`discover_modules`].
pub fn discover_policies(paths: &[PathBuf]) -> Result<Vec<Entry>> {
    discover(paths, &["toml"], "policies", |p| {
        p.file_name().is_some_and(|n| n != EXPECTATIONS_FILE)
    })
}

/// The expectations file to use: the one given, else [`EXPECTATIONS_FILE`]
/// in the first policy directory when it exists.
pub(super) fn expectations_path(options: &MatrixOptions) -> Option<PathBuf> {
    options.expect.clone().or_else(|| {
        let dir = options.policies.iter().find(|p| p.is_dir())?;
        Some(dir.join(EXPECTATIONS_FILE)).filter(|p| p.is_file())
    })
}

fn discover(paths: &[PathBuf], exts: &[&str], what: &str, keep: impl Fn(&Path) -> bool) -> Result<Vec<Entry>> {
    let found = list_files(paths, exts, what, keep)?;
    let entries = name_entries(found, what)?;
    if entries.is_empty() {
        let names: Vec<_> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
        return Err(bad_input(format!(
            "no {what} ({}) found in {}",
            exts.join(", "),
            names.join(", ")
        )));
    }
    Ok(entries)
}

/// Files given directly, and the files with one of `exts` that `keep`
/// accepts directly inside each directory given, sorted per directory.
fn list_files(paths: &[PathBuf], exts: &[&str], what: &str, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let has_ext = |p: &Path| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.contains(&e))
    };
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("failed to list `{}`", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_ext(p) && keep(p))
                .collect();
            files.sort();
            found.extend(files);
        } else if path.is_file() {
            found.push(path.clone());
        } else {
            return Err(bad_input(format!(
                "`{}` does not exist; name {what} as files or directories",
                path.display()
            )));
        }
    }
    Ok(found)
}

/// Names each file by its stem; two files of one name are refused, since
/// cells are named by file.
fn name_entries(found: Vec<PathBuf>, what: &str) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    for path in found {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(other) = entries.iter().find(|e| e.name == name) {
            return Err(bad_input(format!(
                "two {what} are named `{name}`: `{}` and `{}`; cells are named by file, so rename one",
                other.path.display(),
                path.display()
            )));
        }
        entries.push(Entry { name, path });
    }
    Ok(entries)
}

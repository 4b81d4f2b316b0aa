//! One check per policy value, used by every layer: a value from a file, a
//! command-line flag or an API call is refused by the same function with the
//! same words. The caller says where the value came from (a file's line, a
//! flag, a key), so these functions name only the key.

use super::error::{PolicyError, invalid};
use super::file::ClockMode;
use super::{Access, FsRules, Proposal};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A `wasm.proposals` name: one of [`Proposal::ALL`], as `wasmtime run -W`
/// spells it; threads and shared memory are refused.
pub(super) fn check_wasm_proposal(name: &str) -> Result<Proposal, PolicyError> {
    name.parse::<Proposal>().map_err(invalid)
}

/// `env.vars` and `env.inherit` names: what an environment can hold.
pub(super) fn check_env_name(name: &str) -> Result<(), PolicyError> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(invalid(format!(
            "invalid environment variable name `{}`: names must be non-empty and contain no `=` or NUL",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// A `fs.dirs` guest path.
pub(super) fn check_guest_path(guest: &str) -> Result<(), PolicyError> {
    if guest.is_empty() || guest.contains('\0') {
        return Err(invalid(
            "guest path must not be empty; use an absolute path such as `/data`",
        ));
    }
    Ok(())
}

/// Most `deny` plus `read-only` patterns one grant may have: every
/// filesystem operation in the grant is matched against each.
pub(super) const MAX_RULES: usize = 256;

/// The rules of one `[[fs.dirs]]` grant.
pub(super) fn check_rules(rules: &FsRules, access: Access) -> Result<(), PolicyError> {
    if rules.hide && rules.deny.is_empty() {
        return Err(
            invalid("fs.dirs.hide = true hides nothing without `deny` patterns; add them or remove `hide`")
                .key("fs.dirs.hide"),
        );
    }
    if rules.has_quota() && access == Access::ReadOnly {
        let key = if rules.quota.is_some() {
            "fs.dirs.quota"
        } else {
            "fs.dirs.max-files"
        };
        return Err(invalid(format!(
            "{key} on a read-only grant: nothing can be written there; remove it or make the grant read-write"
        ))
        .key(key));
    }
    if rules.deny.len() + rules.read_only.len() > MAX_RULES {
        return Err(invalid(format!(
            "a grant has more than {MAX_RULES} `deny` and `read-only` patterns; merge them with `*` and `**`"
        ))
        .key("fs.dirs.deny"));
    }
    Ok(())
}

/// A `stdio.stdin` file: it must exist when the policy is resolved.
pub(super) fn check_stdin_file(path: &Path) -> Result<(), PolicyError> {
    if !path.is_file() {
        return Err(invalid(format!(
            "stdin file `{}` does not exist; create it or fix the path",
            path.display()
        )));
    }
    Ok(())
}

/// `clocks.start`: the instants WASI can tell a guest. Its wall clock counts
/// nanoseconds since 1970 in a `u64`, which runs out in July 2554.
pub(super) fn check_clock_start(start: SystemTime) -> Result<(), PolicyError> {
    let since_epoch = start.duration_since(SystemTime::UNIX_EPOCH).ok();
    if since_epoch.is_none_or(|d| d.as_nanos() > u128::from(u64::MAX)) {
        // humantime cannot show an instant before 1970 (it panics).
        let shown = match since_epoch {
            Some(_) => format!("`{}`", humantime::format_rfc3339(start)),
            None => "before 1970".to_string(),
        };
        return Err(invalid(format!(
            "clocks.start {shown} is outside what a WASI clock can show (1970-01-01T00:00:00Z to {}); choose an instant in that range",
            humantime::format_rfc3339_nanos(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::MAX))
        )));
    }
    Ok(())
}

/// `clocks.resolution`: longer than zero.
pub(super) fn check_clock_resolution(resolution: Duration) -> Result<(), PolicyError> {
    if resolution.is_zero() {
        return Err(invalid(
            "clocks.resolution must be longer than zero; remove it for full resolution",
        ));
    }
    Ok(())
}

/// What contradicts `clocks.mode` (absent: `host`): a `start` for host
/// clocks, a `resolution` for frozen ones. The error carries the key at
/// fault ([`PolicyError::key_name`]), so that the caller can point at its line.
pub(super) fn check_clocks(mode: Option<ClockMode>, has_start: bool, has_resolution: bool) -> Result<(), PolicyError> {
    match mode.unwrap_or(ClockMode::Host) {
        ClockMode::Host if has_start => Err(invalid(
            "clocks.start only applies to mode = \"frozen\"; set mode = \"frozen\" or remove start",
        )
        .key("clocks.start")),
        ClockMode::Frozen if has_resolution => Err(invalid(
            "clocks.resolution only applies to mode = \"host\"; frozen clocks do not tick, so remove resolution",
        )
        .key("clocks.resolution")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<T>(r: Result<T, PolicyError>) -> String {
        r.err().expect("the value should be refused").to_string()
    }

    #[test]
    fn test_check_wasm_proposal() {
        assert_eq!(check_wasm_proposal("tail-call").unwrap(), Proposal::TailCall);
        assert!(msg(check_wasm_proposal("tailcall")).contains("expected one of exceptions, tail-call"));
        assert!(msg(check_wasm_proposal("threads")).contains("stays off"));
    }

    #[test]
    fn test_check_env_name() {
        assert!(check_env_name("LANG").is_ok());
        for bad in ["", "A=B", "A\0"] {
            assert!(
                msg(check_env_name(bad)).contains("invalid environment variable name"),
                "{bad:?}"
            );
        }
        assert!(
            msg(check_env_name("A=\u{1b}[2J")).contains("\\u{1b}"),
            "control bytes are escaped"
        );
    }

    #[test]
    fn test_check_guest_path() {
        assert!(check_guest_path("/data").is_ok());
        assert!(msg(check_guest_path("")).contains("must not be empty"));
        assert!(check_guest_path("/a\0").is_err());
    }

    #[test]
    fn test_check_stdin_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.txt");
        std::fs::write(&file, "x").unwrap();
        assert!(check_stdin_file(&file).is_ok());
        assert!(msg(check_stdin_file(&dir.path().join("missing"))).contains("does not exist"));
        assert!(check_stdin_file(dir.path()).is_err(), "a directory is not a stdin file");
    }

    #[test]
    fn test_check_clock_start_and_resolution() {
        assert!(check_clock_start(SystemTime::UNIX_EPOCH).is_ok());
        let e = msg(check_clock_start(SystemTime::UNIX_EPOCH - Duration::from_secs(1)));
        assert!(e.contains("clocks.start before 1970 is outside"), "{e}");
        assert!(check_clock_resolution(Duration::from_millis(1)).is_ok());
        assert!(msg(check_clock_resolution(Duration::ZERO)).contains("longer than zero"));
    }

    #[test]
    fn test_check_clocks() {
        assert!(check_clocks(None, false, true).is_ok());
        assert!(check_clocks(Some(ClockMode::Frozen), true, false).is_ok());
        let e = check_clocks(None, true, false).unwrap_err();
        assert_eq!(e.key_name(), Some("clocks.start"));
        assert!(e.to_string().contains("only applies to mode = \"frozen\""));
        let e = check_clocks(Some(ClockMode::Frozen), false, true).unwrap_err();
        assert_eq!(e.key_name(), Some("clocks.resolution"));
    }
}

//! The guest's environment and arguments: exactly what the policy sets or inherits, nothing
//! from the host otherwise, and arguments passed through verbatim.

use crate::{assert_status, assert_test_exists, both, policy_toml, run, stdout};
use wasmcell::{Policy, Status};
use wasmcell_artifacts::{ENV_ARGS, ENV_ARGS_COMPONENT, ENV_VARS, ENV_VARS_COMPONENT};

wasmcell_artifacts::foreach_env!(assert_test_exists);

/// Set in this test process only, so that seeing it in the guest proves inheritance.
const INHERITED: &str = "WASMCELL_TEST_ENV_INHERITED";
/// Never set anywhere.
const NEVER_SET: &str = "WASMCELL_TEST_ENV_NEVER_SET";

/// Runs `env_vars` under `policy` and returns its `K=V` lines.
fn guest_env(policy: &Policy, guest: &str) -> Vec<String> {
    let outcome = run(policy.clone(), guest, &[] as &[&str]);
    assert_status(&outcome, Status::Exited(0));
    stdout(&outcome).lines().map(str::to_owned).collect()
}

#[test]
fn env_vars() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_toml(
        "[env]\nvars = { LANG = \"C.UTF-8\", GREETING = \"hello world\", EMPTY = \"\", UNICODE = \"ünï ✓\" }\n",
        dir.path(),
    );
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        assert_eq!(
            guest_env(&policy, guest),
            ["EMPTY=", "GREETING=hello world", "LANG=C.UTF-8", "UNICODE=ünï ✓"],
            "{guest}"
        );
    }
}

#[test]
fn env_vars_deny_all_is_empty() {
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs PATH set on the host"
    );
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        assert_eq!(guest_env(&Policy::deny_all(), guest), Vec::<String>::new(), "{guest}");
    }
}

#[test]
fn env_inherit_copies_only_listed_vars_that_are_set() {
    // SAFETY: no other test reads or writes this variable, and std's own environment
    // accesses are synchronised with each other.
    unsafe { std::env::set_var(INHERITED, "from the host =with= symbols") };
    assert!(std::env::var_os(NEVER_SET).is_none());
    assert!(
        std::env::var_os("PATH").is_some(),
        "the test needs PATH set on the host"
    );

    let policy = Policy::builder()
        .inherit_env(INHERITED)
        .inherit_env(NEVER_SET)
        .env("EXPLICIT", "1")
        .build()
        .unwrap();
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        let env = guest_env(&policy, guest);
        assert_eq!(
            env,
            [
                "EXPLICIT=1".to_string(),
                format!("{INHERITED}=from the host =with= symbols")
            ],
            "{guest}: an unset inherited name is absent, unlisted host vars (PATH, HOME) do not leak"
        );
        assert!(
            !env.iter().any(|l| l.starts_with("PATH=") || l.starts_with("HOME=")),
            "{guest}: {env:?}"
        );
    }

    // The same through a policy file's `inherit` list.
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_toml(
        &format!("[env]\ninherit = [\"{INHERITED}\", \"{NEVER_SET}\"]\n"),
        dir.path(),
    );
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        assert_eq!(
            guest_env(&policy, guest),
            [format!("{INHERITED}=from the host =with= symbols")],
            "{guest}"
        );
    }
}

/// A value set explicitly wins over the host's value of an inherited name.
#[test]
fn env_set_value_beats_inherited_value() {
    const NAME: &str = "WASMCELL_TEST_ENV_SHADOWED";
    // SAFETY: as in `env_inherit_copies_only_listed_vars_that_are_set`; only this test uses NAME.
    unsafe { std::env::set_var(NAME, "host value") };
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_toml(
        &format!("[env]\ninherit = [\"{NAME}\"]\nvars = {{ {NAME} = \"policy value\" }}\n"),
        dir.path(),
    );
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        assert_eq!(guest_env(&policy, guest), [format!("{NAME}=policy value")], "{guest}");
    }
}

/// `PolicyBuilder::env` (what `--env NAME=VALUE` does) overrides the value from the policy file.
#[test]
fn env_set_env_overrides_file_value() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Policy::builder()
        .toml("[env]\nvars = { LANG = \"C.UTF-8\", KEEP = \"kept\" }\n", dir.path())
        .unwrap()
        .env("LANG", "fr_FR.UTF-8")
        .env("ADDED", "new")
        .build()
        .unwrap();
    assert_eq!(policy.env_vars()["LANG"], "fr_FR.UTF-8");
    for guest in both(ENV_VARS, ENV_VARS_COMPONENT) {
        assert_eq!(
            guest_env(&policy, guest),
            ["ADDED=new", "KEEP=kept", "LANG=fr_FR.UTF-8"],
            "{guest}"
        );
    }
}

#[test]
fn env_args() {
    let args = [
        "plain",
        "-x",
        "--flag=value",
        "--",
        "-",
        "two words",
        "  padded  ",
        "ünïcödé ✓ 日本",
        "$HOME",
        "*.txt",
        "",
        "last",
    ];
    for guest in both(ENV_ARGS, ENV_ARGS_COMPONENT) {
        let outcome = run(Policy::deny_all(), guest, &args);
        assert_status(&outcome, Status::Exited(0));
        let mut expected = vec!["env_args.wasm"];
        expected.extend(args);
        let printed = stdout(&outcome);
        assert_eq!(printed.lines().collect::<Vec<_>>(), expected, "{guest}");
    }
}

#[test]
fn env_args_none_gives_only_argv0() {
    for guest in both(ENV_ARGS, ENV_ARGS_COMPONENT) {
        let outcome = run(Policy::deny_all(), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "env_args.wasm\n", "{guest}");
    }
}

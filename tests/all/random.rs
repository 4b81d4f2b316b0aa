//! Randomness: host entropy by default, a reproducible stream with `[random] seed`, and the
//! determinism promise of `policies/deterministic.toml`.

use crate::{assert_status, assert_test_exists, both, policy_toml, run, stdout};
use wasmcell::{Policy, Status};
use wasmcell_artifacts::{CLOCKS_NOW, CLOCKS_NOW_COMPONENT, RANDOM_BYTES, RANDOM_BYTES_COMPONENT};

wasmcell_artifacts::foreach_random!(assert_test_exists);

/// `random_bytes`'s output: 32 bytes as hex, then a `RandomState` hash.
struct Random {
    hex: String,
    all: String,
}

fn random(policy: &Policy, guest: &str) -> Random {
    let outcome = run(policy.clone(), guest, &[] as &[&str]);
    assert_status(&outcome, Status::Exited(0));
    let all = stdout(&outcome);
    let hex = all.lines().next().unwrap_or_default().to_string();
    assert_eq!(hex.len(), 64, "{guest}: expected 32 bytes of hex in {all:?}");
    assert!(
        all.lines().nth(1).is_some_and(|l| l.starts_with("hash=")),
        "{guest}: {all:?}"
    );
    Random { hex, all }
}

fn seeded(seed: u64) -> Policy {
    let dir = tempfile::tempdir().unwrap();
    policy_toml(&format!("[random]\nseed = {seed}\n"), dir.path())
}

#[test]
fn random_bytes() {
    for guest in both(RANDOM_BYTES, RANDOM_BYTES_COMPONENT) {
        let a = random(&Policy::deny_all(), guest);
        let b = random(&Policy::deny_all(), guest);
        assert_ne!(a.hex, b.hex, "{guest}: two unseeded runs drew the same 32 bytes");
        assert_ne!(a.hex, "0".repeat(64), "{guest}");
    }
}

#[test]
fn random_seed_is_reproducible() {
    for guest in both(RANDOM_BYTES, RANDOM_BYTES_COMPONENT) {
        let first = random(&seeded(42), guest);
        let again = random(&seeded(42), guest);
        assert_eq!(first.all, again.all, "{guest}: seed 42 gave different output");
        let other = random(&seeded(43), guest);
        assert_ne!(first.hex, other.hex, "{guest}: seeds 42 and 43 gave the same bytes");
        let unseeded = random(&Policy::deny_all(), guest);
        assert_ne!(first.hex, unseeded.hex, "{guest}: host entropy matched seed 42");
    }
}

/// `policies/deterministic.toml` promises byte-identical output for the same guest and input.
#[test]
fn random_deterministic_policy_is_byte_identical() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/deterministic.toml");
    let policy = Policy::from_file(path).unwrap_or_else(|e| panic!("{e}"));
    for guest in [RANDOM_BYTES, RANDOM_BYTES_COMPONENT, CLOCKS_NOW, CLOCKS_NOW_COMPONENT] {
        let first = run(policy.clone(), guest, &[] as &[&str]);
        let second = run(policy.clone(), guest, &[] as &[&str]);
        assert_status(&first, Status::Exited(0));
        assert_status(&second, Status::Exited(0));
        assert!(!first.stdout.is_empty(), "{guest}");
        assert_eq!(stdout(&first), stdout(&second), "{guest}: two runs differ");
        assert_eq!(first.stderr, second.stderr, "{guest}");
        assert_eq!(first.fuel_used, second.fuel_used, "{guest}: metered fuel differs");
    }
}

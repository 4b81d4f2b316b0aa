//! Clocks the guest sees: frozen at a configured instant, the host's, or the host's rounded
//! down to a coarser resolution.

use crate::{assert_status, assert_test_exists, both, policy_toml, run};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use wasmcell::{Policy, Status};
use wasmcell_artifacts::{CLOCKS_NOW, CLOCKS_NOW_COMPONENT};

wasmcell_artifacts::foreach_clocks!(assert_test_exists);

/// 2000-01-01T00:00:00Z, the default start of frozen clocks, in ns since the UNIX epoch.
const Y2K_NS: u128 = 946_684_800_000_000_000;

/// What `clocks_now` printed.
#[derive(Debug)]
struct Reading {
    wall_ns: u128,
    mono_delta_ns: u128,
}

fn read_clocks(policy: &Policy, guest: &str) -> Reading {
    let outcome = run(policy.clone(), guest, &[] as &[&str]);
    assert_status(&outcome, Status::Exited(0));
    let text = crate::stdout(&outcome);
    let field = |name: &str| -> u128 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{guest}: no `{name}=` in {text:?}"))
            .parse()
            .unwrap_or_else(|e| panic!("{guest}: bad `{name}` in {text:?}: {e}"))
    };
    Reading {
        wall_ns: field("wall_ns"),
        mono_delta_ns: field("mono_delta_ns"),
    }
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn clocks_now() {
    let dir = tempfile::tempdir().unwrap();
    let frozen_default = policy_toml("[clocks]\nmode = \"frozen\"\n", dir.path());
    let frozen_y2k = policy_toml(
        "[clocks]\nmode = \"frozen\"\nstart = \"2000-01-01T00:00:00Z\"\n",
        dir.path(),
    );
    let frozen_2020 = policy_toml(
        "[clocks]\nmode = \"frozen\"\nstart = \"2020-02-02T12:34:56Z\"\n",
        dir.path(),
    );
    for guest in both(CLOCKS_NOW, CLOCKS_NOW_COMPONENT) {
        for policy in [&frozen_default, &frozen_y2k] {
            let reading = read_clocks(policy, guest);
            assert_eq!(reading.wall_ns, Y2K_NS, "{guest}: {reading:?}");
            assert_eq!(reading.mono_delta_ns, 0, "{guest}: frozen monotonic clock advanced");
        }
        let reading = read_clocks(&frozen_2020, guest);
        assert_eq!(reading.wall_ns, 1_580_646_896_000_000_000, "{guest}: {reading:?}");
        assert_eq!(reading.mono_delta_ns, 0, "{guest}");
    }
}

/// Without a `[clocks]` table the guest sees the host's wall clock.
#[test]
fn clocks_host_is_near_now() {
    let minute = Duration::from_secs(60).as_nanos();
    for guest in both(CLOCKS_NOW, CLOCKS_NOW_COMPONENT) {
        let before = now_ns();
        let reading = read_clocks(&Policy::deny_all(), guest);
        let after = now_ns();
        assert!(
            before - minute <= reading.wall_ns && reading.wall_ns <= after + minute,
            "{guest}: guest wall_ns {} is not within a minute of the host's {before}..{after}",
            reading.wall_ns
        );
    }
}

/// `resolution` rounds both clocks down to a multiple of the step.
#[test]
fn clocks_host_resolution_rounds_down() {
    let dir = tempfile::tempdir().unwrap();
    let coarse = policy_toml("[clocks]\nmode = \"host\"\nresolution = \"1s\"\n", dir.path());
    let second = Duration::from_secs(1).as_nanos();
    let minute = Duration::from_secs(60).as_nanos();
    for guest in both(CLOCKS_NOW, CLOCKS_NOW_COMPONENT) {
        let before = now_ns();
        let reading = read_clocks(&coarse, guest);
        assert_eq!(reading.wall_ns % second, 0, "{guest}: {reading:?}");
        assert_eq!(reading.mono_delta_ns % second, 0, "{guest}: {reading:?}");
        assert!(
            reading.wall_ns.abs_diff(before) <= minute,
            "{guest}: coarse wall_ns {} far from the host's {before}",
            reading.wall_ns
        );
    }

    let millis = policy_toml("[clocks]\nmode = \"host\"\nresolution = \"1ms\"\n", dir.path());
    for guest in both(CLOCKS_NOW, CLOCKS_NOW_COMPONENT) {
        let reading = read_clocks(&millis, guest);
        assert_eq!(reading.wall_ns % 1_000_000, 0, "{guest}: {reading:?}");
        assert_eq!(reading.mono_delta_ns % 1_000_000, 0, "{guest}: {reading:?}");
    }
}

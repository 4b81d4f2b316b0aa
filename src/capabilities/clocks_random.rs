//! Clocks and randomness: the host's, coarsened, frozen or seeded as the
//! policy says.

use crate::policy::Clocks;
use std::time::{Duration, Instant, SystemTime};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

pub(super) fn add_clocks(builder: &mut WasiCtxBuilder, clocks: &Clocks) {
    match clocks {
        Clocks::Host { resolution: None } => {}
        Clocks::Host { resolution: Some(step) } => {
            builder.wall_clock(CoarseWallClock { step: *step });
            builder.monotonic_clock(CoarseMonotonicClock {
                start: Instant::now(),
                step: *step,
            });
        }
        Clocks::Frozen { start } => {
            let since_epoch = start.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            builder.wall_clock(FrozenWallClock(since_epoch));
            builder.monotonic_clock(FrozenMonotonicClock);
        }
    }
}

fn round_down(value: Duration, step: Duration) -> Duration {
    let step_ns = step.as_nanos().max(1);
    let ns = value.as_nanos() / step_ns * step_ns;
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// The host's wall clock with readings rounded down to `step`.
struct CoarseWallClock {
    step: Duration,
}

impl HostWallClock for CoarseWallClock {
    fn resolution(&self) -> Duration {
        self.step
    }

    fn now(&self) -> Duration {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        round_down(now, self.step)
    }
}

/// The host's monotonic clock with readings rounded down to `step`.
struct CoarseMonotonicClock {
    start: Instant,
    step: Duration,
}

impl HostMonotonicClock for CoarseMonotonicClock {
    fn resolution(&self) -> u64 {
        u64::try_from(self.step.as_nanos()).unwrap_or(u64::MAX)
    }

    fn now(&self) -> u64 {
        u64::try_from(round_down(self.start.elapsed(), self.step).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A wall clock that always shows the same instant.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// A monotonic clock that stands at zero.
struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

pub(super) fn add_random(builder: &mut WasiCtxBuilder, seed: Option<u64>) {
    use rand::SeedableRng as _;
    let Some(seed) = seed else { return };
    // Distinct streams for the secure and insecure interfaces, both derived
    // from the one seed, so that neither can predict the other's position.
    builder.secure_random(rand::rngs::StdRng::seed_from_u64(seed));
    builder.insecure_random(rand::rngs::StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15));
    builder.insecure_random_seed(u128::from(seed) << 64 | u128::from(seed.rotate_left(32)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_down_to_step() {
        let ms = Duration::from_millis(1);
        assert_eq!(round_down(Duration::from_micros(2_999), ms), Duration::from_millis(2));
        assert_eq!(round_down(Duration::from_millis(5), ms), Duration::from_millis(5));
    }
}

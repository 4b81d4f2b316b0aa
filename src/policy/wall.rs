//! `[wall]`: the second wall, the kernel's confinement of the run's own
//! process (see the crate's `wall` module for what applies it).

use super::{Origin, PolicyError, PolicyErrorKind, Setting};
use serde::Deserialize;

/// How the second wall is applied: `wall.mode`, `--wall`.
///
/// The second wall is what the kernel enforces around the runtime itself
/// (no_new_privs, Landlock and seccomp), so that a bug in wasmtime or in
/// wasmcell's host code that lets a guest run host code still meets a wall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WallMode {
    /// Every layer must take effect; a run refuses to start (exit 2) when the
    /// kernel lacks one.
    Require,
    /// Every layer the kernel supports takes effect, and each one missing is
    /// named in one line on stderr. The default.
    #[default]
    Auto,
    /// No layer: for debugging only. `wasmcell check` warns about it.
    Off,
}

impl WallMode {
    /// The mode as the policy and `--wall` spell it.
    pub fn name(self) -> &'static str {
        match self {
            WallMode::Require => "require",
            WallMode::Auto => "auto",
            WallMode::Off => "off",
        }
    }

    /// Parses `require`, `auto` or `off`.
    ///
    /// # Errors
    ///
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> Result<WallMode, String> {
        match s {
            "require" => Ok(WallMode::Require),
            "auto" => Ok(WallMode::Auto),
            "off" => Ok(WallMode::Off),
            other => Err(format!(
                "unknown wall mode `{}`; use `require`, `auto` or `off`",
                other.escape_debug()
            )),
        }
    }
}

/// The resolved `[wall]` settings.
///
/// Defaults:
/// - `mode`: [`WallMode::Auto`];
/// - `landlock-abi`: none asked for beyond what the wall's layers need
///   (ABI 4 for network rules, ABI 6 for scopes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WallSettings {
    /// `wall.mode`.
    pub mode: Setting<WallMode>,
    /// `wall.landlock-abi`: the least Landlock ABI that counts as Landlock
    /// in effect. A kernel below it is treated as one without Landlock.
    pub landlock_abi: Option<Setting<u32>>,
}

impl Default for WallSettings {
    fn default() -> Self {
        WallSettings {
            mode: Setting {
                value: WallMode::Auto,
                origin: Origin::Default,
            },
            landlock_abi: None,
        }
    }
}

/// The most `wall.landlock-abi` may ask for: far beyond any kernel yet, so a
/// policy can pin a future ABI, but bounded so a typo is caught.
pub const MAX_LANDLOCK_ABI: u32 = 64;

/// `wall.landlock-abi`: 1 to [`MAX_LANDLOCK_ABI`].
pub(super) fn check_landlock_abi(abi: u32) -> Result<(), PolicyError> {
    if (1..=MAX_LANDLOCK_ABI).contains(&abi) {
        return Ok(());
    }
    Err(PolicyError::new(PolicyErrorKind::Invalid(format!(
        "wall.landlock-abi must be 1 to {MAX_LANDLOCK_ABI}, got {abi}; Landlock's first ABI is 1"
    )))
    .key("wall.landlock-abi"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;

    #[test]
    fn wall_mode_parses_and_defaults_to_auto() {
        let p = Policy::from_toml("", ".").unwrap();
        assert_eq!(p.wall().mode.value, WallMode::Auto);
        assert_eq!(p.wall().mode.origin, Origin::Default);
        for (text, mode) in [
            ("[wall]\nmode = \"require\"", WallMode::Require),
            ("[wall]\nmode = \"off\"", WallMode::Off),
            ("[wall]\nmode = \"auto\"", WallMode::Auto),
        ] {
            assert_eq!(Policy::from_toml(text, ".").unwrap().wall().mode.value, mode, "{text}");
        }
        let err = Policy::from_toml("[wall]\nmode = \"strict\"", ".")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("wall.mode") && err.contains(":2:") && err.contains("`require`, `auto`, `off`"),
            "{err}"
        );
        let err = Policy::from_toml("[wall]\nmodes = \"off\"", ".")
            .unwrap_err()
            .to_string();
        assert!(err.contains("modes"), "{err}");
    }

    #[test]
    fn landlock_abi_is_bounded() {
        let p = Policy::from_toml("[wall]\nlandlock-abi = 6", ".").unwrap();
        assert_eq!(p.wall().landlock_abi.as_ref().map(|s| s.value), Some(6));
        for bad in ["0", "65"] {
            let err = Policy::from_toml(&format!("[wall]\nlandlock-abi = {bad}"), ".")
                .unwrap_err()
                .to_string();
            assert!(err.contains("wall.landlock-abi") && err.contains(":2:"), "{err}");
        }
    }

    #[test]
    fn a_later_layer_and_the_builder_override_the_mode() {
        let p = Policy::builder()
            .toml("[wall]\nmode = \"require\"", ".")
            .unwrap()
            .with_origin(Origin::Flag("--wall"), |b| b.wall_mode(WallMode::Off))
            .build()
            .unwrap();
        assert_eq!(p.wall().mode.value, WallMode::Off);
        assert_eq!(p.wall().mode.origin, Origin::Flag("--wall"));
    }
}

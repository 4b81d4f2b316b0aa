//! What took effect: each layer of the second wall, in effect or not, and why.

use crate::policy::WallMode;
use serde::{Deserialize, Serialize};

/// One layer of the second wall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// `PR_SET_NO_NEW_PRIVS`: nothing the process runs can gain privileges.
    NoNewPrivs,
    /// Landlock's filesystem rules: only the plan's paths, with their access.
    LandlockFilesystem,
    /// Landlock's TCP rules (ABI 4 and later): only the plan's ports.
    LandlockNetwork,
    /// Landlock's scopes (ABI 6 and later): no abstract Unix sockets and no
    /// signals outside the process.
    LandlockScopes,
    /// The seccomp filter: only the system calls a run needs.
    Seccomp,
}

impl Layer {
    /// Every layer, in the order reports list them.
    pub const ALL: [Layer; 5] = [
        Layer::NoNewPrivs,
        Layer::LandlockFilesystem,
        Layer::LandlockNetwork,
        Layer::LandlockScopes,
        Layer::Seccomp,
    ];

    /// The layer's name in reports and messages: `no-new-privs`,
    /// `landlock-filesystem`, `landlock-network`, `landlock-scopes`, `seccomp`.
    pub fn name(self) -> &'static str {
        match self {
            Layer::NoNewPrivs => "no-new-privs",
            Layer::LandlockFilesystem => "landlock-filesystem",
            Layer::LandlockNetwork => "landlock-network",
            Layer::LandlockScopes => "landlock-scopes",
            Layer::Seccomp => "seccomp",
        }
    }
}

/// One layer's state: in effect or not, and a short reason or qualification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerState {
    /// The layer.
    pub layer: Layer,
    /// Whether the kernel enforces it on this process.
    pub in_effect: bool,
    /// Why it is not in effect, or what it leaves to the first wall (such as
    /// "connect ports left to the first wall: net.tcp-connect allows every
    /// port"). Empty when there is nothing to say.
    pub detail: String,
}

/// The second wall around a process: what took effect, layer by layer.
///
/// Made by [`confine_current_process`](super::confine_current_process) (what
/// took effect) and by [`probe`](super::probe) (what would, on this kernel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallReport {
    /// `wall.mode` the wall was built for.
    pub mode: WallMode,
    /// The Landlock ABI the rules were made for, when Landlock is in effect.
    pub landlock_abi: Option<u32>,
    /// Every layer of [`Layer::ALL`], in that order.
    pub layers: Vec<LayerState>,
}

impl WallReport {
    /// The report of a wall that was not built: every layer off, for `why`.
    pub fn down(mode: WallMode, why: &str) -> WallReport {
        WallReport {
            mode,
            landlock_abi: None,
            layers: Layer::ALL
                .iter()
                .map(|&layer| LayerState {
                    layer,
                    in_effect: false,
                    detail: why.to_string(),
                })
                .collect(),
        }
    }

    /// The state of `layer`.
    pub fn layer(&self, layer: Layer) -> Option<&LayerState> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// Whether every layer is in effect.
    pub fn complete(&self) -> bool {
        self.layers.len() == Layer::ALL.len() && self.layers.iter().all(|l| l.in_effect)
    }

    /// The layers not in effect.
    pub fn missing(&self) -> impl Iterator<Item = &LayerState> {
        self.layers.iter().filter(|l| !l.in_effect)
    }

    /// One line naming each layer not in effect and why, or `None` when the
    /// wall is complete. `wall.mode = "auto"` prints it on stderr.
    pub fn missing_line(&self) -> Option<String> {
        let missing: Vec<String> = self
            .missing()
            .map(|l| match l.detail.is_empty() {
                true => l.layer.name().to_string(),
                false => format!("{} ({})", l.layer.name(), l.detail),
            })
            .collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!("the second wall is missing {}", missing.join(", ")))
    }

    /// The report's `wall` object: `mode`, `landlock_abi`, and each layer by
    /// name with `in_effect` and, when there is one, `detail`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut layers = serde_json::Map::new();
        for l in &self.layers {
            let mut entry = serde_json::Map::new();
            entry.insert("in_effect".into(), l.in_effect.into());
            if !l.detail.is_empty() {
                entry.insert("detail".into(), l.detail.clone().into());
            }
            layers.insert(l.layer.name().into(), entry.into());
        }
        serde_json::json!({
            "mode": self.mode.name(),
            "landlock_abi": self.landlock_abi,
            "layers": layers,
        })
    }

    /// One line per layer, as `wasmcell check` prints it.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for l in &self.layers {
            let state = if l.in_effect { "in effect" } else { "NOT in effect" };
            out.push_str(&format!("  {:<20} {state}", l.layer.name()));
            if !l.detail.is_empty() {
                out.push_str(&format!(": {}", l.detail));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wall_that_is_down_names_every_layer() {
        let report = WallReport::down(WallMode::Off, "wall.mode is off");
        assert!(!report.complete());
        let line = report.missing_line().unwrap();
        for layer in Layer::ALL {
            assert!(line.contains(layer.name()), "{line}");
        }
        let json = report.to_json();
        assert_eq!(json["mode"], "off");
        assert_eq!(json["layers"]["seccomp"]["in_effect"], false);
    }

    #[test]
    fn a_complete_wall_has_no_missing_line() {
        let mut report = WallReport::down(WallMode::Require, "");
        report.layers.iter_mut().for_each(|l| l.in_effect = true);
        assert!(report.complete());
        assert_eq!(report.missing_line(), None);
        let back: WallReport = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }
}

//! Learning a policy from what a guest did: [`Learner`] takes the outcomes
//! of runs made with [`SandboxBuilder::record_uses`](crate::SandboxBuilder::record_uses)
//! (each carrying its distinct capability uses, [`Outcome::uses_seen`]),
//! and earlier learned policies, and writes the narrowest policy that
//! allows what succeeded ([`Learner::write`]).
//!
//! Learning is not permission. A use counts only when the policy the run
//! was under allows it again here, decided by the same rules the run was
//! ([`Policy`]'s grants, rules and `[net]` entries): a run whose report was
//! forged, by a guest that got hold of its process, can only shrink what is
//! learned, never add to what its policy granted. Refused uses are never
//! learned; they are listed in the written file's comments.
//!
//! What is written:
//! - each grant used, narrowed (see `fs.rs`): dropped when unused,
//!   read-only when nothing was written, `[[fs.files]]` when a few files
//!   of one folder were all that was used, a folder with its untouched
//!   entries denied and hidden when they are fewer than the used ones, else
//!   the folder whole; each with a comment saying which and why;
//! - `[net]` entries for the exact addresses and ports used, `dns = true`
//!   only when a lookup happened, and one `[[net.http]]` entry per origin
//!   with the methods and paths requested;
//! - the environment as the policy gave it (a guest is handed its whole
//!   environment at start: which variables it reads cannot be seen);
//! - limits from what was measured, with headroom ([`Headroom`]), each with
//!   its measured value in a comment, and the other limits the policy set;
//! - `[module] sha256` pinning the modules that ran;
//! - stdio, clocks, randomness, Wasm proposals and the wall as the policy
//!   had them.
//!
//! ```
//! use wasmcell::learn::{Learner, Observed};
//! use wasmcell::{Policy, Sandbox};
//!
//! let policy = Policy::deny_all();
//! let sandbox = Sandbox::builder().policy(policy.clone()).record_uses(true).build()?;
//! let program = sandbox.load_bytes("empty.wasm", br#"(module (func (export "_start")))"#)?;
//! let outcome = sandbox.run_program(&program, &[] as &[&str])?;
//! let mut learner = Learner::new();
//! learner.add_run("empty.wasm", &policy, &Observed::of(&outcome))?;
//! let learned = learner.write(std::path::Path::new("."));
//! assert!(learned.contains(&format!("sha256 = [\"{}\"]", program.sha256().unwrap())));
//! Policy::from_toml(&learned, ".")?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod fs;
mod net;
mod render;

pub use fs::MAX_LEARNED_FILES;

use crate::capabilities::{Decision, SeenUse, UsesSeen};
use crate::outcome::Outcome;
use crate::policy::{Policy, Setting};
use fs::GrantUse;
use net::NetUse;
use std::collections::BTreeSet;
use std::time::Duration;

/// How much room the learned limits leave over what was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headroom;

impl Headroom {
    /// `limits.memory`: the peak times this, rounded up to a MiB.
    pub const MEMORY: u64 = 2;
    /// `limits.fuel`, when the runs were metered: the most used times this.
    pub const FUEL: u64 = 4;
    /// `limits.timeout`: the longest run times this, rounded up to a second...
    pub const TIMEOUT: u32 = 5;
    /// ...and at least this long.
    pub const TIMEOUT_FLOOR: Duration = Duration::from_secs(2);
    /// `limits.http-requests`: the most requests of a run times this...
    pub const HTTP_REQUESTS: u64 = 4;
    /// ...and at least this many.
    pub const HTTP_REQUESTS_FLOOR: u64 = 16;
}

/// Why a run cannot be learned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnError(String);

impl std::fmt::Display for LearnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LearnError {}

/// What learning needs of one run: how it ended, what it measured, and its
/// distinct capability uses. Made from an [`Outcome`], or from the JSON
/// report of a run in another process ([`Outcome::to_json`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observed {
    /// [`Status::name`](crate::Status::name) of how it ended.
    pub status: String,
    /// Its exit code, as [`Outcome::exit_code`].
    pub exit_code: u8,
    /// [`Outcome::peak_memory_bytes`].
    pub peak_memory_bytes: u64,
    /// [`Outcome::fuel_used`].
    pub fuel_used: Option<u64>,
    /// [`Outcome::elapsed`].
    pub elapsed: Duration,
    /// Outgoing HTTP requests sent, over every origin.
    pub http_requests: u64,
    /// [`Outcome::module_sha256`].
    pub module_sha256: Option<String>,
    /// Allowed uses, counted.
    pub allowed: u64,
    /// Refused uses, counted (recorded or not).
    pub denied: u64,
    /// [`Outcome::uses_seen`]; `None` when the run did not keep them.
    pub uses: Option<UsesSeen>,
}

impl Observed {
    /// What `outcome` says.
    pub fn of(outcome: &Outcome) -> Observed {
        Observed {
            status: outcome.status.name().to_string(),
            exit_code: outcome.exit_code(),
            peak_memory_bytes: outcome.peak_memory_bytes,
            fuel_used: outcome.fuel_used,
            elapsed: outcome.elapsed,
            http_requests: saturating_sum(outcome.http.values().map(|c| c.requests)),
            module_sha256: outcome.module_sha256.clone(),
            allowed: saturating_sum(outcome.uses.values().map(|c| c.allowed)),
            denied: saturating_sum(outcome.uses.values().map(|c| c.denied)),
            uses: outcome.uses_seen.clone().map(bounded),
        }
    }

    /// What a run's JSON report says ([`Outcome::to_json`]), as a process
    /// that ran the guest elsewhere sent it. The report is as trustworthy
    /// as that process, no more: [`Learner::add_run`] learns only what the
    /// run's policy allows.
    ///
    /// # Errors
    ///
    /// When a field is missing or of the wrong type.
    pub fn from_report(report: &serde_json::Value) -> Result<Observed, LearnError> {
        let bad = |field: &str| LearnError(format!("the run's report has no valid `{field}`"));
        let u64_of = |field: &str| {
            report
                .get(field)
                .and_then(serde_json::Value::as_u64)
                .ok_or_else(|| bad(field))
        };
        let uses: std::collections::BTreeMap<String, crate::UseCounts> =
            serde_json::from_value(report.get("uses").cloned().unwrap_or_default()).map_err(|_| bad("uses"))?;
        let http: std::collections::BTreeMap<String, crate::HttpOriginCounts> =
            serde_json::from_value(report.get("http").cloned().unwrap_or_default()).map_err(|_| bad("http"))?;
        let uses_seen = match report.get("uses_seen") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(bounded(
                serde_json::from_value(v.clone()).map_err(|_| bad("uses_seen"))?,
            )),
        };
        let elapsed_ms = report
            .get("elapsed_ms")
            .and_then(serde_json::Value::as_f64)
            .filter(|ms| ms.is_finite() && *ms >= 0.0)
            .ok_or_else(|| bad("elapsed_ms"))?;
        Ok(Observed {
            status: report
                .get("status")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| bad("status"))?
                .to_string(),
            exit_code: u8::try_from(u64_of("exit_code")?).map_err(|_| bad("exit_code"))?,
            peak_memory_bytes: u64_of("peak_memory_bytes")?,
            fuel_used: report.get("fuel_used").and_then(serde_json::Value::as_u64),
            elapsed: Duration::from_secs_f64((elapsed_ms / 1000.0).min(1e9)),
            http_requests: saturating_sum(http.values().map(|c| c.requests)),
            module_sha256: report
                .get("module_sha256")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            allowed: saturating_sum(uses.values().map(|c| c.allowed)),
            denied: saturating_sum(uses.values().map(|c| c.denied)),
            uses: uses_seen,
        })
    }
}

/// The SHA-256 (lowercase hex) of the WebAssembly module or component at
/// `path`, as a pin names it, read here rather than taken from a run's
/// report (which a subverted run could forge); `None` for precompiled code,
/// which a pin does not name by its own bytes. Read it before the run: the
/// pin is then of the file the run was started with.
///
/// # Errors
///
/// When it cannot be read, is not a regular file, or is over `max` bytes.
pub fn module_sha256(path: &std::path::Path, max: u64) -> std::io::Result<Option<String>> {
    let bytes = crate::policy::read_regular_file(path, max, "a module may have (limits.module-size)")?;
    if crate::engine::is_precompiled(&bytes) {
        return Ok(None);
    }
    Ok(Some(crate::cache::hex(&crate::cache::content_hash(&bytes))))
}

/// The sum of counts a report gave, saturating: a forged count cannot wrap
/// to make a run look clean.
fn saturating_sum(counts: impl Iterator<Item = u64>) -> u64 {
    counts.fold(0, u64::saturating_add)
}

/// `seen` held to what a run keeps: at most [`MAX_USES_SEEN`](crate::MAX_USES_SEEN)
/// uses (the rest counted as dropped), each field cut as a run cuts it.
fn bounded(mut seen: UsesSeen) -> UsesSeen {
    let max = crate::MAX_USES_SEEN;
    if seen.uses.len() > max {
        seen.dropped = seen.dropped.saturating_add((seen.uses.len() - max) as u64);
        seen.uses.truncate(max);
    }
    for used in &mut seen.uses {
        for field in [&mut used.kind, &mut used.target, &mut used.rule] {
            if field.len() > crate::DENIAL_FIELD_BYTES {
                *field = crate::term::truncate(field, crate::DENIAL_FIELD_BYTES).into_owned();
            }
        }
    }
    seen
}

/// The most each measured value reached over the runs.
#[derive(Debug, Default, Clone)]
struct Measured {
    peak_memory: u64,
    /// The most fuel a run used, when every run was metered.
    fuel: Option<u64>,
    /// A run was not metered: no fuel limit can be learned.
    unmetered: bool,
    elapsed: Duration,
    http_requests: u64,
}

/// One run, as the file's heading names it.
#[derive(Debug, Clone)]
struct RunSeen {
    name: String,
    status: String,
    exit_code: u8,
}

/// A policy being learned from runs and earlier learned policies: see the
/// [module docs](self).
#[derive(Debug, Default, Clone)]
pub struct Learner {
    grants: Vec<GrantUse>,
    net: NetUse,
    measured: Measured,
    modules: BTreeSet<String>,
    /// The policy of the latest run with nothing refused (else of the
    /// latest run): what is copied as it is.
    base: Option<Policy>,
    /// Whether `base` is of a run with nothing refused.
    clean: bool,
    /// An earlier learned policy, when no run gave a base.
    merged: Option<Policy>,
    refused: BTreeSet<(String, String, String)>,
    /// Allowed uses the run's policy does not allow: not learned.
    unproven: u64,
    /// Distinct uses the runs did not keep (past [`MAX_USES_SEEN`](crate::MAX_USES_SEEN)).
    dropped: u64,
    runs: Vec<RunSeen>,
}

impl Learner {
    /// Nothing learned yet.
    pub fn new() -> Learner {
        Learner::default()
    }

    /// Learns from one run of `name` under `policy`.
    ///
    /// # Errors
    ///
    /// When `outcome` holds no uses (the sandbox did not keep them), or the run grants a guest path from another host folder
    /// than an earlier run did.
    pub fn add_run(&mut self, name: &str, policy: &Policy, outcome: &Observed) -> Result<(), LearnError> {
        let seen = outcome.uses.as_ref().ok_or_else(|| {
            LearnError(format!(
                "the outcome of `{name}` holds no capability uses; build the sandbox with record_uses(true) (or the job with Job::record_uses) to learn from it"
            ))
        })?;
        self.check_hosts(policy)?;
        for used in &seen.uses {
            self.add_use(policy, used);
        }
        self.dropped = self.dropped.saturating_add(seen.dropped);
        self.measure(policy, outcome);
        match (&outcome.module_sha256, policy.module_sha256()) {
            (Some(digest), _) => {
                self.modules.insert(digest.clone());
            }
            // Precompiled code has no digest of its own: the pins it ran
            // under stay, or the learned policy would admit any module.
            (None, Some(pins)) => self.modules.extend(pins.value.iter().cloned()),
            (None, None) => {}
        }
        self.runs.push(RunSeen {
            name: name.to_string(),
            status: outcome.status.clone(),
            exit_code: outcome.exit_code,
        });
        // Grants the policy holds `fs.cwd` in are needed even unused.
        if let Some(cwd) = policy.cwd()
            && let Some((grant, _)) = fs::locate(policy, cwd)
        {
            self.grant_use(grant, policy.cwd());
        }
        // What is copied as it is comes from the latest run with nothing
        // refused, or the latest run when every one had refusals.
        if outcome.denied == 0 || !self.clean {
            self.clean = outcome.denied == 0;
            self.base = Some(policy.clone());
        }
        Ok(())
    }

    /// Learns what an earlier learned policy grants, as if a run had used
    /// it all (`wasmcell learn --merge`): its grants, network entries, pins,
    /// and its limits as floors. Add runs first: a grant of `learned` below
    /// a folder a run used joins that folder's uses.
    ///
    /// # Errors
    ///
    /// When it grants a guest path from another host folder than a run did.
    pub fn add_policy(&mut self, learned: &Policy) -> Result<(), LearnError> {
        self.check_hosts(learned)?;
        for grant in learned.dirs() {
            let below = self
                .grants
                .iter()
                .position(|g| below_of(g, grant).is_some() && (g.guest == grant.guest || fs::fits_below(g, grant)));
            match below {
                Some(i) => {
                    let rel = below_of(&self.grants[i], grant).unwrap_or_default();
                    fs::add_granted(&mut self.grants[i], &rel, grant);
                }
                None => {
                    let mut used = GrantUse::new(grant, learned.cwd());
                    fs::forget_learned_denials(&mut used.rules);
                    fs::add_granted(&mut used, &[], grant);
                    self.grants.push(used);
                }
            }
        }
        self.net.add_granted(learned.net());
        if let Some(pins) = learned.module_sha256() {
            self.modules.extend(pins.value.iter().cloned());
        }
        self.merged = Some(learned.clone());
        Ok(())
    }

    /// Uses the runs made that their policies refused: `(kind, target,
    /// rule)`, untrusted text as the guest chose it.
    pub fn refused(&self) -> impl Iterator<Item = &(String, String, String)> {
        self.refused.iter()
    }

    /// The learned policy as TOML, for a file in `dir` (host paths below
    /// `dir` are written relative to it): see the [module docs](self).
    pub fn write(&self, dir: &std::path::Path) -> String {
        render::policy(self, dir)
    }

    fn add_use(&mut self, policy: &Policy, used: &SeenUse) {
        if used.decision == Decision::Denied {
            if self.refused.len() < 256 {
                self.refused
                    .insert((used.kind.clone(), used.target.clone(), used.rule.clone()));
            }
            return;
        }
        let learned = match fs::op_of(&used.kind) {
            Some(op) => match fs::locate(policy, &used.target) {
                Some((grant, rel)) if fs::allows(grant, &rel, op) => {
                    let grant = self.grant_use(grant, policy.cwd());
                    match used.kind.as_str() {
                        "fs-list" => grant.used.entry(rel).or_default().list = true,
                        _ => grant.touch(rel, op),
                    }
                    true
                }
                _ => false,
            },
            None => self.net.add(policy, &used.kind, &used.target),
        };
        if !learned && used.kind != "secret-leak" {
            self.unproven += 1;
        }
    }

    /// The uses of `grant`'s guest path. Runs under policies that grant it
    /// with other rules (a matrix's cells) share it with every rule any of
    /// them had (deny wins, the smaller quota): the learned grant is never
    /// looser than any policy that granted it.
    fn grant_use(&mut self, grant: &crate::policy::DirGrant, cwd: Option<&str>) -> &mut GrantUse {
        let i = match self.grants.iter().position(|g| g.guest == grant.guest) {
            Some(i) => {
                if self.grants[i].rules != grant.rules {
                    self.grants[i].rules.merge(grant.rules.clone());
                }
                // This run's `fs.cwd` is needed too, whichever run made it.
                self.grants[i].mark_cwd(cwd);
                i
            }
            None => {
                self.grants.push(GrantUse::new(grant, cwd));
                self.grants.len() - 1
            }
        };
        &mut self.grants[i]
    }

    /// Refuses a policy granting a guest path learned already from another
    /// host folder: one learned grant could not hold both.
    fn check_hosts(&self, policy: &Policy) -> Result<(), LearnError> {
        for grant in policy.dirs() {
            if let Some(g) = self
                .grants
                .iter()
                .find(|g| g.guest == grant.guest && g.host != grant.host)
            {
                return Err(LearnError(format!(
                    "`{}` is granted from host folder `{}` here and from `{}` in what was learned before; learn the two into separate policies",
                    grant.guest,
                    grant.host.display(),
                    g.host.display()
                )));
            }
        }
        Ok(())
    }

    fn measure(&mut self, policy: &Policy, outcome: &Observed) {
        let m = &mut self.measured;
        m.peak_memory = m.peak_memory.max(outcome.peak_memory_bytes);
        match (policy.limits().fuel.value, outcome.fuel_used) {
            (Some(_), Some(used)) => m.fuel = Some(m.fuel.unwrap_or(0).max(used)),
            _ => m.unmetered = true,
        }
        m.elapsed = m.elapsed.max(outcome.elapsed);
        m.http_requests = m.http_requests.max(outcome.http_requests);
    }
}

/// Where `grant` (of an earlier learned policy) lies inside `used`: the
/// components below `used`'s guest path, when its host folder is the same
/// place below `used`'s.
fn below_of(used: &GrantUse, grant: &crate::policy::DirGrant) -> Option<Vec<String>> {
    let rel = fs::below(&used.guest, &grant.guest)?;
    let host = rel.iter().fold(used.host.clone(), |p, c| p.join(c));
    (host == grant.host).then_some(rel)
}

/// The setting's value when it was set (not a default).
fn set<T>(setting: &Setting<T>) -> Option<&T> {
    (setting.origin != crate::policy::Origin::Default).then_some(&setting.value)
}

//! `[wasm]`: the Wasm proposals a policy opts in to, beyond the ones every
//! engine has (`proposals`; all are off unless a policy or a flag names
//! them), and what becomes of imports no linker provides (`unknown-imports`).

use std::fmt;
use std::str::FromStr;

/// A Wasm proposal a policy may turn on with `[wasm] proposals`, named as
/// `wasmtime run -W` names it.
///
/// Each one exposes compiler and runtime code that guests built for
/// `wasm32-wasip1`/`wasm32-wasip2` do not need, which is where several of
/// wasmtime's recent security advisories sat; [`Proposal::risk`] says what
/// turning it on exposes. Threads and shared memory are not proposals a
/// policy can turn on: they stay off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Proposal {
    /// `exceptions`: `try_table`, `throw` and `exnref` (C++ exceptions from
    /// wasi-sdk, for example).
    Exceptions,
    /// `tail-call`: `return_call` and `return_call_indirect`.
    TailCall,
    /// `extended-const`: arithmetic in constant expressions. On in every
    /// engine ([`Proposal::on_by_default`]); naming it changes nothing.
    ExtendedConst,
    /// `function-references`: typed function references (`call_ref`).
    FunctionReferences,
    /// `gc`: garbage-collected structs and arrays, and `externref`/`anyref`
    /// values. Implies `function-references`.
    Gc,
    /// `multi-memory`: more than one linear memory per module.
    MultiMemory,
    /// `memory64`: memories and tables indexed by 64-bit addresses.
    Memory64,
    /// `relaxed-simd`: SIMD instructions whose results may differ by host.
    RelaxedSimd,
    /// `custom-page-sizes`: memories with pages smaller than 64 KiB.
    CustomPageSizes,
    /// `wide-arithmetic`: 128-bit addition, subtraction and multiplication.
    WideArithmetic,
}

impl Proposal {
    /// Every proposal a policy may turn on, in the order they are listed.
    pub const ALL: [Proposal; 10] = [
        Proposal::Exceptions,
        Proposal::TailCall,
        Proposal::ExtendedConst,
        Proposal::FunctionReferences,
        Proposal::Gc,
        Proposal::MultiMemory,
        Proposal::Memory64,
        Proposal::RelaxedSimd,
        Proposal::CustomPageSizes,
        Proposal::WideArithmetic,
    ];

    /// The name in `[wasm] proposals` and `--wasm`, as `wasmtime run -W` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Proposal::Exceptions => "exceptions",
            Proposal::TailCall => "tail-call",
            Proposal::ExtendedConst => "extended-const",
            Proposal::FunctionReferences => "function-references",
            Proposal::Gc => "gc",
            Proposal::MultiMemory => "multi-memory",
            Proposal::Memory64 => "memory64",
            Proposal::RelaxedSimd => "relaxed-simd",
            Proposal::CustomPageSizes => "custom-page-sizes",
            Proposal::WideArithmetic => "wide-arithmetic",
        }
    }

    /// What a module that needs it uses, in words: "Wasm exception handling".
    pub fn title(self) -> &'static str {
        match self {
            Proposal::Exceptions => "Wasm exception handling",
            Proposal::TailCall => "Wasm tail calls",
            Proposal::ExtendedConst => "extended constant expressions",
            Proposal::FunctionReferences => "typed function references",
            Proposal::Gc => "Wasm garbage collection (GC types such as externref, structs and arrays)",
            Proposal::MultiMemory => "more than one memory",
            Proposal::Memory64 => "64-bit memories",
            Proposal::RelaxedSimd => "relaxed SIMD",
            Proposal::CustomPageSizes => "custom page sizes",
            Proposal::WideArithmetic => "128-bit wide arithmetic",
        }
    }

    /// One line on what turning it on exposes to a guest.
    pub fn risk(self) -> &'static str {
        match self {
            Proposal::Exceptions => {
                "new unwinding paths through compiled code and the GC heap exception objects live in"
            }
            Proposal::TailCall => "a different calling convention for every function, with its own stack handling",
            Proposal::ExtendedConst => "small: arithmetic evaluated while instantiating",
            Proposal::FunctionReferences => "typed references checked by the compiler instead of at each call",
            Proposal::Gc => {
                "a garbage-collected heap and its collector, the youngest and most advisory-prone part of wasmtime"
            }
            Proposal::MultiMemory => "code that must keep every memory's bounds apart",
            Proposal::Memory64 => "64-bit bounds checks, where a wrong check reaches host memory",
            Proposal::RelaxedSimd => {
                "results that differ between hosts (non-determinism), and more instruction lowering"
            }
            Proposal::CustomPageSizes => "explicit bounds checks instead of guard pages for small pages",
            Proposal::WideArithmetic => "small: a few new instructions to lower",
        }
    }

    /// Whether every engine has it, whatever the policy says: proposals that
    /// add no runtime power and that toolchains emit by default. Only
    /// `extended-const` (constant arithmetic evaluated while instantiating,
    /// which Python components built from wasi-sdk's shared libraries use).
    /// A set never holds one ([`Proposals::with`]).
    pub const fn on_by_default(self) -> bool {
        matches!(self, Proposal::ExtendedConst)
    }

    /// The proposals this one needs to be on as well: `gc` needs
    /// `function-references`.
    pub fn implies(self) -> Proposals {
        match self {
            Proposal::Gc => Proposals::EMPTY.with(Proposal::FunctionReferences),
            _ => Proposals::EMPTY,
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The names every known proposal goes by, for messages.
pub(super) fn known_names() -> String {
    Proposal::ALL.map(Proposal::name).join(", ")
}

impl FromStr for Proposal {
    type Err = String;

    /// Parses a name as `wasmtime run -W` spells it. `threads` and
    /// `shared-memory` are refused with a message saying they stay off.
    fn from_str(name: &str) -> Result<Proposal, String> {
        if let Some(p) = Proposal::ALL.into_iter().find(|p| p.name() == name) {
            return Ok(p);
        }
        if matches!(name, "threads" | "shared-memory" | "shared-everything-threads") {
            return Err(format!(
                "Wasm `{name}` stays off: wasmcell runs each guest on one thread and never shares memory between runs"
            ));
        }
        Err(format!(
            "unknown Wasm proposal `{}`; expected one of {}",
            name.escape_debug(),
            known_names()
        ))
    }
}

/// A set of [`Proposal`]s, as a small bit set (so that engine
/// configurations holding it stay `Copy` and hashable).
///
/// # Example
///
/// ```
/// use wasmcell::policy::{Proposal, Proposals};
///
/// let set = Proposals::EMPTY.with(Proposal::Gc);
/// assert!(!set.contains(Proposal::FunctionReferences));
/// assert!(set.with_implied().contains(Proposal::FunctionReferences));
/// assert_eq!(set.with_implied().to_string(), "function-references, gc");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct Proposals(u16);

impl Proposals {
    /// No proposal beyond the ones every engine has.
    pub const EMPTY: Proposals = Proposals(0);

    /// This set and `p`; this set unchanged when `p` is
    /// [on by default](Proposal::on_by_default), which no set holds (every
    /// engine has it, so naming it must not give an engine of its own).
    pub const fn with(self, p: Proposal) -> Proposals {
        if p.on_by_default() {
            return self;
        }
        Proposals(self.0 | (1 << (p as u16)))
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Proposal) -> bool {
        self.0 & p.bit() != 0
    }

    /// Whether every proposal of `other` is in this set.
    pub fn contains_all(self, other: Proposals) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// This set and every proposal its members need ([`Proposal::implies`]).
    pub fn with_implied(self) -> Proposals {
        self.iter().fold(self, |set, p| Proposals(set.0 | p.implies().0))
    }

    /// The proposals in the set, in [`Proposal::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Proposal> {
        Proposal::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl FromIterator<Proposal> for Proposals {
    fn from_iter<I: IntoIterator<Item = Proposal>>(iter: I) -> Proposals {
        iter.into_iter().fold(Proposals::EMPTY, Proposals::with)
    }
}

impl fmt::Display for Proposals {
    /// Names joined by `, `; `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let names: Vec<_> = self.iter().map(Proposal::name).collect();
        f.write_str(&names.join(", "))
    }
}

/// What becomes of a guest's import that no linker provides:
/// `[wasm] unknown-imports`.
///
/// wasmcell provides WASI (preview 1 for modules, 0.2 and `wasi:http` for
/// components) and nothing else. Every guest's imports are read before it is
/// compiled and checked against the engine's linkers, so a guest that asks
/// for more is refused at once however large it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownImports {
    /// The guest is refused before it is compiled, naming the first import
    /// missing (the default).
    #[default]
    Refuse,
    /// Each unknown function import is stood in for by one that ends the
    /// run as a trap naming the import when the guest calls it, as
    /// `wasmtime run -W unknown-imports-trap` does. Imports of memories,
    /// tables, globals and tags are still refused.
    ///
    /// # Security
    ///
    /// Grants nothing: the stand-ins only trap. The guest runs until it
    /// calls one, where it would otherwise not have run at all.
    Trap,
}

impl UnknownImports {
    /// The value as `[wasm] unknown-imports` spells it.
    pub fn name(self) -> &'static str {
        match self {
            UnknownImports::Refuse => "refuse",
            UnknownImports::Trap => "trap",
        }
    }
}

impl fmt::Display for UnknownImports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_refusals_say_why() {
        for p in Proposal::ALL {
            assert_eq!(p.name().parse::<Proposal>(), Ok(p));
        }
        let e = "exception".parse::<Proposal>().unwrap_err();
        assert!(
            e.contains("unknown Wasm proposal `exception`; expected one of exceptions, tail-call"),
            "{e}"
        );
        for name in ["threads", "shared-memory"] {
            let e = name.parse::<Proposal>().unwrap_err();
            assert!(e.contains("stays off"), "{e}");
        }
    }

    #[test]
    fn gc_implies_function_references() {
        let set: Proposals = [Proposal::Gc, Proposal::TailCall].into_iter().collect();
        assert_eq!(set.to_string(), "tail-call, gc");
        let full = set.with_implied();
        assert!(full.contains_all(set) && full.contains(Proposal::FunctionReferences));
        assert!(!set.contains_all(full));
        assert_eq!(Proposals::EMPTY.to_string(), "none");
    }

    #[test]
    fn proposals_on_by_default_are_never_held() {
        let set = Proposals::EMPTY.with(Proposal::ExtendedConst);
        assert!(set.is_empty(), "{set}");
        assert_eq!(
            [Proposal::ExtendedConst, Proposal::TailCall]
                .into_iter()
                .collect::<Proposals>(),
            Proposals::EMPTY.with(Proposal::TailCall)
        );
    }
}

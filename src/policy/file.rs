//! Stage 1: the policy file exactly as written. These types only deserialize;
//! every struct rejects unknown keys, and values that carry units (sizes,
//! durations) are parsed here so that a bad value is reported with its line.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use toml::Spanned;

/// A policy file exactly as deserialized from TOML, before any path is resolved
/// or any default applied. See [`Policy::from_file`](super::Policy::from_file) for the usable form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PolicyFile {
    /// Other policy files this one builds on, relative to this file's folder.
    /// Absent or empty: none.
    #[serde(default)]
    pub extends: Vec<Spanned<String>>,
    /// Resource limits. Absent: every limit takes its default.
    #[serde(default)]
    pub limits: super::LimitsFile,
    /// Filesystem grants. Absent: no directory is visible to the guest.
    #[serde(default)]
    pub fs: FsFile,
    /// Environment variables. Absent: the guest sees an empty environment.
    #[serde(default)]
    pub env: EnvFile,
    /// Standard streams. Absent: stdin is closed, stdout and stderr are inherited.
    #[serde(default)]
    pub stdio: StdioFile,
    /// Clocks. Absent: the host's clocks at full resolution.
    #[serde(default)]
    pub clocks: ClocksFile,
    /// Randomness. Absent: host entropy.
    #[serde(default)]
    pub random: RandomFile,
    /// Network. Absent: no sockets and no name lookups.
    #[serde(default)]
    pub net: NetFile,
    /// Wasm proposals and unknown imports. Absent: only the proposals every
    /// engine has, and unknown imports refused.
    #[serde(default)]
    pub wasm: WasmFile,
    /// The second wall. Absent: `mode = "auto"`.
    #[serde(default)]
    pub wall: WallFile,
    /// Which module the policy is for. Absent: any module.
    #[serde(default)]
    pub module: ModuleFile,
}

/// `[module]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModuleFile {
    /// The SHA-256 of the one module, or of each module, the policy may run.
    pub sha256: Option<Spanned<OneOrMany>>,
    /// Public key files, relative to the policy's folder; a module must
    /// carry a signature one of them verifies.
    pub signed_by: Option<Spanned<OneOrMany>>,
}

/// A string, or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One value.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values, one or many.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (one, many) = match self {
            OneOrMany::One(one) => (Some(one.as_str()), &[][..]),
            OneOrMany::Many(many) => (None, many.as_slice()),
        };
        one.into_iter().chain(many.iter().map(String::as_str))
    }
}

/// `[wall]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WallFile {
    /// `"require"`, `"auto"` or `"off"`. Absent: `"auto"`.
    pub mode: Option<Spanned<super::WallMode>>,
    /// The least Landlock ABI that counts as Landlock in effect. Absent: what
    /// the wall's layers need.
    pub landlock_abi: Option<Spanned<u32>>,
}

/// `[wasm]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WasmFile {
    /// Proposals to turn on, named as `wasmtime run -W` names them
    /// (`"exceptions"`, `"tail-call"`, ...). Absent or empty: none beyond
    /// those every `wasm32-wasip1`/`wasm32-wasip2` guest uses.
    #[serde(default)]
    pub proposals: Vec<Spanned<String>>,
    /// `"refuse"` or `"trap"`: what becomes of an import no linker provides.
    /// Absent: `"refuse"`.
    pub unknown_imports: Option<Spanned<super::UnknownImports>>,
}

/// `[fs]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FsFile {
    /// Directories granted to the guest. Absent or empty: no directories are visible.
    #[serde(default)]
    pub dirs: Vec<DirFile>,
    /// Single files granted to the guest, each alone in its guest folder.
    #[serde(default)]
    pub files: Vec<FileGrantFile>,
    /// The guest's initial working directory: an absolute guest path inside
    /// a granted directory, such as `/work/src`. Absent: none is given (the
    /// guest starts at `/`, as wasi-libc does).
    pub cwd: Option<Spanned<String>>,
}

/// One `[[fs.files]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileGrantFile {
    /// Host file, relative to the policy file's folder. Must exist.
    pub host: Spanned<String>,
    /// Where the guest sees it, e.g. `/etc/app.conf`: an absolute path, whose
    /// last name may differ from `host`'s (the guest sees only this one).
    pub guest: Spanned<String>,
    /// Required: `read-only` or `read-write`.
    pub access: Access,
}

/// One `[[fs.dirs]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirFile {
    /// Host directory, relative to the policy file's folder. Must exist.
    pub host: Spanned<String>,
    /// Where the guest sees it, e.g. `/data`.
    pub guest: Spanned<String>,
    /// Required: `read-only` or `read-write`.
    pub access: Access,
    /// Paths below the grant the guest may not touch at all (globs relative
    /// to the grant, such as `**/.env`). Deny wins over everything.
    #[serde(default)]
    pub deny: Vec<Spanned<String>>,
    /// Paths below a read-write grant the guest may read but not change.
    #[serde(default)]
    pub read_only: Vec<Spanned<String>>,
    /// Make denied paths look absent rather than refused.
    #[serde(default)]
    pub hide: bool,
    /// Bytes the run may add below a read-write grant.
    pub quota: Option<Spanned<ByteSize>>,
    /// Files, directories and links the run may create below a read-write grant.
    pub max_files: Option<Spanned<u64>>,
}

/// `[env]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvFile {
    /// Variables set in the guest. Absent or empty: none.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Names copied from the host when set there. Absent or empty: nothing leaks.
    #[serde(default)]
    pub inherit: Vec<Spanned<String>>,
}

/// `[stdio]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdioFile {
    /// Absent: `"null"` (the guest reads end-of-file at once).
    pub stdin: Option<InputSpec>,
    /// Absent: `"inherit"`.
    pub stdout: Option<OutputSpec>,
    /// Absent: `"inherit"`.
    pub stderr: Option<OutputSpec>,
}

/// Where the guest's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputSpec {
    /// Closed: reads give end-of-file.
    Null,
    /// The host process's stdin.
    Inherit,
    /// A host file, relative to the policy file's folder, read when the run starts.
    File(PathBuf),
}

/// Where the guest's stdout or stderr goes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputSpec {
    /// Discarded (still counted against `limits.output`).
    Null,
    /// The host process's stream.
    Inherit,
    /// A host file, relative to the policy file's folder, created or truncated
    /// when the run starts.
    File(PathBuf),
}

/// `[clocks]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClocksFile {
    /// Absent: `"host"`.
    pub mode: Option<Spanned<ClockMode>>,
    /// RFC 3339 instant both clocks stand at; only with `mode = "frozen"`.
    /// Absent with `frozen`: `2000-01-01T00:00:00Z`.
    pub start: Option<Spanned<String>>,
    /// Readings are rounded down to this step; only with `mode = "host"`.
    /// Absent: the host's resolution.
    pub resolution: Option<Spanned<HumanDuration>>,
}

/// `[random]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RandomFile {
    /// Seed for deterministic randomness. Absent: host entropy.
    pub seed: Option<u64>,
}

/// `[net]` as written. Each list holds entries such as `127.0.0.1:8080`,
/// `10.1.0.0/16:443`, `[::1]:1000-2000` or `localhost:*`; absent or empty: nothing.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NetFile {
    /// Remote addresses TCP connections may go to.
    #[serde(default)]
    pub tcp_connect: Vec<Spanned<String>>,
    /// Local addresses TCP sockets may bind and listen on.
    #[serde(default)]
    pub tcp_bind: Vec<Spanned<String>>,
    /// Local addresses UDP sockets may bind.
    #[serde(default)]
    pub udp_bind: Vec<Spanned<String>>,
    /// Remote addresses UDP datagrams may go to.
    #[serde(default)]
    pub udp_send: Vec<Spanned<String>>,
    /// Whether name lookups are allowed. Absent: false.
    pub dns: Option<bool>,
    /// Where outgoing `wasi:http` requests may go: origins
    /// (`scheme://host[:port|:*]`, any method and path) or `[[net.http]]`
    /// tables (an origin with methods, paths, deny-paths, headers, secrets).
    #[serde(default)]
    pub http: Vec<Spanned<HttpItem>>,
    /// Credentials the host holds for `[[net.http]]` entries, by name.
    /// Absent or empty: none.
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<SecretFile>>,
    /// PEM files of CAs the host trusts for `https` requests, beside the
    /// public ones; relative to this file. Absent or empty: the public ones only.
    #[serde(default)]
    pub ca_certificates: Vec<Spanned<String>>,
}

/// One `net.http` item: an origin string, or a `[[net.http]]` table.
#[derive(Debug)]
pub enum HttpItem {
    /// `"https://api.example.com"`: any method and path.
    Origin(String),
    /// `{ origin = ..., methods = ..., paths = ... }`.
    Rule(HttpRuleFile),
}

impl<'de> Deserialize<'de> for HttpItem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = HttpItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an origin such as \"https://api.example.com\" or a table with `origin`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HttpItem, E> {
                Ok(HttpItem::Origin(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<HttpItem, A::Error> {
                HttpRuleFile::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(HttpItem::Rule)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// One `[[net.http]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpRuleFile {
    /// Required: `scheme://host[:port|:*]`.
    pub origin: String,
    /// Methods admitted, in capitals. Absent: any.
    pub methods: Option<Vec<String>>,
    /// Path patterns admitted. Absent: any path.
    pub paths: Option<Vec<String>>,
    /// Path patterns refused whatever else admits them. Absent: none.
    #[serde(default)]
    pub deny_paths: Vec<String>,
    /// Headers set on every request the entry admits, replacing the guest's.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Secrets whose placeholders the entry's requests may carry.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Where placeholders are replaced: `"headers"` (always) and `"query"`.
    /// Absent: headers only.
    #[serde(default)]
    pub placeholder_in: Vec<String>,
}

/// One `[net.secrets]` entry as written: exactly one of `env` and `file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecretFile {
    /// A host environment variable.
    pub env: Option<String>,
    /// A host file, relative to the policy file's folder.
    pub file: Option<String>,
}

/// How a directory is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// The guest can list and read, and change nothing.
    ReadOnly,
    /// The guest can also create, write, rename and remove inside the directory.
    ReadWrite,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        })
    }
}

/// Which clocks the guest sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClockMode {
    /// The host's clocks, optionally coarsened.
    Host,
    /// Both clocks stand still at a fixed instant.
    Frozen,
}

/// A size in bytes, written as an integer or a string with a unit
/// (`"256 MiB"`, `"64KiB"`, `"1 GB"`, `"4096"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"256 MiB"`-style sizes. Binary units are KiB, MiB, GiB, TiB;
    /// decimal units are kB, MB, GB, TB; `B` or no unit means bytes.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let digits: String = digits.chars().filter(|c| *c != '_').collect();
        let number: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size `{text}`: expected a whole number and a unit such as `256 MiB`"))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit `{other}` in `{text}`: expected one of B, KiB, MiB, GiB, TiB, kB, MB, GB, TB"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// Whole multiples of a binary unit exactly (`256 MiB`, the form a
    /// policy is written in); other sizes from 1 KiB up to one decimal
    /// (`65.7 MiB`), as a person reads them; below that in bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
        for (unit, shift) in UNITS {
            if n >= 1 << shift && n.is_multiple_of(1 << shift) {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        for (i, (unit, shift)) in UNITS.into_iter().enumerate() {
            if n >= 1 << shift {
                // Tenths, rounded; 1023.96 KiB is shown as 1.0 MiB, not 1024.0 KiB.
                let tenths = (u128::from(n) * 10 + (1u128 << (shift - 1))) >> shift;
                if tenths >= 10_240 && i > 0 {
                    let (bigger, _) = UNITS[i - 1];
                    return write!(f, "1.0 {bigger}");
                }
                return write!(f, "{}.{} {unit}", tenths / 10, tenths % 10);
            }
        }
        write!(f, "{n} B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: a whole number of bytes or a string such as \"256 MiB\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written like `"10s"`, `"500ms"` or `"2m 30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `"10s"`-style durations (humantime syntax).
    pub fn parse(text: &str) -> Result<HumanDuration, String> {
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|e| format!("invalid duration `{text}`: {e}; write it like `10s`, `500ms` or `2m`"))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a duration string such as \"10s\" or \"500ms\""))?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_size_display_round_trips() {
        for text in ["256 MiB", "1 GiB", "3 KiB", "1000 B", "2 TiB"] {
            assert_eq!(ByteSize::parse(text).unwrap().to_string(), text);
        }
    }

    // See: #13
    #[test]
    fn byte_sizes_are_shown_as_people_read_them() {
        let cases = [
            (68_860_682, "65.7 MiB"),
            (1_000_000, "976.6 KiB"),
            (1536, "1.5 KiB"),
            ((1 << 20) - 1, "1.0 MiB"),
            ((4 << 30) + 1, "4.0 GiB"),
            (1023, "1023 B"),
        ];
        for (n, text) in cases {
            assert_eq!(ByteSize(n).to_string(), text, "{n}");
        }
    }
}

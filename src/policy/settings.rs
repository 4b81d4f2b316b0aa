//! The `[limits]` settings, each declared once.
//!
//! One entry of [`settings!`] below is a whole setting: its key, kind,
//! default, bounds, doc, how `wasmcell check` shows it and the command-line
//! flag that sets it, if any. From it follow the `[limits]` field of
//! [`LimitsFile`] (parsed with its line, as every key is), the layer overlay,
//! the bounds check, the resolved value in [`Limits`] with its [`Origin`],
//! the [`PolicyBuilder`] setter, [`PolicyBuilder::set_setting`], the line
//! `summarize` prints and the [`SETTINGS`] table a command line builds its
//! flags from. A new limit is one entry here plus where it is enforced.
//!
//! Why a `macro_rules!` and not a derive (as wasmtime's
//! `wasmtime_option_group!` is also a declarative macro): a derive needs a
//! proc-macro crate of its own, with `syn` and `quote` to build and keep up
//! to date, for what a pattern over a list of entries does here; and the
//! entries stay plain Rust expressions (constants, bounds) that the compiler
//! checks where they are written.

use super::builder::PolicyBuilder;
use super::error::{PolicyError, PolicyErrorKind, invalid, line_of};
use super::file::{ByteSize, HumanDuration};
use super::{Origin, Setting, key_for};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;
use toml::Spanned;

/// A command-line flag that sets a policy setting, as data: a command line
/// turns it into its own flag (the `wasmcell` CLI does so with clap), and
/// hands the text it was given to [`PolicyBuilder::set_setting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The flag as typed, such as `--fuel`.
    pub name: &'static str,
    /// What its value is called in help, such as `N` or `SIZE`.
    pub value_name: &'static str,
    /// One line of help; the key it overrides is named by [`SettingInfo::flag_help`].
    pub help: &'static str,
    /// More help, shown by `--help` after the line; empty for none.
    pub long_help: &'static str,
}

/// One declared setting, as data: what a command line, the docs and their
/// test need to know of it.
#[derive(Debug, Clone, Copy)]
pub struct SettingInfo {
    /// The policy key, such as `limits.memory`.
    pub key: &'static str,
    /// What it means.
    pub doc: &'static str,
    /// The default as the policy reference shows it: a TOML value such as
    /// `"256 MiB"` in backticks, or words when there is none.
    pub default: fn() -> String,
    /// The flag that sets it, if any.
    pub flag: Option<Flag>,
    parse: fn(&str) -> Result<(), String>,
}

impl SettingInfo {
    /// Whether `text` is a value of this setting's kind (a size, a
    /// duration, a count), bounds aside: a command line refuses other text
    /// as it parses its arguments.
    ///
    /// # Errors
    ///
    /// What is wrong with `text`, and what is accepted.
    pub fn parse_text(&self, text: &str) -> Result<(), String> {
        (self.parse)(text)
    }

    /// The flag's help line, naming the key it overrides.
    pub fn flag_help(&self) -> Option<String> {
        self.flag.map(|f| format!("{} (overrides {})", f.help, self.key))
    }
}

/// How one kind of value is written in a file and in a flag, shown, and
/// refused when out of bounds.
pub trait Kind {
    /// The value.
    type Value: Copy + PartialOrd;
    /// As it is deserialized from a file.
    type File: for<'de> Deserialize<'de>;
    fn from_file(file: &Self::File) -> Self::Value;
    fn parse(text: &str) -> Result<Self::Value, String>;
    /// For people: `256 MiB`, `10s`, `1024`.
    fn show(value: Self::Value) -> String;
    /// As TOML: `"256 MiB"`, `"10s"`, `1024`.
    fn toml(value: Self::Value) -> String;
    fn out_of_bounds(key: &str, value: Self::Value, min: Self::Value, max: Self::Value) -> String;
}

/// A whole number of things.
pub enum Count {}
/// A number of bytes, written with a unit (`"64 MiB"`) or as a number.
pub enum Bytes {}
/// A duration, written like `"10s"` or `"1m 30s"`.
pub enum Time {}

impl Kind for Count {
    type Value = u64;
    type File = u64;
    fn from_file(file: &u64) -> u64 {
        *file
    }
    fn parse(text: &str) -> Result<u64, String> {
        text.parse().map_err(|e: std::num::ParseIntError| e.to_string())
    }
    fn show(value: u64) -> String {
        value.to_string()
    }
    fn toml(value: u64) -> String {
        value.to_string()
    }
    fn out_of_bounds(key: &str, value: u64, min: u64, max: u64) -> String {
        if max == u64::MAX {
            format!("{key} must be at least {min}")
        } else {
            format!("{key} must be between {min} and {max}, not {value}")
        }
    }
}

impl Kind for Bytes {
    type Value = u64;
    type File = ByteSize;
    fn from_file(file: &ByteSize) -> u64 {
        file.0
    }
    fn parse(text: &str) -> Result<u64, String> {
        ByteSize::parse(text).map(|b| b.0)
    }
    fn show(value: u64) -> String {
        ByteSize(value).to_string()
    }
    fn toml(value: u64) -> String {
        format!("\"{}\"", ByteSize(value))
    }
    fn out_of_bounds(key: &str, value: u64, min: u64, max: u64) -> String {
        let min = if min == 1 {
            "1 byte".to_string()
        } else {
            ByteSize(min).to_string()
        };
        format!(
            "{key} must be between {min} and {}, not {}",
            ByteSize(max),
            ByteSize(value)
        )
    }
}

impl Kind for Time {
    type Value = Duration;
    type File = HumanDuration;
    fn from_file(file: &HumanDuration) -> Duration {
        file.0
    }
    fn parse(text: &str) -> Result<Duration, String> {
        HumanDuration::parse(text).map(|d| d.0)
    }
    fn show(value: Duration) -> String {
        humantime::format_duration(value).to_string()
    }
    fn toml(value: Duration) -> String {
        format!("\"{}\"", Self::show(value))
    }
    fn out_of_bounds(key: &str, _: Duration, min: Duration, max: Duration) -> String {
        let min = if min <= Duration::from_nanos(1) {
            "longer than zero".to_string()
        } else {
            format!("at least {}", Self::show(min))
        };
        format!("{key} must be {min} and at most {}", Self::show(max))
    }
}

/// The value in force, if any: a setting that may be unset (such as
/// `limits.fuel`) resolves to an `Option`.
pub trait Present<V> {
    fn present(&self) -> Option<V>;
}

impl Present<u64> for u64 {
    fn present(&self) -> Option<u64> {
        Some(*self)
    }
}

impl Present<u64> for Option<u64> {
    fn present(&self) -> Option<u64> {
        *self
    }
}

impl Present<Duration> for Duration {
    fn present(&self) -> Option<Duration> {
        Some(*self)
    }
}

/// Refuses `value` outside `min..=max` with the kind's words, then `advice`.
fn check<K: Kind>(key: &str, value: K::Value, min: K::Value, max: K::Value, advice: &str) -> Result<(), PolicyError> {
    if min <= value && value <= max {
        return Ok(());
    }
    Err(invalid(format!("{}{advice}", K::out_of_bounds(key, value, min, max))))
}

/// `summarize`'s words for a value: `shown` with `{}` replaced, or `unset`.
fn shown<K: Kind, R: Present<K::Value>>(value: &R, shown: &str, unset: &str) -> String {
    match value.present() {
        Some(v) => shown.replace("{}", &K::show(v)),
        None => unset.to_string(),
    }
}

/// The policy reference's default: the TOML value in backticks, or `unset`.
fn default_text<K: Kind, R: Present<K::Value>>(value: &R, unset: &str) -> String {
    match value.present() {
        Some(v) => format!("`{}`", K::toml(v)),
        None => unset.to_string(),
    }
}

macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])+
        $field:ident: $kind:ident => $resolved:ty {
            key: $key:literal,
            default: $DEFAULT:ident = $default:expr,
            min: $MIN:ident = $min:expr,
            max: $MAX:ident = $max:expr,
            $(#[doc = $max_doc:literal])*
            shown: $shown:literal,
            unset: $unset:literal,
            advice: $advice:literal,
            flag: $flag:expr,
        }
    )*) => {
        /// Resource limits, each with where its value came from. Every limit
        /// has a finite default except fuel; each field says what it bounds,
        /// and the `DEFAULT_`, `MIN_` and `MAX_` constants give its default
        /// and bounds. New limits will be added (`#[non_exhaustive]`): read
        /// them from a [`Policy`](super::Policy), set them with a
        /// [`PolicyBuilder`](super::PolicyBuilder).
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct Limits {
            $($(#[doc = $doc])+ pub $field: Setting<$resolved>,)*
        }

        impl Limits {
            $(
                #[doc = concat!("Default for `", $key, "`.")]
                pub const $DEFAULT: $resolved = $default;
                #[doc = concat!("Least accepted `", $key, "`.")]
                pub const $MIN: <$kind as Kind>::Value = $min;
                #[doc = concat!("Most accepted `", $key, "`.")]
                $(#[doc = $max_doc])*
                pub const $MAX: <$kind as Kind>::Value = $max;
            )*

            /// Each limit as `summarize` shows it: its name in `[limits]`, the
            /// value in words, and where it came from.
            pub(super) fn described(&self) -> Vec<(&'static str, String, &Origin)> {
                vec![$((
                    $key.trim_start_matches("limits."),
                    shown::<$kind, $resolved>(&self.$field.value, $shown, $unset),
                    &self.$field.origin,
                ),)*]
            }
        }

        impl Limits {
            /// Each limit a policy, a flag or the API set (not a default),
            /// as `[limits]` writes it: its name there and its TOML value
            /// (`None` for an unset limit such as `fuel`).
            pub fn set_values(&self) -> Vec<(&'static str, Option<String>)> {
                let mut values = Vec::new();
                $(if self.$field.origin != Origin::Default {
                    values.push((
                        $key.trim_start_matches("limits."),
                        self.$field.value.present().map(<$kind as Kind>::toml),
                    ));
                })*
                values
            }
        }

        impl Default for Limits {
            fn default() -> Self {
                Limits {
                    $($field: Setting::default(Self::$DEFAULT),)*
                }
            }
        }

        /// `[limits]` as written. Absent keys take the defaults given on [`Limits`].
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct LimitsFile {
            $($(#[doc = $doc])+ pub $field: Option<Spanned<<$kind as Kind>::File>>,)*
        }

        /// `[limits]` of a layer: `None` where the layer leaves a limit alone.
        #[derive(Debug, Default, Clone)]
        pub(super) struct LimitsLayer {
            $(pub(super) $field: Option<Setting<$resolved>>,)*
        }

        impl LimitsLayer {
            /// `[limits]` of the file at `path`, each value checked at its line.
            pub(super) fn parse(file: &LimitsFile, path: &Path, text: &str) -> Result<LimitsLayer, PolicyError> {
                let mut layer = LimitsLayer::default();
                $(if let Some(field) = &file.$field {
                    let value = <$kind>::from_file(field.get_ref());
                    check::<$kind>($key, value, Limits::$MIN, Limits::$MAX, $advice)
                        .map_err(|e| e.key($key).at(path, text, Some(field.span())))?;
                    let line = Some(line_of(text, field.span().start));
                    let origin = Origin::File { path: path.to_path_buf(), line };
                    layer.$field = Some(Setting { value: <$resolved>::from(value), origin });
                })*
                Ok(layer)
            }

            /// Applies `top` over `self`: a limit `top` sets wins.
            pub(super) fn overlay(&mut self, top: LimitsLayer) {
                $(if top.$field.is_some() {
                    self.$field = top.$field;
                })*
            }

            /// Each limit from the layers, or its default.
            pub(super) fn resolve(self) -> Limits {
                let d = Limits::default();
                Limits {
                    $($field: self.$field.unwrap_or(d.$field),)*
                }
            }
        }

        impl PolicyBuilder {
            $(
                #[doc = concat!("Sets `", $key, "`, from [`Limits::", stringify!($MIN), "`] to [`Limits::", stringify!($MAX), "`]:")]
                #[doc = ""]
                $(#[doc = $doc])+
                pub fn $field(self, value: <$kind as Kind>::Value) -> PolicyBuilder {
                    let checked = check::<$kind>($key, value, Limits::$MIN, Limits::$MAX, $advice);
                    self.set_limit($key, checked, |layer, origin| {
                        layer.$field = Some(Setting { value: <$resolved>::from(value), origin });
                    })
                }
            )*

            /// Sets the setting `key` (such as `limits.memory`) from `text`
            /// as a flag or another text source gives it, with where it came
            /// from: what a command line calls for each flag of [`SETTINGS`].
            /// Bounds are checked as by the typed setter, and a value out of
            /// them is refused by [`PolicyBuilder::build`], named by `origin`.
            ///
            /// # Errors
            ///
            /// A [`PolicyError`] for a key that is not a declared setting or
            /// text that is not a value of its kind, named by `origin`'s flag
            /// or the key.
            ///
            /// # Example
            ///
            /// ```
            /// use wasmcell::{Origin, Policy};
            /// let policy = Policy::builder()
            ///     .set_setting("limits.memory", "64MiB", Origin::Flag("--memory"))?
            ///     .build()?;
            /// assert_eq!(policy.limits().memory.value, 64 << 20);
            /// assert_eq!(policy.limits().memory.origin, Origin::Flag("--memory"));
            /// # Ok::<(), anyhow::Error>(())
            /// ```
            pub fn set_setting(self, key: &str, text: &str, origin: Origin) -> Result<PolicyBuilder, PolicyError> {
                match key {
                    $($key => {
                        let value = <$kind>::parse(text).map_err(|why| {
                            invalid(format!("{}: {why}", $key)).key(&key_for(&origin, $key))
                        })?;
                        Ok(self.with_origin(origin, |b| b.$field(value)))
                    })*
                    _ => {
                        let known: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
                        Err(PolicyError::new(PolicyErrorKind::Invalid(format!(
                            "unknown setting `{}`; expected one of {}",
                            key.escape_debug(),
                            known.join(", ")
                        ))))
                    }
                }
            }
        }

        /// Every declared setting, in the order of the policy reference.
        pub static SETTINGS: &[SettingInfo] = &[$(SettingInfo {
            key: $key,
            doc: concat!($($doc, "\n"),+),
            default: || default_text::<$kind, $resolved>(&Limits::$DEFAULT, $unset),
            flag: $flag,
            parse: |text| <$kind>::parse(text).map(drop),
        },)*];
    };
}

settings! {
    /// Fuel units the guest may burn, about one per Wasm instruction; unset,
    /// metering is off. Exhausted: status `fuel-exhausted`.
    fuel: Count => Option<u64> {
        key: "limits.fuel",
        default: DEFAULT_FUEL = None,
        min: MIN_FUEL = 1,
        max: MAX_FUEL = u64::MAX,
        shown: "{} units",
        unset: "not metered (the timeout still applies)",
        advice: "; remove it to turn metering off",
        flag: Some(Flag {
            name: "--fuel",
            value_name: "N",
            help: "Fuel units the guest may burn, about one per Wasm instruction",
            long_help: "",
        }),
    }
    /// Bytes of linear memory and tables, all of the guest's memories and
    /// tables together. A table element counts as 8 bytes, what wasmtime
    /// keeps for it on the host; without that, a guest could make the host
    /// hold hundreds of MiB of tables under a small limit.
    memory: Bytes => u64 {
        key: "limits.memory",
        default: DEFAULT_MEMORY = 256 << 20,
        min: MIN_MEMORY = 1,
        max: MAX_MEMORY = 4 << 30,
        /// A wasm32 guest cannot address more.
        shown: "{}",
        unset: "",
        advice: "",
        flag: Some(Flag {
            name: "--memory",
            value_name: "SIZE",
            help: "Most linear memory and tables, such as `64MiB`",
            long_help: "",
        }),
    }
    /// Wall-clock time from the start of instantiation, including time
    /// blocked in host calls.
    timeout: Time => Duration {
        key: "limits.timeout",
        default: DEFAULT_TIMEOUT = Duration::from_secs(10),
        min: MIN_TIMEOUT = Duration::from_nanos(1),
        max: MAX_TIMEOUT = Duration::from_secs(30 * 24 * 60 * 60),
        /// Long enough for any batch job, short enough that a deadline is
        /// always a real instant.
        shown: "{}",
        unset: "",
        advice: ", such as \"10s\"",
        flag: Some(Flag {
            name: "--timeout",
            value_name: "DURATION",
            help: "Wall-clock limit, such as `5s` or `250ms`",
            long_help: "It ends the guest even while it blocks in a host call.",
        }),
    }
    /// Bytes of Wasm stack.
    stack: Bytes => u64 {
        key: "limits.stack",
        default: DEFAULT_STACK = 1 << 20,
        min: MIN_STACK = 4 << 10,
        max: MAX_STACK = 64 << 20,
        /// wasmtime needs a host stack this size too.
        shown: "{}",
        unset: "",
        advice: "",
        flag: None,
    }
    /// Bytes the guest may write to stdout and stderr together.
    output: Bytes => u64 {
        key: "limits.output",
        default: DEFAULT_OUTPUT = 16 << 20,
        min: MIN_OUTPUT = 1,
        max: MAX_OUTPUT = 4 << 30,
        /// Output a run captures is held in memory, so it is bounded as
        /// memory is.
        shown: "{}",
        unset: "",
        advice: "",
        flag: None,
    }
    /// Largest module or component file accepted for compilation.
    module_size: Bytes => u64 {
        key: "limits.module-size",
        default: DEFAULT_MODULE_SIZE = 64 << 20,
        min: MIN_MODULE_SIZE = 1,
        max: MAX_MODULE_SIZE = 1 << 30,
        /// A module is read into memory whole before it is compiled.
        shown: "{}",
        unset: "",
        advice: "",
        flag: Some(Flag {
            name: "--max-module-size",
            value_name: "SIZE",
            help: "Largest module file accepted for compilation",
            long_help: "",
        }),
    }
    /// WASI handles the guest may hold at once (open files and directories,
    /// streams, the preopens and stdio included). Each open file or
    /// directory holds a host file descriptor, so this bounds what one guest
    /// can take from the host process.
    handles: Count => u64 {
        key: "limits.handles",
        default: DEFAULT_HANDLES = 1024,
        min: MIN_HANDLES = 16,
        max: MAX_HANDLES = 1_000_000,
        /// wasmtime's own table ceiling.
        shown: "{} open at once",
        unset: "",
        advice: "; fewer cannot hold stdio and a few directories",
        flag: None,
    }
    /// Outgoing `wasi:http` requests the guest may make in one run, each
    /// `net.http` allows counting once (refused ones do not). Past it, a
    /// request is refused as an origin no entry lists is. The default lets a
    /// guest make a request every 10 ms for the default timeout; 0 turns
    /// HTTP off whatever `net.http` a base file grants, which an extending
    /// file cannot take away.
    http_requests: Count => u64 {
        key: "limits.http-requests",
        default: DEFAULT_HTTP_REQUESTS = 1000,
        min: MIN_HTTP_REQUESTS = 0,
        max: MAX_HTTP_REQUESTS = 1_000_000_000,
        /// A count costs nothing to keep; the ceiling catches a typo.
        shown: "{} per run",
        unset: "",
        advice: "",
        flag: Some(Flag {
            name: "--http-requests",
            value_name: "N",
            help: "Most outgoing HTTP requests the guest may make in one run",
            long_help: "",
        }),
    }
    /// Bytes of one outgoing `wasi:http` request's body. The host streams
    /// the body and never holds it whole, so this bounds what one request
    /// may carry out, not memory: a request that declares a longer
    /// `Content-Length` is refused before it connects, and one that sends
    /// more is cut off there and fails (`HTTP-request-body-size`). The
    /// default fits any API call and most uploads.
    http_request_body: Bytes => u64 {
        key: "limits.http-request-body",
        default: DEFAULT_HTTP_REQUEST_BODY = 16 << 20,
        min: MIN_HTTP_REQUEST_BODY = 0,
        max: MAX_HTTP_REQUEST_BODY = 1 << 40,
        /// Streamed, never held: the ceiling only catches a typo.
        shown: "{} per request",
        unset: "",
        advice: "",
        flag: Some(Flag {
            name: "--http-request-body",
            value_name: "SIZE",
            help: "Largest body one outgoing HTTP request may send, such as `1MiB`",
            long_help: "",
        }),
    }
    /// Bytes of one `wasi:http` response's body. The host passes the body on
    /// as the guest reads it and never holds it whole, so this bounds what
    /// one request may bring in (into a file, say, where `limits.memory`
    /// does not reach): a response that declares a longer `Content-Length`
    /// fails at once, and one that sends more fails at the byte that
    /// crosses it (`HTTP-response-body-size`).
    http_response_body: Bytes => u64 {
        key: "limits.http-response-body",
        default: DEFAULT_HTTP_RESPONSE_BODY = 64 << 20,
        min: MIN_HTTP_RESPONSE_BODY = 0,
        max: MAX_HTTP_RESPONSE_BODY = 1 << 40,
        /// Streamed, never held: the ceiling only catches a typo.
        shown: "{} per response",
        unset: "",
        advice: "",
        flag: Some(Flag {
            name: "--http-response-body",
            value_name: "SIZE",
            help: "Largest response body one outgoing HTTP request may receive",
            long_help: "",
        }),
    }
    /// Wall-clock time one outgoing `wasi:http` request may take, from
    /// connecting to the last byte of its response body; the guest's own
    /// `request-options` timeouts may only shorten it. Past it the request
    /// fails (`connection-timeout` while connecting, then
    /// `HTTP-response-timeout`), and the run goes on. The default is what
    /// common HTTP clients wait.
    http_timeout: Time => Duration {
        key: "limits.http-timeout",
        default: DEFAULT_HTTP_TIMEOUT = Duration::from_secs(30),
        min: MIN_HTTP_TIMEOUT = Duration::from_millis(1),
        max: MAX_HTTP_TIMEOUT = Duration::from_secs(30 * 24 * 60 * 60),
        /// As long as the longest run: `limits.timeout` ends a run first.
        shown: "{} per request",
        unset: "",
        advice: ", such as \"30s\"",
        flag: Some(Flag {
            name: "--http-timeout",
            value_name: "DURATION",
            help: "Longest one outgoing HTTP request may take, connect to last byte",
            long_help: "",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Policy;
    use crate::policy::resolve::tests::{err, parse};

    /// Whether the typed setter accepts `value`, and the refusal's words.
    fn set(f: impl FnOnce(PolicyBuilder) -> PolicyBuilder) -> Result<(), String> {
        f(Policy::builder()).build().map(drop).map_err(|e| e.to_string())
    }

    fn refused(f: impl FnOnce(PolicyBuilder) -> PolicyBuilder) -> String {
        set(f).expect_err("the value should be refused")
    }

    #[test]
    fn limits_fuel_is_refused_outside_its_bounds() {
        assert!(set(|b| b.fuel(1)).is_ok());
        assert!(set(|b| b.fuel(u64::MAX)).is_ok());
        assert!(refused(|b| b.fuel(0)).contains("remove it to turn metering off"));
    }

    #[test]
    fn limits_memory_is_refused_outside_its_bounds() {
        assert!(set(|b| b.memory(1)).is_ok());
        assert!(set(|b| b.memory(4 << 30)).is_ok());
        assert!(refused(|b| b.memory(0)).contains("limits.memory must be between 1 byte and 4 GiB, not 0 B"));
        assert!(refused(|b| b.memory((4 << 30) + 1)).contains("between 1 byte and 4 GiB"));
    }

    #[test]
    fn limits_timeout_is_refused_outside_its_bounds() {
        assert!(set(|b| b.timeout(Duration::from_nanos(1))).is_ok());
        assert!(set(|b| b.timeout(Limits::MAX_TIMEOUT)).is_ok());
        assert!(refused(|b| b.timeout(Duration::ZERO)).contains("longer than zero"));
        let e = refused(|b| b.timeout(Limits::MAX_TIMEOUT + Duration::from_nanos(1)));
        assert!(e.contains("at most 30days"), "{e}");
    }

    #[test]
    fn limits_stack_is_refused_outside_its_bounds() {
        assert!(set(|b| b.stack(4096)).is_ok());
        assert!(set(|b| b.stack(64 << 20)).is_ok());
        assert!(refused(|b| b.stack(4095)).contains("limits.stack must be between 4 KiB and 64 MiB"));
        assert!(set(|b| b.stack((64 << 20) + 1)).is_err());
    }

    // See: #10
    #[test]
    fn limits_output_is_refused_outside_its_bounds() {
        assert!(set(|b| b.output(1)).is_ok());
        assert!(set(|b| b.output(Limits::MAX_OUTPUT)).is_ok());
        assert!(refused(|b| b.output(0)).contains("limits.output must be between 1 byte and 4 GiB, not 0 B"));
        assert!(refused(|b| b.output(u64::MAX)).contains("between 1 byte and 4 GiB"));
    }

    #[test]
    fn limits_module_size_is_refused_outside_its_bounds() {
        assert!(set(|b| b.module_size(1)).is_ok());
        assert!(set(|b| b.module_size(Limits::MAX_MODULE_SIZE)).is_ok());
        assert!(refused(|b| b.module_size(0)).contains("limits.module-size must be between 1 byte"));
        assert!(set(|b| b.module_size(Limits::MAX_MODULE_SIZE + 1)).is_err());
    }

    #[test]
    fn limits_handles_is_refused_outside_its_bounds() {
        assert!(set(|b| b.handles(16)).is_ok());
        assert!(set(|b| b.handles(1_000_000)).is_ok());
        assert!(refused(|b| b.handles(15)).contains("limits.handles must be between 16"));
        assert!(set(|b| b.handles(1_000_001)).is_err());
    }

    #[test]
    fn set_setting_parses_text_and_keeps_the_origin() {
        let p = Policy::builder()
            .set_setting("limits.timeout", "1m 30s", Origin::Flag("--timeout"))
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(p.limits().timeout.value, Duration::from_secs(90));
        assert_eq!(p.limits().timeout.origin, Origin::Flag("--timeout"));
        let e = Policy::builder()
            .set_setting("limits.memory", "lots", Origin::Flag("--memory"))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--memory: limits.memory: invalid size `lots`"),
            "{e}"
        );
        let e = Policy::builder()
            .set_setting("limits.colour", "1", Origin::Api)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown setting `limits.colour`; expected one of limits.fuel"),
            "{e}"
        );
        let e = Policy::builder()
            .set_setting("limits.fuel", "0", Origin::Flag("--fuel"))
            .unwrap()
            .build()
            .unwrap_err();
        assert!(
            e.to_string().starts_with("--fuel: limits.fuel must be at least 1"),
            "{e}"
        );
    }

    /// Each key is its `[limits]` field, so a file and a flag name one thing.
    #[test]
    fn keys_are_their_file_fields() {
        let unknown = toml::from_str::<LimitsFile>("nothing = 1\n").unwrap_err().to_string();
        let fields: Vec<String> = SETTINGS
            .iter()
            .map(|s| format!("`{}`", s.key.strip_prefix("limits.").unwrap()))
            .collect();
        assert!(
            unknown.contains(&format!("expected one of {}", fields.join(", "))),
            "{unknown}"
        );
    }

    /// The README's policy reference lists every setting with its default
    /// and flag, as declared here.
    #[test]
    fn readme_table_matches_the_declarations() {
        let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
        for setting in SETTINGS {
            let row = readme
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", setting.key)))
                .unwrap_or_else(|| panic!("README.md has no policy reference row for `{}`", setting.key));
            let cells: Vec<&str> = row.split(" | ").collect();
            assert_eq!(
                cells.get(1).copied(),
                Some((setting.default)().as_str()),
                "default of {row}"
            );
            let flag = setting
                .flag
                .map_or("none".to_string(), |f| format!("`{} {}`", f.name, f.value_name));
            assert_eq!(cells.get(2).copied(), Some(flag.as_str()), "flag of {row}");
        }
    }

    #[test]
    fn test_limits_fuel() {
        assert_eq!(
            parse("[limits]\nfuel = 2_000_000").unwrap().limits().fuel.value,
            Some(2_000_000)
        );
        assert_eq!(parse("").unwrap().limits().fuel.value, None);
        let e = err("[limits]\nfuel = 0");
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains("remove it to turn metering off"), "{e}");
        assert!(err("[limits]\nfuel = -3").to_string().contains(":2:"));
    }

    #[test]
    fn test_limits_memory() {
        assert_eq!(
            parse("[limits]\nmemory = \"256 MiB\"").unwrap().limits().memory.value,
            256 << 20
        );
        assert_eq!(parse("[limits]\nmemory = 65536").unwrap().limits().memory.value, 65536);
        assert_eq!(
            parse("[limits]\nmemory = \"1GB\"").unwrap().limits().memory.value,
            1_000_000_000
        );
        let e = err("[limits]\nmemory = \"12 parsecs\"");
        assert!(e.to_string().contains("expected one of B, KiB"), "{e}");
        assert_eq!(e.line(), Some(2));
        assert!(
            err("[limits]\nmemory = \"8 GiB\"")
                .to_string()
                .contains("between 1 byte and 4 GiB")
        );
    }

    #[test]
    fn test_limits_timeout() {
        assert_eq!(
            parse("[limits]\ntimeout = \"1m 30s\"").unwrap().limits().timeout.value,
            Duration::from_secs(90)
        );
        assert_eq!(parse("").unwrap().limits().timeout.value, Limits::DEFAULT_TIMEOUT);
        assert!(
            err("[limits]\ntimeout = \"soon\"")
                .to_string()
                .contains("write it like `10s`")
        );
        assert!(
            err("[limits]\ntimeout = \"0s\"")
                .to_string()
                .contains("longer than zero")
        );
        assert!(
            err("[limits]\ntimeout = 10")
                .to_string()
                .contains("expected a duration string")
        );
    }

    #[test]
    fn r_timeout_is_bounded() {
        let msg = err("[limits]\ntimeout = \"100000000 years\"").to_string();
        assert!(msg.contains("at most 30days"), "{msg}");
        let e = Policy::builder()
            .with_origin(Origin::Flag("--timeout"), |b| b.timeout(Duration::from_secs(u64::MAX)))
            .build()
            .unwrap_err();
        assert!(e.to_string().starts_with("--timeout: limits.timeout must be"), "{e}");
    }

    #[test]
    fn test_limits_stack_output_module_size() {
        let p = parse("[limits]\nstack = \"2 MiB\"\noutput = \"1 KiB\"\nmodule-size = \"1 MiB\"").unwrap();
        assert_eq!(p.limits().stack.value, 2 << 20);
        assert_eq!(p.limits().output.value, 1024);
        assert_eq!(p.limits().module_size.value, 1 << 20);
        assert!(err("[limits]\nstack = 16").to_string().contains("between 4 KiB"));
        assert!(err("[limits]\nmodule-size = 0").to_string().contains("between 1 byte"));
        assert_eq!(parse("[limits]\nhandles = 64").unwrap().limits().handles.value, 64);
        assert_eq!(parse("").unwrap().limits().handles.value, Limits::DEFAULT_HANDLES);
        assert!(
            err("[limits]\nhandles = 2")
                .to_string()
                .contains("limits.handles must be between 16")
        );
    }

    // See: #10
    #[test]
    fn limits_output_is_bounded_in_files_and_code() {
        let e = err("[limits]\noutput = 0");
        assert_eq!((e.key_name(), e.line()), (Some("limits.output"), Some(2)), "{e}");
        assert!(e.to_string().contains("between 1 byte and 4 GiB, not 0 B"), "{e}");
        assert!(err("[limits]\noutput = \"1 TiB\"").to_string().contains("4 GiB"));
        assert!(Policy::builder().output(u64::MAX).build().is_err());
        assert_eq!(Policy::builder().output(1).build().unwrap().limits().output.value, 1);
    }
}

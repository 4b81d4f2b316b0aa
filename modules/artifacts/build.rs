//! Builds every guest in `modules/src/bin` for wasm32-wasip1 and wasm32-wasip2 and writes
//! `$OUT_DIR/gen.rs`: two path constants per guest, one `foreach_<suite>!` macro per suite
//! and `ALL`. Shaped like the first version of wasmtime's test-programs artifacts crate.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The prefixes a guest's name may start with. Every suite gets a macro, even an empty one,
/// so the tests can name all of them before their guests exist.
const SUITES: &[&str] = &[
    "fs", "env", "stdio", "clocks", "random", "limits", "exit", "net", "cpu", "drill",
];

/// Guests that belong to no suite, and so to no `foreach_*!` macro.
const SUITELESS: &[&str] = &["hello"];

/// Core modules (`NAME`) and components (`NAME_COMPONENT`), in that order.
const TARGETS: [&str; 2] = ["wasm32-wasip1", "wasm32-wasip2"];

struct Guest {
    name: String,
    /// `None` for the suiteless guests.
    suite: Option<&'static str>,
    /// The guest's opening `//!` lines: what the host must grant and what it asserts.
    doc: Vec<String>,
    /// Where the build puts the `.wasm` for each of `TARGETS`.
    wasm: [PathBuf; 2],
}

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let modules_dir = manifest_dir.parent().unwrap().to_path_buf();
    let workspace_root = modules_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guests");

    emit_rerun_for_sources(&modules_dir, &workspace_root);
    // Read first, so a misnamed guest fails before the slow builds.
    let guests: Vec<Guest> = list_guest_sources(&modules_dir.join("src").join("bin"))
        .iter()
        .map(|source| read_guest(source, &target_dir))
        .collect();
    for target in TARGETS {
        ensure_target_installed(target);
        build_guests(&workspace_root, &target_dir, target);
    }
    for wasm in guests.iter().flat_map(|guest| &guest.wasm) {
        assert!(wasm.exists(), "the build did not produce `{}`", wasm.display());
    }
    let deps: BTreeSet<String> = guests.iter().flat_map(|guest| read_dep_info(&guest.wasm[0])).collect();
    for dep in deps {
        println!("cargo:rerun-if-changed={dep}");
    }
    let mut code = generate_code(&guests);
    let linked = build_linked_component(&modules_dir.join("linked"), &out_dir);
    writeln!(
        code,
        "/// `modules/linked/wasm_extended_const.rs`, a PIC library built with extended-const and\n/// linked into a component that exports `count: func(i: u32) -> u32`.\npub const WASM_EXTENDED_CONST_COMPONENT: &str = {:?};",
        linked.to_str().expect("guest paths must be UTF-8")
    )
    .unwrap();
    fs::write(out_dir.join("gen.rs"), code).unwrap();
}

/// Builds `linked/wasm_extended_const.rs` as a position-independent shared
/// library with extended constant expressions (what wasi-sdk's `-shared`
/// libraries of a Python component are), and links it into a component the
/// way `wasm-tools component link` does: a small `env` module gives it its
/// memory, stack pointer and `__memory_base`, and `count` is lifted.
fn build_linked_component(linked_dir: &Path, out_dir: &Path) -> PathBuf {
    let source = linked_dir.join("wasm_extended_const.rs");
    println!("cargo:rerun-if-changed={}", source.display());
    let library = out_dir.join("wasm_extended_const.so.wasm");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args([
        "--edition",
        "2024",
        "--target",
        "wasm32-wasip1",
        "--crate-type",
        "cdylib",
        "-O",
    ])
    .args([
        "-C",
        "panic=abort",
        "-C",
        "relocation-model=pic",
        "-C",
        "target-feature=+extended-const",
    ])
    .args(["-C", "link-arg=--experimental-pic", "-C", "link-arg=-shared", "-o"])
    .arg(&library)
    .arg(&source)
    .stdout(Stdio::from(std::io::stderr()));
    let status = cmd
        .status()
        .unwrap_or_else(|err| panic!("failed to run {cmd:?}: {err}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
    let component = out_dir.join("wasm_extended_const.component.wasm");
    fs::write(&component, link_component(&fs::read(&library).unwrap())).unwrap();
    component
}

/// A component instantiating `library` with an `env` core module, and lifting
/// its `count` export as `count: func(i: u32) -> u32`. Written out by hand
/// (the component binary format's sections, in order) to need no encoder.
fn link_component(library: &[u8]) -> Vec<u8> {
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(&mut component, 1, &env_module()); // core module 0: env
    section(&mut component, 1, library); // core module 1: the library
    // Core instances: 0 = env, 1 = the library given env as `env`.
    let mut instances = vec![2, 0x00, 0, 0, 0x00, 1, 1];
    name(&mut instances, "env");
    instances.extend([0x12, 0]);
    section(&mut component, 2, &instances);
    // Core func 0: the library instance's `count`.
    let mut alias = vec![1, 0x00, 0x00, 0x01, 1];
    name(&mut alias, "count");
    section(&mut component, 6, &alias);
    // Type 0: func(i: u32) -> u32.
    let mut types = vec![1, 0x40, 1];
    name(&mut types, "i");
    types.extend([0x79, 0x00, 0x79]);
    section(&mut component, 7, &types);
    // Func 0: core func 0 lifted with type 0, no options.
    section(&mut component, 8, &[1, 0x00, 0x00, 0, 0, 0]);
    let mut export = vec![1, 0x00];
    name(&mut export, "count");
    export.extend([0x01, 0, 0x00]);
    section(&mut component, 11, &export);
    component
}

/// The `env` module a dynamic linker gives a PIC library: a memory, the
/// stack pointer (the stack grows down from the end of the first page),
/// `__memory_base` (data after the stack) and `__table_base`.
fn env_module() -> Vec<u8> {
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(&mut module, 5, &[1, 0x00, 2]);
    // i32 globals: (mut) 65536, 65536, 0; 65536 is `80 80 04` in signed LEB128.
    let globals = [
        [0x7f, 0x01, 0x41, 0x80, 0x80, 0x04, 0x0b].as_slice(),
        &[0x7f, 0x00, 0x41, 0x80, 0x80, 0x04, 0x0b],
        &[0x7f, 0x00, 0x41, 0x00, 0x0b],
    ];
    section(&mut module, 6, &[&[3][..], &globals.concat()].concat());
    let mut exports = vec![4];
    for (export, kind, index) in [
        ("memory", 0x02, 0),
        ("__stack_pointer", 0x03, 0),
        ("__memory_base", 0x03, 1),
        ("__table_base", 0x03, 2),
    ] {
        name(&mut exports, export);
        exports.extend([kind, index]);
    }
    section(&mut module, 7, &exports);
    module
}

/// Appends a section: its id, its size, its contents.
fn section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    leb128(out, contents.len());
    out.extend_from_slice(contents);
}

/// Appends a name: its length, its bytes.
fn name(out: &mut Vec<u8>, name: &str) {
    leb128(out, name.len());
    out.extend_from_slice(name.as_bytes());
}

fn leb128(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn emit_rerun_for_sources(modules_dir: &Path, workspace_root: &Path) {
    // A directory is scanned recursively, which also catches newly added guests.
    let src = modules_dir.join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    for entry in fs::read_dir(src.join("bin")).unwrap() {
        println!("cargo:rerun-if-changed={}", entry.unwrap().path().display());
    }
    println!("cargo:rerun-if-changed={}", modules_dir.join("Cargo.toml").display());
    // The workspace manifest holds the release profile the guests are built with.
    println!("cargo:rerun-if-changed={}", workspace_root.join("Cargo.toml").display());
}

/// `modules/src/bin/*.rs`, sorted, so the generated code is stable.
fn list_guest_sources(bin_dir: &Path) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = fs::read_dir(bin_dir)
        .unwrap_or_else(|err| panic!("failed to list `{}`: {err}", bin_dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
        .collect();
    sources.sort();
    sources
}

fn ensure_target_installed(target: &str) {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|err| panic!("failed to run `{} --print sysroot`: {err}", rustc.display()));
    assert!(
        output.status.success(),
        "`{} --print sysroot` failed with {}",
        rustc.display(),
        output.status
    );
    let sysroot = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    let target_lib = sysroot.join("lib").join("rustlib").join(target);
    if target_lib.exists() {
        return;
    }

    println!("cargo:warning=installing {target}");
    let installed = Command::new("rustup")
        .args(["target", "add", target])
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .is_ok_and(|status| status.success());
    // Fail rather than skip: a missing target would otherwise quietly drop every guest test.
    if !installed || !target_lib.exists() {
        panic!(
            "the {target} target is missing: run `rustup target add wasm32-wasip1 wasm32-wasip2` \
             (the repo's rust-toolchain.toml lists it)"
        );
    }
}

fn build_guests(workspace_root: &Path, target_dir: &Path, target: &str) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .args(["build", "--release", "-p", "wasmcell-modules", "--target", target])
        .env("CARGO_TARGET_DIR", target_dir)
        // These carry the host build's flags and wrappers (say `-C target-cpu=native`, or
        // clippy-driver under `cargo clippy`), which are meant for the host, not the guests.
        // The jobserver (`CARGO_MAKEFLAGS`) is kept so the nested build shares the job limit.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER")
        // Cargo reads a build script's stdout for directives; the nested build's belongs on stderr.
        .stdout(Stdio::from(std::io::stderr()));
    let status = cmd
        .status()
        .unwrap_or_else(|err| panic!("failed to run {cmd:?}: {err}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}

fn read_guest(source: &Path, target_dir: &Path) -> Guest {
    let name = source.file_stem().unwrap().to_str().unwrap().to_string();
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "guest `{name}` must be named in snake_case, like `fs_escape_dotdot`"
    );
    let suite = suite_of(&name);
    let doc: Vec<String> = fs::read_to_string(source)
        .unwrap()
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .map(|line| line.trim().to_string())
        .collect();
    assert!(
        !doc.is_empty(),
        "`{}` must open with a `//!` line saying what the host must grant",
        source.display()
    );
    let wasm = TARGETS.map(|target| {
        let release_dir = target_dir.join(target).join("release");
        release_dir.join(format!("{name}.wasm"))
    });
    Guest { name, suite, doc, wasm }
}

/// The sources the nested build read for `wasm`, from the dep-info (`.d`) file beside it.
fn read_dep_info(wasm: &Path) -> Vec<String> {
    let dep_info = wasm.with_extension("d");
    let text =
        fs::read_to_string(&dep_info).unwrap_or_else(|err| panic!("failed to read `{}`: {err}", dep_info.display()));
    let mut paths = Vec::new();
    for line in text.lines() {
        // Each line is `output: input input ...`; spaces inside a path are escaped as `\ `.
        let Some((_, inputs)) = line.split_once(": ") else {
            continue;
        };
        let mut path = String::new();
        let mut chars = inputs.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => path.extend(chars.next()),
                ' ' => paths.extend((!path.is_empty()).then(|| std::mem::take(&mut path))),
                _ => path.push(c),
            }
        }
        paths.extend((!path.is_empty()).then_some(path));
    }
    paths
}

fn suite_of(name: &str) -> Option<&'static str> {
    if SUITELESS.contains(&name) {
        return None;
    }
    let prefix = name.split('_').next().unwrap();
    match SUITES.iter().find(|suite| **suite == prefix) {
        Some(suite) => Some(suite),
        None => panic!(
            "guest `{name}` has an unknown suite prefix `{prefix}`; known suites: {}",
            SUITES.join(", ")
        ),
    }
}

fn generate_code(guests: &[Guest]) -> String {
    let mut code = String::from("// @generated by modules/artifacts/build.rs\n\n");
    let mut suites: BTreeMap<&str, Vec<&str>> = SUITES.iter().map(|s| (*s, Vec::new())).collect();
    for guest in guests {
        let Guest { name, suite, doc, wasm } = guest;
        let shouty = name.to_uppercase();
        let doc: String = doc.iter().map(|line| format!("/// {line}\n")).collect();
        let [p1, p2] = wasm.each_ref().map(|p| p.to_str().expect("guest paths must be UTF-8"));
        write!(code, "/// `{name}` as a wasm32-wasip1 core module.\n///\n{doc}").unwrap();
        writeln!(code, "pub const {shouty}: &str = {p1:?};").unwrap();
        write!(code, "/// `{name}` as a wasm32-wasip2 component.\n///\n{doc}").unwrap();
        writeln!(code, "pub const {shouty}_COMPONENT: &str = {p2:?};\n").unwrap();
        if let Some(suite) = suite {
            suites.get_mut(suite).unwrap().push(name);
        }
    }

    for suite in SUITES {
        writeln!(code, "/// Invokes `$mac!(<guest>);` once for each `{suite}_*` guest.").unwrap();
        writeln!(code, "#[macro_export]\nmacro_rules! foreach_{suite} {{").unwrap();
        writeln!(code, "    ($mac:ident) => {{").unwrap();
        for name in &suites[suite] {
            writeln!(code, "        $mac!({name});").unwrap();
        }
        writeln!(code, "    }};\n}}\n").unwrap();
    }

    writeln!(
        code,
        "/// Every guest as `(name, core module path, component path)`, sorted by name."
    )
    .unwrap();
    writeln!(code, "pub const ALL: &[(&str, &str, &str)] = &[").unwrap();
    for guest in guests {
        let shouty = guest.name.to_uppercase();
        writeln!(code, "    ({:?}, {shouty}, {shouty}_COMPONENT),", guest.name).unwrap();
    }
    writeln!(code, "];").unwrap();
    code
}

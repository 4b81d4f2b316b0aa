//! The compile cache against a guest that can write it: a real guest, run
//! with a read-write grant over the cache folder, swaps or patches compiled
//! code and forges stamps; the next run of the victim must run the victim.
//! Every test runs the real binary with a cache in a temporary folder.
// See: #20

use crate::{wait_for, wasmcell_command};
use std::path::{Path, PathBuf};
use std::process::Output;
use wasmcell_artifacts::{ENV_ARGS, FS_OPS, HELLO};

const VICTIM_SAYS: &str = "hello from wasmcell\n";

fn run(args: &[&str]) -> Output {
    wait_for(wasmcell_command().args(args).spawn().expect("spawn wasmcell"))
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

#[track_caller]
fn assert_ran(out: &Output, stdout: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "status {:?}, stderr:\n{err}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stdout), stdout, "stderr:\n{err}");
}

/// The `.cwasm` entries in `cache`, sorted.
fn entries(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cache)
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".cwasm"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A workspace `ws` with the cache folder `ws/cache` inside it; the victim
/// (`hello`) and another guest (`env_args`) each ran once with that cache,
/// from a run that grants nothing. Returns the workspace and the names of the
/// victim's and the other guest's entries.
fn warm_cache_in_workspace(tmp: &Path) -> (PathBuf, String, String) {
    let ws = tmp.join("ws");
    let cache = ws.join("cache");
    std::fs::create_dir(&ws).unwrap();
    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
    let victim = entries(&cache);
    assert_eq!(victim.len(), 1, "{victim:?}");
    assert_ran(&run(&["run", "--cache-dir", s(&cache), ENV_ARGS]), "env_args.wasm\n");
    let other: Vec<_> = entries(&cache).into_iter().filter(|e| *e != victim[0]).collect();
    assert_eq!(other.len(), 1, "{other:?}");
    (ws, victim[0].clone(), other[0].clone())
}

/// `fs_ops` with `ws` granted read-write at `/ws` and the cache at
/// `ws/cache`: the run whose guest plants the attack.
fn tamper(ws: &Path, ops: &[&str]) -> Output {
    let cache = ws.join("cache");
    let grant = format!("{}::/ws", s(ws));
    let mut args = vec!["run", "--cache-dir", s(&cache), "--dir", &grant, FS_OPS];
    args.extend_from_slice(ops);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The file offset and size of the `.text` section of an ELF64 little-endian
/// file (wasmtime's compiled code), where the guest's functions are.
fn text_section(elf: &[u8]) -> (usize, usize) {
    let u16_at = |at: usize| u16::from_le_bytes(elf[at..at + 2].try_into().unwrap()) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) as usize;
    let u64_at = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..4], b"\x7fELF", "compiled code is an ELF file");
    let (shoff, shentsize, shnum, shstrndx) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(header)
        .find(|&h| elf[names + u32_at(h)..].starts_with(b".text\0"))
        .map(|h| (u64_at(h + 0x18), u64_at(h + 0x20)))
        .expect("a .text section")
}

#[test]
fn a_cache_entry_a_guest_copied_over_another_is_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let (ws, victim, other) = warm_cache_in_workspace(tmp.path());
    let cache = ws.join("cache");
    let copy = format!("cp:/ws/cache/{other}:/ws/cache/{victim}");
    let out = tamper(&ws, &[&copy]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-> ok"),
        "the guest copied"
    );
    let planted = std::fs::read(cache.join(&victim)).unwrap();
    assert_eq!(planted, std::fs::read(cache.join(&other)).unwrap());

    // The victim runs its own code, and its entry is compiled anew.
    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
    assert_ne!(std::fs::read(cache.join(&victim)).unwrap(), planted, "rewritten");
    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
}

#[test]
fn compiled_code_a_guest_patched_is_not_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (ws, victim, _) = warm_cache_in_workspace(tmp.path());
    let cache = ws.join("cache");
    // Every byte of the victim's functions becomes `int3`: code the host
    // ran would stop it with SIGTRAP.
    let (offset, len) = text_section(&std::fs::read(cache.join(&victim)).unwrap());
    let patch = format!("fill:/ws/cache/{victim}:{offset}:{len}:204");
    tamper(&ws, &[&patch]);
    let planted = std::fs::read(cache.join(&victim)).unwrap();
    assert!(planted[offset..offset + len].iter().all(|&b| b == 0xcc));

    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
    assert_ne!(std::fs::read(cache.join(&victim)).unwrap(), planted, "rewritten");
}

/// The victim's stamp record: the `.stamp` whose text starts with the
/// device and inode of `guest`.
#[cfg(unix)]
fn stamp_of(cache: &Path, guest: &str) -> PathBuf {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(guest).unwrap();
    let prefix = format!("{} {} ", meta.dev(), meta.ino());
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "stamp"))
        .find(|p| std::fs::read_to_string(p).unwrap().starts_with(&prefix))
        .expect("the victim's file was stamped")
}

/// Waits until `path` last changed over 2 seconds ago, so that the cache
/// stamps it (a freshly built guest is not stamped yet).
#[cfg(unix)]
fn settle(path: &str) {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).unwrap();
    let changed = std::time::UNIX_EPOCH + std::time::Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
    let age = changed.elapsed().unwrap_or_default();
    let needed = std::time::Duration::from_millis(2500);
    if age < needed {
        std::thread::sleep(needed - age);
    }
}

#[cfg(unix)]
#[test]
fn a_stamp_a_guest_rewrote_to_name_other_code_is_not_believed() {
    settle(HELLO);
    settle(ENV_ARGS);
    let tmp = tempfile::tempdir().unwrap();
    let (ws, victim, other) = warm_cache_in_workspace(tmp.path());
    let cache = ws.join("cache");
    // The record says which bytes the victim's file holds; the guest makes
    // it name the other guest's bytes, whose compiled code is a valid entry.
    let stamp = stamp_of(&cache, HELLO);
    let (victim_hash, other_hash) = (&victim[..64], &other[..64]);
    let forged = std::fs::read_to_string(&stamp)
        .unwrap()
        .replace(victim_hash, other_hash);
    assert!(forged.contains(other_hash) && !forged.contains(':'), "{forged}");
    let name = stamp.file_name().unwrap().to_str().unwrap();
    let write = format!("write:/ws/cache/{name}:{forged}");
    tamper(&ws, &[&write]);
    assert_eq!(std::fs::read_to_string(&stamp).unwrap(), forged, "the guest wrote it");

    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
    assert_ne!(std::fs::read_to_string(&stamp).unwrap(), forged, "recorded anew");
    assert_ran(&run(&["run", "--cache-dir", s(&cache), HELLO]), VICTIM_SAYS);
}

#[test]
fn a_run_whose_grant_reaches_the_cache_neither_reads_nor_writes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let cache = ws.join("cache");
    let grant = format!("{}::/ws", s(&ws));
    let warned_of = |out: &Output, guest: &str| {
        assert_ran(out, VICTIM_SAYS);
        let err = String::from_utf8_lossy(&out.stderr);
        let needles = ["warning: not using the compile cache", guest, "--cache-dir"];
        assert!(needles.iter().all(|n| err.contains(n)), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    };
    let warned = |out: &Output| warned_of(out, "at `/ws`");

    // Named by --cache-dir, by WASMCELL_CACHE_DIR, by XDG_CACHE_HOME, and
    // through a link that leads into the grant.
    warned(&run(&["run", "--cache-dir", s(&cache), "--dir", &grant, HELLO]));
    let by_env = wasmcell_command()
        .env("WASMCELL_CACHE_DIR", &cache)
        .args(["run", "--dir", &grant, HELLO])
        .output()
        .unwrap();
    warned(&by_env);
    let by_xdg = wasmcell_command()
        .env_remove("WASMCELL_CACHE_DIR")
        .env("XDG_CACHE_HOME", &ws)
        .args(["run", "--dir", &grant, HELLO])
        .output()
        .unwrap();
    warned(&by_xdg);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&ws, tmp.path().join("link")).unwrap();
        let linked = tmp.path().join("link/cache");
        warned(&run(&["run", "--cache-dir", s(&linked), "--dir", &grant, HELLO]));
    }
    assert!(!cache.exists() && !ws.join("wasmcell").exists(), "never created");

    // A file granted read-write inside the cache folder reaches it too; a
    // read-only grant of the whole workspace does not.
    std::fs::create_dir(&cache).unwrap();
    std::fs::write(cache.join("notes.txt"), "").unwrap();
    let file = format!("{}::/notes.txt", s(&cache.join("notes.txt")));
    warned_of(
        &run(&["run", "--cache-dir", s(&cache), "--file", &file, HELLO]),
        "at `/notes.txt`",
    );
    assert!(entries(&cache).is_empty());
    let read_only = run(&["run", "--cache-dir", s(&cache), "--ro-dir", &grant, HELLO]);
    assert_ran(&read_only, VICTIM_SAYS);
    assert!(
        read_only.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&read_only.stderr)
    );
    assert_eq!(entries(&cache).len(), 1);
}

#[test]
fn check_says_when_a_policys_grant_reaches_the_default_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let policy = tmp.path().join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[[fs.dirs]]\nhost = {:?}\nguest = \"/ws\"\naccess = \"read-write\"\n",
            s(&ws)
        ),
    )
    .unwrap();
    let check = |cache: &Path| {
        let out = wasmcell_command()
            .env("WASMCELL_CACHE_DIR", cache)
            .args(["check", s(&policy)])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let inside = check(&ws.join("cache"));
    assert!(
        inside.contains("compile cache:\n  not using the compile cache"),
        "{inside}"
    );
    assert!(inside.contains("`/ws`"), "{inside}");
    let outside = check(&tmp.path().join("cache"));
    assert!(!outside.contains("compile cache"), "{outside}");
}

#[test]
fn a_sandbox_whose_grant_reaches_the_cache_loads_without_it() {
    use wasmcell::policy::Access;
    use wasmcell::{DiskCache, Engine, EngineConfig, Policy, Sandbox};
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let engine = || Engine::with_disk_cache(EngineConfig::default(), DiskCache::open(&cache).unwrap()).unwrap();
    engine().load(HELLO, u64::MAX).unwrap();

    let policy = Policy::builder()
        .grant_dir(tmp.path(), "/w", Access::ReadWrite)
        .build()
        .unwrap();
    let sandbox = Sandbox::builder().engine(engine()).policy(policy).build().unwrap();
    let why = sandbox.cache_in_grant().expect("the grant reaches the cache");
    assert_eq!((why.dir(), why.guest()), (cache.as_path(), "/w"));
    sandbox.load(HELLO).unwrap();
    let stats = sandbox.engine().cache_stats();
    assert_eq!((stats.compiled, stats.disk_hits), (1, 0), "{stats:?}");

    // A read-only grant of the same folder leaves the cache in use.
    let policy = Policy::builder()
        .grant_dir(tmp.path(), "/w", Access::ReadOnly)
        .build()
        .unwrap();
    let sandbox = Sandbox::builder().engine(engine()).policy(policy).build().unwrap();
    assert!(sandbox.cache_in_grant().is_none());
    sandbox.load(HELLO).unwrap();
    assert_eq!(sandbox.engine().cache_stats().disk_hits, 1);
}

#[test]
fn precompiled_code_inside_a_read_write_grant_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let cwasm = ws.join("hello.cwasm");
    let out = run(&["compile", HELLO, "-o", s(&cwasm)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let grant = format!("{}::/ws", s(&ws));

    let out = run(&["run", "--allow-precompiled", "--dir", &grant, s(&cwasm)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains("inside the read-write grant at `/ws`"), "{err}");
    assert!(out.stdout.is_empty());

    let out = run(&["run", "--allow-precompiled", "--ro-dir", &grant, s(&cwasm)]);
    assert_ran(&out, VICTIM_SAYS);
}

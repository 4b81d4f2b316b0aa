//! `[module] sha256`: a pinned policy runs only the modules it names, refused
//! before compiling everywhere a module is loaded (run, --invoke, matrix in
//! process and in workers, precompiled code, the library), and every report
//! and audit names the SHA-256 of the module that ran.

use crate::{BIN, wait_for, wasmcell_command};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Output;
use wasmcell::{Engine, EngineConfig, LoadError, LoadErrorKind, Policy, Sandbox};
use wasmcell_artifacts::{FS_READ, HELLO, HELLO_COMPONENT};

fn sha256(path: &str) -> String {
    let digest = Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn wasmcell(args: &[&str]) -> Output {
    wait_for(wasmcell_command().args(args).spawn().expect("spawn wasmcell"))
}

/// A policy file in `dir` pinned to `digests`, extending nothing.
fn pinned(dir: &Path, name: &str, digests: &[&str]) -> String {
    let list: Vec<String> = digests.iter().map(|d| format!("\"{d}\"")).collect();
    let path = dir.join(name);
    std::fs::write(&path, format!("[module]\nsha256 = [{}]\n", list.join(", "))).unwrap();
    s(&path).to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `wasmcell matrix --format json` over `modules` and the policies in
/// `policies`, with `extra` flags: the report.
fn matrix_json(modules: &[&str], policies: &Path, extra: &[&str]) -> Value {
    let out = std::process::Command::new(BIN)
        .arg("matrix")
        .arg("--modules")
        .args(modules)
        .args(["--policies", s(policies), "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)))
}

/// The `.cwasm` entries in a compile cache folder.
fn cache_entries(cache: &Path) -> usize {
    std::fs::read_dir(cache)
        .map(|dir| {
            dir.filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".cwasm"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_pinned_policy_runs_its_module_and_reports_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let hello = sha256(HELLO);
    // Digests are compared without regard to case, as `sha256sum` users paste them.
    let policy = pinned(tmp.path(), "p.toml", &[&hello.to_ascii_uppercase()]);
    let report = tmp.path().join("report.json");
    let out = wasmcell(&["run", "--policy", &policy, "--report", s(&report), HELLO]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from wasmcell\n");
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["module_sha256"], hello.as_str());
}

#[test]
fn a_pinned_policy_refuses_another_module_before_compiling_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let hello = sha256(HELLO);
    let policy = pinned(tmp.path(), "p.toml", &[&hello]);
    for (module, invoke) in [(FS_READ, None), (HELLO_COMPONENT, None), (FS_READ, Some("_start()"))] {
        let mut args = vec!["run", "--cache-dir", s(&cache), "--policy", &policy];
        if let Some(call) = invoke {
            args.extend(["--invoke", call]);
        }
        args.push(module);
        let out = wasmcell(&args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(126), "{module}: {err}");
        assert!(err.contains(&format!("its SHA-256 is {}", sha256(module))), "{err}");
        assert!(err.contains(&format!("allows only {hello}")), "{err}");
        assert!(err.contains("module.sha256 in"), "{err}");
        assert!(text(&out.stdout).is_empty());
    }
    assert_eq!(cache_entries(&cache), 0, "nothing may be compiled for a refused module");
}

/// One byte changed is another module: refused as such, before validation
/// would have said what else is wrong with it.
#[test]
fn a_tampered_module_is_refused_as_another_module() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(HELLO).unwrap();
    let policy = pinned(tmp.path(), "p.toml", &[&sha256(HELLO)]);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let tampered = tmp.path().join("hello.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = wasmcell(&["run", "--policy", &policy, s(&tampered)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(
        err.contains(&format!("its SHA-256 is {}", sha256(s(&tampered)))),
        "{err}"
    );
}

/// The compile cache records which bytes a file holds (a stamp, for files
/// that have not changed for a while, as the built guests have not), and
/// loads its code without reading the file again: a module that ran unpinned
/// before is still refused by a pin that does not name it.
#[test]
fn the_compile_cache_does_not_bypass_the_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let out = wasmcell(&["run", "--cache-dir", s(&cache), HELLO]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(cache_entries(&cache), 1);
    let stamps = std::fs::read_dir(&cache)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".stamp"));
    assert_eq!(stamps.count(), 1, "the cache holds the stamp the fast load uses");
    let policy = pinned(tmp.path(), "p.toml", &[&sha256(FS_READ)]);
    let out = wasmcell(&["run", "--cache-dir", s(&cache), "--policy", &policy, HELLO]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
}

/// `wasmcell compile` records which WebAssembly its code came from, so a
/// pinned policy admits precompiled code compiled from a pinned module, and
/// refuses code from another or code that records nothing; `compile` itself
/// honours the pin.
#[test]
fn a_pinned_policy_admits_precompiled_code_only_from_its_module() {
    let tmp = tempfile::tempdir().unwrap();
    let cwasm = tmp.path().join("hello.cwasm");
    let out = wasmcell(&["compile", HELLO, "-o", s(&cwasm)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let hello = sha256(HELLO);
    let policy = pinned(tmp.path(), "p.toml", &[&hello]);
    let report = tmp.path().join("report.json");
    let out = wasmcell(&[
        "run",
        "--policy",
        &policy,
        "--allow-precompiled",
        "--report",
        s(&report),
        s(&cwasm),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["module_sha256"], hello.as_str());

    let other = pinned(tmp.path(), "other.toml", &[&sha256(FS_READ)]);
    let out = wasmcell(&["run", "--policy", &other, "--allow-precompiled", s(&cwasm)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(
        err.contains(&format!("it was compiled from WebAssembly whose SHA-256 is {hello}")),
        "{err}"
    );

    // Code without wasmcell's header (as `wasmtime compile` writes it) records nothing.
    let bare = tmp.path().join("bare.cwasm");
    std::fs::write(&bare, &std::fs::read(&cwasm).unwrap()[42..]).unwrap();
    let out = wasmcell(&["run", "--allow-precompiled", s(&bare)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "bare code still runs unpinned: {}",
        text(&out.stderr)
    );
    let out = wasmcell(&["run", "--policy", &policy, "--allow-precompiled", s(&bare)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains("does not record the SHA-256"), "{err}");

    let out = wasmcell(&[
        "compile",
        "--policy",
        &other,
        HELLO,
        "-o",
        s(&tmp.path().join("x.cwasm")),
    ]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(!tmp.path().join("x.cwasm").exists());
}

#[test]
fn a_layer_cannot_widen_the_pins_it_extends() {
    let tmp = tempfile::tempdir().unwrap();
    let (hello, fs_read) = (sha256(HELLO), sha256(FS_READ));
    pinned(tmp.path(), "base.toml", &[&hello]);
    let top = tmp.path().join("top.toml");
    std::fs::write(
        &top,
        format!("extends = [\"base.toml\"]\n\n[module]\nsha256 = [\"{hello}\", \"{fs_read}\"]\n"),
    )
    .unwrap();
    let out = wasmcell(&["check", s(&top)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:4:", top.display())),
        "names the line that widens: {err}"
    );
    assert!(
        err.contains(&format!("module.sha256 lists {fs_read}, which module.sha256 in")),
        "{err}"
    );

    // Narrowing is allowed, and `check` lists what is left.
    let narrow = tmp.path().join("narrow.toml");
    let both = pinned(tmp.path(), "both.toml", &[&hello, &fs_read]);
    std::fs::write(
        &narrow,
        format!("extends = [\"both.toml\"]\n[module]\nsha256 = \"{fs_read}\"\n"),
    )
    .unwrap();
    let out = wasmcell(&["check", s(&narrow)]);
    let summary = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(summary.contains(&format!("  sha256 {fs_read}\n")), "{summary}");
    assert!(!summary.contains(&hello), "{summary}");
    let out = wasmcell(&["check", &both]);
    assert!(text(&out.stdout).contains(&format!("  sha256 {hello}\n  sha256 {fs_read}\n")));
    let out = wasmcell(&["run", "--policy", s(&narrow), HELLO]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
}

#[test]
fn bad_pins_are_refused_with_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (value, says) in [
        ("\"abc\"", "64 hexadecimal digits"),
        ("[]", "lists no digest"),
        ("1", "module.sha256"),
    ] {
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, format!("# pins\n[module]\nsha256 = {value}\n")).unwrap();
        let out = wasmcell(&["check", s(&path)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(
            err.starts_with(&format!("error: {}:3:", path.display())),
            "{value}: {err}"
        );
        assert!(err.contains(says), "{value}: {err}");
    }
}

/// The matrix refuses an unpinned module's cell as a load error (126) and
/// reports the digest of each module that ran, in process and in workers.
#[test]
fn the_matrix_honours_pins_and_reports_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    pinned(&policies, "hello-only.toml", &[&sha256(HELLO)]);
    for extra in [&[][..], &["--in-process"][..]] {
        let json = matrix_json(&[HELLO, FS_READ], &policies, extra);
        let cells = json["cells"].as_array().unwrap();
        let cell = |m: &str| cells.iter().find(|c| c["module"] == m).unwrap();
        assert_eq!(
            cell("hello")["outcome"]["module_sha256"],
            sha256(HELLO).as_str(),
            "{extra:?}: {json:#}"
        );
        let refused = cell("fs_read").to_string();
        assert_eq!(cell("fs_read")["status"], "load-error", "{extra:?}: {refused}");
        assert!(
            refused.contains(&format!("its SHA-256 is {}", sha256(FS_READ))),
            "{extra:?}: {refused}"
        );
    }
}

#[test]
fn the_audit_opens_with_the_module_and_its_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit.jsonl");
    let out = wasmcell(&["run", "--audit", s(&audit), HELLO]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let first: Value = serde_json::from_str(std::fs::read_to_string(&audit).unwrap().lines().next().unwrap()).unwrap();
    let policy = Policy::deny_all().sha256();
    let want = serde_json::json!({"module": "hello.wasm", "module_sha256": sha256(HELLO), "policy_sha256": policy});
    assert_eq!(first, want);
}

/// The report names the policy by the digest `wasmcell check` prints, the
/// same for the same rules however they are layered, in a run and in the
/// matrix's workers.
#[test]
fn reports_carry_the_policy_digest_check_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("base.toml"), "[limits]\nfuel = 5000000\n").unwrap();
    std::fs::write(
        d.join("top.toml"),
        "extends = [\"base.toml\"]\n[env]\nvars = { A = \"1\" }\n",
    )
    .unwrap();
    std::fs::write(
        d.join("flat.toml"),
        "[limits]\nfuel = 5000000\n[env]\nvars = { A = \"1\" }\n",
    )
    .unwrap();
    let digest_of = |name: &str| {
        let out = wasmcell(&["check", s(&d.join(name))]);
        let summary = text(&out.stdout);
        let line = summary
            .lines()
            .find(|l| l.starts_with("  sha256 "))
            .unwrap_or_else(|| panic!("{summary}"));
        line.split_whitespace().nth(1).unwrap().to_string()
    };
    let (top, flat, base) = (digest_of("top.toml"), digest_of("flat.toml"), digest_of("base.toml"));
    assert_eq!(top, flat);
    assert_ne!(top, base);
    assert_eq!(top.len(), 64);
    let report = d.join("report.json");
    let top_policy = d.join("top.toml");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--policy", s(&top_policy), "--report", s(&report)];
        args.extend(extra);
        args.push(HELLO);
        let out = wasmcell(&args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let json: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        json["policy_sha256"].as_str().unwrap().to_string()
    };
    assert_eq!(run(&[]), top);
    // A flag changes what is granted, so the digest.
    assert_ne!(run(&["--env", "B=2"]), top);

    let policies = d.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::copy(d.join("flat.toml"), policies.join("flat.toml")).unwrap();
    let json = matrix_json(&[HELLO], &policies, &[]);
    assert_eq!(json["cells"][0]["outcome"]["policy_sha256"], flat.as_str(), "{json:#}");
}

/// A program loaded by an engine alone (no policy) meets the pins of the
/// sandbox that runs it.
#[test]
fn a_program_loaded_elsewhere_is_refused_by_a_pinned_sandbox() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let program = engine.load(FS_READ, 64 << 20).unwrap();
    assert_eq!(program.sha256().as_deref(), Some(sha256(FS_READ).as_str()));
    let policy = Policy::builder().module_sha256(&[&sha256(HELLO)]).build().unwrap();
    let sandbox = Sandbox::builder().engine(engine).policy(policy).build().unwrap();
    let err = sandbox.run_program(&program, &[] as &[&str]).unwrap_err();
    let load = err.downcast_ref::<LoadError>().expect("a load error");
    assert!(
        matches!(load.kind(), LoadErrorKind::ModulePin { found: Some(_), .. }),
        "{load}"
    );
    assert_eq!(wasmcell::exit_code_for_error(&err), 126);
    // Over a pinned policy the builder may only narrow.
    let widened = Policy::builder()
        .module_sha256(&[&sha256(HELLO)])
        .module_sha256(&[&sha256(HELLO), &sha256(FS_READ)])
        .build()
        .unwrap_err();
    assert!(widened.to_string().contains("may only narrow"), "{widened}");
}

/// A folder with a key pair (`wasmcell keygen`), a policy asking for its
/// signature, and `hello` signed with it (`wasmcell sign`).
struct Signed {
    dir: tempfile::TempDir,
}

impl Signed {
    fn new() -> Signed {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (key, name) in [("release", "release"), ("other", "other")] {
            let (sk, pk) = (d.join(format!("{key}.key")), d.join(format!("{name}.pub")));
            let out = wasmcell(&["keygen", "--secret-key", s(&sk), "--public-key", s(&pk)]);
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        }
        std::fs::write(d.join("signed.toml"), "[module]\nsigned-by = [\"release.pub\"]\n").unwrap();
        let signed = Signed { dir };
        signed.sign("release", HELLO, "hello.wasm");
        signed
    }

    fn path(&self, name: &str) -> String {
        s(&self.dir.path().join(name)).to_string()
    }

    fn sign(&self, key: &str, module: &str, output: &str) {
        let out = wasmcell(&[
            "sign",
            "--secret-key",
            &self.path(&format!("{key}.key")),
            module,
            "-o",
            &self.path(output),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }

    /// Runs `module` under the signed-by policy, with `extra` flags.
    fn run(&self, extra: &[&str], module: &str) -> Output {
        let policy = self.path("signed.toml");
        let mut args = vec!["run", "--policy", &policy];
        args.extend(extra);
        args.push(module);
        wasmcell(&args)
    }
}

#[track_caller]
fn assert_refused_signature(out: &Output, reason: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(126), "{err}");
    assert!(err.contains(reason), "expected {reason:?}: {err}");
    assert!(err.contains("module.signed-by in"), "{err}");
    assert!(text(&out.stdout).is_empty(), "nothing may run");
}

#[test]
fn a_module_signed_with_a_listed_key_runs_and_no_other_does() {
    let keys = Signed::new();
    let out = keys.run(&[], &keys.path("hello.wasm"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from wasmcell\n");

    // Unsigned (or the signature stripped: the module as it was).
    assert_refused_signature(&keys.run(&[], HELLO), "it is not signed");
    // Signed with a key the policy does not name.
    keys.sign("other", HELLO, "by-other.wasm");
    assert_refused_signature(
        &keys.run(&[], &keys.path("by-other.wasm")),
        "no signature on it verifies with the key",
    );
    // One byte changed after signing.
    let mut bytes = std::fs::read(keys.path("hello.wasm")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(keys.path("tampered.wasm"), &bytes).unwrap();
    assert_refused_signature(
        &keys.run(&[], &keys.path("tampered.wasm")),
        "changed after it was signed",
    );
    // A component, signed the same way.
    keys.sign("release", HELLO_COMPONENT, "hello-component.wasm");
    let out = keys.run(&[], &keys.path("hello-component.wasm"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_refused_signature(&keys.run(&[], HELLO_COMPONENT), "it is not signed");
    // --invoke loads as a library, through the same check.
    assert_refused_signature(&keys.run(&["--invoke", "_start()"], HELLO), "it is not signed");
}

#[test]
fn a_detached_signature_verifies_only_its_module() {
    let keys = Signed::new();
    let (sig, module) = (keys.path("hello.sig"), keys.path("plain.wasm"));
    let out = wasmcell(&[
        "sign",
        "--secret-key",
        &keys.path("release.key"),
        "--detached",
        &sig,
        HELLO,
        "-o",
        &module,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(&module).unwrap(),
        std::fs::read(HELLO).unwrap(),
        "the module is left unsigned"
    );
    let out = keys.run(&["--signature", &sig], &module);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_refused_signature(&keys.run(&[], &module), "it is not signed");
    assert_refused_signature(
        &keys.run(&["--signature", &sig], FS_READ),
        "changed after it was signed",
    );

    let verify = |args: &[&str]| wasmcell(&[&["verify", "--public-key"][..], args].concat());
    let out = verify(&[&keys.path("release.pub"), "--signature", &sig, &module]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("verified: "));
    let out = verify(&[&keys.path("other.pub"), "--signature", &sig, &module]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no signature on the module verifies with this key"),
        "{}",
        text(&out.stderr)
    );
    let out = verify(&[&keys.path("release.pub"), HELLO]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the module is not signed"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keygen_writes_a_private_secret_key_and_never_overwrites_one() {
    use std::os::unix::fs::PermissionsExt as _;
    let keys = Signed::new();
    let mode = std::fs::metadata(keys.path("release.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(keys.path("release.key")).unwrap();
    let out = wasmcell(&[
        "keygen",
        "--secret-key",
        &keys.path("release.key"),
        "--public-key",
        &keys.path("new.pub"),
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("never overwritten"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(keys.path("release.key")).unwrap(), before);
}

#[test]
fn signed_by_is_honoured_by_precompiled_code_the_matrix_and_the_library() {
    let keys = Signed::new();
    // Precompiled code carries no signature.
    let cwasm = keys.path("hello.cwasm");
    let out = wasmcell(&["compile", &keys.path("hello.wasm"), "-o", &cwasm]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_refused_signature(
        &keys.run(&["--allow-precompiled"], &cwasm),
        "precompiled code, which carries no signature",
    );

    // The matrix, in workers and in process.
    let policies = keys.dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("signed.toml"),
        "[module]\nsigned-by = [\"../release.pub\"]\n",
    )
    .unwrap();
    let signed = keys.path("hello.wasm");
    for extra in [&[][..], &["--in-process"][..]] {
        let json = matrix_json(&[&signed, FS_READ], &policies, extra);
        let cells = json["cells"].as_array().unwrap();
        let cell = |m: &str| cells.iter().find(|c| c["module"] == m).unwrap();
        assert_eq!(cell("hello")["outcome"]["status"], "exited", "{extra:?}: {json:#}");
        assert_eq!(cell("fs_read")["status"], "load-error", "{extra:?}: {json:#}");
        assert!(
            cell("fs_read")["error"].as_str().unwrap().contains("it is not signed"),
            "{json:#}"
        );
    }

    // The library: a program loaded by an engine alone was not verified.
    let policy = Policy::builder()
        .module_signed_by(&[keys.path("release.pub")])
        .build()
        .unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let elsewhere = engine.load(&signed, 64 << 20).unwrap();
    let sandbox = Sandbox::builder().engine(engine).policy(policy).build().unwrap();
    let err = sandbox.run_program(&elsewhere, &[] as &[&str]).unwrap_err();
    assert!(
        format!("{err:#}").contains("was not verified against the key"),
        "{err:#}"
    );
    let program = sandbox.load(&signed).unwrap();
    assert_eq!(sandbox.run_program(&program, &[] as &[&str]).unwrap().exit_code(), 0);
}

#[test]
fn a_layer_cannot_widen_the_keys_it_extends() {
    let keys = Signed::new();
    let top = keys.dir.path().join("top.toml");
    std::fs::write(
        &top,
        "extends = [\"signed.toml\"]\n[module]\nsigned-by = [\"release.pub\", \"other.pub\"]\n",
    )
    .unwrap();
    let out = wasmcell(&["check", s(&top)]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}:3:", top.display())), "{err}");
    assert!(err.contains("module.signed-by lists the key"), "{err}");

    let out = wasmcell(&["check", &keys.path("signed.toml")]);
    let summary = text(&out.stdout);
    assert!(summary.contains("signed by one of these keys"), "{summary}");
    assert!(summary.contains("release.pub (sha256 "), "{summary}");

    for (value, says) in [
        ("[\"missing.pub\"]", "cannot read the public key"),
        ("[\"signed.toml\"]", "is not an Ed25519 public key"),
        ("[]", "names no key"),
    ] {
        std::fs::write(&top, format!("[module]\nsigned-by = {value}\n")).unwrap();
        let out = wasmcell(&["check", s(&top)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(err.contains(says) && err.contains(":2:"), "{value}: {err}");
    }
}

/// wasmsign2's multi-part signatures (`split` then `sign_multi`) sign the
/// hash of every delimited prefix of the module, so a module cut short at a
/// part boundary (its trailing sections dropped: data, names) would still
/// verify. wasmcell refuses such signatures, whole or cut short.
#[test]
fn a_multi_part_signature_is_refused_whole_or_cut_short() {
    let keys = Signed::new();
    let secret = wasmsign2::SecretKey::from_bytes(&std::fs::read(keys.path("release.key")).unwrap()).unwrap();
    let module = wasmsign2::Module::deserialize_from_file(HELLO).unwrap();
    let parts = module.split(|s| !matches!(s, wasmsign2::Section::Custom(_))).unwrap();
    let (signed, _) = secret.sign_multi(parts, None, false, false).unwrap();
    let delimiters: Vec<usize> = (0..signed.sections.len())
        .filter(|&i| signed.sections[i].is_signature_delimiter())
        .collect();
    assert!(
        delimiters.len() >= 2,
        "hello has custom sections after its code: {delimiters:?}"
    );
    let mut cut = signed.clone();
    cut.sections.truncate(delimiters[delimiters.len() - 2] + 1);
    signed.serialize_to_file(keys.path("multi.wasm")).unwrap();
    cut.serialize_to_file(keys.path("cut.wasm")).unwrap();
    for name in ["multi.wasm", "cut.wasm"] {
        assert_refused_signature(&keys.run(&[], &keys.path(name)), "multi-part signature");
        let out = wasmcell(&["verify", "--public-key", &keys.path("release.pub"), &keys.path(name)]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stdout));
        assert!(
            text(&out.stderr).contains("multi-part signature"),
            "{}",
            text(&out.stderr)
        );
    }
}

/// A key file a read-write grant reaches could be replaced by a guest with
/// its own key, which would then sign what a later run loads: refused,
/// directly and through a link.
#[test]
fn a_signing_key_inside_a_read_write_grant_is_refused() {
    let keys = Signed::new();
    let d = keys.dir.path();
    let work = d.join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::copy(d.join("release.pub"), work.join("release.pub")).unwrap();
    std::os::unix::fs::symlink(work.join("release.pub"), d.join("linked.pub")).unwrap();
    for key in ["work/release.pub", "linked.pub"] {
        let policy = d.join("in-grant.toml");
        std::fs::write(
            &policy,
            format!("[module]\nsigned-by = [\"{key}\"]\n\n[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"read-write\"\n"),
        )
        .unwrap();
        let out = wasmcell(&["check", s(&policy)]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: {err}");
        assert!(
            err.contains("module.signed-by: key file") && err.contains("read-write grant"),
            "{key}: {err}"
        );
    }
    // Read-only, the same grant is fine.
    let policy = d.join("read-only.toml");
    std::fs::write(
        &policy,
        "[module]\nsigned-by = [\"work/release.pub\"]\n\n[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"read-only\"\n",
    )
    .unwrap();
    let out = wasmcell(&["check", s(&policy)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// A signature or key path that names a FIFO is refused at once: nothing
/// opens it and waits for a writer that never comes.
#[test]
fn signature_and_key_paths_that_are_fifos_are_refused_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("sig.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path and a mode; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let started = std::time::Instant::now();
    for args in [
        vec!["run", "--signature", s(&fifo), HELLO],
        vec!["verify", "--public-key", s(&fifo), HELLO],
    ] {
        let out = wasmcell(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("is not a regular file"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

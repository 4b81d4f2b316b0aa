//! Filesystem grants: the guest reaches only the granted directories, read-only grants change
//! nothing, and no path (`..`, absolute, symlink, hard link, rename) leads outside a grant.
//! Every test builds its host layout in a tempdir and checks afterwards that nothing outside
//! the grants changed.

use crate::{assert_status, assert_test_exists, both, run, stdout};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use wasmcell::{Access, Policy, Status};
use wasmcell_artifacts::{
    EXIT_PANIC as EXIT_PANIC_GUEST, FS_PLANT_SYMLINK, FS_PLANT_SYMLINK_COMPONENT, STDIO_ECHO, STDIO_ECHO_COMPONENT,
};
use wasmcell_artifacts::{
    FS_CWD, FS_CWD_COMPONENT, FS_ESCAPE_ABSOLUTE, FS_ESCAPE_ABSOLUTE_COMPONENT, FS_ESCAPE_DOTDOT,
    FS_ESCAPE_DOTDOT_COMPONENT, FS_ESCAPE_SYMLINK, FS_ESCAPE_SYMLINK_COMPONENT, FS_OPS, FS_OPS_COMPONENT, FS_READ,
    FS_READ_COMPONENT, FS_READONLY_LINK_RENAME, FS_READONLY_LINK_RENAME_COMPONENT, FS_READONLY_WRITE,
    FS_READONLY_WRITE_COMPONENT, FS_WRITE, FS_WRITE_COMPONENT,
};

wasmcell_artifacts::foreach_fs!(assert_test_exists);

const SECRET: &[u8] = b"top secret: the guest must never see this\n";
const OUTSIDE: &[u8] = b"outside the grant\n";

/// One entry of a directory tree, as [`snapshot`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    File(Vec<u8>),
    Dir,
    Symlink(PathBuf),
}

/// Every entry below `root` (symlinks not followed), keyed by path relative to `root`, with
/// file contents, so that two snapshots compare contents, names and kinds byte for byte.
/// Subtrees whose relative path is in `skip` are left out.
fn snapshot_except(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<PathBuf, Entry>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if skip.iter().any(|s| rel == Path::new(s)) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = if meta.file_type().is_symlink() {
                Entry::Symlink(fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                walk(root, &path, skip, out);
                Entry::Dir
            } else {
                Entry::File(fs::read(&path).unwrap())
            };
            out.insert(rel, kind);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    snapshot_except(root, &[])
}

/// `lines` as the guest prints them: one `denied <what>` line each.
fn denied_lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("denied {l}\n")).collect()
}

fn grant(dirs: &[(&Path, &str, Access)]) -> Policy {
    let mut policy = Policy::builder();
    for (host, guest, access) in dirs {
        policy = policy.grant_dir(host, guest, *access);
    }
    policy.build().unwrap_or_else(|e| panic!("granting {dirs:?}: {e}"))
}

/// A tempdir holding `outside.txt`, `secret/secret.txt` and the directory `data/` that the
/// tests grant as `/data`.
struct Layout {
    root: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("outside.txt"), OUTSIDE).unwrap();
        fs::create_dir(root.path().join("secret")).unwrap();
        fs::write(root.path().join("secret/secret.txt"), SECRET).unwrap();
        fs::create_dir(root.path().join("data")).unwrap();
        Layout { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// Everything outside `data/`.
    fn outside(&self) -> BTreeMap<PathBuf, Entry> {
        snapshot_except(self.root.path(), &["data"])
    }

    #[track_caller]
    fn assert_secrets_intact(&self, guest: &str) {
        assert_eq!(fs::read(self.path("outside.txt")).unwrap(), OUTSIDE, "{guest}");
        assert_eq!(fs::read(self.path("secret/secret.txt")).unwrap(), SECRET, "{guest}");
    }
}

#[test]
fn fs_read() {
    let layout = Layout::new();
    let content: Vec<u8> = b"hello from the host\n\xff\x00 not utf-8".to_vec();
    fs::write(layout.data().join("hello.txt"), &content).unwrap();
    fs::create_dir_all(layout.data().join("sub/deeper")).unwrap();
    fs::write(layout.data().join("sub/deeper/nested.txt"), "nested\n").unwrap();
    let policy = grant(&[(&layout.data(), "/data", Access::ReadOnly)]);
    let before = snapshot(layout.root.path());
    for guest in both(FS_READ, FS_READ_COMPONENT) {
        let outcome = run(policy.clone(), guest, &["/data/hello.txt"]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(outcome.stdout, content, "{guest}");

        let outcome = run(policy.clone(), guest, &["/data/sub/deeper/nested.txt"]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), "nested\n", "{guest}");

        let outcome = run(policy.clone(), guest, &["/data/missing.txt"]);
        assert_status(&outcome, Status::Exited(1));
        assert_eq!(String::from_utf8_lossy(&outcome.stderr), "error: NotFound\n", "{guest}");
    }
    assert_eq!(snapshot(layout.root.path()), before, "reading changed the host");
}

/// With no grants at all there is nothing to read, not even at a plausible path.
#[test]
fn fs_read_without_grants_fails() {
    for guest in both(FS_READ, FS_READ_COMPONENT) {
        for path in ["/data/x", "/", "x", "/etc/passwd"] {
            let outcome = run(Policy::deny_all(), guest, &[path]);
            assert_status(&outcome, Status::Exited(1));
            assert!(outcome.stdout.is_empty(), "{guest} {path}");
            let stderr = String::from_utf8_lossy(&outcome.stderr);
            assert!(stderr.starts_with("error: "), "{guest} {path}: {stderr}");
        }
    }
}

/// cap-std's `cap-basics.rs` style: each row is a path handed to `fs_read` with `data/`
/// granted read-only at `/data`, and whether the read may succeed.
#[test]
fn fs_read_escape_table() {
    let layout = Layout::new();
    let data = layout.data();
    fs::write(data.join("ok.txt"), "ok\n").unwrap();
    fs::create_dir(data.join("sub")).unwrap();
    std::os::unix::fs::symlink(layout.path("outside.txt"), data.join("link_out")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", data.join("rel_out")).unwrap();
    std::os::unix::fs::symlink(layout.path("secret"), data.join("link_dir")).unwrap();
    std::os::unix::fs::symlink("ok.txt", data.join("link_in")).unwrap();
    std::os::unix::fs::symlink("sub/../ok.txt", data.join("link_in_dotdot")).unwrap();
    let secret = layout.path("secret/secret.txt");
    let outside = layout.path("outside.txt");
    let secret = secret.to_str().unwrap();
    let outside = outside.to_str().unwrap();

    // `Ok(content)`: readable. `Err(kind)`: `fs_read` exits 1 naming this `io::ErrorKind`:
    // PermissionDenied when the path would leave a grant, NotFound when no grant holds it.
    const OK: Result<&str, &str> = Ok("ok\n");
    const ESCAPE: Result<&str, &str> = Err("PermissionDenied");
    const NO_GRANT: Result<&str, &str> = Err("NotFound");
    let rows: &[(&str, Result<&str, &str>)] = &[
        ("/data/ok.txt", OK),
        ("/data/./ok.txt", OK),
        ("/data/sub/../ok.txt", OK),
        ("/data//ok.txt", OK),
        ("data/ok.txt", OK),
        ("./data/ok.txt", OK),
        ("/data/link_in", OK),
        ("/data/link_in_dotdot", OK),
        ("/data/../outside.txt", ESCAPE),
        ("/data/sub/../../outside.txt", ESCAPE),
        ("/data/../data/ok.txt", ESCAPE),
        ("/data/../secret/secret.txt", ESCAPE),
        ("/data/link_out", ESCAPE),
        ("/data/rel_out", ESCAPE),
        ("/data/link_dir/secret.txt", ESCAPE),
        ("/etc/passwd", NO_GRANT),
        ("/proc/self/mem", NO_GRANT),
        ("/proc/self/environ", NO_GRANT),
        ("/outside.txt", NO_GRANT),
        ("../outside.txt", NO_GRANT),
        (secret, NO_GRANT),
        (outside, NO_GRANT),
    ];
    let policy = grant(&[(&data, "/data", Access::ReadOnly)]);
    let before = snapshot(layout.root.path());
    for guest in both(FS_READ, FS_READ_COMPONENT) {
        for (path, expected) in rows {
            let outcome = run(policy.clone(), guest, &[*path]);
            let stderr = String::from_utf8_lossy(&outcome.stderr);
            let observed = match outcome.status {
                Status::Exited(0) => Ok(stdout(&outcome)),
                Status::Exited(1) if outcome.stdout.is_empty() => Err(stderr.trim_end().to_string()),
                _ => panic!("{guest}: `{path}` ended with {:?}; stderr: {stderr}", outcome.status),
            };
            let expected = expected.map(str::to_string).map_err(|kind| format!("error: {kind}"));
            assert_eq!(observed, expected, "{guest}: `{path}`");
        }
    }
    assert_eq!(snapshot(layout.root.path()), before, "reading changed the host");
}

#[test]
fn fs_write() {
    let layout = Layout::new();
    fs::write(layout.data().join("existing.txt"), "old content that is longer").unwrap();
    let policy = grant(&[(&layout.data(), "/data", Access::ReadWrite)]);
    let before = layout.outside();
    for guest in both(FS_WRITE, FS_WRITE_COMPONENT) {
        let name = if guest == FS_WRITE { "module" } else { "component" };
        let content = format!("written by the {name} ✓");
        let outcome = run(policy.clone(), guest, &[&format!("/data/{name}.txt"), &content]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), format!("wrote {} bytes\n", content.len()), "{guest}");
        assert_eq!(
            fs::read_to_string(layout.data().join(format!("{name}.txt"))).unwrap(),
            content
        );

        // Overwriting truncates.
        let outcome = run(policy.clone(), guest, &["/data/existing.txt", "new"]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(fs::read_to_string(layout.data().join("existing.txt")).unwrap(), "new");
    }
    assert_eq!(
        layout.outside(),
        before,
        "writing inside /data changed the host outside it"
    );
    let mut names: Vec<_> = fs::read_dir(layout.data())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["component.txt", "existing.txt", "module.txt"]);
}

/// A read-only grant refuses `fs_write`: the guest panics and the host gets no file.
#[test]
fn fs_write_to_readonly_grant_fails() {
    let layout = Layout::new();
    let policy = grant(&[(&layout.data(), "/data", Access::ReadOnly)]);
    let before = snapshot(layout.root.path());
    for guest in both(FS_WRITE, FS_WRITE_COMPONENT) {
        let outcome = run(policy.clone(), guest, &["/data/new.txt", "nope"]);
        assert_status(&outcome, Status::Trap);
        let stderr = String::from_utf8_lossy(&outcome.stderr);
        assert!(stderr.contains("write /data/new.txt"), "{guest}: {stderr}");
    }
    assert_eq!(snapshot(layout.root.path()), before);
}

#[test]
fn fs_escape_dotdot() {
    for guest in both(FS_ESCAPE_DOTDOT, FS_ESCAPE_DOTDOT_COMPONENT) {
        // Read-write, so that refusing the create cannot be put down to read-only access.
        for access in [Access::ReadWrite, Access::ReadOnly] {
            let layout = Layout::new();
            let before = layout.outside();
            let outcome = run(grant(&[(&layout.data(), "/data", access)]), guest, &[] as &[&str]);
            assert_status(&outcome, Status::Exited(0));
            assert_eq!(
                stdout(&outcome),
                denied_lines(&[
                    "/data/../outside.txt",
                    "/data/sub/../../outside.txt",
                    "../outside.txt",
                    "/data/./../outside.txt",
                    "/data/../escaped.txt",
                ]),
                "{guest} ({access})"
            );
            layout.assert_secrets_intact(guest);
            assert!(
                !layout.path("escaped.txt").exists(),
                "{guest}: created a file outside the grant"
            );
            assert_eq!(
                layout.outside(),
                before,
                "{guest} ({access}): the host outside /data changed"
            );
            let expected_data = match access {
                Access::ReadWrite => BTreeMap::from([(PathBuf::from("sub"), Entry::Dir)]),
                Access::ReadOnly => BTreeMap::new(),
            };
            assert_eq!(snapshot(&layout.data()), expected_data, "{guest} ({access})");
        }
    }
}

#[test]
fn fs_escape_absolute() {
    for guest in both(FS_ESCAPE_ABSOLUTE, FS_ESCAPE_ABSOLUTE_COMPONENT) {
        let layout = Layout::new();
        let secret = layout.path("secret/secret.txt");
        let secret = secret.to_str().unwrap();
        let outside = layout.path("outside.txt");
        let outside = outside.to_str().unwrap();
        let data = layout.data();
        let data_host = data.to_str().unwrap();
        fs::write(data.join("inside.txt"), "inside").unwrap();
        // The host path of a file inside the grant is still not a guest path.
        let inside = format!("{data_host}/inside.txt");
        let before = snapshot(layout.root.path());
        for policy in [
            Policy::deny_all(),
            grant(&[(&layout.data(), "/data", Access::ReadWrite)]),
        ] {
            let outcome = run(policy, guest, &[secret, outside, &inside]);
            assert_status(&outcome, Status::Exited(0));
            assert_eq!(
                stdout(&outcome),
                denied_lines(&[
                    "/etc/passwd",
                    "/proc/self/mem",
                    "/proc/self/environ",
                    secret,
                    outside,
                    &inside,
                    "/",
                    "/tmp",
                ]),
                "{guest}"
            );
        }
        layout.assert_secrets_intact(guest);
        assert_eq!(snapshot(layout.root.path()), before, "{guest}");
    }
}

#[test]
fn fs_escape_symlink() {
    for guest in both(FS_ESCAPE_SYMLINK, FS_ESCAPE_SYMLINK_COMPONENT) {
        let layout = Layout::new();
        let data = layout.data();
        std::os::unix::fs::symlink(layout.path("secret/secret.txt"), data.join("link_file")).unwrap();
        std::os::unix::fs::symlink(layout.path("secret"), data.join("link_dir")).unwrap();
        std::os::unix::fs::symlink("../outside.txt", data.join("rel_link")).unwrap();
        let before_outside = layout.outside();
        let before_data = snapshot(&data);
        // Read-write, so that the guest may plant symlinks of its own.
        let outcome = run(grant(&[(&data, "/data", Access::ReadWrite)]), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(
            stdout(&outcome),
            denied_lines(&[
                "/data/link_file",
                "/data/link_dir/secret.txt",
                "/data/rel_link",
                "/data/made_link",
                "/data/made_link2",
            ]),
            "{guest}"
        );
        layout.assert_secrets_intact(guest);
        assert_eq!(
            layout.outside(),
            before_outside,
            "{guest}: the host outside /data changed"
        );
        // The guest removes what it planted; the host's links are untouched.
        assert_eq!(snapshot(&data), before_data, "{guest}");
    }
}

#[test]
fn fs_readonly_write() {
    for guest in both(FS_READONLY_WRITE, FS_READONLY_WRITE_COMPONENT) {
        let layout = Layout::new();
        let data = layout.data();
        let existing = b"existing content, 32 bytes long\n";
        fs::write(data.join("existing.txt"), existing).unwrap();
        fs::create_dir(data.join("sub")).unwrap();
        let before = snapshot(layout.root.path());
        let outcome = run(grant(&[(&data, "/data", Access::ReadOnly)]), guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(stdout(&outcome), readonly_write_expected(existing.len()), "{guest}");
        assert_eq!(fs::read(data.join("existing.txt")).unwrap(), existing, "{guest}");
        assert_eq!(
            snapshot(layout.root.path()),
            before,
            "{guest}: a read-only grant changed"
        );
    }
}

fn readonly_write_expected(len: usize) -> String {
    let mut expected = denied_lines(&[
        "create /data/new.txt",
        "write /data/existing.txt",
        "truncate /data/existing.txt",
        "append /data/existing.txt",
        "set_len /data/existing.txt",
        "remove_file /data/existing.txt",
        "rename /data/existing.txt -> /data/renamed.txt",
        "create_dir /data/newdir",
        "remove_dir /data/sub",
        "fs::write /data/existing.txt",
    ]);
    expected.push_str(&format!("existing.txt still {len} bytes\n"));
    expected
}

/// One host directory granted twice, read-write at `/rw` and read-only at `/data`: the guest
/// could change `/data` through `/rw`, so the policy is refused whichever grant comes first,
/// and neither guest path is granted.
// See: #9
#[test]
fn one_dir_read_write_and_read_only_is_refused() {
    let layout = Layout::new();
    let shared = layout.data();
    for (first, second) in [
        (("/rw", Access::ReadWrite), ("/data", Access::ReadOnly)),
        (("/data", Access::ReadOnly), ("/rw", Access::ReadWrite)),
    ] {
        let err = Policy::builder()
            .grant_dir(&shared, first.0, first.1)
            .grant_dir(&shared, second.0, second.1)
            .build()
            .unwrap_err();
        match err.kind() {
            wasmcell::PolicyErrorKind::OverlappingGrants { writable, other } => {
                assert_eq!((writable.0.guest.as_str(), other.0.guest.as_str()), ("/rw", "/data"));
            }
            kind => panic!("unexpected {kind:?}: {err}"),
        }
        assert!(
            err.to_string().contains("is the same directory as read-only grant"),
            "{err}"
        );
    }
}

#[test]
fn fs_readonly_link_rename() {
    for guest in both(FS_READONLY_LINK_RENAME, FS_READONLY_LINK_RENAME_COMPONENT) {
        let root = tempfile::tempdir().unwrap();
        let ro = root.path().join("ro");
        let rw = root.path().join("rw");
        fs::create_dir(&ro).unwrap();
        fs::create_dir(&rw).unwrap();
        fs::write(ro.join("secret.txt"), SECRET).unwrap();
        fs::write(root.path().join("outside.txt"), OUTSIDE).unwrap();
        let before_ro = snapshot(&ro);
        let before_outside = snapshot_except(root.path(), &["rw"]);
        let policy = grant(&[(&ro, "/ro", Access::ReadOnly), (&rw, "/rw", Access::ReadWrite)]);
        let outcome = run(policy, guest, &[] as &[&str]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(
            stdout(&outcome),
            denied_lines(&[
                "hard_link /ro/secret.txt -> /rw/linked.txt",
                "rename /ro/secret.txt -> /rw/moved.txt",
                "rename /rw/tmp.txt -> /ro/planted.txt",
                "hard_link /rw/tmp.txt -> /ro/planted2.txt",
            ]),
            "{guest}"
        );
        assert_eq!(snapshot(&ro), before_ro, "{guest}: the read-only grant changed");
        assert_eq!(fs::read(ro.join("secret.txt")).unwrap(), SECRET);
        assert_eq!(
            snapshot(&rw),
            BTreeMap::new(),
            "{guest}: /rw holds a link or moved file (the guest removes its own tmp.txt)"
        );
        assert_eq!(snapshot_except(root.path(), &["rw"]), before_outside, "{guest}");
    }
}

// ---------------------------------------------------------------------------
// Host-side opens (#9): a guest with a read-write grant replaces a path the
// host opens itself with a link out of the grant; the host must refuse it.
// ---------------------------------------------------------------------------

const VICTIM: &[u8] = b"victim: outside every grant; no run may read or change it\n";

/// A tempdir holding `work/` (granted read-write as `/work` by the tests) and
/// `victim` next to it, which `work/<name> -> ../victim` reaches.
struct Planted {
    root: tempfile::TempDir,
}

impl Planted {
    fn new() -> Planted {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("work")).unwrap();
        fs::write(root.path().join("victim"), VICTIM).unwrap();
        Planted { root }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    /// Plants `work/<rel>` -> `target` from the test, as a guest would have.
    fn plant(&self, rel: &str, target: &str) {
        std::os::unix::fs::symlink(target, self.path("work").join(rel)).unwrap();
    }

    /// Writes `p.toml` granting `work` read-write at `/work`, then `extra`.
    fn policy(&self, extra: &str) -> PathBuf {
        let text = format!("[[fs.dirs]]\nhost = \"work\"\nguest = \"/work\"\naccess = \"read-write\"\n\n{extra}");
        let path = self.path("p.toml");
        fs::write(&path, text).unwrap();
        path
    }

    #[track_caller]
    fn assert_victim_intact(&self) {
        assert_eq!(
            fs::read(self.path("victim")).unwrap(),
            VICTIM,
            "the file outside the grant changed"
        );
    }
}

fn cli(args: &[&str]) -> std::process::Output {
    crate::wait_for(crate::wasmcell_command().args(args).spawn().expect("spawn wasmcell"))
}

/// Asserts exit 2 and that stderr names each of `needles`.
#[track_caller]
fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected a refusal\n--- stdout ---\n{}\n--- stderr ---\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    }
}

/// Runs `guest` through the library and returns the error it must end with:
/// a refused host path naming `name`.
#[track_caller]
fn assert_lib_refused(policy: &Policy, guest: &str, args: &[&str], name: &str) {
    let result = wasmcell::Sandbox::builder()
        .policy(policy.clone())
        .build()
        .unwrap()
        .run(guest, args);
    let err = match result {
        Ok(outcome) => panic!(
            "the run was not refused: {:?}, stdout {}",
            outcome.status,
            stdout(&outcome)
        ),
        Err(err) => err,
    };
    let policy_err = err
        .chain()
        .find_map(|e| e.downcast_ref::<wasmcell::PolicyError>())
        .unwrap_or_else(|| panic!("not a policy error: {err:#}"));
    match policy_err.kind() {
        wasmcell::PolicyErrorKind::UnsafePath { path, .. } => {
            assert!(path.ends_with(name), "{} is not `{name}`: {err:#}", path.display())
        }
        other => panic!("unexpected kind {other:?}: {err:#}"),
    }
    assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
}

/// A real guest replaces its own stdout file with a link out of its grant. The
/// next run (the library, with the policy loaded before; the CLI, loading it
/// again) must refuse to open it rather than write the guest's bytes outside.
// See: #9
#[test]
fn fs_plant_symlink() {
    for guest in both(FS_PLANT_SYMLINK, FS_PLANT_SYMLINK_COMPONENT) {
        let t = Planted::new();
        let file = t.policy("[stdio]\nstdout = { file = \"work/out.log\" }\n");
        let policy = Policy::from_file(&file).unwrap();
        let sandbox = wasmcell::Sandbox::builder().policy(policy.clone()).build().unwrap();
        let outcome = sandbox.run(guest, &["/work/out.log", "../victim"]).unwrap();
        assert_status(&outcome, Status::Exited(0));
        assert!(
            fs::symlink_metadata(t.path("work/out.log"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        t.assert_victim_intact();

        assert_lib_refused(&policy, guest, &["/work/out.log", "../victim"], "out.log");
        t.assert_victim_intact();
        let out = cli(&["run", "--policy", file.to_str().unwrap(), guest, "/work/x", "../victim"]);
        assert_refused(&out, &["stdio.stdout file", "out.log` is a symbolic link"]);
        assert!(out.stdout.is_empty(), "the guest never ran");
        t.assert_victim_intact();
    }
}

/// `--report FILE` inside a read-write grant: the guest plants the link while
/// it runs, before the report is written; or an earlier run planted it.
// See: #9
#[test]
fn report_through_a_planted_link_is_refused() {
    let t = Planted::new();
    let work = format!("{}::/work", t.path("work").display());
    let report = t.path("work/report.json");
    let args = |guest| {
        [
            "run",
            "--dir",
            &work,
            "--report",
            report.to_str().unwrap(),
            guest,
            "/work/report.json",
            "../victim",
        ]
        .map(str::to_string)
    };
    let out = cli(&args(FS_PLANT_SYMLINK).each_ref().map(String::as_str));
    assert_refused(&out, &["--report", "report.json", "symbolic link"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "planted /work/report.json -> ../victim\n"
    );
    t.assert_victim_intact();

    let out = cli(&args(FS_PLANT_SYMLINK_COMPONENT).each_ref().map(String::as_str));
    assert_refused(
        &out,
        &[
            "--report",
            "report.json` is a symbolic link inside the read-write grant",
        ],
    );
    assert!(out.stdout.is_empty(), "refused before the guest ran");
    t.assert_victim_intact();
}

/// `stdio.stderr = { file = ... }` inside a read-write grant, replaced by a
/// link after the policy was loaded (library) or before (CLI).
// See: #9
#[test]
fn stderr_file_through_a_planted_link_is_refused() {
    let t = Planted::new();
    let file = t.policy("[stdio]\nstderr = { file = \"work/err.log\" }\n");
    let policy = Policy::from_file(&file).unwrap();
    t.plant("err.log", "../victim");
    assert_lib_refused(&policy, EXIT_PANIC_GUEST, &[], "err.log");
    t.assert_victim_intact();
    let out = cli(&["run", "--policy", file.to_str().unwrap(), EXIT_PANIC_GUEST]);
    assert_refused(&out, &["stdio.stderr file", "err.log` is a symbolic link"]);
    t.assert_victim_intact();
}

/// `stdio.stdin = { file = ... }` and `--stdin FILE` inside a read-write grant,
/// replaced by a link to a file outside: the guest must not be fed it.
// See: #9
#[test]
fn stdin_file_through_a_planted_link_is_refused() {
    let t = Planted::new();
    fs::write(t.path("work/in.txt"), "input\n").unwrap();
    let file = t.policy("[stdio]\nstdin = { file = \"work/in.txt\" }\n");
    let policy = Policy::from_file(&file).unwrap();
    fs::remove_file(t.path("work/in.txt")).unwrap();
    t.plant("in.txt", "../victim");
    for guest in both(STDIO_ECHO, STDIO_ECHO_COMPONENT) {
        assert_lib_refused(&policy, guest, &[], "in.txt");
        let out = cli(&["run", "--policy", file.to_str().unwrap(), guest]);
        assert_refused(&out, &["stdio.stdin file", "in.txt` is a symbolic link"]);
        assert!(out.stdout.is_empty(), "{guest} was fed the victim");
        let work = format!("{}::/work", t.path("work").display());
        let stdin = t.path("work/in.txt");
        let out = cli(&["run", "--dir", &work, "--stdin", stdin.to_str().unwrap(), guest]);
        assert_refused(&out, &["--stdin", "in.txt` is a symbolic link"]);
        assert!(out.stdout.is_empty(), "{guest} was fed the victim");
    }
    t.assert_victim_intact();
}

/// A grant nested in a read-write grant (`work/inputs` at `/inputs`): the
/// guest replaces `inputs` with `-> ..`, and the next run would grant the
/// folder around `work`. Both runs go through a real guest and the library;
/// the CLI refuses the planted layout whichever access `/inputs` has.
// See: #9
#[test]
fn nested_grant_replaced_by_a_link_is_refused() {
    for guest in both(FS_PLANT_SYMLINK, FS_PLANT_SYMLINK_COMPONENT) {
        let t = Planted::new();
        fs::create_dir(t.path("work/inputs")).unwrap();
        let policy = grant(&[
            (&t.path("work"), "/work", Access::ReadWrite),
            (&t.path("work/inputs"), "/inputs", Access::ReadWrite),
        ]);
        let outcome = run(policy.clone(), guest, &["/work/inputs", ".."]);
        assert_status(&outcome, Status::Exited(0));
        assert_lib_refused(&policy, FS_WRITE, &["/inputs/victim", "overwritten"], "work/inputs");
        t.assert_victim_intact();

        let work = format!("{}::/work", t.path("work").display());
        let inputs = format!("{}::/inputs", t.path("work/inputs").display());
        for flag in ["--dir", "--ro-dir"] {
            let out = cli(&[
                "run",
                "--dir",
                &work,
                flag,
                &inputs,
                FS_WRITE,
                "/inputs/victim",
                "overwritten",
            ]);
            assert_refused(
                &out,
                &[flag, "work/inputs` is a symbolic link inside the read-write grant"],
            );
        }
        t.assert_victim_intact();
    }
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Stdio files must be regular files: a FIFO would block the host on open (no
/// reader or writer ever comes; the test's watchdog would fire), and a
/// directory is not a stream.
// See: #9
#[test]
fn stdio_files_must_be_regular_files() {
    let t = Planted::new();
    mkfifo(&t.path("fifo"));
    for (stdio, needle) in [
        ("stdout = { file = \"fifo\" }", "stdout file"),
        ("stderr = { file = \"fifo\" }", "stderr file"),
        ("stdout = { file = \"work\" }", "stdout file"),
    ] {
        let file = t.path("q.toml");
        fs::write(&file, format!("[stdio]\n{stdio}\n")).unwrap();
        let out = cli(&["run", "--policy", file.to_str().unwrap(), STDIO_ECHO]);
        let kind = if stdio.contains("fifo") {
            "it is a FIFO"
        } else {
            "it is a directory"
        };
        assert_refused(&out, &[needle, kind, "not a regular file"]);
    }

    // A stdin file that became a FIFO after the policy was loaded.
    fs::write(t.path("work/in.txt"), "input\n").unwrap();
    let file = t.policy("[stdio]\nstdin = { file = \"work/in.txt\" }\n");
    let policy = Policy::from_file(&file).unwrap();
    fs::remove_file(t.path("work/in.txt")).unwrap();
    mkfifo(&t.path("work/in.txt"));
    let err = wasmcell::Sandbox::builder()
        .policy(policy)
        .build()
        .unwrap()
        .run(STDIO_ECHO, &[] as &[&str]);
    let msg = format!("{:#}", err.expect_err("a FIFO stdin is refused"));
    assert!(msg.contains("in.txt`: it is a FIFO, not a regular file"), "{msg}");
}

/// `--dir D::/rw --ro-dir D/inner::/ro` let the guest change `/ro`'s files through
/// `/rw/inner`. Refused from flags and from a policy file (with both lines), and by
/// `wasmcell check`; overlaps that lose no access still run.
// See: #9
#[test]
fn read_write_grant_over_a_read_only_one_is_refused() {
    let layout = Layout::new();
    let d = layout.data();
    fs::create_dir(d.join("inner")).unwrap();
    let (d_str, inner) = (d.display().to_string(), d.join("inner").display().to_string());
    let rw = format!("{d_str}::/rw");
    let ro = format!("{inner}::/ro");
    let out = cli(&[
        "run",
        "--dir",
        &rw,
        "--ro-dir",
        &ro,
        FS_WRITE,
        "/rw/inner/planted.txt",
        "x",
    ]);
    assert_refused(
        &out,
        &[&format!(
            "read-write grant `{d_str}` at guest path `/rw` (--dir) contains read-only grant `{inner}` at guest path `/ro` (--ro-dir)"
        )],
    );
    assert!(!d.join("inner/planted.txt").exists(), "the guest ran");
    let out = cli(&[
        "run",
        "--dir",
        &rw,
        "--ro-dir",
        &format!("{d_str}::/data"),
        FS_READ,
        "/data/x",
    ]);
    assert_refused(&out, &["is the same directory as read-only grant", "`/data`"]);

    let file = layout.path("p.toml");
    fs::write(
        &file,
        "[[fs.dirs]]\nhost = \"data/inner\"\nguest = \"/ro\"\naccess = \"read-only\"\n\n[[fs.dirs]]\nhost = \"data\"\nguest = \"/rw\"\naccess = \"read-write\"\n",
    )
    .unwrap();
    let f = file.display().to_string();
    for args in [vec!["run", "--policy", &f, FS_READ, "/ro/x"], vec!["check", &f]] {
        let out = cli(&args);
        assert_refused(
            &out,
            &[&format!(
                "{f}:7: read-write grant `{d_str}` at guest path `/rw` ({f}:7) contains read-only grant `{inner}` at guest path `/ro` ({f}:2)"
            )],
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }

    // Two read-write grants, or read-only inside read-only, lose no access.
    let inner_rw = format!("{inner}::/b");
    let out = cli(&["run", "--dir", &rw, "--dir", &inner_rw, FS_WRITE, "/b/ok.txt", "fine"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::read_to_string(d.join("inner/ok.txt")).unwrap(), "fine");
    let out = cli(&[
        "run",
        "--ro-dir",
        &format!("{d_str}::/a"),
        "--ro-dir",
        &inner_rw,
        FS_READ,
        "/b/ok.txt",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fine");
    layout.assert_secrets_intact("cli");
}

// ---------------------------------------------------------------------------
// Rules inside grants: `deny`, `read-only`, `hide` (and what every guest
// filesystem call now passes through). `fs_ops` runs one operation per
// argument and prints `<op> -> ok[: detail]` or `-> err <WASI errno>`.

const EACCES: &str = "err 2";
const ENOENT: &str = "err 44";
const ENOTDIR: &str = "err 54";

/// An agent's workspace: sources to change, secrets and hooks to keep out of
/// reach, configuration to read only.
fn workspace() -> tempfile::TempDir {
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    for dir in ["src", "config", ".git/hooks", "sub"] {
        fs::create_dir_all(p.join(dir)).unwrap();
    }
    fs::write(p.join(".env"), SECRET).unwrap();
    fs::write(p.join("sub/.env"), SECRET).unwrap();
    fs::write(p.join(".git/hooks/pre-commit"), "#!/bin/sh\n").unwrap();
    fs::write(p.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
    fs::write(p.join("config/app.toml"), "port = 1\n").unwrap();
    fs::write(p.join("src/main.rs"), "fn main() {}\n").unwrap();
    w
}

fn workspace_policy(root: &Path, hide: bool) -> Policy {
    crate::policy_toml(
        &format!(
            "[[fs.dirs]]\nhost = \"{}\"\nguest = \"/w\"\naccess = \"read-write\"\n\
             deny = [\"**/.env\", \".git/hooks/**\"]\nread-only = [\"config/**\"]\nhide = {hide}\n",
            root.display()
        ),
        root,
    )
}

/// Runs `fs_ops` and gives each operation's answer, keyed by the operation.
fn ops(policy: &Policy, guest: &str, ops: &[&str]) -> (BTreeMap<String, String>, wasmcell::Outcome) {
    let outcome = run(policy.clone(), guest, ops);
    assert_status(&outcome, Status::Exited(0));
    let answers = stdout(&outcome)
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .map(|(op, answer)| (op.to_string(), answer.to_string()))
        .collect();
    (answers, outcome)
}

#[track_caller]
fn assert_answers(answers: &BTreeMap<String, String>, want: &[(&str, &str)], guest: &str) {
    for (op, answer) in want {
        assert_eq!(
            answers.get(*op).map(String::as_str),
            Some(*answer),
            "{guest}: {op}; all: {answers:#?}"
        );
    }
}

/// The protected parts of the workspace, to compare before and after.
fn protected(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut all = snapshot(root);
    all.retain(|p, _| {
        let p = p.to_string_lossy();
        p.ends_with(".env") || p.starts_with(".git/hooks") || p.starts_with("config")
    });
    all
}

/// The workspace policy end to end, on both targets: allowed work works;
/// denied paths look absent; read-only paths read but do not change; and
/// every route around a rule (a link, `..`, renaming the folder a rule names,
/// a hard link, renaming into a denied folder) is refused and recorded,
/// leaving the protected files byte for byte as they were.
#[test]
fn fs_ops() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = workspace();
        let before = protected(w.path());
        fs::create_dir(w.path().join("payload")).unwrap();
        fs::write(w.path().join("payload/evil"), "#!/bin/sh\nrm -rf ~\n").unwrap();
        let policy = workspace_policy(w.path(), true);
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                "read:/w/src/main.rs",
                "write:/w/src/new.rs:fn x() {}",
                "ls:/w",
                "ls:/w/.git",
                "ls:/w/sub",
                "read:/w/.env",
                "stat:/w/sub/.env",
                "write:/w/.env:stolen",
                "read:/w/.git/hooks/pre-commit",
                "write:/w/.git/hooks/post-checkout:evil",
                "read:/w/config/app.toml",
                "write:/w/config/app.toml:port = 2",
                "append:/w/config/app.toml:x",
                "rm:/w/config/app.toml",
                "touch:/w/config/app.toml",
                "write:/w/config/new.toml:x",
                // Routes around the rules.
                "symlink:.env:/w/src/env-link",
                "read:/w/src/env-link",
                "symlink:../config:/w/src/cfg",
                "write:/w/src/cfg/app.toml:port = 3",
                "read:/w/src/../.env",
                "mv:/w/.git:/w/git",
                "mv:/w/config:/w/conf",
                "mv:/w/payload:/w/.git",
                "mv:/w/payload/evil:/w/.git/hooks/pre-push",
                "ln:/w/config/app.toml:/w/src/app.toml",
                "ln:/w/.env:/w/src/env",
                "mv:/w/.env:/w/src/env",
                "mkdir:/w/.git/hooks/new",
                "rmdir:/w/.git/hooks",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("read:/w/src/main.rs", "ok: fn main() {}"),
                ("write:/w/src/new.rs:fn x() {}", "ok"),
                ("ls:/w", "ok: .git,config,payload,src,sub"),
                ("ls:/w/.git", "ok: HEAD"),
                ("ls:/w/sub", "ok"),
                ("read:/w/.env", ENOENT),
                ("stat:/w/sub/.env", ENOENT),
                ("write:/w/.env:stolen", ENOENT),
                ("read:/w/.git/hooks/pre-commit", ENOENT),
                ("write:/w/.git/hooks/post-checkout:evil", ENOENT),
                ("read:/w/config/app.toml", "ok: port = 1"),
                ("write:/w/config/app.toml:port = 2", EACCES),
                ("append:/w/config/app.toml:x", EACCES),
                ("rm:/w/config/app.toml", EACCES),
                ("touch:/w/config/app.toml", EACCES),
                ("write:/w/config/new.toml:x", EACCES),
                ("symlink:.env:/w/src/env-link", "ok"),
                ("read:/w/src/env-link", ENOENT),
                ("write:/w/src/cfg/app.toml:port = 3", EACCES),
                ("read:/w/src/../.env", ENOENT),
                ("mv:/w/.git:/w/git", EACCES),
                ("mv:/w/config:/w/conf", EACCES),
                ("mv:/w/payload:/w/.git", EACCES),
                ("mv:/w/payload/evil:/w/.git/hooks/pre-push", ENOENT),
                ("ln:/w/config/app.toml:/w/src/app.toml", EACCES),
                ("ln:/w/.env:/w/src/env", ENOENT),
                ("mv:/w/.env:/w/src/env", ENOENT),
                ("mkdir:/w/.git/hooks/new", ENOENT),
                ("rmdir:/w/.git/hooks", ENOENT),
            ],
            guest,
        );
        // The relative link to `../config` is a fine thing to create; only
        // writing through it is refused.
        assert_eq!(
            answers.get("symlink:../config:/w/src/cfg").map(String::as_str),
            Some("ok"),
            "{guest}"
        );
        assert_eq!(protected(w.path()), before, "{guest}: a protected file changed");
        assert_eq!(fs::read_to_string(w.path().join("src/new.rs")).unwrap(), "fn x() {}");
        assert!(w.path().join("payload/evil").exists(), "{guest}");

        // Every refusal is recorded, with the guest path and the rule.
        let kinds: std::collections::BTreeSet<&str> = outcome.denials.iter().map(|d| d.kind.as_str()).collect();
        for kind in ["fs-read", "fs-write", "fs-create", "fs-remove", "fs-rename", "fs-link"] {
            assert!(
                kinds.contains(kind),
                "{guest}: no {kind} denial in {:#?}",
                outcome.denials
            );
        }
        assert!(
            outcome.denials.iter().any(|d| d.kind == "fs-read"
                && d.target == "/w/.env"
                && d.rule == "deny \"**/.env\" in the grant at /w"),
            "{guest}: {:#?}",
            outcome.denials
        );
        assert!(
            outcome.denials.iter().any(|d| d.kind == "fs-rename"
                && d.target == "/w/.git"
                && d.rule
                    .starts_with("deny \".git/hooks/**\" reaches inside it; moving it")),
            "{guest}: {:#?}",
            outcome.denials
        );
    }
}

/// A link that is one name in the grant's root is followed under the rules
/// like any other path: the guard decides such a name without reading the
/// disk and has wasmtime-wasi open or stat it without following a link
/// there, so a link planted at the name (by the host, or by the guest just
/// before) must send the operation back to be decided where it leads.
#[test]
fn fs_links_named_in_the_grant_root_are_decided_where_they_lead() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = workspace();
        let before = protected(w.path());
        for (link, target) in [
            ("k", ".env"),
            ("c", "config/app.toml"),
            ("h", ".git/hooks"),
            ("d", "made.txt"),
        ] {
            std::os::unix::fs::symlink(target, w.path().join(link)).unwrap();
        }
        let policy = workspace_policy(w.path(), true);
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                "read:/w/k",
                "meta:/w/k",
                "write:/w/k:stolen",
                "append:/w/k:stolen",
                "stat:/w/k",
                "read:/w/c",
                "meta:/w/c",
                "write:/w/c:port = 2",
                "append:/w/c:x",
                "touch:/w/c",
                "meta:/w/h",
                "ls:/w/h",
                "write:/w/d:made through a link",
                "read:/w/d",
                "symlink:.env:/w/g",
                "read:/w/g",
                "write:/w/g:stolen",
                "rm:/w/k",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("read:/w/k", ENOENT),
                ("meta:/w/k", ENOENT),
                ("write:/w/k:stolen", ENOENT),
                ("append:/w/k:stolen", ENOENT),
                // The link itself is a name the rules allow.
                ("stat:/w/k", "ok: 4 bytes"),
                ("read:/w/c", "ok: port = 1"),
                ("meta:/w/c", "ok: 9 bytes"),
                ("write:/w/c:port = 2", EACCES),
                ("append:/w/c:x", EACCES),
                ("touch:/w/c", EACCES),
                ("meta:/w/h", ENOENT),
                ("ls:/w/h", ENOENT),
                ("write:/w/d:made through a link", "ok"),
                ("read:/w/d", "ok: made through a link"),
                ("symlink:.env:/w/g", "ok"),
                ("read:/w/g", ENOENT),
                ("write:/w/g:stolen", ENOENT),
                ("rm:/w/k", "ok"),
            ],
            guest,
        );
        assert_eq!(protected(w.path()), before, "{guest}: a protected file changed");
        assert_eq!(
            fs::read_to_string(w.path().join("made.txt")).unwrap(),
            "made through a link"
        );
        for (kind, target) in [
            ("fs-read", "/w/.env"),
            ("fs-write", "/w/.env"),
            ("fs-write", "/w/config/app.toml"),
        ] {
            assert!(
                outcome.denials.iter().any(|d| d.kind == kind && d.target == target),
                "{guest}: no {kind} denial of {target} in {:#?}",
                outcome.denials
            );
        }
    }
}

/// Without `hide`, denied paths are refused with `EACCES` and their names
/// stay in listings (a name is not the content).
#[test]
fn fs_rules_without_hide_refuse_in_the_open() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = workspace();
        let policy = workspace_policy(w.path(), false);
        let (answers, _) = ops(
            &policy,
            guest,
            &[
                "read:/w/.env",
                "stat:/w/.env",
                "ls:/w/.git",
                "ls:/w/.git/hooks",
                "write:/w/sub/.env:x",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("read:/w/.env", EACCES),
                ("stat:/w/.env", EACCES),
                ("ls:/w/.git", "ok: HEAD,hooks"),
                ("ls:/w/.git/hooks", EACCES),
                ("write:/w/sub/.env:x", EACCES),
            ],
            guest,
        );
        assert_eq!(fs::read(w.path().join("sub/.env")).unwrap(), SECRET);
    }
}

/// Hiding drops entries from listings however many there are: the guest's
/// buffer is refilled until it is full, so a hidden entry never ends a listing
/// early (libc reads a short buffer as the end of the directory).
#[test]
fn fs_hidden_entries_leave_long_listings_whole() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        for i in 0..600 {
            let name = if i % 3 == 0 {
                format!("f{i:03}.key")
            } else {
                format!("f{i:03}.txt")
            };
            fs::write(w.path().join(name), "x").unwrap();
        }
        let policy = crate::policy_toml(
            &format!(
                "[[fs.dirs]]\nhost = \"{}\"\nguest = \"/w\"\naccess = \"read-only\"\ndeny = [\"*.key\"]\nhide = true\n",
                w.path().display()
            ),
            w.path(),
        );
        let (answers, _) = ops(&policy, guest, &["ls:/w"]);
        let listed = answers["ls:/w"]
            .strip_prefix("ok: ")
            .unwrap()
            .split(',')
            .collect::<Vec<_>>();
        let want: Vec<String> = (0..600)
            .filter(|i| i % 3 != 0)
            .map(|i| format!("f{i:03}.txt"))
            .collect();
        assert_eq!(listed, want, "{guest}");
    }
}

// Hidden entries leave no count behind: a stat or a listing answers the same
// whether the entries a grant hides are there or not. See: #20

/// The rules of [`hidden_traces_workspace`]'s grant.
const HIDDEN_TRACES_RULES: &str = "deny = [\"**/sealed\", \"**/.env\", \"**/.cache-*\"]\nhide = true\n";

/// A workspace with `keep.txt` and `sub/` holding `keep.txt` and 40
/// long-named files; when `hidden`, also what the rules hide beside them:
/// folders `sealed/` (with a folder inside) at the root and in `sub/`,
/// `sub/.env` (a hard link to `sub/keep.txt`) and 150 long-named
/// `sub/.cache-*` files, created between the visible ones.
fn hidden_traces_workspace(hidden: bool) -> tempfile::TempDir {
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    fs::write(p.join("keep.txt"), "kept").unwrap();
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("sub/keep.txt"), "kept").unwrap();
    for i in 0..150 {
        if i < 40 {
            fs::write(
                p.join(format!("sub/file-{i:03}-with-a-name-long-enough-to-fill-a-buffer")),
                "x",
            )
            .unwrap();
        }
        if hidden {
            fs::write(
                p.join(format!(".cache-{i:03}-with-a-name-long-enough-to-grow-a-folder")),
                "x",
            )
            .unwrap();
            fs::write(
                p.join(format!("sub/.cache-{i:03}-with-a-name-long-enough-to-grow-a-folder")),
                "x",
            )
            .unwrap();
        }
    }
    if hidden {
        fs::create_dir_all(p.join("sealed/inner")).unwrap();
        fs::create_dir_all(p.join("sub/sealed/inner")).unwrap();
        fs::hard_link(p.join("sub/keep.txt"), p.join("sub/.env")).unwrap();
    }
    w
}

/// Each probe with its answers in a workspace with hidden entries and in one
/// without.
type AnswersWithAndWithout = Vec<(String, String, String)>;

/// Runs `probes` on both targets in a [`hidden_traces_workspace`] with the
/// hidden entries and in one without, and gives each target's two answers
/// to every probe (with, without).
fn answers_with_and_without_hidden(probes: &[&str]) -> Vec<(&'static str, AnswersWithAndWithout)> {
    let mut out = Vec::new();
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let mut runs = Vec::new();
        for hidden in [true, false] {
            let w = hidden_traces_workspace(hidden);
            let policy = ruled_policy(w.path(), HIDDEN_TRACES_RULES);
            runs.push(ops(&policy, guest, probes).0);
        }
        let pairs = probes
            .iter()
            .map(|op| {
                let answer = |run: &BTreeMap<String, String>| run.get(*op).cloned().unwrap_or_default();
                (op.to_string(), answer(&runs[0]), answer(&runs[1]))
            })
            .collect();
        out.push((guest, pairs));
    }
    out
}

/// The values of `key` in an `nlink:` probe's answer (`ok: nlink N size S;
/// open: nlink N size S`), or the whole answer when it failed.
fn stat_fields(answer: &str, key: &str) -> Vec<String> {
    let Some(fields) = answer.strip_prefix("ok: ") else {
        return vec![answer.to_string()];
    };
    let words: Vec<&str> = fields.split([' ', ';']).filter(|w| !w.is_empty()).collect();
    words
        .windows(2)
        .filter(|pair| pair[0] == key)
        .map(|pair| pair[1].to_string())
        .collect()
}

/// A folder's link count counts its subfolders (each one's `..`), and a
/// file's counts its hard links: in a grant that hides paths, hidden
/// subfolders and a hidden hard link leave every link count as it would be
/// without them, by `stat` and by `fstat`, for the grant's root, a folder
/// in it and a file.
#[test]
fn fs_hidden_entries_do_not_count_in_link_counts() {
    let probes = ["nlink:/w", "nlink:/w/sub", "nlink:/w/sub/keep.txt", "nlink:/w/keep.txt"];
    for (guest, pairs) in answers_with_and_without_hidden(&probes) {
        for (op, with, without) in pairs {
            let (with, without) = (stat_fields(&with, "nlink"), stat_fields(&without, "nlink"));
            assert_eq!(with.len(), 2, "{guest}: {op} answered {with:?}");
            assert_eq!(with, without, "{guest}: {op} counts the hidden entries");
        }
    }
}

/// A folder's size grows with its entries (by their names on tmpfs, by
/// blocks on ext4): in a grant that hides paths, 150 hidden names and two
/// hidden folders leave a folder's size as it would be without them, by
/// `stat` and `fstat` in libc and by Rust's metadata.
#[test]
fn fs_hidden_entries_do_not_count_in_folder_sizes() {
    let probes = ["nlink:/w", "nlink:/w/sub", "stat:/w/sub", "meta:/w/sub", "stat:/w"];
    for (guest, pairs) in answers_with_and_without_hidden(&probes) {
        for (op, with, without) in pairs {
            let (with, without) = match op.starts_with("nlink:") {
                true => (stat_fields(&with, "size"), stat_fields(&without, "size")),
                false => (vec![with], vec![without]),
            };
            assert!(!with[0].starts_with("err"), "{guest}: {op} answered {with:?}");
            assert_eq!(with, without, "{guest}: {op} counts the hidden entries");
        }
    }
}

/// Preview 1 listing positions (`telldir`, the cookies `fd_readdir` gives)
/// number the entries shown without gaps, so they do not tell how many
/// hidden entries lie between them; and a listing read in many short calls
/// (Rust's `read_dir` starts with a 128-byte buffer and resumes from the
/// last cookie) is still whole, and so is one resumed from an earlier
/// position (`seekdir`).
#[test]
fn fs_hidden_entries_leave_no_gaps_in_listing_cookies() {
    let probes = ["cookies:/w", "cookies:/w/sub", "ls:/w/sub", "seek:/w/sub"];
    for (guest, pairs) in answers_with_and_without_hidden(&probes) {
        for (op, with, without) in &pairs {
            // The order entries come in is the disk's: compare the positions
            // in order and the names as a set.
            let split = |answer: &str| {
                let entries = answer
                    .strip_prefix("ok: ")
                    .unwrap_or_else(|| panic!("{guest}: {op}: {answer}"));
                let mut names = Vec::new();
                let mut positions = Vec::new();
                for entry in entries.split(',') {
                    let (name, at) = entry.rsplit_once('@').unwrap_or((entry, ""));
                    names.push(name.to_string());
                    positions.push(at.to_string());
                }
                names.sort();
                (names, positions)
            };
            if op.starts_with("seek:") {
                // Back to each position, last first: what follows it.
                assert_eq!(with, without, "{guest}: {op} shows the hidden entries");
                continue;
            }
            assert_eq!(split(with), split(without), "{guest}: {op} shows the hidden entries");
        }
        // Going back to a position (`seekdir`) lists on from there: the
        // entry after each one, last first, is each entry but the first.
        let cookies = pairs_answer(&pairs, "cookies:/w/sub");
        let mut after: Vec<&str> = cookies
            .trim_start_matches("ok: ")
            .split(',')
            .skip(1)
            .map(|e| e.rsplit_once('@').map_or(e, |(n, _)| n))
            .collect();
        after.push("-");
        after.reverse();
        assert_eq!(
            pairs_answer(&pairs, "seek:/w/sub"),
            format!("ok: {}", after.join(",")),
            "{guest}"
        );
        let listed = |op: &str| pairs_answer(&pairs, op);
        let mut want: Vec<String> = (0..40)
            .map(|i| format!("file-{i:03}-with-a-name-long-enough-to-fill-a-buffer"))
            .chain(["keep.txt".to_string()])
            .collect();
        want.sort();
        assert_eq!(listed("ls:/w/sub"), format!("ok: {}", want.join(",")), "{guest}");
    }
}

/// The one bit a hidden name still gives (see the README): a folder holding
/// only hidden entries is not empty to `rmdir` or to a rename onto it. The
/// answer is the one a folder with a visible entry gives, whether the hidden
/// entry is a file, a folder or many, and changes nothing.
#[test]
fn fs_folders_of_hidden_entries_refuse_removal_alike() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        let p = w.path();
        for dir in ["empty", "visible", "file", "folder/sealed/inner", "many/sealed"] {
            fs::create_dir_all(p.join(dir)).unwrap();
        }
        fs::write(p.join("visible/keep.txt"), "kept").unwrap();
        fs::write(p.join("file/.env"), SECRET).unwrap();
        for i in 0..20 {
            fs::write(p.join(format!("many/.cache-{i}")), "x").unwrap();
        }
        let before = snapshot(p);
        let policy = ruled_policy(p, HIDDEN_TRACES_RULES);
        let folders = ["visible", "file", "folder", "many"];
        let probes: Vec<String> = folders
            .iter()
            .flat_map(|f| [format!("rmdir:/w/{f}"), format!("mv:/w/empty:/w/{f}")])
            .collect();
        let args: Vec<&str> = probes.iter().map(String::as_str).collect();
        let (answers, _) = ops(&policy, guest, &args);
        for f in folders {
            let answer = |op: &str| answers.get(&format!("{op}:/w/{}", f)).cloned();
            assert_eq!(
                answer("rmdir"),
                answers.get("rmdir:/w/visible").cloned(),
                "{guest}: {f}"
            );
            let moved = answers.get(&format!("mv:/w/empty:/w/{f}")).cloned();
            assert_eq!(moved, answers.get("mv:/w/empty:/w/visible").cloned(), "{guest}: {f}");
        }
        assert_eq!(answers["rmdir:/w/visible"], "err 55", "{guest}: ENOTEMPTY");
        assert_eq!(snapshot(p), before, "{guest}: a refused removal changed the workspace");
    }
}

/// The answer (with hidden entries) to `op` among `pairs`.
fn pairs_answer(pairs: &AnswersWithAndWithout, op: &str) -> String {
    pairs
        .iter()
        .find(|(o, ..)| o == op)
        .map(|(_, with, _)| with.clone())
        .unwrap_or_default()
}

/// POSIX trailing slashes, in any grant (rules or not): `rmdir("dir/")`
/// removes the directory (wasmtime-wasi 48 alone answers `EINVAL`),
/// `rmdir("file/")` and `open("file/")` are `ENOTDIR`.
#[test]
fn fs_trailing_slashes_answer_as_posix_says() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        fs::create_dir(w.path().join("dir")).unwrap();
        fs::create_dir(w.path().join("dir2")).unwrap();
        fs::write(w.path().join("file"), "x").unwrap();
        let policy = grant(&[(w.path(), "/w", Access::ReadWrite)]);
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                "rmdir:/w/dir/",
                "rmdir:/w/dir2//",
                "rmdir:/w/file/",
                "read:/w/file/",
                "rm:/w/file/",
                "rmdir:/w/none/",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("rmdir:/w/dir/", "ok"),
                ("rmdir:/w/dir2//", "ok"),
                ("rmdir:/w/file/", ENOTDIR),
                ("read:/w/file/", ENOTDIR),
                ("rm:/w/file/", ENOTDIR),
                ("rmdir:/w/none/", ENOENT),
            ],
            guest,
        );
        assert!(!w.path().join("dir").exists() && !w.path().join("dir2").exists());
        assert!(w.path().join("file").is_file());
        assert!(outcome.denials.is_empty(), "{:?}", outcome.denials);
    }
}

/// What wasmtime-wasi refuses on its own (a change in a read-only grant, a
/// path leaving its grant) is recorded too, with the reason.
#[test]
fn fs_refusals_by_the_grants_themselves_are_recorded() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let layout = Layout::new();
        let policy = grant(&[(&layout.data(), "/data", Access::ReadOnly)]);
        let (answers, outcome) = ops(
            &policy,
            guest,
            &["write:/data/new.txt:x", "mkdir:/data/d", "read:/data/../outside.txt"],
        );
        assert!(answers.values().all(|a| a.starts_with("err")), "{guest}: {answers:?}");
        let find = |target: &str| outcome.denials.iter().find(|d| d.target == target);
        let write = find("/data/new.txt").unwrap_or_else(|| panic!("{guest}: {:#?}", outcome.denials));
        assert_eq!(write.rule, "the grant at /data is read-only", "{guest}");
        let mkdir = find("/data/d").unwrap_or_else(|| panic!("{guest}: {:#?}", outcome.denials));
        assert_eq!(
            (mkdir.kind.as_str(), mkdir.rule.as_str()),
            ("fs-create", "the grant at /data is read-only")
        );
        layout.assert_secrets_intact(guest);
    }
}

/// A read-write grant of `dir` at `/q` with the quota keys `keys` (TOML lines).
fn quota_grant(dir: &Path, keys: &str) -> Policy {
    let text = format!(
        "[[fs.dirs]]\nhost = \"{}\"\nguest = \"/q\"\naccess = \"read-write\"\n{keys}",
        dir.display()
    );
    crate::policy_toml(&text, dir)
}

/// A guest that fills its handle table while creating files in a ruled grant
/// with `max-files` is stopped by the `limits.handles` trap on both targets.
/// The trap comes from wasmtime-wasi after it made the file; a shortcut that
/// took it for an error and tried again the full way let the guest run on
/// (`EEXIST`), and made files past `max-files` without charging them.
#[test]
fn fs_handle_limit_stops_creations_in_a_ruled_grant() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        let keys = "deny = [\"**/.env\"]\nmax-files = 1000\n[limits]\nhandles = 24\n";
        let outcome = run(
            quota_grant(w.path(), keys),
            guest,
            &["hold:/q:200", "write:/q/after.txt:x"],
        );
        assert_status(&outcome, Status::Trap);
        let trap = outcome.trap.as_deref().unwrap_or("");
        assert!(trap.contains("limits.handles"), "{guest}: {trap}");
        assert!(!stdout(&outcome).contains("hold:"), "{guest}: {}", stdout(&outcome));
        assert!(!w.path().join("after.txt").exists(), "{guest}: the guest ran on");
        let made = fs::read_dir(w.path()).unwrap().count();
        assert!(made <= 24, "{guest}: {made} files made with 24 handles");
    }
}

/// A preview 1 `path_filestat_get` into a misaligned buffer traps, as
/// wasmtime-wasi makes it, also for one name in a ruled grant (where the
/// guard stats the name itself and copies the answer into guest memory);
/// an aligned buffer gets the stat.
#[test]
fn fs_stat_into_a_misaligned_buffer_traps_in_a_ruled_grant() {
    let w = workspace();
    let sandbox = wasmcell::Sandbox::builder()
        .policy(workspace_policy(w.path(), true))
        .build()
        .unwrap();
    // fd 3 is the grant; the name is `.git` at 0, the buffer at `BUF`.
    let stat = |buf: u32| {
        format!(
            r#"(module
                 (import "wasi_snapshot_preview1" "path_filestat_get"
                   (func $stat (param i32 i32 i32 i32 i32) (result i32)))
                 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (memory (export "memory") 1)
                 (data (i32.const 0) ".git")
                 (func (export "_start")
                   (call $exit (call $stat (i32.const 3) (i32.const 1) (i32.const 0) (i32.const 4) (i32.const {buf})))))"#
        )
    };
    let no_args: &[&str] = &[];
    let aligned = sandbox.load_bytes("aligned.wat", stat(64).as_bytes()).unwrap();
    assert_status(&sandbox.run_program(&aligned, no_args).unwrap(), Status::Exited(0));
    let misaligned = sandbox.load_bytes("misaligned.wat", stat(65).as_bytes()).unwrap();
    let outcome = sandbox.run_program(&misaligned, no_args).unwrap();
    assert_status(&outcome, Status::Trap);
}

/// Write quotas on both targets: the write that would pass `quota` does not
/// happen (the file keeps its size) and is refused as a full disk; growth by
/// appending and resizing counts; rewriting bytes a file already has does
/// not; `max-files` bounds creations (files, directories, links); every
/// refusal is an `fs-quota` record.
#[test]
fn fs_quotas_stop_the_write_that_crosses_them() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        fs::write(w.path().join("old.txt"), "0123456789").unwrap();
        let policy = quota_grant(w.path(), "quota = \"100 B\"\nmax-files = 3\n");
        let sixty = format!("write:/q/a.txt:{}", "a".repeat(60));
        let fifty = format!("write:/q/b.txt:{}", "b".repeat(50));
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                &sixty,
                &fifty,
                "append:/q/a.txt:0123456789",
                "write:/q/old.txt:9876543210",
                "append:/q/old.txt:abcdefghijklmnopqrstuvwxyz",
                "mkdir:/q/d",
                "symlink:x:/q/l",
                "mkdir:/q/e",
                // With max-files used up, a rewrite still works and a new
                // file still does not.
                "write:/q/old.txt:0123456789",
                "write:/q/c.txt:x",
            ],
        );
        let refused = |op: &str| answers[op].starts_with("err ");
        assert_eq!(answers[&sixty], "ok", "{guest}");
        assert!(refused(&fifty), "{guest}: {answers:?}");
        assert_eq!(answers["append:/q/a.txt:0123456789"], "ok", "{guest}");
        assert_eq!(
            answers["write:/q/old.txt:9876543210"], "ok",
            "{guest}: no growth, no charge"
        );
        assert!(
            refused("append:/q/old.txt:abcdefghijklmnopqrstuvwxyz"),
            "{guest}: {answers:?}"
        );
        assert_eq!(answers["mkdir:/q/d"], "ok", "{guest}");
        // a.txt, b.txt (created before its write was refused) and d: three.
        assert_eq!(answers["symlink:x:/q/l"], "err 51", "{guest}: ENOSPC");
        assert_eq!(answers["mkdir:/q/e"], "err 51", "{guest}: ENOSPC");
        assert_eq!(answers["write:/q/old.txt:0123456789"], "ok", "{guest}");
        assert_eq!(answers["write:/q/c.txt:x"], "err 51", "{guest}: ENOSPC");

        let size = |name: &str| fs::metadata(w.path().join(name)).unwrap().len();
        assert_eq!((size("a.txt"), size("b.txt"), size("old.txt")), (70, 0, 10), "{guest}");
        assert!(!w.path().join("l").exists() && !w.path().join("e").exists());
        assert!(!w.path().join("c.txt").exists(), "{guest}");
        let quota: Vec<_> = outcome.denials.iter().filter(|d| d.kind == "fs-quota").collect();
        assert_eq!(quota.len(), 5, "{guest}: {:#?}", outcome.denials);
        assert_eq!(quota[4].target, "/q/c.txt");
        assert_eq!(quota[0].target, "/q/b.txt");
        assert_eq!(
            quota[0].rule,
            "quota 100 B of the grant at /q: 60 B used, this write adds 50 B"
        );
        assert_eq!(quota[2].rule, "max-files 3 of the grant at /q: all used");
    }
}

/// Growth by `set_size` (`ftruncate`) counts against the quota on both
/// targets, and shrinking gives nothing back: a guest cannot reserve space
/// by cutting a file and growing it again. The extension that would pass
/// the quota does not happen, and is an `fs-quota` record.
#[test]
fn fs_quota_counts_growth_by_set_size() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        fs::write(w.path().join("old.txt"), "0123456789").unwrap();
        let policy = quota_grant(w.path(), "quota = \"100 B\"\n");
        let steps = [
            "size:/q/old.txt:60",  // +50: 50 B used
            "size:/q/old.txt:30",  // shrinks: still 50 B used
            "size:/q/old.txt:100", // +70 would make 120 B: refused
            "size:/q/old.txt:80",  // +50: exactly 100 B
            "size:/q/old.txt:81",  // +1: refused
        ];
        let (answers, outcome) = ops(&policy, guest, &steps);
        assert_eq!(answers[steps[0]], "ok: 60 bytes", "{guest}: {answers:?}");
        assert_eq!(answers[steps[1]], "ok: 30 bytes", "{guest}: {answers:?}");
        assert_eq!(answers[steps[2]], "err 51", "{guest}: ENOSPC, {answers:?}");
        assert_eq!(answers[steps[3]], "ok: 80 bytes", "{guest}: {answers:?}");
        assert_eq!(answers[steps[4]], "err 51", "{guest}: ENOSPC, {answers:?}");
        assert_eq!(fs::metadata(w.path().join("old.txt")).unwrap().len(), 80, "{guest}");
        let quota: Vec<_> = outcome.denials.iter().filter(|d| d.kind == "fs-quota").collect();
        assert_eq!(quota.len(), 2, "{guest}: {:#?}", outcome.denials);
        assert_eq!(quota[0].target, "/q/old.txt");
        assert_eq!(
            quota[0].rule,
            "quota 100 B of the grant at /q: 50 B used, this write adds 70 B"
        );
    }
}

/// A folder handle keeps the place it was opened at, but the guest may
/// rename that folder and put a new one of the same name, holding files of
/// the same names, where it was: creating files through the old handle must
/// still be charged against `max-files` (the guard cannot trust its own
/// picture of what exists below a handle that may have moved).
#[test]
fn fs_max_files_holds_through_a_renamed_folder_handle() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        let policy = quota_grant(w.path(), "max-files = 6\n");
        // Charged: d, the new d, its f1..f3 (5), then one create through
        // the old handle (6); the other two are past max-files.
        let (answers, _) = ops(&policy, guest, &["mkdir:/q/d", "stale:/q/d:/q/r:3"]);
        assert_eq!(
            answers["stale:/q/d:/q/r:3"], "ok: ok,err 51,err 51",
            "{guest}: {answers:?}"
        );
        let landed = fs::read_dir(w.path().join("r")).unwrap().count();
        assert_eq!(landed, 1, "{guest}: files created in the renamed folder");
    }
}

/// A creation that fails gives its `max-files` charge back, whichever way it
/// was charged: a folder, a symbolic link or a hard link over a name that
/// exists, a file opened for creating in a folder that does not; only what
/// was made counts.
#[test]
fn fs_max_files_counts_only_creations_that_happen() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        fs::write(w.path().join("old.txt"), "x").unwrap();
        let policy = quota_grant(w.path(), "max-files = 1\n");
        let failing = [
            "mkdir:/q/old.txt",
            "symlink:x:/q/old.txt",
            "ln:/q/old.txt:/q/old.txt",
            "write:/q/missing/f.txt:x",
        ];
        let all: Vec<&str> = failing.iter().copied().chain(["mkdir:/q/d", "mkdir:/q/e"]).collect();
        let (answers, outcome) = ops(&policy, guest, &all);
        for op in failing {
            assert!(answers[op].starts_with("err "), "{guest}: {op}: {answers:?}");
        }
        assert_eq!(
            answers["mkdir:/q/d"], "ok",
            "{guest}: the one creation max-files allows"
        );
        assert_eq!(answers["mkdir:/q/e"], "err 51", "{guest}: ENOSPC");
        let quota: Vec<_> = outcome.denials.iter().filter(|d| d.kind == "fs-quota").collect();
        assert_eq!(quota.len(), 1, "{guest}: {:#?}", outcome.denials);
        assert_eq!(quota[0].target, "/q/e", "{guest}");
    }
}

/// Routes found by review, each planted on both targets: a link followed by
/// a trailing `/` (which the OS follows even when the call does not); a link
/// or a folder standing in, by name, for the folder a rule reaches into; a
/// folder carried to a grant without rules; a path longer than any host path.
#[test]
fn fs_rules_hold_against_stand_ins_and_other_grants() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        let (ruled, plain) = (w.path().join("ruled"), w.path().join("plain"));
        fs::create_dir_all(ruled.join("proj/secrets")).unwrap();
        fs::create_dir(&plain).unwrap();
        fs::write(ruled.join("proj/.env"), SECRET).unwrap();
        fs::write(ruled.join("proj/secrets/key"), SECRET).unwrap();
        let text = "[[fs.dirs]]\nhost = \"ruled\"\nguest = \"/w\"\naccess = \"read-write\"\n\
             deny = [\"**/.env\", \".git/hooks/**\", \"proj/secrets\"]\nhide = true\n\
             [[fs.dirs]]\nhost = \"plain\"\nguest = \"/p\"\naccess = \"read-write\"\n";
        let policy = crate::policy_toml(text, w.path());
        let long = format!("read:/w/{}x", "a/".repeat(2100));
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                "symlink:proj/secrets:/w/s",
                "stat:/w/s",
                "stat:/w/s/",
                "ls:/w/s/",
                "symlink:g:/w/.git",
                "mkdir:/w/g",
                "mkdir:/w/g/hooks",
                "write:/w/g/hooks/pre-commit:evil",
                "mv:/w/g:/w/.git",
                "mv:/w/proj:/p/proj",
                "read:/p/proj/.env",
                &long,
            ],
        );
        assert_answers(
            &answers,
            &[
                ("symlink:proj/secrets:/w/s", "ok"),
                ("stat:/w/s/", ENOENT),
                ("ls:/w/s/", ENOENT),
                ("symlink:g:/w/.git", EACCES),
                ("write:/w/g/hooks/pre-commit:evil", "ok"),
                ("mv:/w/g:/w/.git", EACCES),
                ("mv:/w/proj:/p/proj", EACCES),
                ("read:/p/proj/.env", ENOENT),
                (&long, "err 37"),
            ],
            guest,
        );
        assert!(
            answers["stat:/w/s"].starts_with("ok"),
            "{guest}: the link itself is not denied"
        );
        assert!(
            !w.path().join("ruled/.git").exists() && ruled.join("proj/.env").exists(),
            "{guest}"
        );
        // The stand-in link is recorded under its own kind, with the rule.
        assert!(
            outcome.denials.iter().any(|d| d.kind == "fs-symlink"
                && d.target == "/w/.git"
                && d.rule
                    .starts_with("deny \".git/hooks/**\" reaches inside it; a link there")),
            "{guest}: {:#?}",
            outcome.denials
        );
    }
}

/// The library's audit hook sees each use as it happens, in order, and the
/// outcome counts the same uses.
#[test]
fn fs_audit_hook_sees_every_use() {
    use std::sync::{Arc, Mutex};
    let w = workspace();
    let seen: Arc<Mutex<Vec<wasmcell::CapabilityUse>>> = Arc::default();
    let sink = seen.clone();
    let sandbox = wasmcell::Sandbox::builder()
        .policy(workspace_policy(w.path(), true))
        .audit(Arc::new(move |u: &wasmcell::CapabilityUse| {
            sink.lock().unwrap().push(u.clone())
        }))
        .build()
        .unwrap();
    let outcome = sandbox
        .run(
            FS_OPS,
            &["read:/w/src/main.rs", "read:/w/.env", "write:/w/config/app.toml:x"],
        )
        .unwrap();
    assert_status(&outcome, Status::Exited(0));
    let seen = seen.lock().unwrap();
    let brief: Vec<(&str, &str, wasmcell::Decision)> = seen
        .iter()
        .map(|u| (u.kind.as_str(), u.target.as_str(), u.decision))
        .collect();
    use wasmcell::Decision::{Allowed, Denied};
    assert_eq!(
        brief,
        [
            ("fs-read", "/w/src/main.rs", Allowed),
            ("fs-read", "/w/.env", Denied),
            ("fs-write", "/w/config/app.toml", Denied)
        ]
    );
    let counted: u64 = outcome.uses.values().map(|c| c.allowed + c.denied).sum();
    assert_eq!(counted, 3, "{:?}", outcome.uses);
}

/// `[[fs.files]]` on both targets: the guest sees exactly the granted files in
/// their guest folder, each with its own access; nothing else of the host
/// folder can be read, listed, created or reached by `..` or a link, and a
/// granted file cannot be removed or renamed away.
#[test]
fn fs_file_grants_show_one_file_and_nothing_else() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        fs::create_dir(&conf).unwrap();
        fs::write(conf.join("app.conf"), "port = 1").unwrap();
        fs::write(conf.join("state.json"), "{}").unwrap();
        fs::write(conf.join("secret.key"), SECRET).unwrap();
        let policy = Policy::builder()
            .grant_file(conf.join("app.conf"), "/etc/app.conf", Access::ReadOnly)
            .grant_file(conf.join("state.json"), "/etc/state.json", Access::ReadWrite)
            .build()
            .unwrap();
        let before = snapshot(&conf);
        let (answers, outcome) = ops(
            &policy,
            guest,
            &[
                "ls:/etc",
                "read:/etc/app.conf",
                "write:/etc/app.conf:port = 2",
                "write:/etc/state.json:state=2",
                "read:/etc/secret.key",
                "stat:/etc/secret.key",
                "write:/etc/new.txt:x",
                "rm:/etc/state.json",
                "mv:/etc/state.json:/etc/moved.json",
                "ln:/etc/app.conf:/etc/copy.conf",
                "symlink:secret.key:/etc/key",
                "read:/etc/../etc/secret.key",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("ls:/etc", "ok: app.conf,state.json"),
                ("read:/etc/app.conf", "ok: port = 1"),
                ("write:/etc/app.conf:port = 2", EACCES),
                ("write:/etc/state.json:state=2", "ok"),
                ("read:/etc/secret.key", ENOENT),
                ("stat:/etc/secret.key", ENOENT),
                ("write:/etc/new.txt:x", ENOENT),
                ("rm:/etc/state.json", EACCES),
                ("mv:/etc/state.json:/etc/moved.json", EACCES),
                ("ln:/etc/app.conf:/etc/copy.conf", EACCES),
                ("symlink:secret.key:/etc/key", ENOENT),
            ],
            guest,
        );
        assert!(
            answers["read:/etc/../etc/secret.key"].starts_with("err"),
            "{guest}: {answers:?}"
        );
        assert_only_state_written(&conf, before, guest);
        fs::write(conf.join("state.json"), "{}").unwrap();
        assert!(
            outcome.denials.iter().any(|d| d.target == "/etc/secret.key"),
            "{:#?}",
            outcome.denials
        );
    }
}

/// Asserts that of `conf`'s entries (`before` the run) only `state.json`
/// changed, to `state=2`.
fn assert_only_state_written(conf: &Path, mut before: BTreeMap<PathBuf, Entry>, guest: &str) {
    let mut after = snapshot(conf);
    assert_eq!(
        after.remove(Path::new("state.json")),
        Some(Entry::File(b"state=2".to_vec()))
    );
    before.remove(Path::new("state.json"));
    assert_eq!(after, before, "{guest}: only state.json may change");
}

/// A file granted under another name (`conf/one.conf` at `/etc/app.conf`),
/// on both targets: the guest reads, stats and lists it by its guest name
/// only; the host name, a host sibling that happens to bear the guest name,
/// other siblings and a host link answer as absent through every spelling;
/// the read-only one refuses writes, the read-write one writes the host
/// file, and neither can be removed, renamed, linked or created beside.
#[test]
fn fs_file_grants_under_another_name_show_the_guest_name_only() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        fs::create_dir_all(conf.join("private")).unwrap();
        fs::write(conf.join("one.conf"), "port = 1").unwrap();
        // The host's own `app.conf` must never stand in for the guest's.
        fs::write(conf.join("app.conf"), SECRET).unwrap();
        fs::write(conf.join("state.json"), "{}").unwrap();
        fs::write(conf.join("two.conf"), "port = 3").unwrap();
        fs::write(conf.join("secret.key"), SECRET).unwrap();
        std::os::unix::fs::symlink("app.conf", conf.join("alias")).unwrap();
        let policy = Policy::builder()
            .grant_file(conf.join("one.conf"), "/etc/app.conf", Access::ReadOnly)
            .grant_file(conf.join("state.json"), "/etc/state.db", Access::ReadWrite)
            .grant_file(conf.join("two.conf"), "/etc/linked.conf", Access::ReadOnly)
            .build()
            .unwrap();
        // A granted file the host has since replaced by a link: its target
        // names host entries, so the guard does not follow it.
        fs::remove_file(conf.join("two.conf")).unwrap();
        std::os::unix::fs::symlink("app.conf", conf.join("two.conf")).unwrap();
        let before = snapshot(&conf);
        let hidden = [
            "one.conf",
            "state.json",
            "two.conf",
            "secret.key",
            "alias",
            "private",
            "nothere",
        ];
        let mut probes = vec![
            "ls:/etc".to_string(),
            "read:/etc/app.conf".into(),
            "stat:/etc/app.conf".into(),
            "meta:/etc/app.conf".into(),
            "at:/etc:app.conf".into(),
            "read:/etc/./app.conf".into(),
            "read:etc/app.conf".into(),
            "read:/etc/linked.conf".into(),
            "read:/etc/state.db".into(),
            "write:/etc/app.conf:port = 2".into(),
            "write:/etc/state.db:state=2".into(),
            "rm:/etc/app.conf".into(),
            "mv:/etc/app.conf:/etc/moved.conf".into(),
            "mv:/etc/state.db:/etc/one.conf".into(),
            "ln:/etc/app.conf:/etc/copy.conf".into(),
            "symlink:one.conf:/etc/key".into(),
        ];
        let spellings = |name: &str| {
            [
                format!("read:/etc/{name}"),
                format!("stat:/etc/{name}"),
                format!("write:/etc/{name}:x"),
                format!("read:/etc/./{name}"),
                format!("read:/etc/app.conf/../{name}"),
                format!("stat:/etc/app.conf/../{name}"),
                format!("read:/etc/{name}/../app.conf"),
                format!("at:/etc:{name}"),
                format!("at:/etc:./{name}"),
                format!("read:/etc/../etc/{name}"),
                format!("read:etc/{name}"),
                format!("read:/etc//{name}"),
                format!("read:etc/app.conf/../{name}"),
            ]
        };
        for name in hidden {
            probes.extend(spellings(name));
        }
        let args: Vec<&str> = probes.iter().map(String::as_str).collect();
        let (answers, outcome) = ops(&policy, guest, &args);
        assert_answers(
            &answers,
            &[
                ("ls:/etc", "ok: app.conf,linked.conf,state.db"),
                ("read:/etc/app.conf", "ok: port = 1"),
                ("stat:/etc/app.conf", "ok: 8 bytes"),
                ("meta:/etc/app.conf", "ok: 8 bytes"),
                ("at:/etc:app.conf", "ok: port = 1"),
                ("read:/etc/./app.conf", "ok: port = 1"),
                ("read:etc/app.conf", "ok: port = 1"),
                ("read:/etc/linked.conf", EACCES),
                ("read:/etc/state.db", "ok: {}"),
                ("write:/etc/app.conf:port = 2", EACCES),
                ("write:/etc/state.db:state=2", "ok"),
                ("rm:/etc/app.conf", EACCES),
                ("mv:/etc/app.conf:/etc/moved.conf", EACCES),
                ("mv:/etc/state.db:/etc/one.conf", EACCES),
                ("ln:/etc/app.conf:/etc/copy.conf", EACCES),
                ("symlink:one.conf:/etc/key", ENOENT),
            ],
            guest,
        );
        // Every hidden name answers every spelling as a name that does not
        // exist answers it.
        for name in hidden {
            for (probe, absent) in spellings(name).iter().zip(spellings("nothere")) {
                assert_eq!(answers[probe], answers[&absent], "{guest}: `{probe}`: {answers:?}");
                assert!(answers[probe].starts_with("err"), "{guest}: `{probe}`: {answers:?}");
            }
            assert_eq!(answers[&format!("read:/etc/{name}")], ENOENT, "{guest}");
            assert_eq!(answers[&format!("write:/etc/{name}:x")], ENOENT, "{guest}");
        }
        assert_only_state_written(&conf, before, guest);
        // Records speak of the guest's names, and show the host file.
        let refused = outcome
            .denials
            .iter()
            .find(|d| d.target == "/etc/app.conf" && d.kind == "fs-write");
        let refused = refused.unwrap_or_else(|| panic!("{guest}: {:#?}", outcome.denials));
        assert!(
            refused
                .rule
                .contains(&format!("host file `{}`", conf.join("one.conf").display())),
            "{refused:?}"
        );
        assert!(
            outcome.denials.iter().any(|d| d.target == "/etc/one.conf"),
            "{guest}: {:#?}",
            outcome.denials
        );
    }
}

/// Two files of one host folder may trade names in the guest: each guest
/// name reaches the host file granted under it, on both targets.
#[test]
fn fs_file_grants_may_trade_names() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.conf"), "from a").unwrap();
        fs::write(dir.path().join("b.conf"), "from b").unwrap();
        let policy = Policy::builder()
            .grant_file(dir.path().join("a.conf"), "/etc/b.conf", Access::ReadOnly)
            .grant_file(dir.path().join("b.conf"), "/etc/a.conf", Access::ReadWrite)
            .build()
            .unwrap();
        let (answers, _) = ops(
            &policy,
            guest,
            &[
                "ls:/etc",
                "read:/etc/a.conf",
                "read:/etc/b.conf",
                "write:/etc/a.conf:new b",
                "write:/etc/b.conf:x",
            ],
        );
        assert_answers(
            &answers,
            &[
                ("ls:/etc", "ok: a.conf,b.conf"),
                ("read:/etc/a.conf", "ok: from b"),
                ("read:/etc/b.conf", "ok: from a"),
                ("write:/etc/a.conf:new b", "ok"),
                ("write:/etc/b.conf:x", EACCES),
            ],
            guest,
        );
        assert_eq!(fs::read(dir.path().join("b.conf")).unwrap(), b"new b");
        assert_eq!(fs::read(dir.path().join("a.conf")).unwrap(), b"from a");
    }
}

// ---------------------------------------------------------------------------
// The path walk: a path that passes through a name a rule hides or denies is
// decided as if that name were absent (hidden) or refused (denied), before
// anything below or after it is looked at. Each probe shape below is run
// with a ruled folder, a ruled file and a ruled absent name in place of `@`,
// and must answer the same for all three. See: #20

/// One probe shape: an `fs_ops` operation where `{G}` is the grant's guest
/// folder, `{K}` a file the rules let the guest read, `@` the name probed.
/// `ours` says the guard answers it (with the rule's errno); otherwise
/// wasmtime-wasi refuses it (a `..` above a held folder), the same for all.
struct Probe {
    shape: String,
    ours: bool,
}

/// Every shape of path that walks through `@` (and on, or back out).
fn probe_shapes() -> Vec<Probe> {
    let long = "n".repeat(300);
    let ours = [
        "read:{G}/@/../{K}".to_string(),
        "read:{G}/@/./../{K}".to_string(),
        "read:{G}/@/inner/../../{K}".to_string(),
        "read:{G}/@/nosuch/../../{K}".to_string(),
        "read:{G}/@//..//{K}".to_string(),
        format!("read:{{G}}/@/{long}"),
        format!("read:{{G}}/@/{long}/../../{{K}}"),
        format!("stat:{{G}}/@/{long}"),
        "read:{G}/@/".to_string(),
        "read:{G}/@/.".to_string(),
        "read:{G}/@/..".to_string(),
        "stat:{G}/@/".to_string(),
        "stat:{G}/@/.".to_string(),
        "stat:{G}/@/..".to_string(),
        "meta:{G}/@/../{K}".to_string(),
        "ls:{G}/@/..".to_string(),
        "ls:{G}/@/../".to_string(),
        "ls:{G}/@/../.".to_string(),
        "write:{G}/@/../{K}:changed".to_string(),
        "append:{G}/@/../{K}:changed".to_string(),
        "touch:{G}/@/../{K}".to_string(),
        "mkdir:{G}/@/../made".to_string(),
        "rmdir:{G}/@/../nosuchdir".to_string(),
        "rmdir:{G}/@/../nosuchdir/".to_string(),
        "rm:{G}/@/../nosuchfile".to_string(),
        "mv:{G}/@/../{K}:{G}/moved".to_string(),
        "ln:{G}/@/../{K}:{G}/linked".to_string(),
        "symlink:x:{G}/@/../sl".to_string(),
        "readlink:{G}/@/../{K}".to_string(),
        "at:{G}:@/../{K}".to_string(),
        "at:{G}:@/x/../../{K}".to_string(),
        // Links the host planted, one per name: `via-@ -> @/../{K}` and
        // `to-@ -> @`; the walk through a link's target is the same walk.
        "read:{G}/via-@".to_string(),
        "read:{G}/to-@/../{K}".to_string(),
        "ls:{G}/to-@/..".to_string(),
    ];
    let mut shapes: Vec<Probe> = ours.into_iter().map(|shape| Probe { shape, ours: true }).collect();
    // From a held folder, `..` above it is refused by wasmtime-wasi,
    // whatever follows.
    for shape in ["at:{G}/sub:../@/../{K}", "at:{G}/sub:../@"] {
        shapes.push(Probe {
            shape: shape.to_string(),
            ours: false,
        });
    }
    shapes
}

/// Plants in `root` the links the probe shapes follow, for each name.
fn plant_probe_links(root: &Path, names: &[&str], readable: &str) {
    for name in names {
        let flat = name.replace('/', "-");
        std::os::unix::fs::symlink(format!("{name}/../{readable}"), root.join(format!("via-{flat}"))).unwrap();
        std::os::unix::fs::symlink(name, root.join(format!("to-{flat}"))).unwrap();
    }
}

/// Runs every probe shape with each of `names` in place of `@` (the guest
/// folder `grant`, the readable file `readable`) on both targets, and
/// asserts that each shape answers alike for every name: `errno` where the
/// guard answers, an error in any case.
#[track_caller]
fn assert_probes_alike(policy: &Policy, grant: &str, readable: &str, names: &[&str], errno: &str) {
    let shapes = probe_shapes();
    let fill = |shape: &str, name: &str| {
        let flat = name.replace('/', "-");
        shape
            .replace("via-@", &format!("via-{flat}"))
            .replace("to-@", &format!("to-{flat}"))
            .replace("{G}", grant)
            .replace("{K}", readable)
            .replace('@', name)
    };
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let all: Vec<String> = names
            .iter()
            .flat_map(|name| shapes.iter().map(|p| fill(&p.shape, name)))
            .collect();
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        let (answers, outcome) = ops(policy, guest, &args);
        // A refusal on the way is recorded, naming the ruled name passed.
        let first = format!("{grant}/{}", names[0]);
        assert!(
            outcome.denials.iter().any(|d| d.target == first),
            "{guest}: no denial of {first} in {:#?}",
            outcome.denials
        );
        let mut wrong = Vec::new();
        for probe in &shapes {
            let per_name: Vec<(&str, &str)> = names
                .iter()
                .map(|name| {
                    let op = fill(&probe.shape, name);
                    let answer = answers.get(&op).map(String::as_str).unwrap_or("(no answer)");
                    (*name, answer)
                })
                .collect();
            let first = per_name[0].1;
            let alike = per_name.iter().all(|(_, a)| *a == first);
            let right = if probe.ours {
                first == errno
            } else {
                first.starts_with("err")
            };
            if !(alike && right) {
                let want = if probe.ours { errno } else { "one error" };
                wrong.push(format!(
                    "`{}` must answer {want} for every name: {per_name:?}",
                    probe.shape
                ));
            }
        }
        assert!(wrong.is_empty(), "{guest}:\n{}", wrong.join("\n"));
    }
}

/// The workspace the probes run in: `keep.txt` beside a ruled folder (with
/// `inner/` and `sub/` in it), a ruled file and room for a ruled absent name.
fn probe_workspace(folder: &str, file: &str) -> tempfile::TempDir {
    let w = tempfile::tempdir().unwrap();
    let p = w.path();
    fs::write(p.join("keep.txt"), "kept").unwrap();
    fs::create_dir(p.join("sub")).unwrap();
    fs::create_dir_all(p.join(folder).join("inner")).unwrap();
    fs::create_dir_all(p.join(folder).join("sub")).unwrap();
    fs::write(p.join(folder).join("id.key"), SECRET).unwrap();
    fs::write(p.join(file), SECRET).unwrap();
    w
}

fn ruled_policy(root: &Path, rules: &str) -> Policy {
    crate::policy_toml(
        &format!(
            "[[fs.dirs]]\nhost = \"{}\"\nguest = \"/w\"\naccess = \"read-write\"\n{rules}",
            root.display()
        ),
        root,
    )
}

/// Hidden names: a hidden folder, a hidden file and a hidden name that does
/// not exist answer every probe shape with the same `ENOENT`, and so do
/// names inside the hidden folder; nothing the probes name changes.
#[test]
fn fs_hidden_names_answer_alike_through_any_path_shape() {
    let w = probe_workspace("sealed", ".env");
    let names = [
        "sealed",
        ".env",
        "ghost",
        "sealed/id.key",
        "sealed/sub",
        "sealed/nosuch",
    ];
    plant_probe_links(w.path(), &names, "keep.txt");
    let before = snapshot(w.path());
    let policy = ruled_policy(w.path(), "deny = [\"sealed\", \"**/.env\", \"ghost\"]\nhide = true\n");
    assert_probes_alike(&policy, "/w", "keep.txt", &names, ENOENT);
    assert_eq!(snapshot(w.path()), before, "a probe changed the workspace");
}

/// Denied names without `hide`: a denied folder, file and absent name, and
/// names inside the denied folder (`keys/id.key/../../keep.txt` and
/// `keys/nosuch/../../keep.txt`), answer every probe shape with the same
/// `EACCES`.
#[test]
fn fs_denied_names_answer_alike_through_any_path_shape() {
    let w = probe_workspace("keys", "locked.txt");
    let names = ["keys", "locked.txt", "absent", "keys/id.key", "keys/sub", "keys/nosuch"];
    plant_probe_links(w.path(), &names, "keep.txt");
    let before = snapshot(w.path());
    let policy = ruled_policy(w.path(), "deny = [\"keys\", \"locked.txt\", \"absent\"]\n");
    assert_probes_alike(&policy, "/w", "keep.txt", &names, EACCES);
    assert_eq!(snapshot(w.path()), before, "a probe changed the workspace");
}

/// The folder of a file grant shows only the granted file, whatever else the
/// host folder holds: a host file, a host folder and an absent name beside it
/// answer every probe shape alike (`ENOENT`), and so does a path through the
/// granted file itself (`app.conf/../NAME`).
#[test]
fn fs_file_grants_folder_answers_alike_through_any_path_shape() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        fs::create_dir_all(conf.join("private/inner")).unwrap();
        fs::write(conf.join("app.conf"), "port = 1").unwrap();
        fs::write(conf.join("secret.key"), SECRET).unwrap();
        let policy = Policy::builder()
            .grant_file(conf.join("app.conf"), "/etc/app.conf", Access::ReadOnly)
            .build()
            .unwrap();
        let names = ["private", "secret.key", "nothere"];
        let mut per_name = Vec::new();
        for name in names {
            let ops_here = [
                format!("read:/etc/app.conf/../{name}"),
                format!("stat:/etc/app.conf/../{name}"),
                format!("read:/etc/app.conf/../{name}/../app.conf"),
                format!("read:/etc/{name}/../app.conf"),
                format!("stat:/etc/{name}/.."),
                format!("ls:/etc/{name}/.."),
                format!("read:/etc/{name}/inner/../../app.conf"),
                format!("read:/etc/{name}/{}", "n".repeat(300)),
                format!("stat:/etc/{name}/"),
                format!("at:/etc:{name}/../app.conf"),
            ];
            let args: Vec<&str> = ops_here.iter().map(String::as_str).collect();
            let (answers, _) = ops(&policy, guest, &args);
            per_name.push(ops_here.iter().map(|op| answers[op].clone()).collect::<Vec<_>>());
        }
        for (i, answers) in per_name.iter().enumerate() {
            assert!(
                answers.iter().all(|a| a == ENOENT),
                "{guest}: `{}` answered {answers:?}",
                names[i]
            );
        }
    }
}

/// `read-only` rules refuse a change with `EACCES` whatever the path passes
/// on its way: a folder, a file, an absent name or a link (out of the grant,
/// or a loop) below the read-only folder, followed by `..`, a long name or
/// more components.
#[test]
fn fs_read_only_rules_refuse_alike_through_any_path_shape() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = probe_workspace("config", "config/app.toml");
        // Links the walk would follow out of the grant, or round forever.
        std::os::unix::fs::symlink("/etc", w.path().join("config/out")).unwrap();
        std::os::unix::fs::symlink("loop", w.path().join("config/loop")).unwrap();
        let policy = ruled_policy(w.path(), "read-only = [\"config/**\"]\n");
        let before = snapshot(w.path());
        let long = "n".repeat(300);
        let mut rows = Vec::new();
        for name in [
            "config/sub",
            "config/app.toml",
            "config/nosuch",
            "config/out",
            "config/loop",
        ] {
            let shapes = [
                format!("write:/w/{name}/../new.txt:x"),
                format!("write:/w/{name}/x/../../app.toml:x"),
                format!("write:/w/{name}/{long}:x"),
                format!("mkdir:/w/{name}/../made"),
                format!("rm:/w/{name}/../app.toml"),
            ];
            let args: Vec<&str> = shapes.iter().map(String::as_str).collect();
            let (answers, _) = ops(&policy, guest, &args);
            rows.push((name, shapes.iter().map(|op| answers[op].clone()).collect::<Vec<_>>()));
        }
        for (name, answers) in &rows {
            assert!(
                answers.iter().all(|a| a == EACCES),
                "{guest}: `{name}` answered {answers:?}"
            );
        }
        assert_eq!(snapshot(w.path()), before, "{guest}: a read-only file changed");
    }
}

/// Routes around quotas found by review: a handle whose reads move its
/// position (so a write lands past where the last write ended), and moving
/// files in from another grant, which the quota never charged.
#[test]
fn fs_quotas_hold_against_reads_and_moves_between_grants() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        let w = tempfile::tempdir().unwrap();
        fs::create_dir_all(w.path().join("q")).unwrap();
        fs::create_dir_all(w.path().join("other")).unwrap();
        fs::write(w.path().join("other/big.bin"), vec![7u8; 64 * 1024]).unwrap();
        let text = "[[fs.dirs]]\nhost = \"q\"\nguest = \"/q\"\naccess = \"read-write\"\nquota = \"4 KiB\"\n\
                    [[fs.dirs]]\nhost = \"other\"\nguest = \"/other\"\naccess = \"read-write\"\n";
        let policy = crate::policy_toml(text, w.path());
        let (answers, _) = ops(
            &policy,
            guest,
            &["grow:/q/g:10", "mv:/other/big.bin:/q/big.bin", "ln:/other/big.bin:/q/l"],
        );
        assert!(answers["grow:/q/g:10"].starts_with("err"), "{guest}: {answers:?}");
        let size = fs::metadata(w.path().join("q/g")).unwrap().len();
        assert!(size <= 4096, "{guest}: grew to {size} bytes past a 4 KiB quota");
        assert_eq!(answers["mv:/other/big.bin:/q/big.bin"], "err 75", "{guest}: EXDEV");
        assert_eq!(answers["ln:/other/big.bin:/q/l"], "err 75", "{guest}: EXDEV");
        assert!(w.path().join("other/big.bin").exists() && !w.path().join("q/big.bin").exists());
    }
}

// See: #20
/// A handle's writes are charged against the file's size as it is, not as
/// that handle last left it: after another handle opens the file with
/// `O_TRUNC`, rewriting the lost bytes is growth again, charged again
/// (truncation gives nothing back). Without that, five rounds wrote 360,000
/// bytes under a 64 KiB quota on preview 1. Both shapes: the rewrite starts
/// after the truncation, or a first byte goes in before it (the rest
/// continuing one write stream on preview 2, which then charged against the
/// size the file had when the stream was made).
#[test]
fn fs_quota_charges_a_rewrite_after_another_handle_truncates() {
    for guest in both(FS_OPS, FS_OPS_COMPONENT) {
        for before in [0, 1] {
            let w = tempfile::tempdir().unwrap();
            let policy = quota_grant(w.path(), "quota = \"64 KiB\"\n");
            let op = format!("retrunc:/q/f:60000:5:{before}");
            let (answers, outcome) = ops(&policy, guest, &[&op]);
            // Preview 1 says ENOSPC; a component's libc reports a refused
            // stream write as EIO. The record says it was the quota.
            let answer = &answers[&op];
            assert!(answer.starts_with("err "), "{guest}, {before}: {answers:?}");
            if guest == FS_OPS {
                assert_eq!(answer, "err 51", "{guest}, {before}: ENOSPC");
            }
            let size = fs::metadata(w.path().join("f")).unwrap().len();
            assert!(size <= 64 * 1024, "{guest}, {before}: {size} bytes");
            let quota: Vec<_> = outcome.denials.iter().filter(|d| d.kind == "fs-quota").collect();
            assert_eq!(quota.len(), 1, "{guest}, {before}: {:#?}", outcome.denials);
            assert_eq!(quota[0].target, "/q/f", "{guest}, {before}");
        }
    }
}

/// `[fs] cwd` names the guest's initial working directory: components are told it as
/// `initial-cwd` (wasmtime's `-S cwd`, its `p2_cli_initial_cwd`), and every guest sees it as
/// `PWD`, where preview 1 programs read it. wasi-libc starts at `/` either way, so the guest
/// changes there itself, and a relative name then resolves inside it. Before the fix the guest
/// was told neither (`initial-cwd: none`, `PWD: none`).
#[test]
fn fs_cwd() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub/hello.txt"), "hello from sub\n").unwrap();
    fs::write(dir.path().join("hello.txt"), "hello from the top\n").unwrap();
    let grant = "[[fs.dirs]]\nhost = \".\"\nguest = \"/data\"\naccess = \"read-only\"\n";
    let policy = crate::policy_toml(&format!("[fs]\ncwd = \"/data/sub\"\n{grant}"), dir.path());
    assert_eq!(policy.cwd(), Some("/data/sub"));
    for (guest, told) in [(FS_CWD, ""), (FS_CWD_COMPONENT, "initial-cwd: /data/sub\n")] {
        let outcome = run(policy.clone(), guest, &[]);
        assert_status(&outcome, Status::Exited(0));
        assert_eq!(
            stdout(&outcome),
            format!("start: /\nPWD: /data/sub\n{told}cwd: /data/sub\nhello.txt: hello from sub\n"),
            "{guest}"
        );
    }
    // Without it the guest is told nothing and stays at `/`, where no grant is.
    let policy = crate::policy_toml(grant, dir.path());
    for (guest, told) in [(FS_CWD, ""), (FS_CWD_COMPONENT, "initial-cwd: none\n")] {
        let outcome = run(policy.clone(), guest, &[]);
        assert_status(&outcome, Status::Exited(0));
        let out = stdout(&outcome);
        assert!(
            out.starts_with(&format!("start: /\nPWD: none\n{told}cwd: /\nhello.txt: error ")),
            "{guest}: {out}"
        );
    }
}

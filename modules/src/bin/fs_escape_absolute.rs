//! Needs no grants (a `/data` preopen is allowed); absolute host paths, plus any given in
//! args[1..], must fail to read, and listing `/` must show no host directories.

/// Names that would show `/` is the host's root rather than the sandbox's.
const HOST_ROOT_ENTRIES: &[&str] = &["etc", "proc", "tmp", "home", "root"];

fn main() {
    let fixed = ["/etc/passwd", "/proc/self/mem", "/proc/self/environ"].map(String::from);
    for path in fixed.into_iter().chain(std::env::args().skip(1)) {
        match std::fs::read(&path) {
            Ok(bytes) => panic!("read {path} outside the sandbox ({} bytes)", bytes.len()),
            Err(err) => {
                eprintln!("{path}: {err}");
                println!("denied {path}");
            }
        }
    }

    // The guest's `/` may legitimately list the preopens' names, never the host's.
    match std::fs::read_dir("/") {
        Ok(entries) => {
            let names: Vec<String> = entries
                .map(|entry| entry.expect("read_dir entry of /").file_name())
                .map(|name| name.to_string_lossy().into_owned())
                .collect();
            eprintln!("/: listed {names:?}");
            for name in &names {
                assert!(
                    !HOST_ROOT_ENTRIES.contains(&name.as_str()),
                    "listing / showed the host's {name}: {names:?}"
                );
            }
            println!("denied /");
        }
        Err(err) => {
            eprintln!("/: {err}");
            println!("denied /");
        }
    }

    match std::fs::read_dir("/tmp") {
        Ok(_) => panic!("listed /tmp outside the sandbox"),
        Err(err) => {
            eprintln!("/tmp: {err}");
            println!("denied /tmp");
        }
    }
}

//! Needs a writable preopen holding args[1]; writes args[2] there, reads it back, asserts
//! they match and prints `wrote <n> bytes`.

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(content)) = (args.next(), args.next()) else {
        panic!("usage: fs_write <path> <content>");
    };
    std::fs::write(&path, &content).unwrap_or_else(|err| panic!("write {path}: {err}"));
    let back = std::fs::read(&path).unwrap_or_else(|err| panic!("read back {path}: {err}"));
    assert_eq!(back, content.as_bytes(), "{path} did not read back as written");
    println!("wrote {} bytes", content.len());
}

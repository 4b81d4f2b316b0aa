//! Expects a preopen at `/data` whose host parent holds `outside.txt`; every path that climbs
//! out with `..` must fail to read (or, for `/data/../escaped.txt`, to create).

const READS: &[&str] = &[
    "/data/../outside.txt",
    "/data/sub/../../outside.txt",
    "../outside.txt",
    "/data/./../outside.txt",
];

const CREATE: &str = "/data/../escaped.txt";

fn main() {
    // Gives `/data/sub/../..` a real directory to climb from; a read-only preopen refuses, which is fine.
    let _ = std::fs::create_dir("/data/sub");

    for path in READS {
        match std::fs::read(path) {
            Ok(bytes) => panic!("read {path} escaped the preopen ({} bytes)", bytes.len()),
            Err(err) => {
                eprintln!("{path}: {err}");
                println!("denied {path}");
            }
        }
    }

    match std::fs::File::create_new(CREATE) {
        Ok(_) => panic!("created {CREATE} outside the preopen"),
        Err(err) => {
            eprintln!("{CREATE}: {err}");
            println!("denied {CREATE}");
        }
    }
}

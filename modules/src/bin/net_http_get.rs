//! Takes URLs (`http://127.0.0.1:8080/path`) and makes a GET request to each
//! in turn with `wasi:http`, printing `status <code>` and then the body, and
//! exiting 0; on any failure it prints `refused: <error>` and exits 1. Only the
//! wasm32-wasip2 build can make requests: std has no HTTP API, so it uses the
//! `wasi` crate's bindings, and the other builds report `refused: Unsupported`.
//!
//! The URL's parts are set as written, so a test can plant odd requests: a
//! scheme other than `http` or `https` is sent as `Other` (`ftp://...`), a URL
//! that starts with `//` sets no scheme, an empty authority (`http:///path`)
//! sets none, and an authority is passed on verbatim (`x:secret@host:port`).

fn main() {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    assert!(!urls.is_empty(), "usage: net_http_get URL...");
    for url in urls {
        match get(&url) {
            Ok((status, body)) => {
                println!("status {status}");
                print!("{}", String::from_utf8_lossy(&body));
            }
            Err(err) => {
                println!("refused: {err}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingRequest, Scheme};

    let (scheme, rest) = url.split_once("//").ok_or("the URL needs `//`")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "bad method")?;
    let scheme = match scheme.strip_suffix(':') {
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => Some(Scheme::Other(other.to_string())),
        None if scheme.is_empty() => None,
        None => return Err("the scheme must end with `:`".into()),
    };
    request.set_scheme(scheme.as_ref()).map_err(|()| "bad scheme")?;
    let authority = Some(authority).filter(|a| !a.is_empty());
    request.set_authority(authority).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;

    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    wasmcell_modules::read_response(pending)
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn get(_url: &str) -> Result<(u16, Vec<u8>), String> {
    Err("Unsupported (wasi:http needs a wasm32-wasip2 component)".into())
}

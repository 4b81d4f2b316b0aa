//! Takes a URL (`https://127.0.0.1:8443/path`), a size and optionally
//! `declared`, and POSTs a body of that many `x` bytes to the URL with
//! `wasi:http`, with a `Content-Length` when `declared` is given (else the
//! body is sent chunked, its length unknown to the host in advance). Prints
//! `status <code>` and the response body and exits 0, or `refused: <error>`
//! and exits 1. Only the wasm32-wasip2 build can make requests; the others
//! report `refused: Unsupported`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(url), Some(size)) = (args.first(), args.get(1).and_then(|s| s.parse::<usize>().ok())) else {
        panic!("usage: net_http_post URL SIZE [declared]");
    };
    let declared = args.get(2).is_some_and(|a| a == "declared");
    match post(url, size, declared) {
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

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn post(url: &str, size: usize, declared: bool) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    let (scheme, rest) = url.split_once("://").ok_or("the URL needs `://`")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let headers = Fields::new();
    if declared {
        headers
            .append("content-length", size.to_string().as_bytes())
            .map_err(|e| format!("{e:?}"))?;
    }
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|()| "bad method")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    let path = if path.is_empty() { "/" } else { path };
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let body = request.body().map_err(|()| "body taken twice")?;

    // Sent first, so the host takes the body as it is written: it queues
    // only a little of it.
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = body.write().map_err(|()| "stream taken twice")?;
        let chunk = [b'x'; 4096];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            // A write fails once the host has stopped taking the body; what
            // the request came to is in the response below.
            if stream.blocking_write_and_flush(&chunk[..n]).is_err() {
                break;
            }
            left -= n;
        }
    }
    // Finishing fails for a body the host cut off; the response says why.
    let _ = OutgoingBody::finish(body, None);

    wasmcell_modules::read_response(pending)
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn post(_url: &str, _size: usize, _declared: bool) -> Result<(u16, Vec<u8>), String> {
    Err("Unsupported (wasi:http needs a wasm32-wasip2 component)".into())
}

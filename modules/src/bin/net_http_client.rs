//! Needs a wasm32-wasip2 component with `[net] http` grants; runs each
//! argument as one step, in order, printing one line (or block) per step and
//! exiting 0 whatever the answers.
//!
//! A step `METHOD|URL|Name: value|...|=body` makes a request with `wasi:http`:
//! the method, the URL (split as `net_http_get` splits it), any number of
//! headers and an optional body after `=` (sent with its `Content-Length`);
//! it prints `status <code>` and the body, or `refused: <error>`. The step
//! `env` prints every variable as `env NAME=value`; `dump:/dir` prints every
//! file below `/dir` as `file PATH: contents`. In any step, `{env:NAME}` is
//! first replaced by the guest's variable `NAME`, as an SDK reading a token
//! from its environment would.
//!
//! The core module build (wasm32-wasip1) has no HTTP and answers every
//! request with `refused: Unsupported`.

fn main() {
    let steps: Vec<String> = std::env::args().skip(1).collect();
    assert!(!steps.is_empty(), "usage: net_http_client STEP...");
    for step in steps {
        let step = expand(&step);
        if step == "env" {
            for (name, value) in std::env::vars() {
                println!("env {name}={value}");
            }
        } else if let Some(dir) = step.strip_prefix("dump:") {
            dump(std::path::Path::new(dir));
        } else {
            let mut parts = step.split('|');
            let method = parts.next().unwrap_or_default().to_string();
            let url = parts.next().unwrap_or_default().to_string();
            let mut headers = Vec::new();
            let mut body = None;
            for part in parts {
                match part.strip_prefix('=') {
                    Some(text) => body = Some(text.as_bytes().to_vec()),
                    None => {
                        let (name, value) = part.split_once(':').unwrap_or((part, ""));
                        headers.push((name.trim().to_string(), value.trim().as_bytes().to_vec()));
                    }
                }
            }
            match send(&method, &url, &headers, body.as_deref()) {
                Ok((status, body)) => {
                    println!("status {status}");
                    println!("{}", String::from_utf8_lossy(&body));
                }
                Err(err) => println!("refused: {err}"),
            }
        }
    }
}

/// `step` with each `{env:NAME}` replaced by the variable's value (or nothing).
fn expand(step: &str) -> String {
    let mut out = String::new();
    let mut rest = step;
    while let Some(start) = rest.find("{env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 5..];
        let end = after.find('}').unwrap_or(after.len());
        out.push_str(&std::env::var(&after[..end]).unwrap_or_default());
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

fn dump(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("dir {}: unreadable", dir.display());
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            dump(&path);
        } else {
            match std::fs::read(&path) {
                Ok(bytes) => println!("file {}: {}", path.display(), String::from_utf8_lossy(&bytes)),
                Err(err) => println!("file {}: {err}", path.display()),
            }
        }
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn send(method: &str, url: &str, headers: &[(String, Vec<u8>)], body: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

    let (scheme, rest) = url.split_once("//").ok_or("the URL needs `//`")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    if let Some(body) = body {
        // Sent with a length, not chunked, so a test's server reads it plainly.
        let length = body.len().to_string();
        fields
            .append("content-length", length.as_bytes())
            .map_err(|e| format!("content-length: {e:?}"))?;
    }
    for (name, value) in headers {
        fields
            .append(name, value)
            .map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(|()| "bad method")?;
    let scheme = match scheme.strip_suffix(':') {
        Some("http") => Some(Scheme::Http),
        Some("https") => Some(Scheme::Https),
        Some(other) => Some(Scheme::Other(other.to_string())),
        None => None,
    };
    request.set_scheme(scheme.as_ref()).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let outgoing = request.body().map_err(|()| "body taken twice")?;
    if let Some(body) = body {
        let stream = outgoing.write().map_err(|()| "body stream taken twice")?;
        stream.blocking_write_and_flush(body).map_err(|e| format!("{e:?}"))?;
        drop(stream);
    }
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
    wasmcell_modules::read_response(pending)
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn send(_: &str, _: &str, _: &[(String, Vec<u8>)], _: Option<&[u8]>) -> Result<(u16, Vec<u8>), String> {
    Err("Unsupported (wasi:http needs a wasm32-wasip2 component)".into())
}

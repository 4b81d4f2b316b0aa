//! Makes the host hold as much memory as `wasi:http` lets it, one kind of
//! buffer at a time, and prints what the host accepted; exits 0 unless the
//! host stopped it. Expects `net.http` to grant the origin of URL.
//!
//! `bodies URL COUNT`: up to COUNT outgoing requests, each body stream filled
//! until `check-write` answers 0, none sent, until the host refuses a body.
//! Prints `bodies N of COUNT[, then a body refused], at most M bytes queued in one`.
//!
//! `headers COUNT VALUE_BYTES`: COUNT header maps, each appended to with values
//! of VALUE_BYTES until `append` fails. Prints
//! `headers COUNT, at most N bytes in one, then ERROR`.
//!
//! `in-flight URL COUNT`: COUNT requests sent at once to URL (a server that
//! never reads them), each body filled until it takes no more. Prints
//! `in flight N, refused M: ERROR`.
//!
//! `finished URL COUNT`: the same, but each body is then finished with
//! trailers full of tiny entries and only the requests are kept. Prints
//! `finished N of COUNT...` likewise.
//!
//! `parts COUNT BYTES`: COUNT requests, each given an authority, a method
//! name and a path of BYTES bytes (the path at most 60,000, under wasi-http's
//! own bound); every request is kept. Prints
//! `parts N: authority A, method M, path P`, each the number of setters
//! that accepted the long value.
//!
//! `baseline URL`: one request, nothing filled, for comparison.
//!
//! After printing its summary the guest reads stdin to its end before it
//! exits, so that whoever runs it can look at the process at its peak (with
//! stdin closed, as by default, it exits at once).
//!
//! Only the wasm32-wasip2 build can do this: std has no HTTP API, so it uses
//! the `wasi` crate's bindings, and the other builds print
//! `refused: Unsupported` and exit 1.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match hoard(&args) {
        Ok(summary) => {
            println!("{summary}");
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        }
        Err(err) => {
            println!("refused: {err}");
            std::process::exit(1);
        }
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
fn hoard(args: &[String]) -> Result<String, String> {
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let count = |i: usize| arg(i)?.parse::<usize>().map_err(|e| e.to_string());
    match arg(0)? {
        "bodies" => p2::bodies(arg(1)?, count(2)?, false),
        "headers" => p2::headers(count(1)?, count(2)?),
        "in-flight" => p2::in_flight(arg(1)?, count(2)?),
        "finished" => p2::bodies(arg(1)?, count(2)?, true),
        "parts" => p2::parts(count(1)?, count(2)?),
        "baseline" => p2::request(arg(1)?).map(|_| "baseline".to_string()),
        other => Err(format!("unknown mode `{other}`")),
    }
}

#[cfg(all(target_os = "wasi", target_env = "p2"))]
mod p2 {
    use wasi::http::outgoing_handler::{self, FutureIncomingResponse};
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi::io::streams::OutputStream;

    /// A POST to `url`, not sent.
    pub fn request(url: &str) -> Result<OutgoingRequest, String> {
        let rest = url.strip_prefix("http://").ok_or("the URL must start with http://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let request = OutgoingRequest::new(Fields::new());
        request.set_method(&Method::Post).map_err(|()| "bad method")?;
        request.set_scheme(Some(&Scheme::Http)).map_err(|()| "bad scheme")?;
        request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
        request
            .set_path_with_query(Some(&format!("/{path}")))
            .map_err(|()| "bad path")?;
        Ok(request)
    }

    /// Writes to `stream` while it takes more without waiting; the bytes taken.
    fn fill(stream: &OutputStream) -> u64 {
        let chunk = vec![b'x'; 4 << 20];
        let mut taken = 0;
        while let Ok(room) = stream.check_write() {
            if room == 0 || stream.write(&chunk[..room.min(chunk.len() as u64) as usize]).is_err() {
                break;
            }
            taken += room.min(chunk.len() as u64);
        }
        taken
    }

    /// Fills the bodies of up to `count` requests, stopping at the first body
    /// the host refuses; with `finish`, finishes each body with trailers full
    /// of tiny entries and keeps only the request.
    pub fn bodies(url: &str, count: usize, finish: bool) -> Result<String, String> {
        let mut held = Vec::new();
        let mut kept = Vec::new();
        let (mut most, mut refused) = (0, "");
        for _ in 0..count {
            let request = request(url)?;
            let Ok(body) = request.body() else {
                refused = ", then a body refused";
                break;
            };
            let stream = body.write().map_err(|()| "stream taken twice")?;
            most = most.max(fill(&stream));
            if finish {
                drop(stream);
                let trailers = Fields::new();
                for i in 0.. {
                    if trailers.append(&format!("x-{i}"), b"v").is_err() {
                        break;
                    }
                }
                OutgoingBody::finish(body, Some(trailers)).map_err(|e| format!("{e:?}"))?;
                kept.push(request);
            } else {
                // Dropped in this order: a stream before its body, a body before its request.
                held.push((stream, body, request));
            }
        }
        let mode = if finish { "finished" } else { "bodies" };
        let n = held.len() + kept.len();
        Ok(format!(
            "{mode} {n} of {count}{refused}, at most {most} bytes queued in one"
        ))
    }

    /// Keeps `count` requests, each given an authority, a method and a path
    /// of `bytes` bytes; counts the setters that took them.
    pub fn parts(count: usize, bytes: usize) -> Result<String, String> {
        let authority = "a".repeat(bytes);
        let method = Method::Other("M".repeat(bytes));
        let path = format!("/{}", "p".repeat(bytes.min(60_000) - 1));
        let (mut authorities, mut methods, mut paths) = (0, 0, 0);
        let mut held = Vec::new();
        for _ in 0..count {
            let request = OutgoingRequest::new(Fields::new());
            authorities += usize::from(request.set_authority(Some(&authority)).is_ok());
            methods += usize::from(request.set_method(&method).is_ok());
            paths += usize::from(request.set_path_with_query(Some(&path)).is_ok());
            held.push(request);
        }
        Ok(format!(
            "parts {}: authority {authorities}, method {methods}, path {paths}",
            held.len()
        ))
    }

    pub fn headers(count: usize, value_bytes: usize) -> Result<String, String> {
        let value = vec![b'v'; value_bytes];
        let mut held = Vec::new();
        let (mut most, mut error) = (0, String::new());
        for _ in 0..count {
            let fields = Fields::new();
            let mut bytes = 0;
            for i in 0.. {
                let name = format!("x-{i}");
                if let Err(e) = fields.append(&name, &value) {
                    error = format!("{e:?}");
                    break;
                }
                bytes += name.len() + value.len();
            }
            most = most.max(bytes);
            held.push(fields);
        }
        Ok(format!(
            "headers {}, at most {most} bytes in one, then {error}",
            held.len()
        ))
    }

    /// Sends `count` requests and fills each body until the server stops
    /// taking it; a request the host refuses ends its body stream.
    pub fn in_flight(url: &str, count: usize) -> Result<String, String> {
        let mut held: Vec<(OutputStream, OutgoingBody, FutureIncomingResponse)> = Vec::new();
        let (mut sent, mut refused, mut error) = (0, 0, String::new());
        for _ in 0..count {
            let request = request(url)?;
            let body = request.body().map_err(|()| "body taken twice")?;
            let stream = body.write().map_err(|()| "stream taken twice")?;
            let pending = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
            if let Some(err) = fill_until_stalled(&stream, &pending) {
                refused += 1;
                error = err;
            } else {
                sent += 1;
                held.push((stream, body, pending));
            }
        }
        Ok(format!("in flight {sent}, refused {refused}: {error}"))
    }

    /// Fills `stream` while the connection drains it; `Some(error)` if the
    /// request failed instead, `None` once nothing moved for 200 ms.
    fn fill_until_stalled(stream: &OutputStream, pending: &FutureIncomingResponse) -> Option<String> {
        loop {
            let closed = stream.check_write().is_err();
            if closed || fill(stream) == 0 {
                let timer = wasi::clocks::monotonic_clock::subscribe_duration(200_000_000);
                let ready = wasi::io::poll::poll(&[&stream.subscribe(), &pending.subscribe(), &timer]);
                if ready.contains(&1) || closed {
                    pending.subscribe().block();
                    return match pending.get() {
                        Some(Ok(Err(e))) => Some(format!("{e:?}")),
                        other => Some(format!("ended: {other:?}")),
                    };
                }
                if ready == [2] {
                    return None;
                }
            }
        }
    }
}

#[cfg(not(all(target_os = "wasi", target_env = "p2")))]
fn hoard(_args: &[String]) -> Result<String, String> {
    Err("Unsupported (wasi:http needs a wasm32-wasip2 component)".into())
}

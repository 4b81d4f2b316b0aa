//! The `[[net.http]]` half of deciding an outgoing request, after its scheme
//! and authority ([`decide_http`]): its method and path
//! ([`NetGrants::decide_request`](crate::policy::NetGrants::decide_request)),
//! the placeholders it carries, and the rewrite of an admitted request into
//! exactly what is sent (see `policy/http.rs` for how a path is normalised).

use super::net::{HttpRefusal, HttpTarget, NetAudit, decide_http};
use crate::policy::HttpAdmit;
use std::borrow::Cow;
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode as HttpErrorCode, Method};
use wasmtime_wasi_http::p2::types::HostOutgoingRequest;

/// The method as sent: `GET`, ..., or the guest's own token.
fn method_name(method: &Method) -> Cow<'_, str> {
    Cow::Borrowed(match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => return Cow::Borrowed(other.as_str()),
    })
}

/// How a request decided by method and path is recorded: `METHOD
/// scheme://host:port/path`, without the query.
fn request_target(method: &str, target: &HttpTarget, path_with_query: &str) -> String {
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query, |(path, _)| path);
    format!("{method} {target}{path}")
}

/// Decides `parts` (see [`handle_http`]), records an allowed request and
/// rewrites it into what is sent; a refusal comes with the kind it is
/// recorded as (`http` or `secret-leak`).
pub(super) fn decide_and_rewrite(
    net: &NetAudit,
    parts: &mut HostOutgoingRequest,
    headers_held: bool,
) -> Result<(), (&'static str, HttpRefusal)> {
    let method = method_name(&parts.method).into_owned();
    let written = parts.path_with_query.clone().unwrap_or_else(|| "/".to_string());
    let origin = decide_http(&net.grants, parts.scheme.as_ref(), parts.authority.as_deref());
    let admitted = origin.and_then(|target| {
        let at = (target.scheme.name(), target.host.as_str(), target.port);
        match net.grants.decide_request(at, &method, &written) {
            Ok(admit) => Ok((target, admit)),
            Err(rule) => {
                net.origins.denied(&target.to_string());
                Err(HttpRefusal {
                    target: request_target(&method, &target, &written),
                    rule,
                    code: HttpErrorCode::HttpRequestDenied,
                })
            }
        }
    });
    if let Some(leak) = find_leak(net, parts, &method, &written, &admitted) {
        return Err(("secret-leak", leak));
    }
    let (target, admit) = admitted.map_err(|refusal| ("http", refusal))?;
    let recorded = request_target(&method, &target, admit.path.as_ref().map_or(&written, |p| &p.path));
    let key = target.to_string();
    let refuse = |rule: String| {
        net.origins.denied(&key);
        let code = HttpErrorCode::HttpRequestDenied;
        (
            "http",
            HttpRefusal {
                target: recorded.clone(),
                rule,
                code,
            },
        )
    };
    if let Some(rule) = echo_refusal(&method, admit.entry) {
        return Err(refuse(rule.into()));
    }
    if let Some(mut path) = admit.path {
        if let Some(entry) = admit.entry
            && !headers_held
            && (!entry.headers.is_empty() || !entry.secrets.is_empty())
        {
            let mut headers: http::HeaderMap = std::mem::take(&mut parts.headers).into();
            // The message names a header or secret, never a value.
            net.broker
                .rewrite(entry, &mut headers, path.query.as_mut())
                .map_err(refuse)?;
            // The run's own hooks decide which headers are forbidden, as
            // wasi-http's do for the guest's (wasmcell keeps its defaults).
            let mut hooks = net.clone();
            parts.headers = FieldMap::new_immutable(&mut hooks, headers);
        }
        parts.path_with_query = Some(path.to_sent());
    }
    let target = net.count_request(target).map_err(|refusal| {
        net.origins.denied(&key);
        ("http", refusal)
    })?;
    let rule = match admit.entry {
        Some(entry) => format!("granted by the [[net.http]] entry for {}", entry.origin),
        None => "granted by [net] http".to_string(),
    };
    net.denials.allow("http", || net.broker.redact(&recorded), || rule);
    net.origins.allowed(&key);
    parts.scheme = Some(target.scheme.wasi());
    parts.authority = Some(target.authority());
    Ok(())
}

/// Why a request is refused for its method: a server answering `TRACE`
/// sends the request back, headers and all, so the value an entry injects
/// or swaps in would reach the guest in the body.
fn echo_refusal(method: &str, entry: Option<&crate::policy::HttpEntry>) -> Option<&'static str> {
    let carries = entry.is_some_and(|e| !e.headers.is_empty() || !e.secrets.is_empty());
    (carries && method.eq_ignore_ascii_case("TRACE")).then_some(
        "TRACE is never sent with a [[net.http]] entry's headers or secrets: the server would echo them to the guest",
    )
}

/// The refusal of a request that carries a placeholder where its secret is
/// not bound (see [`Broker::find_leak`](super::broker::Broker::find_leak)),
/// counted against its origin when it has one.
fn find_leak(
    net: &NetAudit,
    parts: &HostOutgoingRequest,
    method: &str,
    written: &str,
    admitted: &Result<(HttpTarget, HttpAdmit<'_>), HttpRefusal>,
) -> Option<HttpRefusal> {
    if net.broker.is_empty() {
        return None;
    }
    let entry = admitted.as_ref().ok().and_then(|(_, admit)| admit.entry);
    let authority = parts.authority.as_deref().unwrap_or_default();
    let leak = net.broker.find_leak(authority, written, &parts.headers, entry)?;
    let target = match admitted {
        Ok((target, _)) => {
            net.origins.denied(&target.to_string());
            request_target(method, target, written)
        }
        Err(refusal) => refusal.target.clone(),
    };
    let rule = format!(
        "the request carries the placeholder of secret `{}` in its {}, and no [[net.http]] entry that admits it binds `{}` there; a placeholder is swapped only in requests to the entries its secret is bound to",
        leak.secret, leak.place, leak.secret
    );
    let code = HttpErrorCode::HttpRequestDenied;
    Some(HttpRefusal { target, rule, code })
}

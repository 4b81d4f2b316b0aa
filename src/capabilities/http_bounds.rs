//! Bounds on the host memory an outgoing-`wasi:http` guest can make wasmcell
//! hold outside its own linear memory (and so outside `limits.memory`).
//!
//! wasmtime-wasi-http's defaults let each handle hold far more than the guest
//! pays for: an outgoing body buffers two chunks of 1 MiB, a header map takes
//! 128 KiB, and hyper buffers up to 408 KiB per connection that a slow server
//! does not drain. Filled to `limits.handles`, that was 680 MiB of host memory
//! under a 64 MiB `limits.memory`. Here every such buffer is bounded: what
//! grows with the guest's handles holds at most about 40 KiB per handle (a
//! full header map of tiny entries, measured), so 40 MiB with the default
//! 1,024 handles, and what holds more is capped by count: outgoing bodies
//! ([`MAX_HTTP_BODIES`]) and the connections hyper buffers for
//! ([`MAX_HTTP_IN_FLIGHT`]):
//!
//! - an outgoing body accepts one write of at most [`HTTP_BODY_CHUNK`] bytes
//!   at a time and queues at most two (`check-write` answers 0 until hyper has
//!   taken one);
//! - a header map (`fields`) holds at most [`HTTP_FIELDS_BYTES`] (wasmtime's
//!   own measure: name and value bytes plus each entry's bookkeeping); past it
//!   `set`, `append`, `delete` and `from-list` answer the guest's
//!   `header-error.forbidden` instead of wasmtime-wasi-http's trap;
//! - at most [`MAX_HTTP_BODIES`] outgoing bodies exist at once (a body keeps its
//!   queued writes, and trailers once finished, until it is sent or its
//!   request dropped: a request alone could otherwise hold 128 KiB and more);
//!   one more `outgoing-request.body` or `outgoing-response.body` answers
//!   `err`, as for a body taken twice;
//! - at most [`MAX_HTTP_IN_FLIGHT`] requests are in flight at once (from
//!   `handle` until their connection ends); one more is answered
//!   `connection-limit-reached`;
//! - a response's header section may hold at most [`HTTP_FIELDS_BYTES`] by the
//!   same measure, or the request fails with
//!   `HTTP-response-header-section-size`: a guest keeps a response's headers
//!   after its connection has ended and its place in flight is free;
//! - a request's authority, method and path are at most
//!   [`HTTP_AUTHORITY_BYTES`], [`HTTP_METHOD_BYTES`] and [`HTTP_PATH_BYTES`];
//!   a longer one is answered `err` by its setter, since a request keeps
//!   them however long they are until it is sent or dropped.
//!
//! The other guest-driven host buffers were already bounded per handle by
//! wasmtime-wasi: a TCP output stream takes 64 KiB per write and holds one
//! write, a read copies at most 64 KiB, a UDP datagram is at most 64 KiB and a
//! name lookup keeps the resolver's short address list.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use wasmtime::component::Resource;
use wasmtime_wasi_http::p2::bindings::http::types::{HeaderError, HostOutgoingRequest as _, Method};
use wasmtime_wasi_http::p2::body::{HostOutgoingBody, HyperOutgoingBody, StreamContext};
use wasmtime_wasi_http::p2::types::{HostOutgoingRequest, HostOutgoingResponse};
use wasmtime_wasi_http::{FieldMap, FieldMapError, WasiHttpCtx, WasiHttpCtxView};

/// Most bytes one write to an outgoing body may carry (wasmtime-wasi-http's
/// `check-write` answer). Two such writes are queued at most.
pub(crate) const HTTP_BODY_CHUNK: usize = 64 * 1024;

/// Most bytes, by wasmtime-wasi-http's measure, one header map may hold:
/// Node's default for a request's headers. A map of tiny entries takes about
/// twice this in memory (its tables and one allocation per name and value).
pub(crate) const HTTP_FIELDS_BYTES: usize = 16 * 1024;

/// Most outgoing bodies (request or response) alive at once in one run.
pub(crate) const MAX_HTTP_BODIES: usize = 32;

/// Most outgoing requests in flight at once in one run.
pub(crate) const MAX_HTTP_IN_FLIGHT: usize = 16;

/// Longest authority a request may set: a 253-byte host name, or an IPv6
/// address in brackets, and `:65535`.
pub(crate) const HTTP_AUTHORITY_BYTES: usize = 261;

/// Longest method name a request may set (`Method::Other`).
pub(crate) const HTTP_METHOD_BYTES: usize = 64;

/// Longest path with query a request may set: what common servers accept in
/// a whole request line.
pub(crate) const HTTP_PATH_BYTES: usize = 16 * 1024;

/// The run's `wasi:http` context, with the header-map bound.
pub(crate) fn http_ctx() -> WasiHttpCtx {
    let mut ctx = WasiHttpCtx::new();
    ctx.set_field_size_limit(HTTP_FIELDS_BYTES);
    ctx
}

/// Things of one kind alive at once in one run, up to `MAX`: requests in
/// flight, outgoing bodies. Cloning shares the count.
#[derive(Clone, Default)]
pub(crate) struct Live<const MAX: usize>(Arc<AtomicUsize>);

/// The requests of one run that are in flight.
pub(crate) type InFlight = Live<MAX_HTTP_IN_FLIGHT>;

/// The outgoing bodies of one run.
pub(crate) type LiveBodies = Live<MAX_HTTP_BODIES>;

/// One thing's place among the live ones, given back when dropped.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<const MAX: usize> Live<MAX> {
    /// Takes a place for one more, or `None` when `MAX` are alive already.
    pub(crate) fn try_start(&self) -> Option<Slot> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < MAX).then_some(n + 1))
            .ok()
            .map(|_| Slot(Arc::clone(&self.0)))
    }
}

/// An outgoing body holding its place among the run's live bodies until
/// hyper or the request drops it.
struct CountedBody {
    inner: HyperOutgoingBody,
    _slot: Slot,
}

impl http_body::Body for CountedBody {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `Content-Length` a body must match, as wasmtime-wasi-http reads it;
/// `Err` for a value that is not one run of digits.
fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, ()> {
    let mut values = headers.get_all(http::header::CONTENT_LENGTH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let digits = value.to_str().map_err(drop)?;
    if values.next().is_some() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    digits.parse().map(Some).map_err(drop)
}

/// Gives a request or response (its `body` slot and `headers`) a new
/// outgoing body, counted among the run's live bodies, and returns the
/// guest's end of it; `None` when it has one already, its headers give no
/// valid length, or [`MAX_HTTP_BODIES`] are alive already.
fn attach_body(
    bodies: &LiveBodies,
    body: &mut Option<HyperOutgoingBody>,
    headers: &FieldMap,
    context: StreamContext,
) -> Option<HostOutgoingBody> {
    if body.is_some() {
        return None;
    }
    let size = content_length(headers).ok()?;
    let slot = bodies.try_start()?;
    let (host, hyper) = HostOutgoingBody::new(context, size, 1, HTTP_BODY_CHUNK);
    let counted = CountedBody {
        inner: hyper,
        _slot: slot,
    };
    *body = Some(http_body_util::BodyExt::boxed_unsync(counted));
    Some(host)
}

/// `outgoing-request.body`, counted: `err` past [`MAX_HTTP_BODIES`] alive.
///
/// # Errors
///
/// Only for a handle that is not a request, or a full handle table (which
/// end the guest, as in wasmtime-wasi-http).
pub(crate) fn request_body(
    bodies: &LiveBodies,
    view: WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
    let request = view.table.get_mut(&request)?;
    match attach_body(bodies, &mut request.body, &request.headers, StreamContext::Request) {
        Some(host) => Ok(Ok(view.table.push(host)?)),
        None => Ok(Err(())),
    }
}

/// `outgoing-response.body`, counted: `err` past [`MAX_HTTP_BODIES`] alive.
///
/// # Errors
///
/// Only for a handle that is not a response, or a full handle table.
pub(crate) fn response_body(
    bodies: &LiveBodies,
    view: WasiHttpCtxView<'_>,
    response: Resource<HostOutgoingResponse>,
) -> wasmtime::Result<Result<Resource<HostOutgoingBody>, ()>> {
    let response = view.table.get_mut(&response)?;
    match attach_body(bodies, &mut response.body, &response.headers, StreamContext::Response) {
        Some(host) => Ok(Ok(view.table.push(host)?)),
        None => Ok(Err(())),
    }
}

/// What a send gives wasmtime-wasi-http: the response and the future that
/// drives the connection.
pub(crate) type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

/// `send`, holding `slot` until the connection ends: through the wait for the
/// response, then inside the connection's own future, which wasmtime-wasi-http
/// keeps until the guest drops the response or its body is read to the end.
pub(crate) fn hold_slot(
    slot: Slot,
    send: Box<dyn Future<Output = SendResult> + Send>,
) -> Box<dyn Future<Output = SendResult> + Send> {
    Box::new(async move {
        let (response, connection) = Pin::from(send).await?;
        let header_bytes = headers_bytes(response.headers());
        if header_bytes > HTTP_FIELDS_BYTES {
            return Err(wasmtime_wasi_http::Error::HttpResponseHeaderSectionSize(
                u32::try_from(header_bytes).ok(),
            ));
        }
        let connection: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> = Box::new(async move {
            let _slot = slot;
            Pin::from(connection).await
        });
        Ok((response, connection))
    })
}

/// Which `header-error` the guest gets for a map wasmtime-wasi-http refused.
/// A map over its bound is `forbidden` (WASI 0.2 has no size error), where
/// wasmtime-wasi-http would trap.
fn header_error(err: FieldMapError) -> HeaderError {
    match err {
        FieldMapError::Immutable => HeaderError::Immutable,
        FieldMapError::InvalidHeaderName | FieldMapError::InvalidHeaderValue => HeaderError::InvalidSyntax,
        FieldMapError::Forbidden | FieldMapError::TooManyFields | FieldMapError::TotalSizeTooBig => {
            HeaderError::Forbidden
        }
    }
}

/// wasmtime's measure of a header map: name and value bytes plus the size of
/// each entry's name and value.
fn fields_bytes(map: &FieldMap) -> usize {
    headers_bytes(map.iter())
}

/// [`fields_bytes`] of any headers.
fn headers_bytes<'a>(headers: impl IntoIterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>) -> usize {
    headers
        .into_iter()
        .map(|(name, value)| {
            name.as_str().len() + size_of::<http::HeaderName>() + value.len() + size_of::<http::HeaderValue>()
        })
        .sum()
}

/// `outgoing-request.set-authority`, answering `err` past
/// [`HTTP_AUTHORITY_BYTES`] before wasmtime-wasi-http keeps the string.
///
/// # Errors
///
/// Only for a handle that is not a request (which ends the guest).
pub(crate) fn set_authority(
    mut view: WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
    authority: Option<String>,
) -> wasmtime::Result<Result<(), ()>> {
    if authority.as_ref().is_some_and(|a| a.len() > HTTP_AUTHORITY_BYTES) {
        return Ok(Err(()));
    }
    view.set_authority(request, authority)
}

/// `outgoing-request.set-method`, answering `err` for a method name past
/// [`HTTP_METHOD_BYTES`].
///
/// # Errors
///
/// Only for a handle that is not a request (which ends the guest).
pub(crate) fn set_method(
    mut view: WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
    method: Method,
) -> wasmtime::Result<Result<(), ()>> {
    if matches!(&method, Method::Other(name) if name.len() > HTTP_METHOD_BYTES) {
        return Ok(Err(()));
    }
    view.set_method(request, method)
}

/// `outgoing-request.set-path-with-query`, answering `err` past
/// [`HTTP_PATH_BYTES`].
///
/// # Errors
///
/// Only for a handle that is not a request (which ends the guest).
pub(crate) fn set_path_with_query(
    mut view: WasiHttpCtxView<'_>,
    request: Resource<HostOutgoingRequest>,
    path: Option<String>,
) -> wasmtime::Result<Result<(), ()>> {
    if path.as_ref().is_some_and(|p| p.len() > HTTP_PATH_BYTES) {
        return Ok(Err(()));
    }
    view.set_path_with_query(request, path)
}

/// Refuses to change a mutable map already over the bound (a `clone` of a
/// large response header map): wasmtime-wasi-http would copy it first.
fn check_room(map: &FieldMap) -> Result<(), HeaderError> {
    if fields_bytes(map) > HTTP_FIELDS_BYTES {
        return Err(HeaderError::Forbidden);
    }
    Ok(())
}

/// `fields.append`, answering `header-error` where wasmtime-wasi-http traps.
///
/// # Errors
///
/// Only for a handle that is not a header map (which ends the guest).
pub(crate) fn append_field(
    view: WasiHttpCtxView<'_>,
    fields: Resource<FieldMap>,
    name: String,
    value: Vec<u8>,
) -> wasmtime::Result<Result<(), HeaderError>> {
    let map = view.table.get_mut(&fields)?;
    Ok(check_room(map).and_then(|()| map.append(view.hooks, name, value).map(drop).map_err(header_error)))
}

/// `fields.set`, answering `header-error` where wasmtime-wasi-http traps.
///
/// # Errors
///
/// Only for a handle that is not a header map (which ends the guest).
pub(crate) fn set_field(
    view: WasiHttpCtxView<'_>,
    fields: Resource<FieldMap>,
    name: String,
    values: Vec<Vec<u8>>,
) -> wasmtime::Result<Result<(), HeaderError>> {
    let map = view.table.get_mut(&fields)?;
    Ok(check_room(map).and_then(|()| map.set(view.hooks, name, values).map_err(header_error)))
}

/// `fields.delete`, refusing a map over the bound rather than copying it.
///
/// # Errors
///
/// Only for a handle that is not a header map (which ends the guest).
pub(crate) fn delete_field(
    view: WasiHttpCtxView<'_>,
    fields: Resource<FieldMap>,
    name: String,
) -> wasmtime::Result<Result<(), HeaderError>> {
    let map = view.table.get_mut(&fields)?;
    Ok(check_room(map).and_then(|()| map.remove_all(view.hooks, name).map(drop).map_err(header_error)))
}

/// `fields.from-list`, answering `header-error` where wasmtime-wasi-http traps.
///
/// # Errors
///
/// Only when the handle table is full (which ends the guest, as for any
/// handle past `limits.handles`).
pub(crate) fn fields_from_list(
    view: WasiHttpCtxView<'_>,
    entries: Vec<(String, Vec<u8>)>,
) -> wasmtime::Result<Result<Resource<FieldMap>, HeaderError>> {
    let mut map = FieldMap::new_mutable(HTTP_FIELDS_BYTES);
    for (name, value) in entries {
        if let Err(err) = map.append(view.hooks, name, value) {
            return Ok(Err(header_error(err)));
        }
    }
    Ok(Ok(view.table.push(map)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_things_are_capped_and_given_back() {
        let in_flight = InFlight::default();
        let slots: Vec<_> = (0..MAX_HTTP_IN_FLIGHT).map_while(|_| in_flight.try_start()).collect();
        assert_eq!(slots.len(), MAX_HTTP_IN_FLIGHT);
        assert!(in_flight.try_start().is_none(), "one more is refused");
        drop(slots);
        assert!(
            in_flight.try_start().is_some(),
            "a finished request gives its place back"
        );
        let bodies = LiveBodies::default();
        let slots: Vec<_> = (0..).map_while(|_| bodies.try_start()).collect();
        assert_eq!(slots.len(), MAX_HTTP_BODIES);
    }

    #[test]
    fn content_length_is_read_as_wasmtime_reads_it() {
        let with = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(http::header::CONTENT_LENGTH, v.parse().unwrap());
            }
            content_length(&map)
        };
        assert_eq!(with(&[]), Ok(None));
        assert_eq!(with(&["42"]), Ok(Some(42)));
        assert_eq!(with(&["+5"]), Err(()));
        assert_eq!(with(&[""]), Err(()));
        assert_eq!(with(&["5", "5"]), Err(()));
    }

    #[test]
    fn a_map_over_its_bound_is_a_header_error_not_a_trap() {
        assert!(matches!(
            header_error(FieldMapError::TotalSizeTooBig),
            HeaderError::Forbidden
        ));
        assert!(matches!(
            header_error(FieldMapError::TooManyFields),
            HeaderError::Forbidden
        ));
        assert!(matches!(
            header_error(FieldMapError::InvalidHeaderName),
            HeaderError::InvalidSyntax
        ));
    }
}

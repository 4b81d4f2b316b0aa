//! wasmcell's own sender for the outgoing `wasi:http` requests the policy
//! allowed: HTTP/1.1 over TCP, or over TLS that the host terminates (the
//! guest speaks `wasi:http` to the host in clear, so the host may add to a
//! request what the guest must not see), trusting the public CAs
//! (webpki-roots) plus the policy's `net.ca-certificates`.
//!
//! It connects only to the host and port [`super::net::handle_http`]
//! decided, names that host in TLS (SNI and the certificate check), and
//! enforces the per-request limits: `limits.http-request-body`,
//! `limits.http-response-body` and `limits.http-timeout` (connect to last
//! byte; the guest's `request-options` may only shorten its phases). A
//! request that hits one fails with the matching `wasi:http` error code and
//! leaves an `http` denial naming the key and its value; the run goes on.

use super::denial::Records;
use crate::policy::{ByteSize, CaFile, Limits};
use bytes::Bytes;
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The response and the future that drives its connection, as
/// wasmtime-wasi-http's `send_request` hook returns them.
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// The per-request limits of one run.
#[derive(Debug, Clone, Copy)]
struct RequestLimits {
    request_body: u64,
    response_body: u64,
    timeout: Duration,
}

/// What one run sends requests with: its limits and the TLS configuration,
/// built on the first `https` request and shared by the rest. Cloning
/// shares it.
#[derive(Clone)]
pub(crate) struct HttpSender {
    limits: RequestLimits,
    cas: Arc<[CaFile]>,
    tls: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

/// Where [`HttpSender::send`] connects: what the policy decided.
pub(crate) struct Destination {
    /// Whether to speak TLS.
    pub(crate) tls: bool,
    /// The host: a lower-case name, or an IP address (IPv6 without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// How the request is recorded (`https://host:port`).
    pub(crate) shown: String,
}

impl HttpSender {
    /// The sender for a run under `limits`, trusting the CAs of `cas` beside
    /// the public ones.
    pub(crate) fn new(limits: &Limits, cas: &[CaFile]) -> HttpSender {
        HttpSender {
            limits: RequestLimits {
                request_body: limits.http_request_body.value,
                response_body: limits.http_response_body.value,
                timeout: limits.http_timeout.value,
            },
            cas: cas.into(),
            tls: Arc::default(),
        }
    }

    /// The client configuration, built once per run: webpki-roots and the
    /// policy's CAs (each was checked when the policy was loaded), ring as
    /// the provider, TLS 1.2 and 1.3.
    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(config) = self.tls.get() {
            return Ok(Arc::clone(config));
        }
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for ca in self.cas.iter() {
            for certificate in ca.certificates() {
                roots
                    .add(certificate.clone())
                    .map_err(|e| Error::InternalError(Some(format!("a CA of net.ca-certificates: {e}"))))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::InternalError(Some(e.to_string())))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::clone(self.tls.get_or_init(|| Arc::new(config))))
    }

    /// Sends `request` to `to`, recording a limit it hits in `records`.
    pub(crate) async fn send(
        &self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        to: Destination,
        records: Records,
    ) -> Result<Sent, Error> {
        let limits = self.limits;
        let hit = LimitHit::new(records, to.shown.clone(), limits);
        let deadline = Instant::now() + limits.timeout;
        if declared_length(request.headers()).is_some_and(|n| n > limits.request_body) {
            return Err(hit.record(Limit::RequestBody));
        }
        let options = options.unwrap_or_default();
        let connect_by = earliest(deadline, options.connect_timeout);
        // Connecting (the TLS handshake too) ends in a connection timeout,
        // whichever timeout it was.
        let late = |hit: &LimitHit| timed_out(hit, deadline, Error::ConnectionTimeout, Error::ConnectionTimeout);
        let connect = TcpStream::connect((to.host.as_str(), to.port));
        let stream = tokio::time::timeout_at(connect_by, connect)
            .await
            .map_err(|_| late(&hit))?
            .map_err(Error::Connect)?;
        let exchange = Exchange {
            request,
            options,
            deadline,
            hit,
        };
        if !to.tls {
            return exchange.run(stream).await;
        }
        let name = rustls::pki_types::ServerName::try_from(to.host.as_str())
            .map_err(|_| Error::DnsError {
                rcode: Some("invalid DNS name".to_string()),
                info_code: None,
            })?
            .to_owned();
        let connector = tokio_rustls::TlsConnector::from(self.tls_config()?);
        let stream = tokio::time::timeout_at(connect_by, connector.connect(name, stream))
            .await
            .map_err(|_| late(&exchange.hit))?
            .map_err(|e| tls_error(&e))?;
        exchange.run(stream).await
    }
}

/// `deadline`, or sooner if the guest's own timeout for this phase is sooner.
fn earliest(deadline: Instant, guest: Option<Duration>) -> Instant {
    guest.map_or(deadline, |d| deadline.min(Instant::now() + d))
}

/// The error for a phase that ran out of time: `ours` when it was
/// `limits.http-timeout` (recorded), else `guest`, for the guest's own
/// `request-options` timeout (not recorded: the guest chose it).
fn timed_out(hit: &LimitHit, deadline: Instant, ours: Error, guest: Error) -> Error {
    if Instant::now() < deadline {
        return guest;
    }
    hit.record(Limit::Timeout);
    ours
}

/// What the guest is told of a failed TLS handshake: the certificate, an
/// alert from the server, or the protocol.
fn tls_error(e: &std::io::Error) -> Error {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented) => {
            Error::TlsCertificateError
        }
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    }
}

/// The `Content-Length` a message declares, if one valid one.
fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A limit one request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    RequestBody,
    ResponseBody,
    Timeout,
}

/// Records the first limit one request hits, as an `http` denial of its
/// destination naming the key and its value. Cloning shares it.
#[derive(Clone)]
struct LimitHit {
    records: Records,
    shown: Arc<str>,
    limits: RequestLimits,
    recorded: Arc<AtomicBool>,
}

impl LimitHit {
    fn new(records: Records, shown: String, limits: RequestLimits) -> LimitHit {
        LimitHit {
            records,
            shown: shown.into(),
            limits,
            recorded: Arc::default(),
        }
    }

    /// Records `limit` (once per request) and gives the guest's error.
    fn record(&self, limit: Limit) -> Error {
        let l = self.limits;
        let (rule, error) = match limit {
            Limit::RequestBody => (
                format!(
                    "limits.http-request-body allows {} per request, and this request's body is longer; raise limits.http-request-body to send it",
                    ByteSize(l.request_body)
                ),
                Error::HttpRequestBodySize(Some(l.request_body)),
            ),
            Limit::ResponseBody => (
                format!(
                    "limits.http-response-body allows {} per response, and this response's body is longer; raise limits.http-response-body to receive it",
                    ByteSize(l.response_body)
                ),
                Error::HttpResponseBodySize(Some(l.response_body)),
            ),
            Limit::Timeout => (
                format!(
                    "limits.http-timeout allows {} per request, and this request took longer; raise limits.http-timeout to wait longer",
                    humantime::format_duration(l.timeout)
                ),
                Error::HttpResponseTimeout,
            ),
        };
        if !self.recorded.swap(true, Ordering::SeqCst) {
            self.records.refuse("http", &self.shown, &rule);
        }
        error
    }
}

/// One request on a connection that is open.
struct Exchange {
    request: http::Request<WasiBody>,
    options: RequestOptions,
    deadline: Instant,
    hit: LimitHit,
}

impl Exchange {
    /// Sends the request over `stream` and waits for the response's head,
    /// driving the connection meanwhile; then the connection goes on in the
    /// future returned beside the response, until the deadline.
    async fn run<S>(self, stream: S) -> Result<Sent, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let Exchange {
            mut request,
            options,
            deadline,
            hit,
        } = self;
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        // The request line names only the path: the host is in `Host`, and
        // only a proxy is sent a whole URI.
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = http::Uri::try_from(path).map_err(|_| Error::HttpRequestUriInvalid)?;
        let over = Arc::new(AtomicBool::new(false));
        let request = request.map(|inner| RequestBody {
            inner,
            left: hit.limits.request_body,
            over: Arc::clone(&over),
        });
        let first_byte_by = earliest(deadline, options.first_byte_timeout);
        let mut conn = Some(Box::pin(tokio::time::timeout_at(deadline, conn)));
        let mut response = Box::pin(tokio::time::timeout_at(first_byte_by, sender.send_request(request)));
        let head = loop {
            let Some(driving) = conn.as_mut() else {
                break response.await;
            };
            tokio::select! {
                biased;
                head = &mut response => break head,
                ended = driving => {
                    conn = None;
                    // Ended before the response came: its error, if any,
                    // is the request's; otherwise the response is ready.
                    if let Ok(Err(e)) = ended {
                        return Err(request_error(&hit, &over, e));
                    }
                }
            }
        };
        let head = match head {
            Ok(head) => head.map_err(|e| request_error(&hit, &over, e))?,
            Err(_) => {
                return Err(timed_out(
                    &hit,
                    deadline,
                    Error::HttpResponseTimeout,
                    Error::ConnectionReadTimeout,
                ));
            }
        };
        if declared_length(head.headers()).is_some_and(|n| n > hit.limits.response_body) {
            return Err(hit.record(Limit::ResponseBody));
        }
        let between = options.between_bytes_timeout.map(|d| d.max(Duration::from_nanos(1)));
        let response = head.map(|incoming| {
            http_body_util::BodyExt::boxed_unsync(ResponseBody {
                incoming,
                left: hit.limits.response_body,
                deadline: Box::pin(tokio::time::sleep_until(deadline)),
                between: between.map(|d| (d, Box::pin(tokio::time::sleep(d)))),
                hit: hit.clone(),
            })
        });
        let connection: Box<dyn Future<Output = Result<(), Error>> + Send> = Box::new(async move {
            match conn {
                // Past the deadline the connection is dropped: the body
                // then reports the timeout to the guest.
                Some(conn) => conn.await.unwrap_or(Ok(())).map_err(Error::from),
                None => Ok(()),
            }
        });
        Ok((response, connection))
    }
}

/// The error of a request hyper could not complete: the request body's
/// limit when that is what stopped it.
fn request_error(hit: &LimitHit, over: &AtomicBool, e: hyper::Error) -> Error {
    if over.load(Ordering::SeqCst) {
        return hit.record(Limit::RequestBody);
    }
    if e.is_timeout() {
        return Error::HttpResponseTimeout;
    }
    Error::Hyper(e)
}

/// The guest's request body, cut off where it passes
/// `limits.http-request-body`: the frame that would cross it is not sent.
struct RequestBody {
    inner: WasiBody,
    left: u64,
    over: Arc<AtomicBool>,
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            let len = data.map_or(0, |d| d.len() as u64);
            if len > self.left {
                self.over.store(true, Ordering::SeqCst);
                return Poll::Ready(Some(Err(Error::HttpRequestBodySize(None))));
            }
            self.left -= len;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response body as the guest reads it, failing once it passes
/// `limits.http-response-body` or the request's deadline, or (the guest's
/// own `between-bytes-timeout`) when a frame is late.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    left: u64,
    deadline: Pin<Box<Sleep>>,
    between: Option<(Duration, Pin<Box<Sleep>>)>,
    hit: LimitHit,
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        // Looked at first: past the deadline the connection is gone, and
        // the guest is told why, not that it broke.
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(self.hit.record(Limit::Timeout))));
        }
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |d| d.len() as u64);
                if len > self.left {
                    return Poll::Ready(Some(Err(self.hit.record(Limit::ResponseBody))));
                }
                self.left -= len;
                if let Some((every, sleep)) = self.between.as_mut() {
                    sleep.as_mut().reset(Instant::now() + *every);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) if e.is_timeout() => Poll::Ready(Some(Err(Error::HttpResponseTimeout))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::Hyper(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let late = self
                    .between
                    .as_mut()
                    .is_some_and(|(_, sleep)| sleep.as_mut().poll(cx).is_ready());
                if late {
                    return Poll::Ready(Some(Err(Error::ConnectionReadTimeout)));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_handshake_is_told_apart() {
        let io = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(matches!(tls_error(&io(bad)), Error::TlsCertificateError));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
        assert!(matches!(
            tls_error(&io(alert)),
            Error::TlsAlertReceived { alert_id: Some(40), .. }
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(tls_error(&reset), Error::TlsProtocolError));
    }
}

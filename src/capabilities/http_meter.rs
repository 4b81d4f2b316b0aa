//! Body bytes per origin for the report, a request's body counted as hyper
//! takes it and a response's as the guest is handed it, and each response's
//! status for the audit (`http-response`).

use super::denial::OriginCounts;
use super::http_bounds::SendResult;
use super::net::NetAudit;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasmtime_wasi_http::WasiBody;

/// A body that adds the size of each data frame to its origin's count.
struct Metered {
    inner: WasiBody,
    counts: OriginCounts,
    origin: String,
    sent: bool,
}

impl http_body::Body for Metered {
    type Data = bytes::Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            let (sent, received) = if self.sent { (n, 0) } else { (0, n) };
            self.counts.bytes(&self.origin, sent, received);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn meter(body: WasiBody, counts: &OriginCounts, origin: &str, sent: bool) -> WasiBody {
    let metered = Metered {
        inner: body,
        counts: counts.clone(),
        origin: origin.to_string(),
        sent,
    };
    http_body_util::BodyExt::boxed_unsync(metered)
}

/// `send(request)`, with the request's and the response's bodies counted
/// under `origin` (the decided `scheme://host:port`), and the response's
/// status (or the failure) handed to the audit as `http-response`, its
/// target `METHOD origin path` as the `http` record names the request.
pub(super) fn metered(
    net: &NetAudit,
    origin: &str,
    request: http::Request<WasiBody>,
    send: impl FnOnce(http::Request<WasiBody>) -> Box<dyn Future<Output = SendResult> + Send>,
) -> Box<dyn Future<Output = SendResult> + Send> {
    let target = format!("{} {origin}{}", request.method(), request.uri().path());
    let counts = net.origins.clone();
    let request = request.map(|body| meter(body, &counts, origin, true));
    let sending = send(request);
    let (records, broker, origin) = (net.denials.clone(), net.broker.clone(), origin.to_string());
    Box::new(async move {
        let sent = Pin::from(sending).await;
        let outcome = match &sent {
            Ok((response, _)) => format!("status {}", response.status().as_u16()),
            Err(err) => format!("failed: {err}"),
        };
        records.note("http-response", || broker.redact(&target), || broker.redact(&outcome));
        let (response, connection) = sent?;
        Ok((response.map(|body| meter(body, &counts, &origin, false)), connection))
    })
}

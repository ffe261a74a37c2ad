//! The layer that continues a request's W3C trace: a request whose
//! `traceparent` is well-formed runs within it ([`crate::trace::scope`]),
//! its log lines carrying the trace id. An ill-formed one is ignored, as the
//! specification says. When spans are exported, the request is a server
//! span of its own (in the caller's trace, or a new one).
//!
//! A plain `tower` service rather than `axum::middleware::from_fn`, which
//! clones the whole stack below it on every request: this sits on every
//! route of the API.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use tracing::Instrument;

use crate::trace::{Span, SpanKind, TraceContext};

/// Wraps each route in [`ContinueTrace`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ContinueTraceLayer;

impl<S> tower::Layer<S> for ContinueTraceLayer {
    type Service = ContinueTrace<S>;

    fn layer(&self, inner: S) -> ContinueTrace<S> {
        ContinueTrace(inner)
    }
}

/// A service that runs `S` within the request's trace, if it names one.
#[derive(Clone, Debug)]
pub struct ContinueTrace<S>(S);

impl<S> tower::Service<Request> for ContinueTrace<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let caller = request
            .headers()
            .get(crate::trace::HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let method = request.method().as_str();
        let span = Span::start(method, SpanKind::Server, caller).map(|mut span| {
            span.set("http.request.method", method);
            span.set("url.path", super::redacted_path(request.uri().path()));
            span
        });
        let context = span.as_ref().map(Span::context).or(caller);
        let answer = self.0.call(request);
        let Some(c) = context else {
            return Box::pin(answer);
        };
        let logs = tracing::info_span!("traced", trace_id = %c.trace_id());
        Box::pin(
            async move {
                let out = crate::trace::scope(context, answer).await;
                if let (Some(mut span), Ok(r)) = (span, &out) {
                    span.set_int("http.response.status_code", r.status().as_u16());
                    if r.status().is_server_error() {
                        span.fail(r.status().to_string());
                    }
                    span.end();
                }
                out
            }
            .instrument(logs),
        )
    }
}

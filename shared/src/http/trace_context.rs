//! The layer that continues a request's W3C trace: a request whose
//! `traceparent` is well-formed runs within it ([`crate::trace::scope`]),
//! its log lines carrying the trace id. An ill-formed one is ignored, as the
//! specification says.
//!
//! A plain `tower` service rather than `axum::middleware::from_fn`, which
//! clones the whole stack below it on every request: this sits on every
//! route of the API.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use tracing::Instrument;

use crate::trace::TraceContext;

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
    S: tower::Service<Request>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let context = request
            .headers()
            .get(crate::trace::HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let answer = self.0.call(request);
        match context {
            None => Box::pin(answer),
            Some(c) => {
                let span = tracing::info_span!("traced", trace_id = %c.trace_id());
                Box::pin(crate::trace::scope(Some(c), answer).instrument(span))
            }
        }
    }
}

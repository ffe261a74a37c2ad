//! The `warren` command line: the local gateway and its helpers.

pub mod bench;
pub mod client;
pub mod cost;
pub mod dev;
pub mod openapi;
pub mod otel;
pub mod progress;
pub mod provision;
pub mod users;

use std::sync::Arc;

use axum::Router;
use warren::Deps;
use warren::http::cors::cors;
use warren::http::guard::{AllowedOrigins, loopback_same_origin};

/// What the local gateway adds around the functions' routers, as API
/// Gateway would in AWS.
#[derive(Clone, Debug, Default)]
pub struct Gateway {
    /// Origins a browser may call from (`*`: any); none: no CORS answers.
    pub cors_origins: Vec<String>,
    /// Serving without credentials (loopback only): no web page may drive it.
    pub open: bool,
}

/// Every HTTP function's router merged into one app: the local gateway
/// serves exactly what the Lambda functions serve.
pub fn app(deps: Deps) -> Router {
    gateway(deps, &Gateway::default())
}

/// [`app`] behind the gateway's CORS and, when open, its guard against
/// web pages.
pub fn gateway(deps: Deps, options: &Gateway) -> Router {
    let routers = [
        enqueue::router(deps.clone()),
        enqueue_batch::router(deps.clone()),
        task_query::router(deps.clone()),
        task_control::router(deps.clone()),
        pipelines::router(deps.clone()),
        events::router(deps.clone()),
        ops::router(deps.clone()),
        identity::router(deps.clone()),
        dashboard::router(deps.clone()),
    ];
    let mut app = routers.into_iter().fold(Router::new(), Router::merge);
    app = warren::http::with_fallbacks(app);
    let allowed = AllowedOrigins(Arc::new(options.cors_origins.clone()));
    if options.open || deps.config.open {
        // Without credentials (loopback only), no web page may drive it.
        app = app.layer(axum::middleware::from_fn_with_state(
            allowed.clone(),
            loopback_same_origin,
        ));
    }
    if !options.cors_origins.is_empty() {
        // Outermost: a preflight is answered before anything else looks.
        app = app.layer(axum::middleware::from_fn_with_state(allowed, cors));
    }
    app
}

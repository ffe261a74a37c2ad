//! The `warren` command line: the local gateway and its helpers.

pub mod bench;
pub mod cost;
pub mod dev;
pub mod provision;

use std::sync::Arc;

use axum::Router;
use warren::Deps;
use warren::http::cors::cors;
use warren::http::guard::{AllowedOrigins, loopback_same_origin};
use warren::http::rate::{RateLimiter, rate_limit};

/// What the local gateway adds around the functions' routers, as API
/// Gateway would in AWS.
#[derive(Clone, Debug, Default)]
pub struct Gateway {
    /// Origins a browser may call from (`*`: any); none: no CORS answers.
    pub cors_origins: Vec<String>,
    /// Requests per minute per client on `/api/*`; 0: no limit.
    pub rate_limit: u32,
}

/// Every HTTP function's router merged into one app: the local gateway
/// serves exactly what the Lambda functions serve.
pub fn app(deps: Deps) -> Router {
    gateway(deps, &Gateway::default())
}

/// [`app`] behind the gateway's CORS, rate limit and, without an API key,
/// its guard against web pages.
pub fn gateway(deps: Deps, options: &Gateway) -> Router {
    let routers = [
        enqueue::router(deps.clone()),
        enqueue_batch::router(deps.clone()),
        task_query::router(deps.clone()),
        task_control::router(deps.clone()),
        pipelines::router(deps.clone()),
        events::router(deps.clone()),
        ops::router(deps.clone()),
    ];
    let mut app = routers.into_iter().fold(Router::new(), Router::merge);
    app = warren::http::with_fallbacks(app);
    if options.rate_limit > 0 {
        app = app.layer(axum::middleware::from_fn_with_state(
            RateLimiter::new(options.rate_limit),
            rate_limit,
        ));
    }
    let allowed = AllowedOrigins(Arc::new(options.cors_origins.clone()));
    if !deps.config.api_key.is_enabled() {
        // Without a key (loopback only), no web page may drive it.
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

//! The `warren` command line: the local gateway and its helpers.

pub mod bench;
pub mod cost;
pub mod dev;
pub mod provision;

use axum::Router;
use warren::Deps;
use warren::http::guard::{AllowedOrigins, loopback_same_origin};

/// Every HTTP function's router merged into one app: the local gateway
/// serves exactly what the Lambda functions serve.
pub fn app(deps: Deps) -> Router {
    let routers = [
        enqueue::router(deps.clone()),
        enqueue_batch::router(deps.clone()),
        task_query::router(deps.clone()),
        task_control::router(deps.clone()),
        pipelines::router(deps.clone()),
        events::router(deps.clone()),
        ops::router(deps.clone()),
    ];
    let app = routers.into_iter().fold(Router::new(), Router::merge);
    let app = warren::http::with_fallbacks(app);
    match deps.config.api_key.is_enabled() {
        true => app,
        // Without a key (loopback only), no web page may drive it.
        false => app.layer(axum::middleware::from_fn_with_state(
            AllowedOrigins::default(),
            loopback_same_origin,
        )),
    }
}

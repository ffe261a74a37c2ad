//! The dashboard: server-rendered pages for people who run queues, with a
//! small script of its own (no CDN, no build step). Pages need a session
//! (`/login`); what they show and which buttons they offer follow the
//! viewer's role and queue permissions, and the API behind the buttons
//! checks again. `/ws` pushes the overview live under `warren dev`; on
//! AWS the page polls `/dashboard/snapshot` (the same payload).

mod admin;
mod assets;
mod failed;
mod html;
#[cfg(feature = "websocket")]
mod live;
mod overview;
mod pipelines;
mod task;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use warren::Deps;
use warren::http::ApiError;
use warren::http::auth::session_token;
use warren::service::identity::{Presented, authenticate, sessions};

/// What the pages share: the engine, and the overview's recent counts.
#[derive(Clone)]
pub struct Board {
    deps: Deps,
    history: Arc<overview::History>,
}

/// The session's socket ticket, for the overview's live updates.
#[derive(Clone)]
struct Ticket(String);

pub fn router(deps: Deps) -> Router {
    let board = Board {
        deps,
        history: Arc::default(),
    };
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/dashboard/snapshot", get(overview::snapshot))
        .route("/tasks/{id}", get(task::page))
        .route("/failed", get(failed::page))
        .route("/pipelines", get(pipelines::list))
        .route("/pipelines/{id}", get(pipelines::page))
        .route("/executions/{id}", get(pipelines::execution))
        .route("/admin", get(admin::page))
        .route("/account", get(admin::account))
        .route_layer(axum::middleware::from_fn_with_state(
            board.clone(),
            signed_in,
        ));
    // The socket signs in with its first message (seed 001); assets are public.
    let open = Router::new().route("/assets/{name}", get(assets::serve));
    #[cfg(feature = "websocket")]
    let open = open.route("/ws", get(live::socket));
    pages.merge(open).with_state(board)
}

/// Middleware of the pages: the session's principal, or the sign-in page
/// (a JSON 401 for the snapshot, which scripts read).
async fn signed_in(State(board): State<Board>, mut req: Request, next: Next) -> Response {
    let token = session_token(req.headers());
    let who = match &token {
        Some(t) => authenticate(&board.deps, &Presented::Session(t.clone()))
            .await
            .ok(),
        None => None,
    };
    match (who, token) {
        (Some(principal), Some(token)) => {
            req.extensions_mut().insert(principal);
            req.extensions_mut()
                .insert(Ticket(sessions::socket_ticket(&token)));
            next.run(req).await
        }
        _ if req.uri().path() == "/dashboard/snapshot" => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in at /login",
        )
        .into_response(),
        _ => {
            let here = req
                .uri()
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .to_string();
            let to = format!("/login?next={}", percent_encoded(&here));
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
    }
}

/// `text` with everything but unreserved characters and `/` escaped, for
/// a query value.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_way_back_after_sign_in_is_one_query_value() {
        assert_eq!(
            super::percent_encoded("/tasks/x?a=1&b=é#"),
            "/tasks/x%3Fa%3D1%26b%3D%C3%A9%23"
        );
    }
}

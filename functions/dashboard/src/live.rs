//! `/ws`, as seed 001 has it: the first message signs in (`{"type":
//! "auth", "token": …}`: a session token, or the page's socket ticket),
//! then the server pushes the overview's snapshot every 2 s, within half a
//! second of a change in the counts, and at once after a filter message.
//! A socket that does not sign in is closed with 1008 (policy violation).

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::{Instant, interval, timeout};
use warren::domain::identity::Principal;
use warren::http::guard::same_origin;
use warren::service::identity::sessions::socket_principal;

use crate::Board;
use crate::overview::{Filter, snapshot_of};

/// The longest message a client may send.
const MAX_MESSAGE_BYTES: usize = 4096;
/// How long a new socket has to sign in.
const SIGN_IN_WITHIN: Duration = Duration::from_secs(10);
/// A push at least this often.
const PUSH_EVERY: Duration = Duration::from_secs(2);
/// How often the counts are looked at for a change.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// How often the session is checked again (a sign-out ends the socket).
const RECHECK_EVERY: Duration = Duration::from_secs(30);

/// `GET /ws`: the upgrade, from warren's own pages only (a cookie-less
/// socket from another site gets nothing either way, but say so early).
pub async fn socket(
    State(board): State<Board>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let (Some(origin), Some(host)) = (origin, host)
        && !same_origin(origin, host)
    {
        return (StatusCode::FORBIDDEN, "a socket from another site").into_response();
    }
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(board, socket))
}

async fn close(mut socket: WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// The principal of the first message, and its token, if it signs in.
async fn sign_in(board: &Board, socket: &mut WebSocket) -> Option<(Principal, String)> {
    let Ok(Some(Ok(Message::Text(text)))) = timeout(SIGN_IN_WITHIN, socket.recv()).await else {
        return None;
    };
    let first: Value = serde_json::from_str(&text).ok()?;
    if first["type"] != "auth" {
        return None;
    }
    let token = first["token"].as_str()?.to_string();
    let who = socket_principal(&board.deps, &token).await.ok()?;
    Some((who, token))
}

async fn run(board: Board, mut socket: WebSocket) {
    let Some((mut who, token)) = sign_in(&board, &mut socket).await else {
        return close(socket, close_code::POLICY, "authentication required").await;
    };
    let mut filter = Filter::default();
    let mut look = interval(LOOK_EVERY);
    let mut last_sent: Option<Instant> = None;
    let mut last_stats = Value::Null;
    let mut checked = Instant::now();
    loop {
        let mut push = false;
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    match serde_json::from_str::<Value>(&text) {
                        Ok(Value::Object(m)) if m.get("type").is_some_and(|t| t == "auth") => {}
                        Ok(Value::Object(m)) => match filter.apply(&m) {
                            Ok(()) => push = true,
                            Err(e) => {
                                let error = json!({"type": "error", "error": e}).to_string();
                                if socket.send(Message::Text(error.into())).await.is_err() {
                                    return;
                                }
                            }
                        },
                        _ => return close(socket, close_code::INVALID, "messages are JSON objects").await,
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = look.tick() => {
                push = last_sent.is_none_or(|at| at.elapsed() >= PUSH_EVERY);
                if !push && let Ok(stats) = board.deps.tasks().queue_stats().await {
                    push = serde_json::to_value(&stats).unwrap_or_default() != last_stats;
                }
            }
        }
        if checked.elapsed() >= RECHECK_EVERY {
            // The session may have ended, or the user's role changed.
            checked = Instant::now();
            match socket_principal(&board.deps, &token).await {
                Ok(p) => who = p,
                Err(_) => return close(socket, close_code::POLICY, "the session has ended").await,
            }
        }
        if !push {
            continue;
        }
        let snap = match snapshot_of(&board, &who, &filter).await {
            Ok(s) => s,
            Err(e) => json!({"type": "error", "error": e.to_string()}),
        };
        last_stats = snap["stats"].clone();
        last_sent = Some(Instant::now());
        if socket
            .send(Message::Text(snap.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

//! Stored provider keys (seed 002's BYOK): sealed at rest under the master
//! key, listed only as a hint, and opened only to be sent: an `http` task,
//! an `http` step or a task's `webhook_headers` names one in a header
//! value as `{{secrets.NAME}}`, and
//! [`Resolving`] puts the owner's value in at send time. What comes back is
//! scrubbed of every value it put in, so an endpoint that echoes its
//! request cannot carry a secret into a result, an error or an execution.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::super::{Deps, ServiceError};
use crate::domain::identity::StoredSecret;
use crate::keys::hint;
use crate::keys::sealing::MasterKey;
use crate::ports::{HttpClient, HttpError, HttpRequest, HttpResponse};
use crate::table::secrets;

/// Secrets one owner may store.
pub const MAX_SECRETS: usize = 100;
/// The largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;
/// A secret's `last_used_at` is written at most this often.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::seconds(60);
/// What a secret's value is replaced with in anything that comes back.
pub const REDACTED: &str = "[secret]";

/// A secret to store, as `POST /api/v1/secrets` takes it.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub name: String,
    /// 1 to 64 printable characters.
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$"
    )]
    pub provider: String,
    /// 1 to 8192 bytes, without line breaks (it goes in a header).
    #[schema(min_length = 1, max_length = 8192, pattern = r"^[^\r\n\x00]+$")]
    pub value: String,
}

/// Whether `name` can name a secret: 1-64 letters, digits, `_` or `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The context a value is sealed for: its owner and name.
fn context(owner: Option<Uuid>, name: &str) -> String {
    format!(
        "{}/{name}",
        owner.map_or("-".to_string(), |u| u.to_string())
    )
}

/// The key that seals secrets: the configured one, or the one read from
/// the SSM parameter on first use; 503 `secrets_unavailable` without.
pub async fn master_key(deps: &Deps) -> Result<MasterKey, ServiceError> {
    if let Some(key) = &deps.config.secrets_key {
        return Ok(key.clone());
    }
    let unavailable = |why: String| ServiceError::Unavailable {
        message: why,
        code: "secrets_unavailable",
    };
    let Some(parameter) = deps.config.secrets_key_parameter.clone() else {
        return Err(unavailable(
            "no secrets key is configured (WARREN_SECRETS_KEY or WARREN_SECRETS_KEY_PARAMETER)"
                .into(),
        ));
    };
    let loaded = deps
        .identity
        .secrets_key
        .get_or_try_init(|| async {
            let text = crate::adapters::ssm::secure_parameter(&parameter).await?;
            MasterKey::from_base64(&text).map(Some)
        })
        .await
        .map_err(|e| {
            tracing::error!(parameter = %parameter, error = %e, "reading the secrets key failed");
            unavailable("the secrets key could not be read".into())
        })?;
    loaded
        .clone()
        .ok_or_else(|| unavailable("no secrets key".into()))
}

/// Store (or replace) `owner`'s secret.
pub async fn put(
    deps: &Deps,
    owner: Option<Uuid>,
    new: NewSecret,
) -> Result<StoredSecret, ServiceError> {
    if !valid_name(&new.name) {
        return Err(ServiceError::invalid(
            "invalid_field",
            "name must be 1-64 letters, digits, `_` or `-`",
        ));
    }
    let provider = new.provider.trim();
    if provider.is_empty() || provider.len() > 64 || provider.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "invalid_field",
            "provider must be 1-64 printable characters",
        ));
    }
    if new.value.is_empty()
        || new.value.len() > MAX_VALUE_BYTES
        || new
            .value
            .chars()
            .any(|c| c == '\r' || c == '\n' || c == '\0')
    {
        return Err(ServiceError::invalid(
            "invalid_field",
            format!(
                "value must be 1-{MAX_VALUE_BYTES} bytes, without line breaks (it goes in a header)"
            ),
        ));
    }
    let held = secrets::of_owner(&*deps.store, owner, MAX_SECRETS + 1).await?;
    if held.len() >= MAX_SECRETS && !held.iter().any(|s| s.name == new.name) {
        return Err(ServiceError::Conflict {
            message: format!("at most {MAX_SECRETS} secrets: delete one first"),
            code: "too_many_secrets",
        });
    }
    let key = master_key(deps).await?;
    let secret = StoredSecret {
        key_hint: hint(&new.value),
        sealed: key.seal(&context(owner, &new.name), new.value.as_bytes()),
        name: new.name,
        provider: provider.to_string(),
        created_at: deps.now(),
        last_used_at: None,
    };
    deps.store
        .transact(vec![secrets::put(owner, &secret)])
        .await?;
    Ok(secret)
}

/// `owner`'s secrets, by name.
pub async fn list(deps: &Deps, owner: Option<Uuid>) -> Result<Vec<StoredSecret>, ServiceError> {
    Ok(secrets::of_owner(&*deps.store, owner, MAX_SECRETS).await?)
}

/// Delete `owner`'s secret `name`; 404 when there is none.
pub async fn delete(deps: &Deps, owner: Option<Uuid>, name: &str) -> Result<(), ServiceError> {
    match deps
        .store
        .transact(vec![secrets::delete(owner, name)])
        .await
    {
        Err(e) if e.is_conflict() => Err(ServiceError::NotFound("no such secret")),
        other => other.map_err(Into::into),
    }
}

/// The names of the secrets `text` refers to as `{{secrets.NAME}}`, or
/// the first malformed reference.
pub fn references(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        let after = &rest[at + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "`{{` without `}}`".to_string())?;
        let inner = after[..end].trim();
        let name = inner
            .strip_prefix("secrets.")
            .filter(|n| valid_name(n))
            .ok_or_else(|| format!("`{{{{{inner}}}}}` is not `{{{{secrets.NAME}}}}`"))?;
        names.push(name);
        rest = &after[end + 2..];
    }
    Ok(names)
}

/// `text` with each `{{secrets.NAME}}` replaced by `value(NAME)`.
fn substitute(text: &str, value: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find("}}")?;
        let name = after[..end].trim().strip_prefix("secrets.")?;
        out.push_str(&value(name)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// Outgoing HTTP that puts `owner`'s secrets into header values at send
/// time and scrubs them out of the answer.
pub struct Resolving {
    deps: Deps,
    owner: Option<Uuid>,
}

impl Resolving {
    /// The client `owner`'s `http` tasks and steps send with.
    pub fn client(deps: &Deps, owner: Option<Uuid>) -> Arc<dyn HttpClient> {
        Arc::new(Resolving {
            deps: deps.clone(),
            owner,
        })
    }

    /// The opened values of the secrets `names`, or why not.
    async fn open(&self, names: &[String]) -> Result<Vec<(String, String)>, HttpError> {
        let key = master_key(&self.deps)
            .await
            .map_err(|e| HttpError::Invalid(e.to_string()))?;
        let now = Utc::now();
        let mut values = Vec::new();
        for name in names {
            let stored = secrets::get(&*self.deps.store, self.owner, name)
                .await
                .map_err(|e| HttpError::Transport(format!("reading secrets: {e}")))?
                .ok_or_else(|| HttpError::Invalid(format!("no secret named `{name}`")))?;
            let plain = key
                .open(&context(self.owner, name), &stored.sealed)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| HttpError::Invalid(format!("secret `{name}` does not open")))?;
            if stored.last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
                let used = StoredSecret {
                    last_used_at: Some(now),
                    ..stored
                };
                let _ = self
                    .deps
                    .store
                    .transact(vec![secrets::touch(self.owner, &used)])
                    .await;
            }
            values.push((name.clone(), plain));
        }
        Ok(values)
    }
}

#[async_trait]
impl HttpClient for Resolving {
    async fn send(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // The trace of the request this call serves goes on.
        let span = crate::trace::propagate(&mut request.headers, &request.method, &request.url);
        let answer = self.send_resolved(request).await;
        if let Some(mut span) = span {
            match &answer {
                Ok(r) => span.set_int("http.response.status_code", r.status),
                Err(e) => span.fail(e.to_string()),
            }
            span.end();
        }
        answer
    }
}

impl Resolving {
    /// [`HttpClient::send`] once the trace header is on.
    async fn send_resolved(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let mut names: Vec<String> = Vec::new();
        for (_, value) in &request.headers {
            for name in references(value).map_err(HttpError::Invalid)? {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        }
        if names.is_empty() {
            return self.deps.http.send(request).await;
        }
        let values = self.open(&names).await?;
        let lookup = |name: &str| {
            values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        for (_, value) in request.headers.iter_mut() {
            if let Some(resolved) = substitute(value, lookup) {
                *value = resolved;
            }
        }
        let secrets: Vec<&str> = values.iter().map(|(_, v)| v.as_str()).collect();
        let mut response = self.deps.http.send(request).await.map_err(|e| match e {
            HttpError::Transport(m) => HttpError::Transport(scrub(&m, &secrets)),
            HttpError::Invalid(m) => HttpError::Invalid(scrub(&m, &secrets)),
            other => other,
        })?;
        for (_, value) in response.headers.iter_mut() {
            *value = scrub(value, &secrets);
        }
        response.body = scrub_bytes(&response.body, &secrets);
        Ok(response)
    }
}

/// `text` with every occurrence of a secret replaced by [`REDACTED`].
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s) {
            out = out.replace(s, REDACTED);
        }
    }
    out
}

fn scrub_bytes(body: &[u8], secrets: &[&str]) -> Vec<u8> {
    let mut out = body.to_vec();
    for s in secrets
        .iter()
        .map(|s| s.as_bytes())
        .filter(|s| !s.is_empty())
    {
        let mut scrubbed = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(s) {
                scrubbed.extend_from_slice(REDACTED.as_bytes());
                i += s.len();
            } else {
                scrubbed.push(out[i]);
                i += 1;
            }
        }
        out = scrubbed;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_and_malformed_ones_refused() {
        assert_eq!(
            references("Bearer {{secrets.OPENAI}} and {{ secrets.other-1 }}").unwrap(),
            vec!["OPENAI", "other-1"]
        );
        assert!(references("plain").unwrap().is_empty());
        assert!(references("{{secrets.}}").is_err());
        assert!(references("{{env.HOME}}").is_err());
        assert!(references("{{secrets.A").is_err());
        let got = substitute("Bearer {{secrets.A}}!", |n| (n == "A").then(|| "x1".into()));
        assert_eq!(got.as_deref(), Some("Bearer x1!"));
    }

    #[test]
    fn echoed_values_are_scrubbed() {
        assert_eq!(
            scrub("auth: sk-123 sk-123", &["sk-123"]),
            "auth: [secret] [secret]"
        );
        assert_eq!(
            scrub_bytes(b"{\"h\":\"Bearer sk-123\"}", &["sk-123"]),
            b"{\"h\":\"Bearer [secret]\"}".to_vec()
        );
    }
}

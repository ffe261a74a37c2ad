//! JWT bearer tokens from an OIDC issuer, checked against its JWKS.
//!
//! Only RS256 and ES256 are accepted, with the key picked from the issuer's
//! JWKS (never from the token itself: `jwk`, `jku` and `x5u` headers are
//! ignored). The JWKS is fetched on first use and cached; a token naming a
//! key the cache lacks triggers a refetch (key rotation), at most once per
//! [`REFETCH_INTERVAL_SECS`], so junk tokens cannot make the verifier
//! hammer the issuer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, KeyOperations};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

/// Largest token accepted; anything longer is refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest JWKS body read; more is an error, not a truncation.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Most usable keys kept from one JWKS.
pub const MAX_KEYS: usize = 32;
/// Whole-request timeout of a JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Least time between two fetches while keys are held (unknown `kid`s,
/// failed refreshes).
pub const REFETCH_INTERVAL_SECS: i64 = 30;
/// Least time between two fetch attempts while no keys are held at all:
/// shorter, since every token fails until one succeeds.
pub const RETRY_WITHOUT_KEYS_SECS: i64 = 5;
/// Age after which the cached JWKS is refreshed, so removed keys stop
/// verifying.
pub const MAX_KEYS_AGE_SECS: i64 = 3600;

/// Where tokens come from and whom they must be for.
#[derive(Clone, Debug)]
pub struct JwtSettings {
    /// Expected `iss`, compared exactly.
    pub issuer: String,
    /// Value that `aud` (a string or an array) must contain.
    pub audience: String,
    /// URL of the issuer's JWKS (e.g. `<issuer>/.well-known/jwks.json`).
    pub jwks_url: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Why a token was refused. The `Display` text is short and never quotes
/// the token, so it can be returned to the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum JwtError {
    /// Not a well-formed JWT (or too large).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` is not RS256 or ES256.
    #[error("unsupported token algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// No key of the issuer's JWKS fits the token's `kid` and `alg`.
    #[error("token signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is still to come.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token audience not accepted")]
    WrongAudience,
    /// A required claim is absent (or, for `sub`, empty).
    #[error("token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// The issuer's keys could not be fetched and none are cached.
    #[error("token signing keys unavailable: {0}")]
    JwksUnavailable(String),
}

/// The claims of a verified token.
#[derive(Clone, Debug)]
pub struct Claims {
    /// The issuer (equal to [`JwtSettings::issuer`]).
    pub iss: String,
    /// The subject: who the token is about; never empty.
    pub sub: String,
    /// Every claim, those above included.
    pub all: Map<String, Value>,
}

impl Claims {
    /// A claim as text: a string claim, or the first string of an array claim (e.g. Cognito's `cognito:groups`). Claim names are looked up verbatim (they may contain ':' or '/').
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.all.get(name)? {
            Value::String(s) => Some(s),
            Value::Array(items) => items.iter().find_map(Value::as_str),
            _ => None,
        }
    }

    /// Every string of a string or array-of-strings claim.
    pub fn texts(&self, name: &str) -> Vec<&str> {
        match self.all.get(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}

/// Whether `token` has the shape of a JWT (three base64url segments, the first a JSON header with "alg"), to tell JWTs from opaque API keys cheaply.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    // An empty signature still looks like a JWT (`alg: none`): better refused
    // as one than looked up as an API key.
    if header.is_empty() || payload.is_empty() || header.len() > MAX_TOKEN_BYTES {
        return false;
    }
    if ![header, payload, signature].iter().all(|p| is_base64url(p)) {
        return false;
    }
    decode_object(header).is_some_and(|h| h.get("alg").is_some_and(Value::is_string))
}

fn is_base64url(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A base64url segment holding a JSON object.
fn decode_object(segment: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The two algorithms accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Alg {
    Rs256,
    Es256,
}

impl Alg {
    fn jsonwebtoken(self) -> Algorithm {
        match self {
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
        }
    }
}

/// A token split and decoded, its signature not yet checked.
struct Parsed<'a> {
    alg: Alg,
    kid: Option<String>,
    signing_input: &'a str,
    signature: &'a str,
    payload: Map<String, Value>,
}

fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    let malformed = |why: &str| JwtError::Malformed(why.to_string());
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("too large"));
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("not three segments"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or_else(|| malformed("not three segments"))?;
    if payload.contains('.') {
        return Err(malformed("not three segments"));
    }
    let header = decode_object(header).ok_or_else(|| malformed("bad header"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => match alg.as_str() {
            "RS256" => Alg::Rs256,
            "ES256" => Alg::Es256,
            other => return Err(JwtError::UnsupportedAlgorithm(printable_alg(other))),
        },
        _ => return Err(malformed("header lacks alg")),
    };
    // RFC 7515 4.1.11: extensions marked critical must be understood; none is.
    if header.contains_key("crit") {
        return Err(malformed("unsupported critical header"));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    if !is_base64url(signature) {
        return Err(malformed("bad signature encoding"));
    }
    let payload = decode_object(payload).ok_or_else(|| malformed("bad payload"))?;
    Ok(Parsed {
        alg,
        kid,
        signing_input,
        signature,
        payload,
    })
}

/// An `alg` fit to echo back: the value comes from the token, so anything
/// but a short plain name is not repeated.
fn printable_alg(alg: &str) -> String {
    if !alg.is_empty() && alg.len() <= 16 && alg.bytes().all(|b| b.is_ascii_alphanumeric()) {
        alg.to_string()
    } else {
        "(unrecognised)".to_string()
    }
}

/// One usable key of the JWKS.
struct VerifyKey {
    kid: Option<String>,
    alg: Alg,
    key: DecodingKey,
}

/// The cached JWKS.
struct KeySet {
    keys: Vec<VerifyKey>,
    /// When it was fetched, in the verifier's clock (Unix seconds).
    fetched_at: i64,
}

impl KeySet {
    fn is_stale(&self, now: i64) -> bool {
        now.saturating_sub(self.fetched_at) >= MAX_KEYS_AGE_SECS
    }

    /// The key for a token: same `kid` and algorithm; a token without `kid`
    /// only when the choice is unambiguous.
    fn select(&self, alg: Alg, kid: Option<&str>) -> Option<&VerifyKey> {
        let mut fitting = self.keys.iter().filter(|k| k.alg == alg);
        match kid {
            Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)),
            None => match (fitting.next(), fitting.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        }
    }
}

/// The usable keys of a JWKS body. Entries that are not signing keys for
/// RS256 or ES256, or that do not parse, are skipped rather than failing the
/// set: issuers publish encryption keys and newer key types beside them.
fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| usable_key(&jwk))
        .take(MAX_KEYS)
        .collect())
}

fn usable_key(jwk: &Jwk) -> Option<VerifyKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    let (alg, key) = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => (
            Alg::Rs256,
            // ring refuses moduli under 2048 bits when verifying.
            DecodingKey::from_rsa_components(&p.n, &p.e).ok()?,
        ),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            // from_ec_components does not check lengths; a P-256 coordinate is
            // 32 bytes.
            let x = URL_SAFE_NO_PAD.decode(&p.x).ok()?;
            let y = URL_SAFE_NO_PAD.decode(&p.y).ok()?;
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            (
                Alg::Es256,
                DecodingKey::from_ec_components(&p.x, &p.y).ok()?,
            )
        }
        _ => return None,
    };
    let wanted = match alg {
        Alg::Rs256 => KeyAlgorithm::RS256,
        Alg::Es256 => KeyAlgorithm::ES256,
    };
    if common.key_algorithm.is_some_and(|a| a != wanted) {
        return None;
    }
    Some(VerifyKey {
        kid: common.key_id.clone(),
        alg,
        key,
    })
}

/// What the fetch lock guards: the one fetch in flight and its pacing.
#[derive(Default)]
struct FetchState {
    /// Built on first fetch: building reads the system's trust store, which
    /// a process that never sees a JWT should not pay for.
    client: Option<reqwest::Client>,
    last_attempt: Option<i64>,
}

impl FetchState {
    fn may_fetch(&self, now: i64, have_keys: bool) -> bool {
        let interval = if have_keys {
            REFETCH_INTERVAL_SECS
        } else {
            RETRY_WITHOUT_KEYS_SECS
        };
        match self.last_attempt {
            None => true,
            // A clock that went back must not block fetches until it catches up.
            Some(last) => now < last || now - last >= interval,
        }
    }
}

struct Inner {
    settings: JwtSettings,
    /// Read on every verify without waiting for a fetch in flight.
    keys: Mutex<Option<Arc<KeySet>>>,
    /// Held across a fetch, so concurrent verifies share one (single flight).
    fetch: tokio::sync::Mutex<FetchState>,
}

/// Verifies bearer tokens against the issuer's JWKS. Cheap to clone; clones
/// share the key cache.
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

impl JwtVerifier {
    /// A verifier for `settings`. Nothing is fetched until the first token.
    pub fn new(settings: JwtSettings) -> Self {
        JwtVerifier {
            inner: Arc::new(Inner {
                settings,
                keys: Mutex::new(None),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
            }),
        }
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &JwtSettings {
        &self.inner.settings
    }

    /// Check `token` (without the `Bearer ` prefix) and return its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        self.verify_at(token, chrono::Utc::now().timestamp()).await
    }

    /// [`verify`](Self::verify) with the clock (Unix seconds) given, for tests.
    pub(crate) async fn verify_at(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        // Everything that needs no key is checked first: a junk token must
        // not cause a fetch.
        let parsed = parse(token)?;
        let key = self.key_for(parsed.alg, parsed.kid.as_deref(), now).await?;
        let valid = jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signing_input.as_bytes(),
            &key,
            parsed.alg.jsonwebtoken(),
        )
        .map_err(|_| JwtError::BadSignature)?;
        if !valid {
            return Err(JwtError::BadSignature);
        }
        self.check_claims(parsed.payload, now)
    }

    fn cached(&self) -> Option<Arc<KeySet>> {
        // A poisoned lock still holds a whole Option<Arc>: nothing half-written.
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn store(&self, set: KeySet) {
        *self.inner.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(set));
    }

    async fn key_for(
        &self,
        alg: Alg,
        kid: Option<&str>,
        now: i64,
    ) -> Result<DecodingKey, JwtError> {
        if let Some(set) = self.cached()
            && !set.is_stale(now)
            && let Some(found) = set.select(alg, kid)
        {
            return Ok(found.key.clone());
        }
        {
            let mut state = self.inner.fetch.lock().await;
            // Decided under the lock: whoever waited on a fetch sees its
            // result here, and the pacing stops it fetching again.
            let current = self.cached();
            let wanted = match &current {
                None => true,
                // Only a named kid can appear by refetching; a token without
                // one is ambiguous however often we fetch.
                Some(set) => set.is_stale(now) || (kid.is_some() && set.select(alg, kid).is_none()),
            };
            if wanted && state.may_fetch(now, current.is_some()) {
                state.last_attempt = Some(now);
                match self.fetch(&mut state).await {
                    Ok(keys) => {
                        tracing::debug!(keys = keys.len(), url = %self.inner.settings.jwks_url, "JWKS fetched");
                        self.store(KeySet {
                            keys,
                            fetched_at: now,
                        });
                    }
                    Err((short, detail)) => {
                        // The old keys stay: tokens they sign keep verifying
                        // while the issuer is down.
                        tracing::warn!(url = %self.inner.settings.jwks_url, error = %detail, "JWKS fetch failed");
                        if current.is_none() {
                            return Err(JwtError::JwksUnavailable(short.to_string()));
                        }
                    }
                }
            }
        }
        let set = self
            .cached()
            .ok_or_else(|| JwtError::JwksUnavailable("not fetched yet".to_string()))?;
        set.select(alg, kid)
            .map(|found| found.key.clone())
            .ok_or(JwtError::UnknownKey)
    }

    /// Fetch and parse the JWKS. The error is a short reason (returned to
    /// clients) and the detail (logged).
    async fn fetch(
        &self,
        state: &mut FetchState,
    ) -> Result<Vec<VerifyKey>, (&'static str, String)> {
        let client = match &state.client {
            Some(client) => client.clone(),
            None => {
                // One process-wide TLS provider (ring); a second install is harmless.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    // The issuer is reached directly, whatever HTTP(S)_PROXY say.
                    .no_proxy()
                    // A JWKS URL is configured, not discovered: a redirect is
                    // a misconfiguration to see in the logs, not to follow.
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| ("client error", format!("building the HTTP client: {e}")))?;
                state.client = Some(client.clone());
                client
            }
        };
        let mut response = client
            .get(&self.inner.settings.jwks_url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| ("fetch failed", crate::adapters::http::full_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(("issuer answered with an error", format!("HTTP {status}")));
        }
        let too_large = || {
            (
                "JWKS too large",
                format!("body over {MAX_JWKS_BYTES} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ("fetch failed", crate::adapters::http::full_chain(&e)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body).map_err(|e| ("invalid JWKS", e))?;
        // An empty set is treated as a failure: keeping the old keys beats
        // refusing every token over a glitch.
        if keys.is_empty() {
            return Err((
                "no usable keys",
                "JWKS holds no RS256/ES256 signing key".to_string(),
            ));
        }
        Ok(keys)
    }

    fn check_claims(&self, all: Map<String, Value>, now: i64) -> Result<Claims, JwtError> {
        let settings = &self.inner.settings;
        let leeway = i64::try_from(settings.leeway.as_secs()).unwrap_or(i64::MAX);
        let exp = numeric_date(&all, "exp")?.ok_or(JwtError::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(JwtError::Expired);
        }
        if let Some(nbf) = numeric_date(&all, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(JwtError::NotYetValid);
        }
        let iss = match all.get("iss") {
            None => return Err(JwtError::MissingClaim("iss")),
            Some(Value::String(iss)) if *iss == settings.issuer => iss.clone(),
            Some(_) => return Err(JwtError::WrongIssuer),
        };
        let audience_ok = match all.get("aud") {
            None => return Err(JwtError::MissingClaim("aud")),
            Some(Value::String(aud)) => *aud == settings.audience,
            Some(Value::Array(auds)) => auds
                .iter()
                .any(|a| a.as_str() == Some(settings.audience.as_str())),
            Some(_) => false,
        };
        if !audience_ok {
            return Err(JwtError::WrongAudience);
        }
        let sub = match all.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(JwtError::MissingClaim("sub")),
        };
        Ok(Claims { iss, sub, all })
    }
}

/// A NumericDate claim as whole seconds; fractions (allowed by RFC 7519)
/// are dropped.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            // `as` saturates: a huge value is far future, not wrapped.
            (None, Some(f)) => Ok(Some(f.floor() as i64)),
            (None, None) => Err(JwtError::Malformed(format!("{name} is not a number"))),
        },
        Some(_) => Err(JwtError::Malformed(format!("{name} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "https://issuer.test";
    const AUDIENCE: &str = "warren";

    /// A signing key and its public JWK (without `kid`).
    struct TestKey {
        alg: Algorithm,
        encoding: EncodingKey,
        jwk: Value,
    }

    impl TestKey {
        fn jwk(&self, kid: &str) -> Value {
            let mut jwk = self.jwk.clone();
            jwk["kid"] = json!(kid);
            jwk
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_key() -> TestKey {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        TestKey {
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "use": "sig",
                "n": b64(&private.n().to_bytes_be()),
                "e": b64(&private.e().to_bytes_be()),
            }),
        }
    }

    fn ec_key() -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // Uncompressed point: 0x04, then x and y.
        let point = pair.public_key().as_ref();
        TestKey {
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "use": "sig",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        }
    }

    // RSA generation is the slow part of these tests: two keys, shared.
    static RSA_A: LazyLock<TestKey> = LazyLock::new(rsa_key);
    static RSA_B: LazyLock<TestKey> = LazyLock::new(rsa_key);

    fn sign(key: &TestKey, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(key.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    fn claims() -> Value {
        json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "exp": NOW + 600, "iat": NOW })
    }

    fn with(mut base: Value, key: &str, value: Value) -> Value {
        base[key] = value;
        base
    }

    fn without(mut base: Value, key: &str) -> Value {
        base.as_object_mut().unwrap().remove(key);
        base
    }

    /// A hand-made token: header and claims as given, signature as given.
    fn raw_token(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes()),
            b64(signature)
        )
    }

    #[derive(Default)]
    struct IssuerState {
        jwks: Mutex<Value>,
        fetches: AtomicUsize,
        failing: AtomicBool,
        delay_ms: AtomicU64,
    }

    /// A JWKS endpoint on 127.0.0.1 whose keys a test can change.
    struct Issuer {
        url: String,
        state: Arc<IssuerState>,
    }

    impl Issuer {
        async fn start(keys: Vec<Value>) -> Issuer {
            let state = Arc::new(IssuerState::default());
            *state.jwks.lock().unwrap() = json!({ "keys": keys });
            let app = Router::new()
                .route("/jwks", get(serve_jwks))
                .with_state(state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, app).await });
            Issuer {
                url: format!("http://{addr}/jwks"),
                state,
            }
        }

        fn set_keys(&self, keys: Vec<Value>) {
            *self.state.jwks.lock().unwrap() = json!({ "keys": keys });
        }

        fn set_body(&self, body: Value) {
            *self.state.jwks.lock().unwrap() = body;
        }

        fn fetches(&self) -> usize {
            self.state.fetches.load(Ordering::SeqCst)
        }

        fn fail(&self, failing: bool) {
            self.state.failing.store(failing, Ordering::SeqCst);
        }

        fn verifier(&self) -> JwtVerifier {
            verifier_for(&self.url, Duration::ZERO)
        }
    }

    async fn serve_jwks(State(state): State<Arc<IssuerState>>) -> Response {
        state.fetches.fetch_add(1, Ordering::SeqCst);
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if state.failing.load(Ordering::SeqCst) {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let body = state.jwks.lock().unwrap().clone();
        axum::Json(body).into_response()
    }

    fn verifier_for(url: &str, leeway: Duration) -> JwtVerifier {
        JwtVerifier::new(JwtSettings {
            issuer: ISSUER.to_string(),
            audience: AUDIENCE.to_string(),
            jwks_url: url.to_string(),
            leeway,
        })
    }

    #[tokio::test]
    async fn valid_rs256_token_verifies() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let token = sign(
            &RSA_A,
            Some("a"),
            &with(claims(), "scope", json!("tasks:write")),
        );
        let claims = verifier.verify_at(&token, NOW).await.unwrap();
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.sub, "user-1");
        assert_eq!(claims.text("scope"), Some("tasks:write"));
        assert_eq!(claims.all["exp"], json!(NOW + 600));
        // Cached: a second token makes no new fetch.
        verifier.verify_at(&token, NOW + 1).await.unwrap();
        assert_eq!(issuer.fetches(), 1);
        assert_eq!(verifier.settings().audience, AUDIENCE);
    }

    #[tokio::test]
    async fn valid_es256_token_verifies() {
        let ec = ec_key();
        let issuer = Issuer::start(vec![RSA_A.jwk("a"), ec.jwk("e")]).await;
        let verifier = issuer.verifier();
        let claims = verifier
            .verify_at(&sign(&ec, Some("e"), &claims()), NOW)
            .await
            .unwrap();
        assert_eq!(claims.sub, "user-1");
        // The public wrapper uses the real clock: a token valid now passes.
        let now = chrono::Utc::now().timestamp();
        let live = with(claims_at(now), "sub", json!("live"));
        assert_eq!(
            verifier
                .verify(&sign(&ec, Some("e"), &live))
                .await
                .unwrap()
                .sub,
            "live"
        );
    }

    fn claims_at(now: i64) -> Value {
        with(claims(), "exp", json!(now + 600))
    }

    #[tokio::test]
    async fn exp_and_nbf_are_checked_with_leeway() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let strict = issuer.verifier();
        let lenient = verifier_for(&issuer.url, Duration::from_secs(60));
        let token = |c: Value| sign(&RSA_A, Some("a"), &c);

        let just_expired = token(with(claims(), "exp", json!(NOW - 30)));
        assert_eq!(
            strict.verify_at(&just_expired, NOW).await.unwrap_err(),
            JwtError::Expired
        );
        assert!(lenient.verify_at(&just_expired, NOW).await.is_ok());
        let long_expired = token(with(claims(), "exp", json!(NOW - 61)));
        assert_eq!(
            lenient.verify_at(&long_expired, NOW).await.unwrap_err(),
            JwtError::Expired
        );
        // Expiry is exclusive: at `exp` the token is no longer valid.
        let at_exp = token(with(claims(), "exp", json!(NOW)));
        assert_eq!(
            strict.verify_at(&at_exp, NOW).await.unwrap_err(),
            JwtError::Expired
        );

        let soon = token(with(claims(), "nbf", json!(NOW + 30)));
        assert_eq!(
            strict.verify_at(&soon, NOW).await.unwrap_err(),
            JwtError::NotYetValid
        );
        assert!(lenient.verify_at(&soon, NOW).await.is_ok());
        let later = token(with(claims(), "nbf", json!(NOW + 61)));
        assert_eq!(
            lenient.verify_at(&later, NOW).await.unwrap_err(),
            JwtError::NotYetValid
        );
        let past_nbf = token(with(claims(), "nbf", json!(NOW - 5)));
        assert!(strict.verify_at(&past_nbf, NOW).await.is_ok());

        // Fractional NumericDates are allowed by RFC 7519.
        let fractional = token(with(claims(), "exp", json!((NOW + 10) as f64 + 0.5)));
        assert!(strict.verify_at(&fractional, NOW).await.is_ok());

        let no_exp = token(without(claims(), "exp"));
        assert_eq!(
            strict.verify_at(&no_exp, NOW).await.unwrap_err(),
            JwtError::MissingClaim("exp")
        );
        let text_exp = token(with(claims(), "exp", json!("tomorrow")));
        assert!(matches!(
            strict.verify_at(&text_exp, NOW).await.unwrap_err(),
            JwtError::Malformed(_)
        ));
    }

    #[tokio::test]
    async fn issuer_audience_and_subject_are_checked() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let check = |c: Value| {
            let verifier = verifier.clone();
            async move { verifier.verify_at(&sign(&RSA_A, Some("a"), &c), NOW).await }
        };
        assert_eq!(
            check(with(claims(), "iss", json!("https://evil.test")))
                .await
                .unwrap_err(),
            JwtError::WrongIssuer
        );
        // Exact comparison: a trailing slash is another issuer.
        assert_eq!(
            check(with(claims(), "iss", json!(format!("{ISSUER}/"))))
                .await
                .unwrap_err(),
            JwtError::WrongIssuer
        );
        assert_eq!(
            check(without(claims(), "iss")).await.unwrap_err(),
            JwtError::MissingClaim("iss")
        );
        assert_eq!(
            check(with(claims(), "aud", json!("other")))
                .await
                .unwrap_err(),
            JwtError::WrongAudience
        );
        assert_eq!(
            check(with(claims(), "aud", json!(["other", "more"])))
                .await
                .unwrap_err(),
            JwtError::WrongAudience
        );
        assert_eq!(
            check(with(claims(), "aud", json!(42))).await.unwrap_err(),
            JwtError::WrongAudience
        );
        assert_eq!(
            check(without(claims(), "aud")).await.unwrap_err(),
            JwtError::MissingClaim("aud")
        );
        let in_array = check(with(claims(), "aud", json!(["other", AUDIENCE]))).await;
        assert_eq!(in_array.unwrap().sub, "user-1");
        assert_eq!(
            check(without(claims(), "sub")).await.unwrap_err(),
            JwtError::MissingClaim("sub")
        );
        assert_eq!(
            check(with(claims(), "sub", json!(""))).await.unwrap_err(),
            JwtError::MissingClaim("sub")
        );
    }

    #[tokio::test]
    async fn a_signature_by_another_key_is_refused() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let forged = sign(&RSA_B, Some("a"), &claims());
        assert_eq!(
            verifier.verify_at(&forged, NOW).await.unwrap_err(),
            JwtError::BadSignature
        );

        // A genuine token with its claims swapped.
        let genuine = sign(&RSA_A, Some("a"), &claims());
        let (head, rest) = genuine.split_once('.').unwrap();
        let (_, signature) = rest.split_once('.').unwrap();
        let other_claims = b64(with(claims(), "sub", json!("admin")).to_string().as_bytes());
        let tampered = format!("{head}.{other_claims}.{signature}");
        assert_eq!(
            verifier.verify_at(&tampered, NOW).await.unwrap_err(),
            JwtError::BadSignature
        );
        // An ES256 signature under an EC key the issuer does not hold.
        let ec = ec_key();
        let ec_issuer = Issuer::start(vec![ec.jwk("e")]).await;
        let forged_ec = sign(&ec_key(), Some("e"), &claims());
        assert_eq!(
            ec_issuer
                .verifier()
                .verify_at(&forged_ec, NOW)
                .await
                .unwrap_err(),
            JwtError::BadSignature
        );
        // The kid was cached: no refetch for a bad signature.
        assert_eq!(issuer.fetches(), 1);
    }

    #[tokio::test]
    async fn unknown_kids_refetch_at_most_once_per_interval() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        // First use: the initial fetch, then nothing more for the unknown kid.
        let unknown = sign(&RSA_A, Some("nope"), &claims());
        assert_eq!(
            verifier.verify_at(&unknown, NOW).await.unwrap_err(),
            JwtError::UnknownKey
        );
        assert_eq!(issuer.fetches(), 1);

        assert_eq!(
            verifier.verify_at(&unknown, NOW + 31).await.unwrap_err(),
            JwtError::UnknownKey
        );
        assert_eq!(issuer.fetches(), 2, "one refetch for an unknown kid");

        let another = sign(&RSA_A, Some("nope-2"), &claims());
        assert_eq!(
            verifier.verify_at(&another, NOW + 40).await.unwrap_err(),
            JwtError::UnknownKey
        );
        for i in 0..20 {
            let junk = sign(&RSA_A, Some(&format!("junk-{i}")), &claims());
            assert!(verifier.verify_at(&junk, NOW + 41).await.is_err());
        }
        assert_eq!(issuer.fetches(), 2, "no refetch within 30 s");
        // A known kid still verifies meanwhile.
        let good = sign(&RSA_A, Some("a"), &claims());
        assert!(verifier.verify_at(&good, NOW + 42).await.is_ok());

        assert!(verifier.verify_at(&another, NOW + 62).await.is_err());
        assert_eq!(issuer.fetches(), 3, "a refetch again after 30 s");
    }

    #[tokio::test]
    async fn rotated_and_stale_keys_are_refetched() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let old = sign(&RSA_A, Some("a"), &claims());
        verifier.verify_at(&old, NOW).await.unwrap();

        // The issuer publishes a new key and signs with it.
        issuer.set_keys(vec![RSA_A.jwk("a"), RSA_B.jwk("b")]);
        let new = sign(&RSA_B, Some("b"), &claims());
        let claims = verifier.verify_at(&new, NOW + 31).await.unwrap();
        assert_eq!(claims.sub, "user-1");
        assert_eq!(issuer.fetches(), 2);
        // Both kids now verify from the cache.
        verifier.verify_at(&old, NOW + 32).await.unwrap();
        assert_eq!(issuer.fetches(), 2);

        // The old key is withdrawn; after an hour the cache is refreshed
        // and stops accepting it.
        issuer.set_keys(vec![RSA_B.jwk("b")]);
        let late = NOW + 31 + MAX_KEYS_AGE_SECS;
        let old_late = sign(&RSA_A, Some("a"), &claims_at(late));
        assert_eq!(
            verifier.verify_at(&old_late, late).await.unwrap_err(),
            JwtError::UnknownKey
        );
        assert_eq!(issuer.fetches(), 3);
        let new_late = sign(&RSA_B, Some("b"), &claims_at(late));
        verifier.verify_at(&new_late, late + 1).await.unwrap();
        assert_eq!(issuer.fetches(), 3);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_the_old_keys() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let good = sign(&RSA_A, Some("a"), &claims_at(NOW + 2 * MAX_KEYS_AGE_SECS));
        verifier.verify_at(&good, NOW).await.unwrap();
        issuer.fail(true);

        let unknown = sign(&RSA_A, Some("new"), &claims());
        assert_eq!(
            verifier.verify_at(&unknown, NOW + 31).await.unwrap_err(),
            JwtError::UnknownKey
        );
        assert_eq!(issuer.fetches(), 2);
        verifier.verify_at(&good, NOW + 32).await.unwrap();

        // Stale and the issuer down: the old keys still serve, and the
        // failed refresh is retried only after the interval.
        let late = NOW + MAX_KEYS_AGE_SECS + 1;
        verifier.verify_at(&good, late).await.unwrap();
        assert_eq!(issuer.fetches(), 3);
        verifier.verify_at(&good, late + 1).await.unwrap();
        assert_eq!(issuer.fetches(), 3);
        // An empty or unusable set is a failure too, not a wipe.
        issuer.fail(false);
        issuer.set_keys(vec![json!({ "kty": "oct", "k": "c2VjcmV0" })]);
        verifier.verify_at(&good, late + 31).await.unwrap();
        assert_eq!(issuer.fetches(), 4);
    }

    #[tokio::test]
    async fn no_keys_at_all_is_jwks_unavailable() {
        // Nothing listens on a port just released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        drop(listener);
        let verifier = verifier_for(&url, Duration::ZERO);
        let token = sign(&RSA_A, Some("a"), &claims());
        let err = verifier.verify_at(&token, NOW).await.unwrap_err();
        assert!(matches!(err, JwtError::JwksUnavailable(_)), "{err:?}");
        assert!(
            !err.to_string().contains(&url),
            "no URL in client text: {err}"
        );

        // An issuer answering 500: retried, but not on every token.
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        issuer.fail(true);
        let verifier = issuer.verifier();
        let unavailable =
            |r: Result<Claims, JwtError>| matches!(r, Err(JwtError::JwksUnavailable(_)));
        assert!(unavailable(verifier.verify_at(&token, NOW).await));
        assert!(unavailable(verifier.verify_at(&token, NOW + 1).await));
        assert_eq!(issuer.fetches(), 1);
        assert!(unavailable(verifier.verify_at(&token, NOW + 6).await));
        assert_eq!(issuer.fetches(), 2);
        issuer.fail(false);
        assert!(verifier.verify_at(&token, NOW + 12).await.is_ok());
        assert_eq!(issuer.fetches(), 3);
    }

    #[tokio::test]
    async fn hostile_jwks_bodies_are_bounded() {
        let ec = ec_key();
        // Over 256 KiB: refused whole.
        let issuer = Issuer::start(vec![]).await;
        let padding = "x".repeat(MAX_JWKS_BYTES);
        issuer.set_body(json!({ "keys": [ec.jwk("e")], "padding": padding }));
        let token = sign(&ec, Some("e"), &claims());
        let err = issuer.verifier().verify_at(&token, NOW).await.unwrap_err();
        assert_eq!(err, JwtError::JwksUnavailable("JWKS too large".to_string()));

        // Not a JWKS at all.
        issuer.set_body(json!({ "hello": "world" }));
        let err = issuer.verifier().verify_at(&token, NOW).await.unwrap_err();
        assert_eq!(err, JwtError::JwksUnavailable("invalid JWKS".to_string()));

        // Only the first 32 usable keys count; junk entries are skipped.
        let mut keys = vec![
            json!({ "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" }),
            json!({ "kty": "EC", "crv": "P-384", "x": "AA", "y": "AA", "kid": "p384" }),
            json!({ "kty": "weird", "kid": "weird" }),
            json!("not an object"),
        ];
        keys.extend((0..40).map(|i| ec.jwk(&format!("k{i}"))));
        issuer.set_keys(keys);
        let verifier = issuer.verifier();
        assert!(
            verifier
                .verify_at(&sign(&ec, Some("k31"), &claims()), NOW)
                .await
                .is_ok()
        );
        assert_eq!(
            verifier
                .verify_at(&sign(&ec, Some("k32"), &claims()), NOW)
                .await
                .unwrap_err(),
            JwtError::UnknownKey
        );
    }

    #[tokio::test]
    async fn the_key_must_fit_kid_and_algorithm() {
        let ec = ec_key();
        let mut rs384 = RSA_B.jwk("b");
        rs384["alg"] = json!("RS384");
        let mut enc = RSA_B.jwk("enc");
        enc["use"] = json!("enc");
        let issuer = Issuer::start(vec![RSA_A.jwk("a"), ec.jwk("e"), rs384, enc]).await;
        let verifier = issuer.verifier();

        // A JWK whose own alg differs, or meant for encryption, is not used.
        let b = sign(&RSA_B, Some("b"), &claims());
        assert_eq!(
            verifier.verify_at(&b, NOW).await.unwrap_err(),
            JwtError::UnknownKey
        );
        let enc = sign(&RSA_B, Some("enc"), &claims());
        assert_eq!(
            verifier.verify_at(&enc, NOW).await.unwrap_err(),
            JwtError::UnknownKey
        );
        // An ES256 token naming the RSA key's kid.
        let crossed = sign(&ec, Some("a"), &claims());
        assert_eq!(
            verifier.verify_at(&crossed, NOW).await.unwrap_err(),
            JwtError::UnknownKey
        );

        // Without kid: accepted only when one key of the type is usable.
        let no_kid_rsa = sign(&RSA_A, None, &claims());
        assert!(verifier.verify_at(&no_kid_rsa, NOW).await.is_ok());
        let no_kid_ec = sign(&ec, None, &claims());
        assert!(verifier.verify_at(&no_kid_ec, NOW).await.is_ok());
        issuer.set_keys(vec![RSA_A.jwk("a"), RSA_B.jwk("b2")]);
        let fresh = issuer.verifier();
        assert_eq!(
            fresh.verify_at(&no_kid_rsa, NOW).await.unwrap_err(),
            JwtError::UnknownKey
        );
        // A kid-less token never causes a refetch of its own.
        assert!(fresh.verify_at(&no_kid_rsa, NOW + 100).await.is_err());
        assert_eq!(issuer.fetches(), 2);
    }

    #[tokio::test]
    async fn other_algorithms_are_refused_before_any_fetch() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let none = raw_token(&json!({ "alg": "none", "typ": "JWT" }), &claims(), b"");
        assert_eq!(
            verifier.verify_at(&none, NOW).await.unwrap_err(),
            JwtError::UnsupportedAlgorithm("none".to_string())
        );
        // HS256 keyed with the RSA public key: the classic confusion attack.
        let n = RSA_A.jwk["n"].as_str().unwrap().as_bytes();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".to_string());
        let hs256 = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(n)).unwrap();
        assert_eq!(
            verifier.verify_at(&hs256, NOW).await.unwrap_err(),
            JwtError::UnsupportedAlgorithm("HS256".to_string())
        );
        for alg in ["PS256", "RS384", "ES384", "EdDSA", "rs256"] {
            let token = raw_token(&json!({ "alg": alg, "kid": "a" }), &claims(), b"sig");
            assert_eq!(
                verifier.verify_at(&token, NOW).await.unwrap_err(),
                JwtError::UnsupportedAlgorithm(alg.to_string())
            );
        }
        // An alg that is not a plain name is not echoed back.
        let hostile = raw_token(
            &json!({ "alg": "<script>alert(1)</script>" }),
            &claims(),
            b"",
        );
        let err = verifier.verify_at(&hostile, NOW).await.unwrap_err();
        assert!(!err.to_string().contains("script"), "{err}");
        assert_eq!(issuer.fetches(), 0);
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_before_any_fetch() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        let verifier = issuer.verifier();
        let good = sign(&RSA_A, Some("a"), &claims());
        let (head, _) = good.split_once('.').unwrap();
        let cases = [
            String::new(),
            "abc".to_string(),
            "a.b".to_string(),
            format!("{good}.extra"),
            format!("!!!.{}", &good[head.len() + 1..]),
            format!("{}.e30.sig", b64(b"not json")),
            format!("{}.e30.sig", b64(br#"{"typ":"JWT"}"#)),
            format!("{}.e30.sig", b64(br#"["RS256"]"#)),
            format!("{head}.{}.sig", b64(b"[1,2]")),
            format!("{head}.***.sig"),
            format!("{head}.e30.s*g"),
            raw_token(&json!({ "alg": "RS256", "kid": 7 }), &claims(), b"sig"),
            raw_token(
                &json!({ "alg": "RS256", "crit": ["exp"] }),
                &claims(),
                b"sig",
            ),
            // A padded signature is not base64url as JWS uses it.
            format!("{good}=="),
        ];
        for token in cases {
            let err = verifier.verify_at(&token, NOW).await.unwrap_err();
            assert!(matches!(err, JwtError::Malformed(_)), "{token}: {err:?}");
        }
        // Over 8 KiB, even when otherwise a valid token.
        let huge = sign(
            &RSA_A,
            Some("a"),
            &with(claims(), "pad", json!("x".repeat(MAX_TOKEN_BYTES))),
        );
        assert_eq!(
            verifier.verify_at(&huge, NOW).await.unwrap_err(),
            JwtError::Malformed("too large".to_string())
        );
        assert_eq!(issuer.fetches(), 0);
    }

    #[tokio::test]
    async fn concurrent_first_verifies_share_one_fetch() {
        let issuer = Issuer::start(vec![RSA_A.jwk("a")]).await;
        issuer.state.delay_ms.store(200, Ordering::SeqCst);
        let verifier = issuer.verifier();
        let token = sign(&RSA_A, Some("a"), &claims());
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let verifier = verifier.clone();
                let token = token.clone();
                tokio::spawn(async move { verifier.verify_at(&token, NOW).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap().sub, "user-1");
        }
        assert_eq!(issuer.fetches(), 1);
    }

    #[test]
    fn looks_like_jwt_tells_jwts_from_api_keys() {
        let token = sign(&RSA_A, Some("a"), &claims());
        assert!(looks_like_jwt(&token));
        assert!(looks_like_jwt(&sign(&ec_key(), None, &claims())));
        // alg none is JWT-shaped: it must be refused as a JWT.
        assert!(looks_like_jwt(&raw_token(
            &json!({ "alg": "none" }),
            &claims(),
            b""
        )));
        assert!(!looks_like_jwt("wk_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"));
        assert!(!looks_like_jwt("wk_abc.def.ghi"));
        assert!(!looks_like_jwt(""));
        assert!(!looks_like_jwt(".."));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(&format!("{token}.d")));
        assert!(!looks_like_jwt(&format!(
            "{}.e30.sig",
            b64(br#"{"typ":"JWT"}"#)
        )));
        assert!(!looks_like_jwt(&format!(
            "{}.e30.s g",
            b64(br#"{"alg":"RS256"}"#)
        )));
        assert!(!looks_like_jwt("Bearer abc"));
    }

    #[test]
    fn claims_text_reads_strings_and_arrays() {
        let all = json!({
            "iss": ISSUER, "sub": "user-1",
            "cognito:groups": ["admins", "ops"],
            "https://example.com/roles": ["reader"],
            "scope": "tasks:read tasks:write",
            "mixed": [1, "first", "second"],
            "n": 5,
            "empty": [],
        });
        let claims = Claims {
            iss: ISSUER.to_string(),
            sub: "user-1".to_string(),
            all: all.as_object().unwrap().clone(),
        };
        assert_eq!(claims.text("cognito:groups"), Some("admins"));
        assert_eq!(claims.texts("cognito:groups"), vec!["admins", "ops"]);
        assert_eq!(claims.text("https://example.com/roles"), Some("reader"));
        assert_eq!(claims.text("scope"), Some("tasks:read tasks:write"));
        assert_eq!(claims.texts("scope"), vec!["tasks:read tasks:write"]);
        assert_eq!(claims.text("mixed"), Some("first"));
        assert_eq!(claims.texts("mixed"), vec!["first", "second"]);
        assert_eq!(claims.text("n"), None);
        assert!(claims.texts("n").is_empty());
        assert_eq!(claims.text("empty"), None);
        assert_eq!(claims.text("absent"), None);
        assert!(claims.texts("absent").is_empty());
    }
}

//! Credentials and signing keys: the API keys warren accepts (kept only as
//! their SHA-256, compared in constant time) and the `whsec_` secrets that
//! sign what it sends.

pub mod password;
pub mod sealing;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted API key, as its hash; `None` leaves the API open (only for
/// loopback development, which the CLI enforces).
#[derive(Clone, Debug, Default)]
pub struct ApiKey(Option<[u8; 32]>);

impl ApiKey {
    /// The key given in plain (kept as its hash); `None` or empty: no key.
    pub fn new(key: Option<&str>) -> Self {
        ApiKey(key.filter(|k| !k.is_empty()).map(hash))
    }

    /// The key given as the hex SHA-256 of it, so a deployment never holds
    /// the key itself (`printf %s "$KEY" | sha256sum`).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, String> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut digest)
            .map_err(|_| "an API key hash must be 64 hex digits (its SHA-256)".to_string())?;
        Ok(ApiKey(Some(digest)))
    }

    /// Whether a key is required.
    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Whether a key is configured and `presented` is it.
    pub fn accepts_configured(&self, presented: &str) -> bool {
        self.is_enabled() && self.accepts(presented)
    }

    /// Whether `presented` is the key (anything is, when none is configured).
    pub fn accepts(&self, presented: &str) -> bool {
        match &self.0 {
            None => true,
            Some(expected) => bool::from(hash(presented).ct_eq(expected)),
        }
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Random bytes in a token warren makes (a webhook token, an API key).
pub const TOKEN_BYTES: usize = 32;

/// A new token: `prefix` and [`TOKEN_BYTES`] random bytes, base64url.
pub fn new_token(prefix: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `s` is shaped like a token [`new_token`] makes with `prefix`
/// (checked before any lookup, so junk costs no read).
pub fn is_token_shaped(prefix: &str, s: &str) -> bool {
    let encoded = (TOKEN_BYTES * 4).div_ceil(3);
    s.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == encoded
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The lowercase hex SHA-256 of a token or key: what is stored and looked up.
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `...` and the last four characters of a secret, to tell secrets apart.
pub fn hint(secret: &str) -> String {
    let mut tail: Vec<char> = secret.chars().rev().take(4).collect();
    tail.reverse();
    format!("...{}", tail.into_iter().collect::<String>())
}

/// Decode a `whsec_<base64>` secret (or raw base64) into key bytes.
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    B64.decode(b64.trim())
        .map_err(|e| format!("webhook secret is not whsec_<base64>: {e}"))
        .and_then(|k| {
            if k.len() < 16 {
                Err("webhook secret must hold at least 16 bytes".into())
            } else {
                Ok(k)
            }
        })
}

/// Make a fresh `whsec_` secret.
pub fn generate_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", B64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_key_is_accepted() {
        let key = ApiKey::new(Some("s3cret"));
        assert!(key.accepts("s3cret"));
        assert!(!key.accepts("s3cre"));
        assert!(!key.accepts(""));
        assert!(ApiKey::new(None).accepts("anything"));
        assert!(!ApiKey::new(Some("")).is_enabled());
    }

    #[test]
    fn a_key_given_by_its_hash_accepts_the_key() {
        // printf %s s3cret | sha256sum
        let key = ApiKey::from_sha256_hex(
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0",
        )
        .unwrap();
        assert!(key.accepts("s3cret"));
        assert!(!key.accepts("s3cret "));
        assert!(ApiKey::from_sha256_hex("abc").is_err());
        assert!(ApiKey::from_sha256_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn short_or_garbled_secrets_are_refused() {
        assert!(decode_secret("whsec_c2hvcnQ=").is_err());
        assert!(decode_secret("whsec_not base64!").is_err());
        assert!(decode_secret(&generate_secret()).is_ok());
    }
}

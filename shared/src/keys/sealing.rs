//! Sealing stored secrets: ChaCha20-Poly1305 (ring's, the crypto rustls
//! already links) under a 32-byte master key, a random 96-bit nonce per
//! value, and the owner and name as associated data, so a sealed value
//! copied under another owner or name does not open.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The key that seals stored secrets. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the sealed value does not open under this key and context")]
pub struct Unsealable;

impl MasterKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        MasterKey(rand::random())
    }

    /// A key from its base64 text (32 bytes).
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| format!("not base64: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "a secrets key is 32 bytes, base64".to_string())?;
        Ok(MasterKey(key))
    }

    /// The key as base64 text.
    pub fn to_base64(&self) -> String {
        B64.encode(self.0)
    }

    fn aead(&self) -> LessSafeKey {
        // 32 bytes is ChaCha20-Poly1305's key length: this cannot fail.
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("32-byte key"))
    }

    /// `plaintext` sealed for `context` (who owns it, under which name):
    /// base64 of nonce, ciphertext and tag.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut data = plaintext.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("ChaCha20-Poly1305 seals any length a request can carry");
        let mut out = nonce.to_vec();
        out.extend(data);
        B64.encode(out)
    }

    /// The plaintext of a value [`seal`](Self::seal) made for `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, Unsealable> {
        let bytes = B64.decode(sealed).map_err(|_| Unsealable)?;
        if bytes.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut data = data.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| Unsealable)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context() {
        let key = MasterKey::generate();
        let sealed = key.seal("alice/openai", b"sk-live-123456");
        assert!(!sealed.contains("sk-live"));
        assert_eq!(
            key.open("alice/openai", &sealed).unwrap(),
            b"sk-live-123456"
        );
        assert_ne!(
            sealed,
            key.seal("alice/openai", b"sk-live-123456"),
            "fresh nonce"
        );
        assert_eq!(key.open("mallory/openai", &sealed), Err(Unsealable));
        assert_eq!(
            MasterKey::generate().open("alice/openai", &sealed),
            Err(Unsealable)
        );
        let mut tampered = B64.decode(&sealed).unwrap();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(
            key.open("alice/openai", &B64.encode(tampered)),
            Err(Unsealable)
        );
        assert_eq!(key.open("alice/openai", "AAAA"), Err(Unsealable));
        let again = MasterKey::from_base64(&key.to_base64()).unwrap();
        assert_eq!(
            again.open("alice/openai", &sealed).unwrap(),
            b"sk-live-123456"
        );
        assert!(MasterKey::from_base64("c2hvcnQ=").is_err());
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
    }
}

//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB of
//! memory, 2 passes, 1 lane; about 20-40 ms on one core), stored as PHC
//! strings, which carry their parameters: raising them later leaves old
//! hashes verifiable. Hashing is CPU work; async callers run it on the
//! blocking pool.

use std::sync::LazyLock;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;

/// Argon2id, m = 19456 KiB, t = 2, p = 1.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// The most memory a stored hash may ask of [`verify`] (256 MiB): a PHC
/// string carries its own cost, and a forged one must not exhaust memory.
const MAX_M_COST_KIB: u32 = 256 * 1024;
/// Bytes of a salt and of a hash output.
const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;

/// The PHC string of `password` under a fresh random salt.
pub fn hash(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; SALT_BYTES] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    let params = params();
    let mut out = [0u8; OUTPUT_BYTES];
    compute(password, &salt_bytes, &params, &mut out)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| e.to_string())?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc` (false when `phc` is
/// not an Argon2id one within [`MAX_M_COST_KIB`]).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let (Ok(salt), true) = (
        salt.decode_b64(&mut salt_buf),
        parsed.algorithm == Algorithm::Argon2id.ident()
            && params.m_cost() <= MAX_M_COST_KIB
            && parsed.version == Some(Version::V0x13.into()),
    ) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    compute(password, salt, &params, &mut out).is_ok()
        // Output's comparison takes constant time.
        && Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// Argon2id of `password` into `out`, its working memory mapped for this
/// one computation (see [`Blocks`]).
fn compute(password: &str, salt: &[u8], params: &Params, out: &mut [u8]) -> Result<(), String> {
    let memory = Blocks::new(params.block_count()).ok_or("no memory for Argon2")?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
        .map_err(|e| e.to_string())
}

/// Argon2's working memory (19 MiB), mapped straight from the OS and
/// unmapped when the hash is done. Through the allocator, the freed blocks
/// stayed resident for reuse (mimalloc and glibc both keep large freed
/// regions), which doubled warren's idle memory after one sign-in.
struct Blocks {
    start: std::ptr::NonNull<Block>,
    len: usize,
}

impl Blocks {
    fn bytes(len: usize) -> usize {
        len * std::mem::size_of::<Block>()
    }

    fn new(len: usize) -> Option<Blocks> {
        // SAFETY: a fresh private anonymous mapping, checked for failure.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                Self::bytes(len).max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return None;
        }
        let start = std::ptr::NonNull::new(at.cast::<Block>())?;
        Some(Blocks { start, len })
    }
}

impl AsMut<[Block]> for Blocks {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is page-aligned (a Block needs 64 bytes),
        // `len` blocks long, zero-filled (a Block is any 128 u64s) and
        // borrowed mutably through `self` alone.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.len) }
    }
}

impl Drop for Blocks {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, once.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), Self::bytes(self.len).max(1));
        }
    }
}

// SAFETY: the mapping is owned memory, like a Vec's buffer, reachable only
// through `self`: moving it to another thread is sound.
unsafe impl Send for Blocks {}

/// A hash no password matches, checked when the username is unknown so
/// that answering takes as long as for a wrong password (no user oracle).
pub fn decoy() -> &'static str {
    static DECOY: LazyLock<String> = LazyLock::new(|| hash(&random_password()).unwrap_or_default());
    &DECOY
}

/// A random password of 24 characters (144 bits), for a first admin.
pub fn random_password() -> String {
    let bytes: [u8; 18] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc));
        assert!(!verify("correct horse batterY", &phc));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert_ne!(phc, hash("correct horse battery").unwrap(), "salted");
        assert!(!verify("", decoy()));
        // The argon2 crate's own verifier agrees (the PHC strings users
        // already have keep working, and ours are standard).
        use argon2::password_hash::PasswordVerifier;
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        // A stored hash may not ask for more memory than the cap.
        let greedy = phc.replace("m=19456", &format!("m={}", MAX_M_COST_KIB + 8));
        assert!(!verify("correct horse battery", &greedy));
        // Another algorithm's string is refused, not computed.
        assert!(!verify(
            "correct horse battery",
            &phc.replace("argon2id", "argon2i")
        ));
        assert_eq!(random_password().len(), 24);
    }
}

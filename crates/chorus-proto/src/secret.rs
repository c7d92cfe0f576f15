//! Keys as the API server and the license proxy compare them: the one hash a tenant key is stored and announced
//! under, and the one constant-time comparison of secrets. A key made by `chorus keys add` (the proxy) is accepted
//! by `chorus api` because both sides call these functions, not two copies that happen to agree.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes).iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 (lowercase hex) under which a tenant key is stored, announced and looked up: of the key as
/// presented, without surrounding whitespace.
pub fn hash_key(key: &str) -> String {
    sha256_hex(key.trim().as_bytes())
}

/// Whether two secrets (keys, key hashes) are equal, in time that does not depend on where they differ (`subtle`,
/// the constant-time primitives the `ed25519-dalek` signatures already build on). Different lengths are unequal.
pub fn constant_time_eq(a: impl AsRef<[u8]>, b: impl AsRef<[u8]>) -> bool {
    a.as_ref().ct_eq(b.as_ref()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_and_comparison() {
        // `printf %s chk_test | sha256sum`
        let hash = hash_key("  chk_test\n");
        assert_eq!(hash, "3a8a4cb7d5dd8d241f698be4cfa21f11d2a2f92557529f82349c3dfc6d5e355e");
        assert_eq!(hash, hash_key("chk_test"), "surrounding whitespace is not part of the key");
        assert!(constant_time_eq(&hash, hash_key("chk_test")));
        assert!(!constant_time_eq(&hash, hash_key("chk_tesT")));
        assert!(!constant_time_eq("abc", "abcd"));
        assert!(constant_time_eq("", ""));
    }
}

//! License documents: what they say, how they are signed and verified.
//!
//! A signed license is one JSON document:
//!
//! ```json
//! {
//!   "license": {"id": "…", "licensee": "Acme", "issued_at": "2026-11-01T00:00:00Z",
//!               "expires_at": "2027-11-01T00:00:00Z", "max_concurrent_streams": 16, "models": ["sonic-3"]},
//!   "public_key": "<base64 of the signer's 32-byte Ed25519 public key>",
//!   "signature": "<base64 of the 64-byte Ed25519 signature>"
//! }
//! ```
//!
//! The signature covers the canonical bytes of the `license` object: compact JSON, object keys sorted
//! (recursively), no insignificant whitespace. Times are RFC 3339 in UTC (`…Z`). The deployment accepts a license
//! only when `public_key` is one of the keys it trusts and the signature verifies.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::Value;

/// Why a license was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenseError {
    #[error("the license is not valid JSON: {0}")]
    Malformed(String),
    #[error("the license is incomplete: {0}")]
    Invalid(String),
    #[error("the license is signed by a key this deployment does not trust")]
    UnknownSigner,
    #[error("the license signature does not verify")]
    BadSignature,
    #[error("the license expired at {0}")]
    Expired(String),
}

impl LicenseError {
    /// A stable code for the JSON error.
    pub fn code(&self) -> &'static str {
        match self {
            LicenseError::Malformed(_) => "malformed_license",
            LicenseError::Invalid(_) => "invalid_license",
            LicenseError::UnknownSigner => "unknown_signer",
            LicenseError::BadSignature => "bad_signature",
            LicenseError::Expired(_) => "license_expired",
        }
    }
}

/// The terms of a license (the signed part).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct License {
    /// The vendor's id of the license.
    #[serde(default)]
    pub id: String,
    pub licensee: String,
    /// RFC 3339, UTC.
    pub issued_at: String,
    /// RFC 3339, UTC.
    pub expires_at: String,
    /// Streams in flight at once, per API server; absent: unlimited.
    #[serde(default)]
    pub max_concurrent_streams: Option<u32>,
    /// Model ids allowed; absent: every model.
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

/// A license with its times parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub license: License,
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    pub expires_at: u64,
    /// The signer's public key (base64).
    pub signer: String,
    /// The document as received (what is stored).
    pub document: Vec<u8>,
}

impl Verified {
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

#[derive(serde::Deserialize)]
struct Document {
    license: Value,
    public_key: String,
    signature: String,
}

/// The public keys a deployment trusts to sign licenses.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys(Vec<VerifyingKey>);

impl TrustedKeys {
    /// Parses base64 Ed25519 public keys.
    pub fn parse<S: AsRef<str>>(keys: &[S]) -> Result<Self, LicenseError> {
        keys.iter().map(|k| parse_public_key(k.as_ref())).collect::<Result<Vec<_>, _>>().map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Verifies a signed license document (not its expiry: see [`Verified::is_expired`]).
    pub fn verify(&self, document: &[u8]) -> Result<Verified, LicenseError> {
        let doc: Document =
            serde_json::from_slice(document).map_err(|e| LicenseError::Malformed(e.to_string()))?;
        let key = parse_public_key(&doc.public_key)?;
        if !self.0.contains(&key) {
            return Err(LicenseError::UnknownSigner);
        }
        let sig_bytes = B64.decode(doc.signature.trim()).map_err(|_| LicenseError::BadSignature)?;
        let signature = Signature::from_slice(&sig_bytes).map_err(|_| LicenseError::BadSignature)?;
        key.verify(&canonical_bytes(&doc.license), &signature).map_err(|_| LicenseError::BadSignature)?;
        let license: License =
            serde_json::from_value(doc.license).map_err(|e| LicenseError::Invalid(e.to_string()))?;
        let issued_at = parse_time(&license.issued_at, "issued_at")?;
        let expires_at = parse_time(&license.expires_at, "expires_at")?;
        Ok(Verified { license, issued_at, expires_at, signer: doc.public_key, document: document.to_vec() })
    }
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, LicenseError> {
    let bytes =
        B64.decode(text.trim()).map_err(|_| LicenseError::Invalid("public_key is not base64".into()))?;
    let bytes: [u8; 32] =
        bytes.try_into().map_err(|_| LicenseError::Invalid("public_key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| LicenseError::Invalid("public_key is not an Ed25519 key".into()))
}

fn parse_time(text: &str, field: &str) -> Result<u64, LicenseError> {
    let t = humantime::parse_rfc3339(text)
        .map_err(|e| LicenseError::Invalid(format!("{field} '{text}' is not RFC 3339 UTC: {e}")))?;
    Ok(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// Seconds since the Unix epoch as RFC 3339 (UTC).
pub fn format_time(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Now, in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Compact JSON with every object's keys sorted: the bytes a license signature covers.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    if let Some(v) = map.get(k) {
                        out.insert(k.clone(), sorted(v));
                    }
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => value.clone(),
        }
    }
    serde_json::to_vec(&sorted(value)).unwrap_or_default()
}

/// An Ed25519 key pair kept as its 32-byte seed. Never printed.
#[derive(Clone)]
pub struct KeyPair(SigningKey);

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("public", &self.public_base64()).finish_non_exhaustive()
    }
}

impl KeyPair {
    /// A fresh random key pair.
    pub fn generate() -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// From the base64 seed written by [`KeyPair::seed_base64`].
    pub fn from_seed_base64(text: &str) -> Result<Self, LicenseError> {
        let bytes = B64.decode(text.trim()).map_err(|_| LicenseError::Invalid("key is not base64".into()))?;
        let seed: [u8; 32] =
            bytes.try_into().map_err(|_| LicenseError::Invalid("key is not a 32-byte seed".into()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    pub fn seed_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    pub fn public_base64(&self) -> String {
        B64.encode(self.0.verifying_key().to_bytes())
    }

    pub fn sign(&self, message: &[u8]) -> String {
        B64.encode(self.0.sign(message).to_bytes())
    }

    /// The raw 64-byte Ed25519 signature of `message`.
    pub fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }

    /// Signs a license: the whole document, ready to post.
    pub fn sign_license(&self, license: &License) -> Result<Vec<u8>, LicenseError> {
        let value = serde_json::to_value(license).map_err(|e| LicenseError::Invalid(e.to_string()))?;
        let signature = self.sign(&canonical_bytes(&value));
        let doc = serde_json::json!({
            "license": value,
            "public_key": self.public_base64(),
            "signature": signature,
        });
        serde_json::to_vec_pretty(&doc).map_err(|e| LicenseError::Invalid(e.to_string()))
    }
}

/// Verifies `signature` (base64) of `message` with `public_key` (base64).
pub fn verify_signature(public_key: &str, message: &[u8], signature: &str) -> bool {
    let Ok(key) = parse_public_key(public_key) else { return false };
    let Ok(bytes) = B64.decode(signature.trim()) else { return false };
    let Ok(sig) = Signature::from_slice(&bytes) else { return false };
    key.verify(message, &sig).is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn license(issued: &str) -> License {
        License {
            id: "l1".into(),
            licensee: "Acme".into(),
            issued_at: issued.into(),
            expires_at: "2099-01-01T00:00:00Z".into(),
            max_concurrent_streams: Some(4),
            models: None,
        }
    }

    #[test]
    fn signed_license_verifies_and_an_edit_does_not() {
        let vendor = KeyPair::generate().unwrap();
        let trusted = TrustedKeys::parse(&[vendor.public_base64()]).unwrap();
        let doc = vendor.sign_license(&license("2026-01-01T00:00:00Z")).unwrap();
        let v = trusted.verify(&doc).unwrap();
        assert_eq!(v.license.licensee, "Acme");
        assert_eq!(format_time(v.issued_at), "2026-01-01T00:00:00Z");

        let edited = String::from_utf8(doc).unwrap().replace("Acme", "Acne");
        assert_eq!(trusted.verify(edited.as_bytes()), Err(LicenseError::BadSignature));
        let other = KeyPair::generate().unwrap();
        let foreign = other.sign_license(&license("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(trusted.verify(&foreign), Err(LicenseError::UnknownSigner));
        assert!(matches!(trusted.verify(b"{not json"), Err(LicenseError::Malformed(_))));
    }

    #[test]
    fn key_order_does_not_change_the_signed_bytes() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":{"d":2,"c":[{"y":1,"x":2}]}}"#).unwrap();
        assert_eq!(canonical_bytes(&a), br#"{"a":{"c":[{"x":2,"y":1}],"d":2},"b":1}"#);
    }
}

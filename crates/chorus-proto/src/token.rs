//! Access tokens (`POST /access-token`): short-lived, TTS-only credentials a backend mints with its API key and
//! hands to a browser, so that the key never ships to a page.
//!
//! A token is a compact JWT (RFC 7519) signed with EdDSA (Ed25519, RFC 8037) by the deployment's key, which the
//! license proxy holds: API servers ask the proxy to sign ([`SUBJECT_TOKEN`]) and verify tokens themselves with the
//! public key the proxy publishes in its state, so that a token minted on one API replica is honoured by every
//! other. This module is the format only; signing lives in `chorus-license`, verification in `chorus-api`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

/// NATS subject of token minting (request/reply: [`AccessClaims`] in, a [`TokenReply`] out).
pub const SUBJECT_TOKEN: &str = "chorus.v1.license.token";

/// The longest lifetime a token may have, in seconds (Cartesia's limit).
pub const MAX_TOKEN_SECONDS: u64 = 3600;

/// The issuer every Chorus token names.
pub const ISSUER: &str = "chorus";

/// The JWT header of every token: `{"alg":"EdDSA","typ":"JWT"}`.
const HEADER: &str = r#"{"alg":"EdDSA","typ":"JWT"}"#;

/// What minted a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A tenant key of the license proxy (`sub` is its name, `kh` its SHA-256): its limits apply, and its
    /// revocation ends its tokens.
    Tenant,
    /// One of the API servers' own keys (`kh` its SHA-256): valid where that key is configured.
    Static,
    /// An open server (no key at all).
    Open,
}

/// What a token allows. Chorus serves text to speech only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grants {
    #[serde(default)]
    pub tts: bool,
}

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub kind: TokenKind,
    /// The tenant key's name, for [`TokenKind::Tenant`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Lowercase hex SHA-256 of the key that minted the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kh: Option<String>,
    pub grants: Grants,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// A unique id.
    pub jti: String,
}

/// The proxy's answer to a minting request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenReply {
    pub token: Option<String>,
    pub error: Option<String>,
}

/// Why a string is not a well-formed token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("not a token")]
    NotAToken,
    #[error("unsupported token header")]
    Header,
    #[error("unreadable token claims")]
    Claims,
}

impl AccessClaims {
    /// The bytes the signature covers: `base64url(header) "." base64url(claims)`.
    pub fn signing_input(&self) -> String {
        let claims = serde_json::to_vec(self).unwrap_or_default();
        format!("{}.{}", B64URL.encode(HEADER), B64URL.encode(claims))
    }

    /// Rejects claims a proxy must not sign: another issuer, no TTS grant, an expiry in the past or beyond
    /// [`MAX_TOKEN_SECONDS`] from `now`, a tenant or static token without its key's hash.
    pub fn check_mintable(&self, now: u64) -> Result<(), String> {
        if self.iss != ISSUER {
            return Err(format!("issuer must be '{ISSUER}'"));
        }
        if !self.grants.tts {
            return Err("a token must grant tts".into());
        }
        if self.exp <= now || self.exp > now + MAX_TOKEN_SECONDS + 5 {
            return Err(format!("expiry must be within {MAX_TOKEN_SECONDS} s from now"));
        }
        match self.kind {
            TokenKind::Tenant if self.sub.is_none() || self.kh.is_none() => {
                Err("a tenant token names its key".into())
            }
            TokenKind::Static if self.kh.is_none() => Err("a static-key token names its key".into()),
            TokenKind::Tenant | TokenKind::Static | TokenKind::Open => Ok(()),
        }
    }
}

/// Joins the signing input and a signature into a token.
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", B64URL.encode(signature))
}

/// True when `s` has the shape of a JWT (three base64url parts, a JSON object header): a credential to verify as
/// a token rather than look up as a key.
pub fn looks_like_token(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(c), Some(sig), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    h.starts_with("eyJ") && !c.is_empty() && !sig.is_empty()
}

/// A token taken apart (not verified): the signing input, the claims and the signature bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    pub signing_input: &'a str,
    pub claims: AccessClaims,
    pub signature: Vec<u8>,
}

/// Takes a token apart. The caller must verify [`ParsedToken::signature`] over
/// [`ParsedToken::signing_input`] before trusting the claims.
pub fn parse(token: &str) -> Result<ParsedToken<'_>, TokenFormatError> {
    let (signing_input, sig) = token.rsplit_once('.').ok_or(TokenFormatError::NotAToken)?;
    let (header, claims) = signing_input.split_once('.').ok_or(TokenFormatError::NotAToken)?;
    let header = B64URL.decode(header).map_err(|_| TokenFormatError::NotAToken)?;
    let header: serde_json::Value = serde_json::from_slice(&header).map_err(|_| TokenFormatError::Header)?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("EdDSA") {
        return Err(TokenFormatError::Header);
    }
    let claims = B64URL.decode(claims).map_err(|_| TokenFormatError::Claims)?;
    let claims: AccessClaims = serde_json::from_slice(&claims).map_err(|_| TokenFormatError::Claims)?;
    let signature = B64URL.decode(sig).map_err(|_| TokenFormatError::NotAToken)?;
    Ok(ParsedToken { signing_input, claims, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: u64) -> AccessClaims {
        AccessClaims {
            iss: ISSUER.into(),
            kind: TokenKind::Tenant,
            sub: Some("acme".into()),
            kh: Some("ab".repeat(32)),
            grants: Grants { tts: true },
            iat: now,
            exp: now + 60,
            jti: "id".into(),
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let c = claims(1000);
        let token = assemble(&c.signing_input(), &[1, 2, 3]);
        assert!(looks_like_token(&token), "{token}");
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.claims, c);
        assert_eq!(parsed.signature, [1, 2, 3]);
        assert_eq!(parsed.signing_input, c.signing_input());
        assert!(!looks_like_token("sk-plain-api-key"));
        assert!(!looks_like_token("a.b.c.d"));
        assert_eq!(parse("eyJ.x"), Err(TokenFormatError::NotAToken));
    }

    #[test]
    fn what_a_proxy_signs() {
        let now = 1000;
        assert!(claims(now).check_mintable(now).is_ok());
        assert!(AccessClaims { exp: now + 4000, ..claims(now) }.check_mintable(now).is_err());
        assert!(AccessClaims { exp: now, ..claims(now) }.check_mintable(now).is_err());
        assert!(AccessClaims { grants: Grants { tts: false }, ..claims(now) }.check_mintable(now).is_err());
        assert!(AccessClaims { kh: None, ..claims(now) }.check_mintable(now).is_err());
        assert!(AccessClaims { iss: "other".into(), ..claims(now) }.check_mintable(now).is_err());
        let open = AccessClaims { kind: TokenKind::Open, sub: None, kh: None, ..claims(now) };
        assert!(open.check_mintable(now).is_ok());
    }
}

//! `POST /access-token` (spec 2.8) and the verification of the tokens it mints.
//!
//! A backend holding an API key asks for a token (`{"expires_in": 60, "grants": {"tts": true}}`, answered with
//! `{"token": "..."}`) and hands it to a browser, which uses it as `Authorization: Bearer <token>` or
//! `?access_token=<token>` (a WebSocket handshake). A token:
//!
//! - is TTS-only: it opens `POST /tts/bytes`, `/tts/sse`, `/v1/audio/speech` and `GET /tts/websocket`, nothing else
//!   (not even `POST /access-token`);
//! - lives at most an hour (`expires_in`, default 60 s): past its expiry it is refused with a 401;
//! - is a JWT signed (Ed25519) with the deployment's key by the license proxy ([`chorus_proto::token`]), verified by
//!   every API server with the public key the proxy publishes: a token minted through one replica works on all;
//! - stands for the key that minted it: a tenant key's limits (concurrency, requests per minute) count its
//!   tokens' requests with its own, and revoking the key ends its tokens; a static key's tokens work where that
//!   key is configured.
//!
//! Minting needs the license proxy (`chorus serve` runs one inside unless `--no-license-proxy`; `chorus api` with
//! `--license-proxy`): without it the route answers 501.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chorus_proto::ErrorCode;
use chorus_proto::license::TenantKey;
use chorus_proto::token::{self, AccessClaims, Grants, ISSUER, MAX_TOKEN_SECONDS, TokenKind};
use ed25519_dalek::{Signature, VerifyingKey};

use crate::error::ApiError;
use chorus_proto::secret::hash_key;

use crate::license::{LicenseGate, MintError};
use crate::middleware::RequestId;
use crate::state::{ApiKeys, AppState};

/// Lifetime of a token when the request names none, in seconds.
pub const DEFAULT_TOKEN_SECONDS: u64 = 60;

/// How the caller of a request authenticated (set by the authentication middleware).
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing was checked: the server runs open.
    Open,
    /// One of the server's own keys (its SHA-256).
    Static { sha256: String },
    /// A tenant key of the license proxy.
    Tenant(TenantKey),
    /// An access token.
    Token(Box<AccessClaims>),
}

#[derive(Debug, Default, serde::Deserialize)]
struct MintRequest {
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    grants: Option<MintGrants>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct MintGrants {
    #[serde(default)]
    tts: Option<bool>,
    #[serde(default)]
    stt: Option<bool>,
    #[serde(default)]
    agent: Option<bool>,
}

#[derive(Debug, serde::Serialize)]
struct MintResponse {
    token: String,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `POST /access-token`.
pub async fn mint(
    State(state): State<AppState>,
    request_id: RequestId,
    credential: Option<Extension<Credential>>,
    body: Bytes,
) -> Response {
    match mint_inner(&state, credential.map(|Extension(c)| c), &body).await {
        Ok(token) => axum::Json(MintResponse { token }).into_response(),
        Err(e) => e.with_request_id(request_id.as_str()).into_response(),
    }
}

async fn mint_inner(
    state: &AppState,
    credential: Option<Credential>,
    body: &[u8],
) -> Result<String, ApiError> {
    let req: MintRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MintRequest::default()
    } else {
        crate::request::parse_json(body)?
    };
    let seconds = req.expires_in.unwrap_or(DEFAULT_TOKEN_SECONDS);
    if !(1..=MAX_TOKEN_SECONDS).contains(&seconds) {
        return Err(ApiError::invalid(format!(
            "expires_in must be between 1 and {MAX_TOKEN_SECONDS} seconds"
        )));
    }
    let grants = req.grants.unwrap_or_default();
    if grants.tts == Some(false) {
        let other = grants.stt == Some(true) || grants.agent == Some(true);
        let why =
            if other { "this server offers text to speech only" } else { "the token would grant nothing" };
        return Err(ApiError::invalid(format!("grants.tts must be true: {why}")));
    }
    let (kind, sub, kh) = match credential.unwrap_or(Credential::Open) {
        Credential::Open => (TokenKind::Open, None, None),
        Credential::Static { sha256 } => (TokenKind::Static, None, Some(sha256)),
        Credential::Tenant(key) => (TokenKind::Tenant, Some(key.name), Some(key.sha256)),
        Credential::Token(_) => {
            return Err(ApiError::new(ErrorCode::Unauthorized, "an access token cannot mint access tokens"));
        }
    };
    let now = now_secs();
    let claims = AccessClaims {
        iss: ISSUER.into(),
        kind,
        sub,
        kh,
        grants: Grants { tts: true },
        iat: now,
        exp: now + seconds,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    state.license.mint_token(claims).await.map_err(|e| match e {
        MintError::NoProxy => ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            title: "Not implemented".into(),
            ..ApiError::invalid(
                "access tokens are signed by the license proxy, and this server runs without one",
            )
        },
        MintError::Failed(why) => {
            tracing::warn!(error = %why, "The license proxy did not sign an access token.");
            ApiError::new(
                ErrorCode::Unserviceable,
                "the license proxy could not sign the access token; retry",
            )
        }
    })
}

/// What a verified token stands for.
#[derive(Debug, Clone)]
pub struct TokenCaller {
    pub claims: AccessClaims,
    /// The tenant key whose limits apply (a tenant key's token).
    pub tenant: Option<TenantKey>,
}

/// Verifies a presented token: signature (the deployment key, from the license proxy's state), issuer, expiry
/// (`now`, seconds since the Unix epoch), grant, and that the key it stands for still holds.
pub fn verify(
    gate: &LicenseGate,
    keys: &ApiKeys,
    presented: &str,
    now: u64,
) -> Result<TokenCaller, &'static str> {
    let parsed = token::parse(presented).map_err(|_| "invalid access token")?;
    let Some(public) = gate.token_key() else {
        return Err(
            "access tokens cannot be checked: this server has no license proxy (or has not heard from it)",
        );
    };
    let key = decode_key(&public).ok_or("invalid access token")?;
    let signature = Signature::from_slice(&parsed.signature).map_err(|_| "invalid access token")?;
    key.verify_strict(parsed.signing_input.as_bytes(), &signature).map_err(|_| "invalid access token")?;
    let claims = parsed.claims;
    if claims.iss != ISSUER || !claims.grants.tts {
        return Err("invalid access token");
    }
    if claims.exp <= now {
        return Err("this access token has expired");
    }
    let tenant = match claims.kind {
        TokenKind::Tenant => {
            let hash = claims.kh.as_deref().ok_or("invalid access token")?;
            match gate.tenant_by_hash(hash) {
                Some(k) if k.revoked => {
                    return Err("the API key this access token was minted with has been revoked");
                }
                Some(k) => Some(k),
                None => return Err("the API key this access token was minted with no longer exists"),
            }
        }
        TokenKind::Static => {
            let hash = claims.kh.as_deref().ok_or("invalid access token")?;
            if !keys.accepts_hash(hash) {
                return Err("the API key this access token was minted with is not accepted here");
            }
            None
        }
        TokenKind::Open => {
            if !keys.is_open() || gate.has_tenants() {
                return Err("this access token was minted while the server was open; it needs keys now");
            }
            None
        }
    };
    Ok(TokenCaller { claims, tenant })
}

fn decode_key(public: &str) -> Option<VerifyingKey> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(public.trim()).ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The SHA-256 (lowercase hex) a static key is known by in its tokens.
pub fn static_key_hash(key: &str) -> String {
    hash_key(key)
}

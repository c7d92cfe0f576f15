//! The API server: the Cartesia-compatible REST, SSE and WebSocket API and the OpenAI-compatible speech endpoint.
//!
//! It depends on `chorus-proto`, `chorus-bus` and `chorus-audio` only, never on `chorus-engine`: the model runtime
//! is never linked into the API server. Handlers validate requests ([`AppState::prepare`]), start jobs on the bus,
//! and encode the workers' audio for the client.

pub mod app;
pub mod auth;
pub mod catalogue;
pub mod cors;
pub mod documents;
mod encode;
pub mod error;
mod job_stream;
pub mod license;
pub mod middleware;
pub mod persistence;
pub mod request;
pub mod routes;
pub mod serve;
pub mod sse;
pub mod state;
pub mod tls;
pub mod token;
pub mod ws;

pub use app::{router, serve};
pub use catalogue::{Catalogue, ModelEntry};
pub use error::ApiError;
pub use license::{Caller, LicenseGate};
pub use middleware::RequestId;
pub use state::{ApiConfig, ApiKeys, AppState, Prepared, Route};

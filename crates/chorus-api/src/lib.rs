//! The API server: the Cartesia-compatible REST, SSE and WebSocket API and the OpenAI-compatible speech endpoint.
//!
//! It depends on `chorus-proto`, `chorus-bus` and `chorus-audio` only, never on `chorus-engine`: the model runtime
//! is never linked into the API server. Handlers validate requests ([`AppState::prepare`]), start jobs on the bus,
//! and encode the workers' audio for the client.

pub mod catalogue;
pub mod error;
pub mod request;
pub mod state;
pub mod store;

pub use catalogue::{Catalogue, ModelEntry};
pub use error::ApiError;
pub use state::{ApiConfig, ApiKeys, AppState, Prepared, Route};

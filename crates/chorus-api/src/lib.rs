//! The API server: the Cartesia-compatible REST, SSE and WebSocket API and the OpenAI-compatible speech endpoint.
//!
//! It depends on `chorus-proto` and `chorus-bus` only, never on `chorus-engine`: the model runtime is never linked
//! into the API server. Built in the `chorus serve` work.

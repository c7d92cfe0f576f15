//! The bus between API servers and workers.
//!
//! Design (docs/ARCHITECTURE.md): one `Bus` trait with an in-process implementation for `chorus serve` and a NATS
//! implementation for cluster mode, carrying the `chorus-proto` wire types. Built in the cluster-mode work; this
//! crate exists now so that the dependency boundaries (the API server never links the model runtime) hold from the
//! first commit.

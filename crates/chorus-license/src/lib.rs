//! The license proxy: entitlement (open, connected, air-gapped) from Ed25519-signed licenses, tenant API keys,
//! the tamper-evident usage ledger, and the HTTP server with `POST /license`, `GET /license` and `GET /audit`.
//!
//! API servers reach the proxy over the bus ([`chorus_bus::LicenseLink`]); [`LicenseProxy`] is the service side.
//! Usage records carry metadata only, never text.

pub mod audit;
pub mod http;
pub mod keys;
pub mod ledger;
pub mod license;
pub mod proxy;
pub mod store;
pub mod upstream;

pub use proxy::{LicenseProxy, ProxyConfig, ProxyError};

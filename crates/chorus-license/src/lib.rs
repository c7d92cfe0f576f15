//! The license proxy: entitlement (connected or air-gapped), the usage ledger, `POST /license` and `GET /audit`.
//!
//! Usage records carry metadata only, never text. Built in the license-proxy work.

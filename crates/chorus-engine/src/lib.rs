//! The synthesis engine.

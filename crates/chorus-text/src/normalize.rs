//! Text normalization (English).

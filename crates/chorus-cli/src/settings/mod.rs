//! The serving roles' flags ([`args`]), layered by `chorus-settings` over the defaults and the config file.

pub mod args;

pub use chorus_settings::*;

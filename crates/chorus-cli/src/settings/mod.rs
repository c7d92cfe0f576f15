//! The serving roles' flags ([`args`]), layered by `chorus-settings` over the defaults and the config file.

pub mod args;

pub use chorus_settings::*;

/// With `--print-config`, prints the merged settings (secrets redacted) and answers true: the role then exits.
pub fn printed(config: &args::ConfigArgs, merged: &file::FileSettings) -> anyhow::Result<bool> {
    if config.print_config {
        print!("{}", print(merged)?);
    }
    Ok(config.print_config)
}

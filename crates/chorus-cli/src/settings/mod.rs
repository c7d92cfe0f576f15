//! The serving roles' flags ([`args`]), layered by `chorus-settings` over the defaults and the config file.

pub mod args;

pub use chorus_settings::*;

/// With `--print-config`, prints the merged settings (secrets redacted) and answers true: the role then exits.
pub fn printed(config: &args::ConfigArgs, merged: &file::FileSettings) -> anyhow::Result<bool> {
    Ok(load(config, merged, |_| Ok(()))?.is_none())
}

/// The role's settings from `merged` (a bad one refused); `None` once `--print-config` has printed them.
pub fn load<S>(
    config: &args::ConfigArgs,
    merged: &file::FileSettings,
    resolve: impl FnOnce(&file::FileSettings) -> Result<S>,
) -> anyhow::Result<Option<S>> {
    let settings = resolve(merged)?;
    if config.print_config {
        print!("{}", print(merged)?);
        return Ok(None);
    }
    Ok(Some(settings))
}

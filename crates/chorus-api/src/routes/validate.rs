//! Checks the resource routes share: the `name` and `description` of voices and pronunciation dictionaries.

use crate::error::ApiError;

/// Longest name, in characters.
const MAX_NAME: usize = 256;
/// Longest description, in characters.
const MAX_DESCRIPTION: usize = 4096;

/// A name, trimmed: non-empty, at most [`MAX_NAME`] characters.
pub(crate) fn check_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ApiError::invalid(format!("name is longer than {MAX_NAME} characters")));
    }
    Ok(name.to_owned())
}

/// A description, as given: at most [`MAX_DESCRIPTION`] characters.
pub(crate) fn check_description(description: String) -> Result<String, ApiError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid(format!("description is longer than {MAX_DESCRIPTION} characters")));
    }
    Ok(description)
}

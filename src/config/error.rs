//! Configuration errors. Each names the file and, where there is one, the key.

use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    /// The OS error is part of the message and not also a `source`, so that `{:#}` (which
    /// prints the chain) says it once.
    #[error("cannot read {file}: {cause}")]
    Read { file: PathBuf, cause: std::io::Error },

    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: PathBuf, message: String },

    /// Unknown key, wrong type or missing required key, found while reading the typed schema.
    #[error("{file}: `{key}`: {message}")]
    Schema {
        file: PathBuf,
        key: String,
        message: String,
    },

    /// A `${ENV}`, `file://`, `vault://` or `op://` reference that could not be resolved.
    #[error("{file}: `{key}`: {message}")]
    Reference {
        file: PathBuf,
        key: String,
        message: String,
    },

    /// A value that parses but makes no sense (a bad URL, a missing provider block, …).
    #[error("{file}: `{key}`: {message}")]
    Invalid {
        file: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    pub fn invalid(file: impl Into<PathBuf>, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            file: file.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

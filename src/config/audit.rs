//! The `audit` block of `mxgate.yml`: whether authentication events are written to a JSON-lines
//! file, where, and how much of it is kept (size rotation, number of files, age). Owns the
//! block's schema and its validation into [`AuditSettings`]; the writing is `crate::audit`'s.

use super::gateway_file::{byte_size, duration};
use super::settings::as_humantime;
use super::{lenient, relative_to, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The audit file's name inside `<data_dir>/audit/` unless `audit.path` names another.
pub const DEFAULT_FILE_NAME: &str = "audit.jsonl";

/// The smallest `audit.max_size`: a rotation per few records would only churn files.
const MIN_MAX_SIZE: u64 = 4096;

/// `audit:` as written in mxgate.yml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    #[serde(default = "yes", deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// Default `<data_dir>/audit/audit.jsonl`.
    #[serde(default)]
    pub path: Option<String>,
    /// The current file is rotated once it reaches this size (`100MiB`, `1GB`, or bytes).
    #[serde(default = "default_max_size", deserialize_with = "byte_size")]
    pub max_size: u64,
    /// Rotated files kept besides the current one.
    #[serde(default = "default_max_files")]
    pub max_files: usize,
    /// Rotated files older than this are deleted.
    #[serde(default = "default_max_age", deserialize_with = "duration")]
    pub max_age: Duration,
    /// Also write each record, as the same JSON line, to standard output (containers).
    #[serde(default, deserialize_with = "lenient::bool")]
    pub stdout: bool,
}

impl Default for AuditFile {
    fn default() -> Self {
        Self {
            enabled: true,
            path: None,
            max_size: default_max_size(),
            max_files: default_max_files(),
            max_age: default_max_age(),
            stdout: false,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_max_size() -> u64 {
    100 * 1024 * 1024
}
fn default_max_files() -> usize {
    10
}
fn default_max_age() -> Duration {
    Duration::from_secs(30 * 86400)
}

/// The validated `audit` block.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditSettings {
    pub enabled: bool,
    pub path: PathBuf,
    pub max_size: u64,
    pub max_files: usize,
    #[serde(serialize_with = "as_humantime")]
    pub max_age: Duration,
    pub stdout: bool,
}

// === impl AuditSettings ===

impl AuditSettings {
    /// `file` of `gateway_path`, paths taken from `base_dir`, the default file in `data_dir`.
    pub fn build(file: AuditFile, base_dir: &Path, data_dir: &Path, gateway_path: &Path) -> Result<Self, ConfigError> {
        let err = |key: &str, message: String| ConfigError::invalid(gateway_path, format!("audit.{key}"), message);
        if file.max_size < MIN_MAX_SIZE {
            return Err(err("max_size", format!("must be at least {MIN_MAX_SIZE} bytes")));
        }
        if file.max_age < Duration::from_secs(60) {
            return Err(err("max_age", "must be at least 1m".into()));
        }
        let path = match file.path.as_deref().map(str::trim) {
            Some("") => return Err(err("path", "must not be empty (leave it out for the default)".into())),
            Some(p) if p.ends_with('/') => return Err(err("path", "must name a file, not a folder".into())),
            Some(p) => relative_to(base_dir, p),
            None => data_dir.join("audit").join(DEFAULT_FILE_NAME),
        };
        Ok(Self {
            enabled: file.enabled,
            path,
            max_size: file.max_size,
            max_files: file.max_files,
            max_age: file.max_age,
            stdout: file.stdout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(yaml: &str) -> Result<AuditSettings, ConfigError> {
        let file: AuditFile =
            serde_yaml::from_str(yaml).map_err(|e| ConfigError::invalid(Path::new("m.yml"), "audit", e.to_string()))?;
        AuditSettings::build(
            file,
            Path::new("/etc/mxgate"),
            Path::new("/var/lib/mxgate"),
            Path::new("m.yml"),
        )
    }

    #[test]
    fn defaults_put_the_file_in_the_data_dir_and_keep_ten_files_for_thirty_days() {
        let s = build("{}").unwrap();
        assert!(s.enabled && !s.stdout);
        assert_eq!(s.path, Path::new("/var/lib/mxgate/audit/audit.jsonl"));
        assert_eq!(
            (s.max_size, s.max_files, s.max_age),
            (100 << 20, 10, Duration::from_secs(30 * 86400))
        );
    }

    #[test]
    fn sizes_take_units_and_paths_are_relative_to_the_config_file() {
        let s = build("{path: logs/a.jsonl, max_size: 5MiB, max_files: '3', max_age: 7d, stdout: 'true'}");
        // `max_files` is a number; a string there is refused like any other non-number.
        assert!(s.is_err());
        let s = build("{path: logs/a.jsonl, max_size: 5MiB, max_files: 3, max_age: 7d, stdout: 'true'}").unwrap();
        assert_eq!(s.path, Path::new("/etc/mxgate/logs/a.jsonl"));
        assert_eq!(
            (s.max_size, s.max_files, s.max_age.as_secs(), s.stdout),
            (5 << 20, 3, 7 * 86400, true)
        );
        assert_eq!(build("{max_size: 8192}").unwrap().max_size, 8192);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (yaml, key) in [
            ("{max_size: 12 parsecs}", "100MiB"),
            ("{max_size: 100}", "audit.max_size"),
            ("{max_age: 10s}", "audit.max_age"),
            ("{max_age: soon}", "30d"),
            ("{path: ''}", "audit.path"),
            ("{path: /var/log/}", "audit.path"),
            ("{rotate: daily}", "rotate"),
        ] {
            let e = build(yaml).unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }
}

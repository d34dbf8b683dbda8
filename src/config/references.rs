//! Resolution of external references in configuration values, with MXCP 0.12.3's rules:
//! `${VAR}` anywhere in a string (every occurrence; an unset variable is an error),
//! `file://path` (whole value; the file's content, trimmed; relative paths from the working
//! directory), `vault://path#key` and `op://vault/item/field` (whole value).
//!
//! Resolution walks a YAML tree before it is read into typed structs, so an error can name the
//! key it came from. It never logs a resolved value.

use serde_yaml::Value;
use std::path::Path;

/// Where a value sits in the file, as a dotted key (`projects.demo.profiles.default.auth`).
#[derive(Clone, Debug, Default)]
pub struct KeyPath(Vec<String>);

// === impl KeyPath ===

impl KeyPath {
    pub fn child(&self, segment: impl Into<String>) -> Self {
        let mut next = self.0.clone();
        next.push(segment.into());
        Self(next)
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    pub fn dotted(&self) -> String {
        if self.0.is_empty() {
            "(top level)".to_string()
        } else {
            self.0.join(".")
        }
    }
}

/// Resolves one reference string. `vault://` and `op://` go through the hooks so that the
/// secret back-ends stay out of this module; so does `file://`, read from disk unless a back-end
/// says otherwise.
pub trait SecretBackend {
    fn vault(&self, path: &str, key: &str) -> Result<String, String>;
    fn onepassword(&self, reference: &str) -> Result<String, String>;
    fn file(&self, path: &str) -> Result<String, String> {
        read_file_reference(path)
    }
}

/// The back-end used when the config enables no secret store: every such reference is an error
/// that says what to configure.
pub struct NoSecretBackend;

impl SecretBackend for NoSecretBackend {
    fn vault(&self, _path: &str, _key: &str) -> Result<String, String> {
        Err("vault:// reference found, but no `vault` block with `enabled: true` is configured".into())
    }

    fn onepassword(&self, _reference: &str) -> Result<String, String> {
        Err("op:// (1Password) references are not supported by mxgate; use ${ENV}, file:// or vault://".into())
    }
}

/// For a config loaded from its text alone (fuzzing): every `file://`, `vault://` and `op://`
/// reference is refused, so nothing but the environment is read.
pub struct TextOnly;

impl SecretBackend for TextOnly {
    fn vault(&self, _path: &str, _key: &str) -> Result<String, String> {
        Err("vault:// references are not read when loading a config from text".into())
    }

    fn onepassword(&self, reference: &str) -> Result<String, String> {
        NoSecretBackend.onepassword(reference)
    }

    fn file(&self, _path: &str) -> Result<String, String> {
        Err("file:// references are not read when loading a config from text".into())
    }
}

/// Walks `value` and resolves every reference in the subtrees that `in_scope` selects.
/// Returns the dotted key and a message for the first failure.
pub fn resolve_tree(
    value: &mut Value,
    path: &KeyPath,
    in_scope: &dyn Fn(&KeyPath) -> bool,
    backend: &dyn SecretBackend,
) -> Result<(), (String, String)> {
    if in_scope(path) {
        return resolve_all(value, path, backend);
    }
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let segment = key_segment(key);
                resolve_tree(child, &path.child(segment), in_scope, backend)?;
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                resolve_tree(child, &path.child(index.to_string()), in_scope, backend)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn resolve_all(value: &mut Value, path: &KeyPath, backend: &dyn SecretBackend) -> Result<(), (String, String)> {
    match value {
        Value::String(text) => {
            if let Some(resolved) = resolve_string(text, backend).map_err(|message| (path.dotted(), message))? {
                *text = resolved;
            }
        }
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                let segment = key_segment(key);
                resolve_all(child, &path.child(segment), backend)?;
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter_mut().enumerate() {
                resolve_all(child, &path.child(index.to_string()), backend)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn key_segment(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Resolves one string; `Ok(None)` when it holds no reference.
pub fn resolve_string(text: &str, backend: &dyn SecretBackend) -> Result<Option<String>, String> {
    if let Some(rest) = text.strip_prefix("vault://") {
        let (path, key) = rest
            .split_once('#')
            .filter(|(p, k)| !p.is_empty() && !k.is_empty())
            .ok_or_else(|| format!("invalid vault reference `{text}`: expected vault://path/to/secret#key"))?;
        return backend.vault(path, key).map(Some);
    }
    if text.starts_with("op://") {
        return backend.onepassword(text).map(Some);
    }
    if let Some(rest) = text.strip_prefix("file://") {
        return backend.file(rest).map(Some);
    }
    substitute_env(text)
}

fn read_file_reference(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("invalid file reference: expected file://path/to/file".into());
    }
    let path = Path::new(path);
    let content =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read file reference {}: {e}", path.display()))?;
    Ok(content.trim().to_string())
}

/// Replaces every `${NAME}` (NAME of `[A-Za-z0-9_]+`); other `$` text is left alone.
fn substitute_env(text: &str) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len == 0 || !after[name_len..].starts_with('}') {
            out.push_str(&rest[..start + 2]);
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        let value = std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&rest[..start]);
        out.push_str(&value);
        rest = &after[name_len + 1..];
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_substituted_everywhere_in_a_string() {
        std::env::set_var("MXGATE_TEST_REF_A", "alpha");
        std::env::set_var("MXGATE_TEST_REF_B", "beta");
        let out = substitute_env("x-${MXGATE_TEST_REF_A}-${MXGATE_TEST_REF_B}-$HOME-${}").unwrap();
        assert_eq!(out.as_deref(), Some("x-alpha-beta-$HOME-${}"));
        assert_eq!(substitute_env("plain").unwrap(), None);
    }

    #[test]
    fn unset_env_reference_is_an_error_naming_the_variable() {
        let err = substitute_env("${MXGATE_TEST_SURELY_UNSET_VAR}").unwrap_err();
        assert!(err.contains("MXGATE_TEST_SURELY_UNSET_VAR"), "{err}");
    }

    #[test]
    fn file_reference_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.txt");
        std::fs::write(&file, "  s3cret\n").unwrap();
        let value = resolve_string(&format!("file://{}", file.display()), &NoSecretBackend).unwrap();
        assert_eq!(value.as_deref(), Some("s3cret"));
        let missing = resolve_string("file:///definitely/not/here", &NoSecretBackend).unwrap_err();
        assert!(missing.contains("/definitely/not/here"), "{missing}");
    }

    #[test]
    fn vault_and_op_without_backend_are_clear_errors() {
        let vault = resolve_string("vault://secret/oauth#github_secret", &NoSecretBackend).unwrap_err();
        assert!(vault.contains("vault"), "{vault}");
        let malformed = resolve_string("vault://secret/oauth", &NoSecretBackend).unwrap_err();
        assert!(malformed.contains("#key"), "{malformed}");
        let op = resolve_string("op://v/i/f", &NoSecretBackend).unwrap_err();
        assert!(op.contains("not supported"), "{op}");
    }

    #[test]
    fn out_of_scope_subtrees_are_left_unresolved() {
        let mut tree: Value = serde_yaml::from_str(
            "active: {a: '${MXGATE_TEST_SURELY_UNSET_VAR}'}\nother: {b: '${MXGATE_TEST_SURELY_UNSET_VAR}'}",
        )
        .unwrap();
        let only_other = |p: &KeyPath| p.segments().first().map(String::as_str) == Some("other");
        let (key, _) = resolve_tree(&mut tree, &KeyPath::default(), &only_other, &NoSecretBackend).unwrap_err();
        assert_eq!(key, "other.b");
        let none = |_: &KeyPath| false;
        resolve_tree(&mut tree, &KeyPath::default(), &none, &NoSecretBackend).unwrap();
    }
}

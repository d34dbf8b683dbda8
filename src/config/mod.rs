//! Configuration: reading `mxgate.yml` and the MXCP user config it points at, resolving
//! secret references, choosing the project/profile, and validating everything into one
//! effective [`Settings`] value. Errors name the file and the key; secrets are [`Secret`]s
//! and print redacted.

pub mod access_policy;
pub mod audit;
mod encryption_key;
mod error;
pub mod gateway_file;
pub mod host_pattern;
mod lenient;
pub mod limits;
pub mod mxcp_user;
pub mod references;
pub mod reload;
mod secret;
mod settings;
pub mod tls;
mod unknown_key;
mod vault;

pub use error::ConfigError;
pub use secret::{Secret, REDACTED};
pub use settings::*;

use references::{KeyPath, NoSecretBackend, TextOnly};
use serde::de::DeserializeOwned;
use serde_yaml::Value;
use std::path::{Path, PathBuf};

/// Reads and validates the whole configuration, starting from `mxgate.yml`.
///
/// Order: find the MXCP user config (the `mxcp_config`, `project` and `profile` keys of
/// mxgate.yml may use `${ENV}`), set up its `vault` block, then resolve every reference of both
/// files with it.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let reach = Reach::Everything;
    let gateway_raw = read_yaml(path)?;
    let locator = locate(path, &gateway_raw, reach)?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mxcp_path = mxcp_config_path(locator.mxcp_config.as_deref(), &base_dir);
    let user_raw = read_yaml(&mxcp_path)?;
    load_trees(
        Sources {
            gateway_path: path,
            base_dir: &base_dir,
            gateway_raw,
            locator,
            mxcp_path: &mxcp_path,
            user_raw,
        },
        reach,
    )
}

/// [`load`] from the two files' text, reaching nothing else: `file://`, `vault://` and `op://`
/// references are refused and addresses must be IP literals (no DNS); `${ENV}` still reads the
/// environment. For the fuzzer (`fuzz/fuzz_targets/config_loader.rs`).
#[doc(hidden)]
pub fn load_from_texts(gateway_yaml: &str, mxcp_yaml: &str) -> Result<Settings, ConfigError> {
    let reach = Reach::TextOnly;
    let gateway_path = Path::new("mxgate.yml");
    let mxcp_path = Path::new("mxcp-config.yml");
    let gateway_raw = parse_yaml(gateway_path, gateway_yaml)?;
    let locator = locate(gateway_path, &gateway_raw, reach)?;
    let user_raw = parse_yaml(mxcp_path, mxcp_yaml)?;
    load_trees(
        Sources {
            gateway_path,
            base_dir: Path::new(""),
            gateway_raw,
            locator,
            mxcp_path,
            user_raw,
        },
        reach,
    )
}

/// What loading may read besides the two files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// `file://` files, Vault over HTTP, DNS for host names: `serve` and `check`.
    Everything,
    /// Only the environment (`${ENV}`): see [`load_from_texts`].
    TextOnly,
}

// === impl Reach ===

impl Reach {
    /// The resolver of references when no Vault is configured.
    fn plain_backend(self) -> Box<dyn references::SecretBackend> {
        match self {
            Self::Everything => Box::new(NoSecretBackend),
            Self::TextOnly => Box::new(TextOnly),
        }
    }
}

/// Both files, parsed, and where they came from.
struct Sources<'a> {
    gateway_path: &'a Path,
    base_dir: &'a Path,
    gateway_raw: Value,
    locator: Locator,
    mxcp_path: &'a Path,
    user_raw: Value,
}

/// Reads the locator keys of mxgate.yml, after checking that every key in it is known: a
/// misspelled key is reported before the MXCP user config is looked for.
fn locate(path: &Path, gateway_raw: &Value, reach: Reach) -> Result<Locator, ConfigError> {
    check_gateway_keys(path, gateway_raw)?;
    let backend = reach.plain_backend();
    typed(
        path,
        resolved(path, gateway_raw.clone(), &is_locator, backend.as_ref())?,
    )
}

/// Reads mxgate.yml as written, before the MXCP config is looked for, so that its own mistakes
/// (a misspelled key, a wrong type, a missing `upstream`) are reported first. An error at a value
/// that holds a reference (`${VAR}`, `file://`, `vault://`, `op://`) waits: the value may not
/// have its type until it is resolved.
fn check_gateway_keys(path: &Path, gateway_raw: &Value) -> Result<(), ConfigError> {
    let Err(err) = serde_path_to_error::deserialize::<_, gateway_file::GatewayFile>(gateway_raw.clone()) else {
        return Ok(());
    };
    if value_at(gateway_raw, err.path()).is_none_or(has_reference) {
        return Ok(());
    }
    typed::<gateway_file::GatewayFile>(path, gateway_raw.clone()).map(|_| ())
}

/// The part of `tree` at `path` (`None` when the path leads nowhere).
fn value_at<'a>(tree: &'a Value, path: &serde_path_to_error::Path) -> Option<&'a Value> {
    use serde_path_to_error::Segment;
    path.iter().try_fold(tree, |value, segment| match segment {
        Segment::Map { key } => value.get(key.as_str()),
        Segment::Seq { index } => value.get(*index),
        Segment::Enum { .. } => Some(value),
        Segment::Unknown => None,
    })
}

/// Whether any string in `value` is (or contains) a reference.
fn has_reference(value: &Value) -> bool {
    match value {
        Value::String(s) => {
            s.contains("${")
                || ["file://", "vault://", "op://"]
                    .iter()
                    .any(|scheme| s.starts_with(scheme))
        }
        Value::Sequence(items) => items.iter().any(has_reference),
        Value::Mapping(map) => map.values().any(has_reference),
        Value::Tagged(tagged) => has_reference(&tagged.value),
        _ => false,
    }
}

fn load_trees(sources: Sources<'_>, reach: Reach) -> Result<Settings, ConfigError> {
    let Sources {
        gateway_path: path,
        base_dir,
        gateway_raw,
        locator,
        mxcp_path,
        user_raw,
    } = sources;
    let (project, profile) = select_profile(mxcp_path, &user_raw, &locator)?;
    let backend = secret_backend(mxcp_path, &user_raw, reach)?;

    let gateway: gateway_file::GatewayFile = typed(path, resolved(path, gateway_raw, &|_| true, backend.as_ref())?)?;
    let in_scope = |p: &KeyPath| active_profile_scope(p, &project, &profile);
    let user: mxcp_user::UserConfig = typed(mxcp_path, resolved(mxcp_path, user_raw, &in_scope, backend.as_ref())?)?;
    settings::build(SettingsInput {
        gateway_path: path,
        base_dir,
        gateway,
        mxcp_path,
        user,
        project,
        profile,
        resolve_host_names: reach == Reach::Everything,
    })
}

/// The keys of mxgate.yml needed to find the MXCP user config (the others are ignored here).
#[derive(serde::Deserialize)]
struct Locator {
    #[serde(default)]
    mxcp_config: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

fn is_locator(path: &KeyPath) -> bool {
    matches!(path.segments(), [k] if k == "mxcp_config" || k == "project" || k == "profile")
}

fn resolved(
    file: &Path,
    mut tree: Value,
    in_scope: &dyn Fn(&KeyPath) -> bool,
    backend: &dyn references::SecretBackend,
) -> Result<Value, ConfigError> {
    references::resolve_tree(&mut tree, &KeyPath::default(), in_scope, backend).map_err(|(key, message)| {
        ConfigError::Reference {
            file: file.to_path_buf(),
            key,
            message,
        }
    })?;
    Ok(tree)
}

/// The MXCP config's `vault` block (its own references resolved from the environment and files)
/// as the backend for `vault://` references; none when absent or disabled, or when loading from
/// text alone (the block is still checked).
fn secret_backend(
    mxcp_path: &Path,
    user_raw: &Value,
    reach: Reach,
) -> Result<Box<dyn references::SecretBackend>, ConfigError> {
    let Some(block) = user_raw.get("vault").cloned() else {
        return Ok(reach.plain_backend());
    };
    let vault_key = KeyPath::default().child("vault");
    let mut block = block;
    let plain = reach.plain_backend();
    references::resolve_tree(&mut block, &vault_key, &|_| true, plain.as_ref()).map_err(|(key, message)| {
        ConfigError::Reference {
            file: mxcp_path.to_path_buf(),
            key,
            message,
        }
    })?;
    let config: mxcp_user::VaultConfig = serde_path_to_error::deserialize(block).map_err(|e| ConfigError::Schema {
        file: mxcp_path.to_path_buf(),
        key: format!("vault.{}", e.path()),
        message: unknown_key::explain(&strip_location(&e.inner().to_string())),
    })?;
    if !config.enabled || reach == Reach::TextOnly {
        return Ok(plain);
    }
    vault::VaultBackend::from_config(&config)
        .map(|b| Box::new(b) as Box<dyn references::SecretBackend>)
        .map_err(|message| ConfigError::invalid(mxcp_path, "vault", message))
}

fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        file: path.to_path_buf(),
        cause,
    })?;
    parse_yaml(path, &text)
}

fn parse_yaml(path: &Path, text: &str) -> Result<Value, ConfigError> {
    let value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(match value {
        Value::Null => Value::Mapping(Default::default()),
        other => other,
    })
}

/// Reads a resolved tree into a typed struct; the error names the exact key.
fn typed<T: DeserializeOwned>(path: &Path, tree: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(tree).map_err(|err| {
        let key = err.path().to_string();
        let message = err.inner().to_string();
        ConfigError::Schema {
            file: path.to_path_buf(),
            key: if key == "." { "(top level)".into() } else { key },
            message: unknown_key::explain(&strip_location(&message)),
        }
    })
}

/// serde_yaml appends " at line X column Y" for values read from a `Value`, which is meaningless here.
fn strip_location(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_string()
}

fn mxcp_config_path(configured: Option<&str>, base_dir: &Path) -> PathBuf {
    if let Some(p) = configured {
        return relative_to(base_dir, p);
    }
    if let Ok(p) = std::env::var("MXCP_CONFIG") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    Path::new(&home).join(".mxcp").join("config.yml")
}

/// A path from the config: `~/` expands to `$HOME`, relative paths are taken from `base_dir`.
pub fn relative_to(base_dir: &Path, value: &str) -> PathBuf {
    if let Some(rest) = value.strip_prefix("~/") {
        let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
        return Path::new(&home).join(rest);
    }
    let p = Path::new(value);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Picks the project and profile: from `mxgate.yml`, else the only one there is
/// (profile `default` when the project has several and none is named).
fn select_profile(mxcp_path: &Path, user_tree: &Value, gateway: &Locator) -> Result<(String, String), ConfigError> {
    let projects = user_tree.get("projects").and_then(Value::as_mapping);
    let project_names: Vec<String> = projects
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let project = match (&gateway.project, project_names.as_slice()) {
        (Some(p), _) => p.clone(),
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(ConfigError::invalid(
                mxcp_path,
                "projects",
                "no project is defined; add projects.<name>.profiles.<profile>.auth",
            ))
        }
        (None, many) => {
            return Err(ConfigError::invalid(
                mxcp_path,
                "projects",
                format!("several projects ({}); set `project:` in mxgate.yml", many.join(", ")),
            ))
        }
    };
    let Some(project_tree) = projects.and_then(|m| m.get(project.as_str())) else {
        return Err(ConfigError::invalid(
            mxcp_path,
            format!("projects.{project}"),
            format!(
                "project `{project}` is not defined (have: {})",
                project_names.join(", ")
            ),
        ));
    };
    let profiles = project_tree.get("profiles").and_then(Value::as_mapping);
    let profile_names: Vec<String> = profiles
        .map(|m| m.keys().filter_map(|k| k.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let profile = match (&gateway.profile, profile_names.as_slice()) {
        (Some(p), _) => p.clone(),
        (None, [only]) => only.clone(),
        (None, _) => "default".to_string(),
    };
    if !profile_names.iter().any(|p| p == &profile) {
        return Err(ConfigError::invalid(
            mxcp_path,
            format!("projects.{project}.profiles.{profile}"),
            format!(
                "profile `{profile}` is not defined (have: {})",
                profile_names.join(", ")
            ),
        ));
    }
    Ok((project, profile))
}

/// MXCP resolves references only in top-level sections and the active profile, so that
/// variables of other profiles need not be set.
fn active_profile_scope(path: &KeyPath, project: &str, profile: &str) -> bool {
    match path.segments() {
        [] => false,
        [first, ..] if first != "projects" => true,
        [_, p, q, r, ..] => p == project && q == "profiles" && r == profile,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

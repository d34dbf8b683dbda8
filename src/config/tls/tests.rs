use crate::config::{load, ConfigError, Settings};
use std::fs;
use std::path::{Path, PathBuf};

const MXCP: &str = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
const BASE: &str = "listen: 127.0.0.1:18443\nupstream: http://127.0.0.1:18001\nmxcp_config: mxcp.yml\ndata_dir: data\n";

/// A self-signed certificate and its key, PEM.
fn pair() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

/// A folder with mxgate.yml (`BASE` + `extra`), mxcp.yml, and `certs/tls.crt` + `certs/tls.key`.
fn setup(extra: &str, mxcp: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("certs")).unwrap();
    let (cert, key) = pair();
    fs::write(dir.path().join("certs/tls.crt"), cert).unwrap();
    fs::write(dir.path().join("certs/tls.key"), key).unwrap();
    fs::write(dir.path().join("mxcp.yml"), mxcp).unwrap();
    let path = dir.path().join("mxgate.yml");
    fs::write(&path, format!("{BASE}{extra}")).unwrap();
    (dir, path)
}

const TLS: &str = "tls:\n  cert_file: certs/tls.crt\n  key_file: certs/tls.key\n";

fn load_ok(extra: &str) -> (tempfile::TempDir, Settings) {
    let (dir, path) = setup(extra, MXCP);
    let settings = load(&path).unwrap_or_else(|e| panic!("{e}"));
    (dir, settings)
}

/// Loads and expects an `Invalid` error at `key`; returns its message.
fn refused(dir: &Path, key: &str) -> String {
    match load(&dir.join("mxgate.yml")) {
        Err(ConfigError::Invalid { key: k, message, .. }) if k == key => message,
        other => panic!("expected an error at `{key}`, got {other:?}"),
    }
}

#[test]
fn a_tls_block_loads_with_paths_from_the_config_folder_and_defaults() {
    let (dir, settings) = load_ok(TLS);
    let tls = settings.tls.clone().expect("tls settings");
    assert_eq!(tls.cert_file, dir.path().join("certs/tls.crt"));
    assert_eq!(tls.key_file, dir.path().join("certs/tls.key"));
    assert_eq!(tls.min_version, super::TlsVersion::Tls12);
    assert_eq!(tls.redirect_listen, None);
    assert_eq!(tls.reload_interval, std::time::Duration::from_secs(5));
    // With TLS on and no public URL configured, the derived one is https.
    assert_eq!(settings.public_url, "https://127.0.0.1:18443");
    let printed = serde_yaml::to_string(&settings).unwrap();
    assert!(printed.contains("min_version: '1.2'"), "{printed}");
}

#[test]
fn without_a_tls_block_nothing_changes() {
    let (_dir, settings) = load_ok("");
    assert!(settings.tls.is_none());
    assert_eq!(settings.public_url, "http://127.0.0.1:18443");
}

#[test]
fn min_version_redirect_listen_and_reload_interval_are_read() {
    for written in ["1.3", "\"1.3\"", "TLSv1.3"] {
        let (_dir, settings) = load_ok(&format!(
            "{TLS}  min_version: {written}\n  redirect_listen: 127.0.0.1:18080\n  reload_interval: 2s\n"
        ));
        let tls = settings.tls.unwrap();
        assert_eq!(tls.min_version, super::TlsVersion::Tls13, "{written}");
        assert_eq!(tls.redirect_listen, Some("127.0.0.1:18080".parse().unwrap()));
        assert_eq!(tls.reload_interval, std::time::Duration::from_secs(2));
    }
}

#[test]
fn an_unsupported_min_version_is_refused_naming_the_key() {
    let (_dir, path) = setup(&format!("{TLS}  min_version: 1.1\n"), MXCP);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("tls.min_version") && err.contains("1.2 or 1.3"), "{err}");
}

#[test]
fn a_missing_certificate_or_key_file_is_refused_naming_the_key_and_path() {
    let (dir, _) = setup(TLS, MXCP);
    fs::remove_file(dir.path().join("certs/tls.crt")).unwrap();
    let message = refused(dir.path(), "tls.cert_file");
    assert!(
        message.contains("cannot read") && message.contains("certs/tls.crt"),
        "{message}"
    );

    let (dir, _) = setup(TLS, MXCP);
    fs::remove_file(dir.path().join("certs/tls.key")).unwrap();
    let message = refused(dir.path(), "tls.key_file");
    assert!(
        message.contains("cannot read") && message.contains("certs/tls.key"),
        "{message}"
    );
}

#[test]
fn a_folder_or_an_oversized_file_is_refused() {
    let (dir, _) = setup(TLS, MXCP);
    fs::remove_file(dir.path().join("certs/tls.crt")).unwrap();
    fs::create_dir(dir.path().join("certs/tls.crt")).unwrap();
    let message = refused(dir.path(), "tls.cert_file");
    assert!(message.contains("is not a file"), "{message}");

    let (dir, _) = setup(TLS, MXCP);
    let big = vec![b'A'; super::MAX_PEM_FILE_BYTES as usize + 1];
    fs::write(dir.path().join("certs/tls.key"), big).unwrap();
    let message = refused(dir.path(), "tls.key_file");
    assert!(message.contains("larger than"), "{message}");
}

#[test]
fn a_certificate_file_without_a_certificate_is_refused() {
    let (dir, _) = setup(TLS, MXCP);
    // A common mistake: the key in both places.
    fs::copy(dir.path().join("certs/tls.key"), dir.path().join("certs/tls.crt")).unwrap();
    let message = refused(dir.path(), "tls.cert_file");
    assert!(message.contains("holds no certificate"), "{message}");
}

#[test]
fn a_key_file_without_a_key_is_refused() {
    let (dir, _) = setup(TLS, MXCP);
    fs::copy(dir.path().join("certs/tls.crt"), dir.path().join("certs/tls.key")).unwrap();
    let message = refused(dir.path(), "tls.key_file");
    assert!(message.contains("holds no private key"), "{message}");
}

#[test]
fn a_key_that_does_not_belong_to_the_certificate_is_refused() {
    let (dir, _) = setup(TLS, MXCP);
    let (_, other_key) = pair();
    fs::write(dir.path().join("certs/tls.key"), other_key).unwrap();
    let message = refused(dir.path(), "tls.key_file");
    assert!(
        message.contains("does not belong to the first certificate"),
        "{message}"
    );
}

#[test]
fn broken_pem_and_an_unparsable_certificate_are_refused() {
    let (dir, _) = setup(TLS, MXCP);
    fs::write(
        dir.path().join("certs/tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let message = refused(dir.path(), "tls.cert_file");
    assert!(message.contains("not valid PEM"), "{message}");

    let (dir, _) = setup(TLS, MXCP);
    fs::write(
        dir.path().join("certs/tls.crt"),
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let message = refused(dir.path(), "tls.cert_file");
    assert!(message.contains("cannot be parsed"), "{message}");
}

#[test]
fn a_plain_http_public_url_is_refused_with_tls_on() {
    let (dir, _) = setup(&format!("{TLS}public_url: http://mcp.example.com\n"), MXCP);
    let message = refused(dir.path(), "public_url");
    assert!(message.contains("plain http") && message.contains("tls"), "{message}");

    let mxcp =
        "mxcp: 1\ntransport: {http: {base_url: http://mcp.example.com}}\nprojects: {p: {profiles: {default: {}}}}\n";
    let (dir, _) = setup(TLS, mxcp);
    let message = refused(dir.path(), "transport.http.base_url");
    assert!(message.contains("plain http"), "{message}");

    let (_dir, settings) = load_ok(&format!("{TLS}public_url: https://mcp.example.com\n"));
    assert_eq!(settings.public_url, "https://mcp.example.com");
}

#[test]
fn redirect_listen_must_be_another_address() {
    let (dir, _) = setup(&format!("{TLS}  redirect_listen: 127.0.0.1:18443\n"), MXCP);
    let message = refused(dir.path(), "tls.redirect_listen");
    assert!(message.contains("own port"), "{message}");

    let (dir, _) = setup(&format!("{TLS}  redirect_listen: nowhere\n"), MXCP);
    refused(dir.path(), "tls.redirect_listen");
}

#[test]
fn a_too_short_reload_interval_is_refused() {
    let (dir, _) = setup(&format!("{TLS}  reload_interval: 100ms\n"), MXCP);
    let message = refused(dir.path(), "tls.reload_interval");
    assert!(message.contains("at least 1s"), "{message}");
}

#[test]
fn a_loaded_pair_is_summarised_for_the_log() {
    let (dir, settings) = load_ok(TLS);
    let key = settings.tls.unwrap().load_pair().unwrap();
    let summary = super::CertificateSummary::of(&key).unwrap();
    assert!(
        !summary.serial.is_empty() && !summary.serial.contains(':'),
        "{summary:?}"
    );
    assert!(!summary.outside_validity, "{summary:?}");
    drop(dir);
}

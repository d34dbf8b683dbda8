use super::*;
use std::fs;

const GATEWAY: &str =
    "listen: 127.0.0.1:18000\nupstream: http://127.0.0.1:18001\nmxcp_config: mxcp.yml\ndata_dir: data\n";

fn write(dir: &Path, gateway: &str, mxcp: &str) -> PathBuf {
    fs::write(dir.join("mxcp.yml"), mxcp).unwrap();
    let path = dir.join("mxgate.yml");
    fs::write(&path, gateway).unwrap();
    path
}

fn oidc_user_config(extra_auth: &str) -> String {
    format!(
        "mxcp: 1\nprojects:\n  demo:\n    profiles:\n      default:\n        auth:\n          provider: oidc\n{extra_auth}          oidc:\n            config_url: http://127.0.0.1:9400/.well-known/openid-configuration\n            client_id: mxgate\n            client_secret: \"${{MXGATE_TEST_OIDC_SECRET}}\"\n            scope: openid profile email\n            callback_path: /callback\n"
    )
}

#[test]
fn loads_an_oidc_config_and_redacts_its_secret() {
    // Its own variable: the other tests set MXGATE_TEST_OIDC_SECRET concurrently.
    std::env::set_var("MXGATE_TEST_OIDC_SECRET_REDACTED", "very-secret-value");
    let dir = tempfile::tempdir().unwrap();
    let user = oidc_user_config("").replace("MXGATE_TEST_OIDC_SECRET", "MXGATE_TEST_OIDC_SECRET_REDACTED");
    let path = write(dir.path(), GATEWAY, &user);
    let settings = load(&path).unwrap();
    assert_eq!(settings.project, "demo");
    assert_eq!(settings.profile, "default");
    assert_eq!(settings.public_url, "http://127.0.0.1:18000");
    assert_eq!(settings.resource_url(), "http://127.0.0.1:18000/mcp");
    assert_eq!(settings.upstream.host_header, "127.0.0.1:18001");
    assert_eq!(settings.data_dir, dir.path().join("data"));
    let ProviderSettings::Oidc(oidc) = &settings.auth.provider else {
        panic!("expected oidc, got {:?}", settings.auth.provider)
    };
    assert_eq!(oidc.client_secret.expose(), "very-secret-value");
    let printed = serde_yaml::to_string(&settings).unwrap();
    assert!(!printed.contains("very-secret-value"), "{printed}");
    assert!(printed.contains(REDACTED));
}

#[test]
fn unknown_key_is_refused_with_its_full_name_and_file() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let user = oidc_user_config("").replace(
        "callback_path: /callback",
        "callback_path: /callback\n            calback_url: /oops",
    );
    let path = write(dir.path(), GATEWAY, &user);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxcp.yml"), "{err}");
    assert!(err.contains("projects.demo.profiles.default.auth.oidc"), "{err}");
    assert!(err.contains("calback_url"), "{err}");
}

#[test]
fn unknown_key_in_gateway_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{GATEWAY}listn: 1\n"),
        "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n",
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxgate.yml") && err.contains("listn"), "{err}");
}

#[test]
fn unset_variable_names_variable_key_and_file() {
    std::env::remove_var("MXGATE_TEST_UNSET_SECRET");
    let dir = tempfile::tempdir().unwrap();
    let user = oidc_user_config("").replace("MXGATE_TEST_OIDC_SECRET", "MXGATE_TEST_UNSET_SECRET");
    let path = write(dir.path(), GATEWAY, &user);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("MXGATE_TEST_UNSET_SECRET"), "{err}");
    assert!(
        err.contains("projects.demo.profiles.default.auth.oidc.client_secret"),
        "{err}"
    );
    assert!(err.contains("mxcp.yml"), "{err}");
}

#[test]
fn variables_of_inactive_profiles_need_not_be_set() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let user = format!(
        "{}      prod:\n        auth:\n          provider: github\n          github: {{client_id: '${{MXGATE_TEST_NEVER_SET}}', client_secret: x, callback_path: /cb, auth_url: u, token_url: t}}\n",
        oidc_user_config("")
    );
    let path = write(dir.path(), &format!("{GATEWAY}profile: default\n"), &user);
    load(&path).unwrap();
}

#[test]
fn wrong_type_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\ntransport: {http: {port: eighty}}\n";
    let path = write(dir.path(), GATEWAY, user);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("transport.http.port"), "{err}");
    assert!(err.contains("eighty"), "{err}");
}

#[test]
fn port_from_an_env_reference_is_accepted() {
    std::env::set_var("MXGATE_TEST_PORT", "8123");
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\ntransport: {http: {port: '${MXGATE_TEST_PORT}', trust_proxy: 'true'}}\n";
    let path = write(dir.path(), GATEWAY, user);
    let settings = load(&path).unwrap();
    assert!(settings.transport.trust_proxy);
    assert!(!settings.auth_enabled());
}

#[test]
fn provider_without_its_block_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {auth: {provider: github}}}}}\n";
    let path = write(dir.path(), GATEWAY, user);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("projects.p.profiles.default.auth.github"), "{err}");
}

#[test]
fn oidc_scope_without_openid_is_refused() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let user = oidc_user_config("").replace("scope: openid profile email", "scope: profile email");
    let path = write(dir.path(), GATEWAY, &user);
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("openid"), "{err}");
}

#[test]
fn public_url_comes_from_base_url_when_not_set_and_must_have_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\ntransport: {http: {base_url: 'https://mcp.example.com/'}}\n";
    let path = write(dir.path(), GATEWAY, user);
    assert_eq!(load(&path).unwrap().public_url, "https://mcp.example.com");

    let path = write(
        dir.path(),
        &format!("{GATEWAY}public_url: https://x.example.com/prefix\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("public_url"), "{err}");
}

#[test]
fn missing_mxcp_config_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxgate.yml");
    fs::write(&path, GATEWAY).unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxcp.yml"), "{err}");
}

#[test]
fn verifier_mode_is_refused_with_a_reason() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), GATEWAY, &oidc_user_config("          mode: verifier\n"));
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("auth.mode") && err.contains("issuer"), "{err}");
}

#[test]
fn hs256_needs_a_long_secret() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
    let path = write(
        dir.path(),
        &format!("{GATEWAY}assertion: {{algorithm: HS256, secret: short}}\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("assertion.secret") && err.contains("32"), "{err}");
}

#[test]
fn provider_overrides_replace_real_endpoints_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects:\n  p:\n    profiles:\n      default:\n        auth:\n          provider: github\n          github: {client_id: c, client_secret: s, callback_path: /callback, auth_url: 'http://127.0.0.1:9/login/oauth/authorize', token_url: 'http://127.0.0.1:9/login/oauth/access_token'}\n";
    let path = write(dir.path(), GATEWAY, user);
    let settings = load(&path).unwrap();
    assert_eq!(
        settings.auth.endpoints.get("api_url"),
        Some("https://api.github.com"),
        "the real default"
    );

    let path = write(
        dir.path(),
        &format!("{GATEWAY}provider_overrides: {{github: {{api_url: 'http://127.0.0.1:9500/'}}}}\n"),
        user,
    );
    assert_eq!(
        load(&path).unwrap().auth.endpoints.get("api_url"),
        Some("http://127.0.0.1:9500")
    );

    let path = write(
        dir.path(),
        &format!("{GATEWAY}provider_overrides: {{github: {{apiurl: 'http://x'}}}}\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(
        err.contains("provider_overrides.github.apiurl") && err.contains("api_url"),
        "{err}"
    );

    let path = write(
        dir.path(),
        &format!("{GATEWAY}provider_overrides: {{gitlab: {{api_url: 'http://x'}}}}\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("provider_overrides") && err.contains("gitlab"), "{err}");
}

#[test]
fn loading_from_text_reads_no_file_and_looks_up_no_host() {
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
    let settings = load_from_texts(GATEWAY, user).unwrap();
    assert_eq!(settings.upstream.host_header, "127.0.0.1:18001");

    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    fs::write(&secret, "0123456789abcdef0123456789abcdef").unwrap();
    let gateway = format!(
        "{GATEWAY}assertion: {{algorithm: HS256, secret: 'file://{}'}}\n",
        secret.display()
    );
    let path = write(dir.path(), &gateway, user);
    load(&path).expect("from files, file:// is read");
    let err = load_from_texts(&gateway, user).unwrap_err().to_string();
    assert!(err.contains("assertion.secret") && err.contains("file://"), "{err}");

    let vault = "mxcp: 1\nvault: {enabled: true, address: 'http://127.0.0.1:9'}\nprojects: {p: {profiles: {default: {auth: {provider: github, github: {client_id: 'vault://secret/gh#id', client_secret: s, callback_path: /cb, auth_url: u, token_url: t}}}}}}\n";
    let err = load_from_texts(GATEWAY, vault).unwrap_err().to_string();
    assert!(err.contains("client_id") && err.contains("vault://"), "{err}");

    let named = GATEWAY.replace("http://127.0.0.1:18001", "http://localhost:18001");
    let err = load_from_texts(&named, user).unwrap_err().to_string();
    assert!(err.contains("upstream") && err.contains("not looked up"), "{err}");
}

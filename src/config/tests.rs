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
fn a_short_encryption_key_is_refused_naming_the_key_and_a_fernet_key_is_accepted() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let persistence = |key: &str| {
        format!("          persistence:\n            type: sqlite\n            auth_encryption_key: \"{key}\"\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), GATEWAY, &oidc_user_config(&persistence("my-password-1234")));
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxcp.yml"), "{err}");
    assert!(
        err.contains("projects.demo.profiles.default.auth.persistence.auth_encryption_key"),
        "{err}"
    );
    assert!(
        err.contains("openssl rand -base64 32") && !err.contains("my-password-1234"),
        "{err}"
    );

    let fernet = "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=";
    let path = write(dir.path(), GATEWAY, &oidc_user_config(&persistence(fernet)));
    let settings = load(&path).unwrap();
    assert_eq!(settings.auth.encryption_key.as_ref().map(|k| k.expose()), Some(fernet));
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
fn assume_email_verified_is_per_configured_provider_and_refuses_other_names() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let user = oidc_user_config("").replace(
        "callback_path: /callback\n",
        "callback_path: /callback\n            provider_name: entra\n",
    );
    let extra = "extra_providers:\n\
        - {provider: google, google: {client_id: g, client_secret: s, scope: email, callback_path: /google/callback, auth_url: 'https://accounts.google.com/o/oauth2/v2/auth', token_url: 'https://oauth2.googleapis.com/token'}}\n\
        - {provider: github, github: {client_id: c, client_secret: s, callback_path: /github/callback, auth_url: 'https://github.com/login/oauth/authorize', token_url: 'https://github.com/login/oauth/access_token'}}\n";
    let gateway = |setting: &str| format!("{GATEWAY}{extra}{setting}");

    let settings = load(&write(dir.path(), &gateway(""), &user)).unwrap();
    let expected = [("entra".to_string(), false), ("google".to_string(), false)];
    assert_eq!(
        settings.auth.assume_email_verified,
        expected.into(),
        "default: not verified"
    );
    assert!(!settings.auth.assumes_email_verified("entra"));

    let path = write(dir.path(), &gateway("assume_email_verified: {entra: 'true'}\n"), &user);
    let settings = load(&path).unwrap();
    assert!(settings.auth.assumes_email_verified("entra"));
    assert!(!settings.auth.assumes_email_verified("google"));
    let printed = serde_yaml::to_string(&settings).unwrap();
    assert!(
        printed.contains("assume_email_verified:\n    entra: true\n    google: false\n"),
        "`mxgate check` shows it: {printed}"
    );

    for (setting, expected) in [
        (
            "{oidc: true}",
            ["assume_email_verified.oidc", "configured: entra, google, github"],
        ),
        ("{github: true}", ["assume_email_verified.github", "does not apply"]),
        ("{entra: maybe}", ["assume_email_verified.entra", "maybe"]),
    ] {
        let path = write(
            dir.path(),
            &gateway(&format!("assume_email_verified: {setting}\n")),
            &user,
        );
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("mxgate.yml"), "{err}");
        for part in expected {
            assert!(err.contains(part), "{setting}: {err}");
        }
    }
}

#[test]
fn forward_auth_is_off_by_default_and_its_path_is_checked() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let load_with = |extra: &str, user: &str| load(&write(dir.path(), &format!("{GATEWAY}{extra}"), user));
    let oidc = oidc_user_config("");
    assert_eq!(load_with("", &oidc).unwrap().forward_auth_path, None);
    assert_eq!(
        load_with("forward_auth: {enabled: \"true\"}\n", &oidc)
            .unwrap()
            .forward_auth_path
            .as_deref(),
        Some("/_mxgate/forward-auth")
    );
    let custom = load_with("forward_auth: {enabled: true, path: /auth/check}\n", &oidc).unwrap();
    assert_eq!(custom.forward_auth_path.as_deref(), Some("/auth/check"));
    for bad in ["auth", "/auth?x=1", "/mcp", "/a b"] {
        let err = load_with(&format!("forward_auth: {{enabled: true, path: \"{bad}\"}}\n"), &oidc)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("forward_auth.path") && err.contains("mxgate.yml"),
            "{bad}: {err}"
        );
    }
    let none = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
    let err = load_with("forward_auth: {enabled: true}\n", none)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("forward_auth.enabled") && err.contains("provider: none"),
        "{err}"
    );
    let err = load_with("forward_auth: {enabled: true, pth: /x}\n", &oidc)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pth"), "{err}");
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

#[test]
fn admin_listen_is_read_and_needs_its_own_port() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), GATEWAY, &oidc_user_config(""));
    assert_eq!(load(&path).unwrap().admin_listen, None, "off unless set");
    let gateway = format!("{GATEWAY}admin_listen: 127.0.0.1:19464\n");
    let path = write(dir.path(), &gateway, &oidc_user_config(""));
    assert_eq!(
        load(&path).unwrap().admin_listen,
        Some("127.0.0.1:19464".parse().unwrap())
    );
    for taken in ["127.0.0.1:18000", "0.0.0.0:18000"] {
        let gateway = format!("{GATEWAY}admin_listen: {taken}\n");
        let path = write(dir.path(), &gateway, &oidc_user_config(""));
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("admin_listen") && err.contains("its own port"), "{err}");
    }
    let gateway = format!("{GATEWAY}admin_listen: not-an-address\n");
    let path = write(dir.path(), &gateway, &oidc_user_config(""));
    assert!(load(&path).unwrap_err().to_string().contains("admin_listen"));
}

#[test]
fn a_misspelled_gateway_key_is_reported_before_the_mxcp_config_is_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxgate.yml");
    // No mxcp.yml at all: the misspelling is what is reported.
    fs::write(&path, "listen: 127.0.0.1:18000\nupstrem: http://127.0.0.1:18001\n").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxgate.yml"), "{err}");
    assert!(err.contains("unknown key `upstrem`; did you mean `upstream`?"), "{err}");
    assert!(!err.contains("config.yml"), "{err}");
}

#[test]
fn a_misspelled_nested_gateway_key_suggests_the_nearest_known_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{GATEWAY}store:\n  purge_intervall: 5m\n"),
        "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n",
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("`store.purge_intervall`"), "{err}");
    assert!(err.contains("did you mean `purge_interval`?"), "{err}");
}

#[test]
fn a_reference_in_a_typed_value_does_not_count_as_a_schema_error_before_it_is_resolved() {
    // `${MXGATE_TEST_ACCESS_TTL}` is no duration until it is resolved.
    std::env::set_var("MXGATE_TEST_ACCESS_TTL", "2m");
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        &format!("{GATEWAY}tokens: {{access_token_ttl: '${{MXGATE_TEST_ACCESS_TTL}}'}}\n"),
        "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n",
    );
    assert_eq!(load(&path).unwrap().tokens.access_token.as_secs(), 120);
}

#[test]
fn a_file_that_cannot_be_read_names_its_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(&dir.path().join("absent.yml")).unwrap_err();
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("absent.yml"), "{chain}");
    assert_eq!(chain.matches("os error 2").count(), 1, "{chain}");
}

#[test]
fn backchannel_logout_is_for_configured_openid_providers_on_their_own_paths() {
    std::env::set_var("MXGATE_TEST_OIDC_SECRET", "x");
    let dir = tempfile::tempdir().unwrap();
    let load_with = |extra: &str| {
        let path = write(dir.path(), &format!("{GATEWAY}{extra}"), &oidc_user_config(""));
        load(&path)
    };
    let settings = load_with("").unwrap();
    assert!(settings.backchannel_logout.is_empty(), "off by default");

    let settings = load_with("backchannel_logout:\n  oidc:\n").unwrap();
    assert_eq!(
        settings.backchannel_logout,
        [BackchannelLogout {
            provider: "oidc".into(),
            path: "/backchannel-logout/oidc".into()
        }]
    );
    let settings = load_with("backchannel_logout: {oidc: {path: /idp/logout}}\n").unwrap();
    assert_eq!(settings.backchannel_logout[0].path, "/idp/logout");

    for (extra, expected) in [
        (
            "backchannel_logout: {github: {}}\n",
            "no configured provider is named `github`",
        ),
        (
            "backchannel_logout: {oidc: {path: idp/logout}}\n",
            "must be a path starting with `/`",
        ),
        (
            "backchannel_logout: {oidc: {path: /callback}}\n",
            "already another endpoint's",
        ),
        (
            "backchannel_logout: {oidc: {path: /mcp}}\n",
            "already another endpoint's",
        ),
        ("backchannel_logout: {oidc: {pth: /x}}\n", "did you mean `path`?"),
    ] {
        let err = load_with(extra).unwrap_err().to_string();
        assert!(err.contains(expected), "{extra}: {err}");
        assert!(
            err.contains("backchannel_logout.oidc") || err.contains("backchannel_logout.github"),
            "{err}"
        );
    }
}

#[test]
fn backchannel_logout_is_refused_for_a_provider_without_logout_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {auth: {provider: github, github: {client_id: c, client_secret: s, callback_path: /cb, auth_url: 'https://github.com/login/oauth/authorize', token_url: 'https://github.com/login/oauth/access_token'}}}}}}\n";
    let path = write(
        dir.path(),
        &format!("{GATEWAY}backchannel_logout: {{github: {{}}}}\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("not an OpenID Connect provider"), "{err}");
}

#[test]
fn a_wrong_type_or_missing_key_in_mxgate_yml_is_reported_before_the_mxcp_config_is_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mxgate.yml");
    fs::write(
        &path,
        "upstream: http://127.0.0.1:1\nthreads: many\nmxcp_config: absent.yml\n",
    )
    .unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("mxgate.yml: `threads`"), "{err}");
    fs::write(&path, "listen: 127.0.0.1:1\nmxcp_config: absent.yml\n").unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("missing field `upstream`"), "{err}");
    // A reference's value has no type before it is resolved: then the MXCP config comes first.
    fs::write(
        &path,
        "upstream: http://127.0.0.1:1\nthreads: '${MXGATE_TEST_NO_SUCH_VAR}'\nmxcp_config: absent.yml\n",
    )
    .unwrap();
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("absent.yml"), "{err}");
}

#[test]
fn work_stealing_follows_the_thread_count_unless_set() {
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
    let gateway = "project: p\nprofile: default\nupstream: http://127.0.0.1:8001\n";
    let load = |extra: &str| crate::config::load_from_texts(&format!("{gateway}{extra}"), user);
    // Several threads: on, so that pooled upstream connections are not handed between threads.
    assert!(load("threads: 2\n").unwrap().work_stealing);
    assert!(!load("threads: 1\n").unwrap().work_stealing);
    assert!(!load("threads: 4\nwork_stealing: false\n").unwrap().work_stealing);
    assert!(load("threads: 1\nwork_stealing: true\n").unwrap().work_stealing);
    let err = load("work_stealing: sometimes\n").unwrap_err().to_string();
    assert!(err.contains("work_stealing"), "{err}");
}

#[test]
fn key_rotation_timings_have_defaults_and_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let user = "mxcp: 1\nprojects: {p: {profiles: {default: {}}}}\n";
    let settings = load(&write(dir.path(), GATEWAY, user)).unwrap();
    let rotation = settings.assertion.key_rotation;
    assert_eq!(rotation.publish_before, std::time::Duration::from_secs(420));
    assert_eq!(rotation.overlap, std::time::Duration::from_secs(600));

    let path = write(
        dir.path(),
        &format!("{GATEWAY}assertion: {{key_rotation: {{publish_before: 3s, overlap: 8s}}}}\n"),
        user,
    );
    let rotation = load(&path).unwrap().assertion.key_rotation;
    assert_eq!(rotation.publish_before, std::time::Duration::from_secs(3));
    assert_eq!(rotation.overlap, std::time::Duration::from_secs(8));

    let path = write(
        dir.path(),
        &format!("{GATEWAY}assertion: {{key_rotation: {{overlap: 0s}}}}\n"),
        user,
    );
    let err = load(&path).unwrap_err().to_string();
    assert!(err.contains("assertion.key_rotation.overlap"), "{err}");
}

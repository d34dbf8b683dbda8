//! Runs the `mxgate` binary: `check` accepts a good configuration and prints it with secrets
//! redacted, refuses a bad one naming the key and file; `serve` with `provider: none` is a plain
//! pass-through that still strips forged identity headers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn mxgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mxgate"))
}

fn write_config(
    dir: &Path,
    gateway_extra: &str,
    auth: &str,
    listen_port: u16,
    upstream_port: u16,
) -> std::path::PathBuf {
    std::fs::write(
        dir.join("mxcp.yml"),
        format!("mxcp: 1\nprojects:\n  demo:\n    profiles:\n      default:\n        auth:\n{auth}"),
    )
    .unwrap();
    let path = dir.join("mxgate.yml");
    std::fs::write(
        &path,
        format!("listen: 127.0.0.1:{listen_port}\nupstream: http://127.0.0.1:{upstream_port}\nmxcp_config: mxcp.yml\nthreads: 1\n{gateway_extra}"),
    )
    .unwrap();
    path
}

const OIDC_AUTH: &str = "          provider: oidc\n          oidc:\n            config_url: http://127.0.0.1:1/.well-known/openid-configuration\n            client_id: mxgate\n            client_secret: \"${MXGATE_CLI_TEST_SECRET}\"\n            scope: openid email\n            callback_path: /callback\n";

#[test]
fn check_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", OIDC_AUTH, 18080, 18081);
    let out = mxgate()
        .args(["check", "--config"])
        .arg(&config)
        .env("MXGATE_CLI_TEST_SECRET", "top-secret-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("provider: oidc"), "{stdout}");
    assert!(stdout.contains("***redacted***"), "{stdout}");
    assert!(!stdout.contains("top-secret-value"), "{stdout}");
}

#[test]
fn check_refuses_a_misspelled_key_and_an_unset_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", &OIDC_AUTH.replace("scope:", "scopes:"), 18082, 18083);
    let out = mxgate()
        .args(["check", "--config"])
        .arg(&config)
        .env("MXGATE_CLI_TEST_SECRET", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("scopes") && stderr.contains("mxcp.yml"), "{stderr}");

    let out = mxgate()
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("MXGATE_CLI_TEST_SECRET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("MXGATE_CLI_TEST_SECRET"), "{stderr}");
}

#[test]
fn check_refuses_a_policy_that_does_not_compile_naming_rule_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let run = |policies: &str| {
        let config = write_config(dir.path(), policies, OIDC_AUTH, 18090, 18091);
        let out = mxgate()
            .args(["check", "--config"])
            .arg(&config)
            .env("MXGATE_CLI_TEST_SECRET", "x")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    let (code, stderr) = run(
        "policies:\n  - {condition: \"user.role == 'admin'\", action: allow}\n  - {condition: \"user.email.endsWith(\", action: deny}\n",
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("mxgate.yml") && stderr.contains("policies[1].condition"),
        "{stderr}"
    );
    assert!(stderr.contains("does not compile: line 1, column"), "{stderr}");
    let (code, stderr) = run("policies:\n  - {condition: 'true', action: block}\n");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("policies[0].action") && stderr.contains("block"),
        "{stderr}"
    );
    let (code, stderr) = run("policies:\n  - {condition: \"user.role == 'admin'\", action: allow}\n");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn check_refuses_a_short_encryption_key() {
    let dir = tempfile::tempdir().unwrap();
    let persistence = |key: &str| {
        format!(
            "{OIDC_AUTH}          persistence:\n            type: sqlite\n            auth_encryption_key: \"{key}\"\n"
        )
    };
    let check = |auth: &str| {
        let config = write_config(dir.path(), "", auth, 18084, 18085);
        mxgate()
            .args(["check", "--config"])
            .arg(&config)
            .env("MXGATE_CLI_TEST_SECRET", "x")
            .output()
            .unwrap()
    };
    let out = check(&persistence("short-key"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.persistence.auth_encryption_key"), "{stderr}");
    assert!(stderr.contains("openssl rand -base64 32"), "{stderr}");

    let out = check(&persistence("ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg="));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn config_file_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "", "          provider: none\n", 18084, 18085);
    let out = mxgate().arg("check").env("MXGATE_CONFIG", &config).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mxgate did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Answers one request with 200 and returns the request head it received.
fn record_one_request(listener: TcpListener) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            .unwrap();
        head
    })
}

fn http_get(port: u16, path: &str, headers: &str) -> String {
    http_get_as(port, &format!("gateway.example:{port}"), path, headers)
}

fn http_get_as(port: u16, host: &str, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\n{headers}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn provider_none_passes_through_but_strips_forged_identity_headers() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let port = free_port();
    let allowed = "allowed_hosts: [gateway.example]\nallowed_origins: [https://app.example]\n";
    let config = write_config(dir.path(), allowed, "          provider: none\n", port, upstream_port);
    let _server = Server(
        mxgate()
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port);
    let health = http_get(port, "/healthz", "");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // Even without authentication, DNS rebinding is refused before the core.
    let foreign = http_get_as(port, "evil.example", "/mcp", "");
    assert!(foreign.starts_with("HTTP/1.1 421"), "{foreign}");
    let cross_site = http_get(port, "/mcp", "origin: https://evil.example\r\n");
    assert!(cross_site.starts_with("HTTP/1.1 403"), "{cross_site}");

    let recorded = record_one_request(upstream);
    let resp = http_get(
        port,
        "/mcp?x=1",
        "x-mxcp-user-assertion: forged\r\nX_MXCP_USER_EMAIL: evil@example.test\r\norigin: https://app.example\r\nauthorization: Bearer passthrough\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let head = recorded.join().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /mcp?x=1 http/1.1"), "{head}");
    assert!(head.contains(&format!("host: 127.0.0.1:{upstream_port}")), "{head}");
    assert!(!head.contains("x-mxcp-user") && !head.contains("x_mxcp_user"), "{head}");
    assert!(!head.contains("origin:"), "{head}");
    assert!(head.contains("x-forwarded-for: 127.0.0.1"), "{head}");
    assert!(
        head.contains(&format!("x-forwarded-host: gateway.example:{port}")),
        "{head}"
    );
    assert!(
        head.contains("authorization: bearer passthrough"),
        "no auth: the header is not mxgate's"
    );
}

#[test]
fn serve_refuses_to_start_on_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "store: {type: postgres}\n",
        "          provider: none\n",
        18086,
        18087,
    );
    let out = mxgate().args(["serve", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("store.type") && stderr.contains("postgres"), "{stderr}");
}

#[test]
fn check_reports_a_misspelled_key_with_a_suggestion_before_looking_for_the_mxcp_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mxgate.yml");
    std::fs::write(&config, "upstrem: http://127.0.0.1:1\ntokens:\n  acess_token_ttl: 1h\n").unwrap();
    let out = mxgate()
        .args(["check", "--config"])
        .arg(&config)
        .env("HOME", dir.path())
        .env_remove("MXCP_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("unknown key `upstrem`; did you mean `upstream`?"),
        "{stderr}"
    );
    assert!(!stderr.contains(".mxcp"), "{stderr}");

    std::fs::write(
        &config,
        "upstream: http://127.0.0.1:1\ntokens:\n  acess_token_ttl: 1h\n",
    )
    .unwrap();
    let out = mxgate().args(["check", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`tokens.acess_token_ttl`"), "{stderr}");
    assert!(stderr.contains("did you mean `access_token_ttl`?"), "{stderr}");
}

#[test]
fn check_names_an_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mxgate.yml");
    std::fs::write(&config, "upstream: http://127.0.0.1:1\nmxcp_config: absent.yml\n").unwrap();
    let out = mxgate().args(["check", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("absent.yml"), "{stderr}");
    assert_eq!(stderr.matches("os error 2").count(), 1, "{stderr}");
}

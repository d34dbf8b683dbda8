//! Runs `mxgate healthcheck`, the container image's health check: exit 0 for a 2xx answer, 1 for
//! any other status, a refused connection or a server that does not answer in time.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

fn healthcheck(url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mxgate"))
        .args(["healthcheck", "--timeout", "2s", "--url", url])
        .env_remove("MXGATE_HEALTHCHECK_URL")
        .output()
        .expect("run mxgate healthcheck")
}

/// A server that answers one request with `status_line`, or never answers when it is `None`.
fn one_shot_server(status_line: Option<&'static str>) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/healthz", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        match status_line {
            Some(status) => {
                let body = "ok";
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            None => std::thread::sleep(Duration::from_secs(4)),
        }
        String::from_utf8_lossy(&request).into_owned()
    });
    (url, handle)
}

#[test]
fn a_2xx_answer_is_healthy() {
    let (url, server) = one_shot_server(Some("200 OK"));
    let out = healthcheck(&url);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let request = server.join().expect("server");
    assert!(request.starts_with("GET /healthz HTTP/1.1\r\n"), "{request}");
}

#[test]
fn an_error_status_is_unhealthy_with_exit_1() {
    let (url, server) = one_shot_server(Some("503 Service Unavailable"));
    let out = healthcheck(&url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("503"), "{stderr}");
    server.join().expect("server");
}

#[test]
fn a_redirect_is_not_followed_and_is_unhealthy() {
    let (url, server) = one_shot_server(Some("302 Found\r\nlocation: http://127.0.0.1:1/"));
    let out = healthcheck(&url);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    server.join().expect("server");
}

#[test]
fn nothing_listening_is_unhealthy_with_exit_1() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let out = healthcheck(&format!("http://127.0.0.1:{port}/healthz"));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_server_that_does_not_answer_is_unhealthy_after_the_timeout() {
    let (url, _server) = one_shot_server(None);
    let started = Instant::now();
    let out = healthcheck(&url);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
}

//! A real `redis-server` for the tests: its own port and folder, stopped when dropped. The tests
//! that need it fail with what to install when it is missing (`scripts/setup.sh` installs
//! Debian's `redis-server`); `MXGATE_SKIP_REDIS_TESTS=1` skips them, loudly.

use crate::config::{RedisSettings, RedisTopology};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRedis {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

// === impl TestRedis ===

impl TestRedis {
    /// A fresh server, or `None` when the tests are told to skip Redis.
    pub fn start() -> Option<Self> {
        if std::env::var_os("MXGATE_SKIP_REDIS_TESTS").is_some() {
            eprintln!("MXGATE_SKIP_REDIS_TESTS is set: skipping a test against a real Redis");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("`redis-server` not found: install it (scripts/setup.sh does) or set MXGATE_SKIP_REDIS_TESTS=1");
        let server = Self { child, port, _dir: dir };
        server.wait_ready();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn settings(&self, key_prefix: &str) -> RedisSettings {
        RedisSettings {
            topology: RedisTopology::Single { url: self.url() },
            key_prefix: key_prefix.into(),
            password: None,
            outage_grace: std::time::Duration::from_secs(60),
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not start", self.port);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

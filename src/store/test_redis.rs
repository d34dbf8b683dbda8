//! Real Redis deployments for the tests, each on its own ports and folder, stopped when
//! dropped: one server, one server watched by a Sentinel, and a local 3-node Redis Cluster. The
//! tests that need them fail with what to install when `redis-server` is missing
//! (`scripts/setup.sh` installs Debian's `redis-server` and `redis-tools`);
//! `MXGATE_SKIP_REDIS_TESTS=1` skips them, loudly.

use crate::config::{RedisSettings, RedisTopology};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Redis processes and the topology that reaches them.
pub struct TestRedis {
    children: Vec<Child>,
    topology: RedisTopology,
    _dir: tempfile::TempDir,
}

// === impl TestRedis ===

impl TestRedis {
    /// One fresh server, or `None` when the tests are told to skip Redis.
    pub fn start() -> Option<Self> {
        let dir = skip_or_dir()?;
        let port = free_port();
        let child = server(dir.path(), port, &[]);
        wait_for_port(port);
        Some(Self {
            children: vec![child],
            topology: RedisTopology::Single {
                url: format!("redis://127.0.0.1:{port}/0"),
            },
            _dir: dir,
        })
    }

    /// One server speaking only TLS, with a certificate for `localhost` that no system trusts;
    /// also returns the certificate's PEM file (the CA to configure).
    pub fn start_tls() -> Option<(Self, std::path::PathBuf)> {
        let dir = skip_or_dir()?;
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("a test certificate");
        let (cert, key) = (dir.path().join("redis.crt"), dir.path().join("redis.key"));
        std::fs::write(&cert, generated.cert.pem()).expect("writing the certificate");
        std::fs::write(&key, generated.signing_key.serialize_pem()).expect("writing the key");
        let port = free_port();
        let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
        let child = server(
            dir.path(),
            0,
            &[
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert_arg,
                "--tls-key-file",
                &key_arg,
                "--tls-auth-clients",
                "no",
            ],
        );
        wait_for_port(port);
        let server = Self {
            children: vec![child],
            topology: RedisTopology::Single {
                url: format!("rediss://localhost:{port}/0"),
            },
            _dir: dir,
        };
        Some((server, cert))
    }

    /// A server and a Sentinel watching it as `mymaster`; clients find the server through the
    /// Sentinel.
    pub fn start_with_sentinel() -> Option<Self> {
        let dir = skip_or_dir()?;
        let (port, sentinel_port) = (free_port(), free_port());
        let primary = server(dir.path(), port, &[]);
        wait_for_port(port);
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {port} 1\n",
                dir.path().display()
            ),
        )
        .expect("writing sentinel.conf");
        let sentinel = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting redis-server --sentinel");
        wait_for_port(sentinel_port);
        Some(Self {
            children: vec![primary, sentinel],
            topology: RedisTopology::Sentinel {
                urls: vec![format!("redis://127.0.0.1:{sentinel_port}")],
                service: "mymaster".into(),
            },
            _dir: dir,
        })
    }

    /// Three cluster nodes, each holding a third of the slots (`redis-cli --cluster create`).
    pub fn start_cluster() -> Option<Self> {
        let dir = skip_or_dir()?;
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut children = Vec::new();
        for port in &ports {
            let node_dir = dir.path().join(port.to_string());
            std::fs::create_dir_all(&node_dir).expect("node dir");
            // The bus port is set, not port + 10000 (which may not exist above port 55535).
            let bus_port = free_port().to_string();
            children.push(server(
                &node_dir,
                *port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus_port,
                ],
            ));
            wait_for_port(*port);
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("`redis-cli` not found: install redis-tools (scripts/setup.sh does)");
        assert!(created.success(), "redis-cli --cluster create failed");
        let ready = Instant::now() + Duration::from_secs(20);
        while !ports.iter().all(|p| cluster_ok(*p)) {
            assert!(
                Instant::now() < ready,
                "the test cluster did not reach cluster_state:ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Self {
            children,
            topology: RedisTopology::Cluster {
                urls: ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect(),
            },
            _dir: dir,
        })
    }

    pub fn settings(&self, key_prefix: &str) -> RedisSettings {
        RedisSettings {
            topology: self.topology.clone(),
            key_prefix: key_prefix.into(),
            password: None,
            ca_file: None,
            outage_grace: Duration::from_secs(60),
        }
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A temp dir, or `None` when Redis tests are to be skipped.
fn skip_or_dir() -> Option<tempfile::TempDir> {
    if std::env::var_os("MXGATE_SKIP_REDIS_TESTS").is_some() {
        eprintln!("MXGATE_SKIP_REDIS_TESTS is set: skipping a test against a real Redis");
        return None;
    }
    Some(tempfile::tempdir().expect("temp dir"))
}

/// A `redis-server` on `port` keeping nothing on disk, with `extra` arguments.
fn server(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("`redis-server` not found: install it (scripts/setup.sh does) or set MXGATE_SKIP_REDIS_TESTS=1")
}

fn cluster_ok(port: u16) -> bool {
    Command::new("redis-cli")
        .args(["-p", &port.to_string(), "cluster", "info"])
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not start");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

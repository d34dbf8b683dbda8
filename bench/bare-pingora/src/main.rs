//! The bare Pingora proxy of mxgate's benchmark: Pingora's HTTP proxy with only `upstream_peer`
//! (one upstream, pooled keep-alive connections), the floor under mxgate's proxy path.
//!
//! usage: bare-pingora <listen address> <upstream address> <worker threads>

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The same allocator as mxgate, so that the difference between the two rows is mxgate's code.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The upstream of every request; Pingora pools its connections (keep-alive) per peer.
struct BareProxy {
    upstream: SocketAddr,
}

// === impl BareProxy ===

#[async_trait]
impl ProxyHttp for BareProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut Self::CTX) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        // As mxgate's peer: pooled connections are dropped after 3 s idle.
        peer.options.idle_timeout = Some(Duration::from_secs(3));
        Ok(Box::new(peer))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, threads] = args.as_slice() else {
        eprintln!("usage: bare-pingora <listen address> <upstream address> <worker threads>");
        return ExitCode::from(2);
    };
    let (Ok(upstream), Ok(threads)) = (upstream.parse::<SocketAddr>(), threads.parse::<usize>()) else {
        eprintln!("bare-pingora: bad upstream address {upstream:?} or thread count {threads:?}");
        return ExitCode::from(2);
    };
    // The pid file and upgrade socket in the working directory (the bench's temp dir), not /tmp.
    let here = std::env::current_dir().unwrap_or_default();
    let conf = ServerConf {
        threads,
        pid_file: here.join("bare-pingora.pid").display().to_string(),
        upgrade_sock: here.join("bare-pingora-upgrade.sock").display().to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, BareProxy { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever()
}

//! `forwarded_view`: `ProxyTrust::view(peer, headers)`, what mxgate believes about a request
//! (client address, scheme, host), from any headers and peer (format: `fuzz/src/lib.rs`).
//!
//! Invariants: no panic; unless the peer is a trusted proxy and `trust_proxy` is on, the view is
//! the peer's own (client address the peer, nothing forwarded believed); the `X-Forwarded-For`
//! to send is a list of IP addresses ending with the peer; the scheme is `http` or `https`; the
//! host contains no `/`, `@`, whitespace or control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::fuzz_api::ProxyTrust;
use mxgate_fuzz::{trusted_proxies, Scenario};
use std::net::IpAddr;

fuzz_target!(|data: &[u8]| {
    let scenario = Scenario::parse(data);
    let trusted = trusted_proxies();
    let trust = ProxyTrust::new(scenario.trust_proxy, trusted.clone());
    let view = trust.view(scenario.peer, &scenario.header_map());

    let peer_trusted = scenario.trust_proxy
        && scenario
            .peer
            .is_some_and(|p| trusted.iter().any(|net| net.contains(&p)));
    if !peer_trusted {
        assert_eq!(view.client_ip, scenario.peer, "untrusted peer: the client is the peer");
        assert!(!view.via_trusted_proxy);
        assert_eq!(view.forwarded_proto, None, "untrusted peer: no forwarded scheme");
        assert_eq!(view.forwarded_for, scenario.peer.map(|p| p.to_string()));
    }
    assert_eq!(view.client_ip.is_some(), scenario.peer.is_some());
    match (&view.forwarded_for, scenario.peer) {
        (Some(chain), Some(peer)) => {
            let hops: Vec<&str> = chain.split(", ").collect();
            for hop in &hops {
                assert!(
                    hop.parse::<IpAddr>().is_ok(),
                    "X-Forwarded-For hop {hop:?} in {chain:?}"
                );
            }
            assert_eq!(hops.last().copied(), Some(peer.to_string().as_str()));
        }
        (None, None) => {}
        (chain, peer) => panic!("X-Forwarded-For {chain:?} for peer {peer:?}"),
    }
    if let Some(proto) = &view.forwarded_proto {
        assert!(proto == "http" || proto == "https", "scheme {proto:?}");
    }
    if let Some(host) = &view.host {
        assert!(
            !host.is_empty()
                && !host
                    .chars()
                    .any(|c| c == '/' || c == '@' || c.is_whitespace() || c.is_control()),
            "host {host:?}"
        );
    }
});

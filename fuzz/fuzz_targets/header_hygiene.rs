//! `header_hygiene`: a client's request in, the request mxgate sends to the core out
//! (`clean_for_upstream`, the cleaning of `upstream_request_filter`), from any headers and peer
//! (format: `fuzz/src/lib.rs`). Checked on the HTTP/1 wire form the core receives.
//!
//! Invariant: no client identity header survives. No header whose name, lower-cased with `_`
//! read as `-`, starts with `x-mxcp-user`; no `authorization` and none of mxgate's cookies when
//! authentication is on; no `origin`; exactly one `host`, the core's; and of `forwarded`,
//! `x-real-ip` and `x-forwarded-*` (same reading of names) only the values mxgate sets, once each.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxgate::fuzz_api::{clean_for_upstream, ProxyTrust, RequestHeader};
use mxgate_fuzz::{normalized, trusted_proxies, Scenario};

const IDENTITY_PREFIX: &str = "x-mxcp-user";
const UPSTREAM_HOST: &str = "127.0.0.1:8001";
const PUBLIC_SCHEME: &str = "https";

fuzz_target!(|data: &[u8]| {
    let scenario = Scenario::parse(data);
    let mut request = RequestHeader::build("POST", b"/mcp", None).expect("a request line");
    for (name, value) in &scenario.headers {
        // Names and values were checked by the parser; a refusal here means no such request.
        if request.append_header(name.clone(), value.clone()).is_err() {
            return;
        }
    }
    let view = ProxyTrust::new(scenario.trust_proxy, trusted_proxies()).view(scenario.peer, &request.headers);
    if clean_for_upstream(&mut request, &view, scenario.auth_enabled, PUBLIC_SCHEME, UPSTREAM_HOST).is_err() {
        return; // the request fails; nothing reaches the core
    }

    let mut wire = Vec::new();
    request.header_to_h1_wire(&mut wire);
    // (name as the core may read it, name as sent, value)
    let sent: Vec<(String, String, &[u8])> = wire
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(|line| {
            let colon = line
                .windows(2)
                .position(|w| w == b": ")
                .expect("`name: value` on the wire");
            let raw = String::from_utf8_lossy(&line[..colon]).into_owned();
            (normalized(&line[..colon]), raw, &line[colon + 2..])
        })
        .collect();

    let expected: Vec<(&str, String)> = [
        ("x-forwarded-for", view.forwarded_for.clone()),
        ("x-real-ip", view.client_ip.map(|ip| ip.to_string())),
        (
            "x-forwarded-proto",
            Some(view.forwarded_proto.clone().unwrap_or_else(|| PUBLIC_SCHEME.into())),
        ),
        ("x-forwarded-host", view.host.clone()),
        ("host", Some(UPSTREAM_HOST.into())),
    ]
    .into_iter()
    .filter_map(|(name, value)| Some((name, value?)))
    .collect();

    for (name, raw, value) in &sent {
        let shown = String::from_utf8_lossy(value);
        assert!(
            !name.starts_with(IDENTITY_PREFIX),
            "identity header {raw}: {shown:?} reached the core"
        );
        assert!(name != "origin", "origin reached the core");
        if scenario.auth_enabled {
            assert!(name != "authorization", "the client's Authorization reached the core");
            if name == "cookie" {
                for pair in shown.split(';') {
                    let cookie = pair.trim_start().split('=').next().unwrap_or_default();
                    let cookie = cookie.strip_prefix("__Host-").unwrap_or(cookie);
                    assert!(
                        !cookie.starts_with("mxgate-"),
                        "mxgate's cookie {cookie} reached the core"
                    );
                }
            }
        }
        let forwarded_family =
            name == "forwarded" || name == "x-real-ip" || name == "host" || name.starts_with("x-forwarded-");
        if forwarded_family {
            assert!(
                expected.iter().any(|(n, v)| n == name && v.as_bytes() == *value),
                "{raw}: {shown:?} reached the core, not set by mxgate (it sets {expected:?})"
            );
        }
    }
    for (name, value) in &expected {
        let copies = sent.iter().filter(|(n, _, _)| n == name).count();
        assert_eq!(copies, 1, "{copies} copies of {name} (mxgate sets {value:?})");
    }
});

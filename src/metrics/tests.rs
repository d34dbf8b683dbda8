use super::*;
use crate::session::test_support::{record, temp_store};
use crate::session::SessionRecord;
use crate::store::Table;

/// The value of the series written exactly as `series` (name and labels), if exported.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_series_is_exported_at_zero_from_start_up() {
    let m = Metrics::new();
    let text = m.encode();
    for series in [
        r#"mxgate_requests_total{route="mcp",status="200"}"#,
        r#"mxgate_requests_total{route="health",status="none"}"#,
        r#"mxgate_authentications_total{outcome="ok",reason="ok"}"#,
        r#"mxgate_authentications_total{outcome="denied",reason="missing_token"}"#,
        r#"mxgate_authentications_total{outcome="error",reason="store_unavailable"}"#,
        r#"mxgate_logins_total{provider="other",result="ok"}"#,
        r#"mxgate_provider_refreshes_total{provider="other",result="rejected"}"#,
        r#"mxgate_rate_limited_total{limit="register_per_address"}"#,
        r#"mxgate_rate_limited_total{limit="token_per_client"}"#,
        r#"mxgate_tokens_revoked_total{kind="session"}"#,
        "mxgate_tokens_issued_total",
        "mxgate_tokens_refreshed_total",
        "mxgate_assertions_minted_total",
        "mxgate_active_sessions",
        r#"mxgate_upstream_duration_seconds_bucket{le="+Inf"}"#,
        "mxgate_upstream_duration_seconds_count",
        r#"mxgate_store_duration_seconds_count{op="get"}"#,
    ] {
        assert_eq!(value(&text, series), Some(0.0), "{series} in\n{text}");
    }
    assert_eq!(value(&text, r#"mxgate_build_info{version="0.1.0"}"#), Some(1.0));
    assert!(
        !text.contains("register_per_client"),
        "no series for a limit that does not exist"
    );
    assert!(text.contains("# TYPE mxgate_upstream_duration_seconds histogram"));
}

#[test]
fn handles_move_when_events_are_recorded() {
    let m = Metrics::new();
    m.register_providers(["github", "corp-sso"]);
    m.request(RouteClass::Mcp, 200);
    m.request(RouteClass::Mcp, 200);
    m.request(RouteClass::Mcp, 401);
    m.request(RouteClass::OAuth, 429);
    m.request(RouteClass::Other, 418);
    m.request(RouteClass::Health, 0);
    m.authentication(AuthReason::Ok);
    m.authentication(AuthReason::Expired);
    m.login("github", LoginResult::Ok);
    m.login("corp-sso", LoginResult::Denied);
    m.login("someone-else", LoginResult::Failed);
    m.provider_refresh("github", RefreshResult::Rejected);
    m.rate_limited(Endpoint::Token, LimitScope::PerClient);
    m.rate_limited(Endpoint::Register, LimitScope::PerAddress);
    m.assertion_minted();
    m.token_issued();
    m.token_refreshed();
    m.revoked(Revoked::AccessToken);
    m.set_active_sessions(7);
    m.upstream_duration(Duration::from_millis(3));
    m.store_duration(StoreOp::Take, Duration::from_micros(50));
    let text = m.encode();
    let expect = [
        (r#"mxgate_requests_total{route="mcp",status="200"}"#, 2.0),
        (r#"mxgate_requests_total{route="mcp",status="401"}"#, 1.0),
        (r#"mxgate_requests_total{route="oauth",status="429"}"#, 1.0),
        (r#"mxgate_requests_total{route="other",status="4xx"}"#, 1.0),
        (r#"mxgate_requests_total{route="health",status="none"}"#, 1.0),
        (r#"mxgate_requests_total{route="oauth",status="200"}"#, 0.0),
        (r#"mxgate_authentications_total{outcome="ok",reason="ok"}"#, 1.0),
        (
            r#"mxgate_authentications_total{outcome="denied",reason="expired"}"#,
            1.0,
        ),
        (r#"mxgate_logins_total{provider="github",result="ok"}"#, 1.0),
        (r#"mxgate_logins_total{provider="corp-sso",result="denied"}"#, 1.0),
        (r#"mxgate_logins_total{provider="other",result="failed"}"#, 1.0),
        (
            r#"mxgate_provider_refreshes_total{provider="github",result="rejected"}"#,
            1.0,
        ),
        (r#"mxgate_rate_limited_total{limit="token_per_client"}"#, 1.0),
        (r#"mxgate_rate_limited_total{limit="register_per_address"}"#, 1.0),
        (r#"mxgate_rate_limited_total{limit="token_per_address"}"#, 0.0),
        ("mxgate_assertions_minted_total", 1.0),
        ("mxgate_tokens_issued_total", 1.0),
        ("mxgate_tokens_refreshed_total", 1.0),
        (r#"mxgate_tokens_revoked_total{kind="access_token"}"#, 1.0),
        (r#"mxgate_tokens_revoked_total{kind="session"}"#, 0.0),
        ("mxgate_active_sessions", 7.0),
        (r#"mxgate_upstream_duration_seconds_bucket{le="0.0025"}"#, 0.0),
        (r#"mxgate_upstream_duration_seconds_bucket{le="0.005"}"#, 1.0),
        (r#"mxgate_upstream_duration_seconds_bucket{le="+Inf"}"#, 1.0),
        ("mxgate_upstream_duration_seconds_sum", 0.003),
        ("mxgate_upstream_duration_seconds_count", 1.0),
        (r#"mxgate_store_duration_seconds_count{op="take"}"#, 1.0),
        (r#"mxgate_store_duration_seconds_count{op="get"}"#, 0.0),
    ];
    for (series, expected) in expect {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    assert!(
        !text.contains("someone-else"),
        "an unknown provider gets no series of its own"
    );
}

#[test]
fn status_codes_map_to_their_own_label_or_their_class() {
    for (status, label) in [
        (200, "200"),
        (401, "401"),
        (429, "429"),
        (418, "4xx"),
        (299, "2xx"),
        (101, "1xx"),
        (0, "none"),
        (999, "none"),
    ] {
        assert_eq!(labels::status_label(status_index(status)), label, "{status}");
    }
}

#[test]
fn provider_series_are_bounded() {
    let m = Metrics::new();
    let names: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    m.register_providers(names.iter().map(String::as_str));
    assert_eq!(
        m.providers.load().len(),
        MAX_PROVIDERS + 1,
        "the configuration's first 32, and other"
    );
    m.login("p99", LoginResult::Ok);
    let text = m.encode();
    assert_eq!(
        value(&text, r#"mxgate_logins_total{provider="other",result="ok"}"#),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_scrape_counts_the_stored_sessions_and_times_the_count() {
    let (_dir, store) = temp_store();
    for id in ["s1", "s2", "s3"] {
        let session: SessionRecord = record(id, crate::support::now() + 3600);
        store
            .put_sealed(Table::Sessions, id, &session, session.expires_at)
            .await
            .unwrap();
    }
    let counts_before = metrics().store_duration[StoreOp::Count as usize].count();
    let text = metrics().scrape(Some(&store)).await;
    assert_eq!(value(&text, "mxgate_active_sessions"), Some(3.0));
    assert!(metrics().store_duration[StoreOp::Count as usize].count() > counts_before);
}

/// Counts the allocations of the current thread while [`COUNTING`] is on (the test binary's
/// allocator; everything else is the system's).
mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        pub static COUNTING: Cell<bool> = const { Cell::new(false) };
        pub static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNTING.try_with(|on| {
                if on.get() {
                    let _ = COUNT.try_with(|c| c.set(c.get() + 1));
                }
            });
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    /// How many allocations `f` made on this thread.
    pub fn made_by(f: impl FnOnce()) -> u64 {
        COUNT.with(|c| c.set(0));
        COUNTING.with(|on| on.set(true));
        f();
        COUNTING.with(|on| on.set(false));
        COUNT.with(|c| c.get())
    }
}

#[test]
fn recording_what_a_proxied_request_records_does_not_allocate() {
    let m = metrics();
    m.request(RouteClass::Other, 200); // the process's metrics exist before the request
    let made = allocations::made_by(|| {
        for _ in 0..1000 {
            // What a proxied request with a cached token records: its admission, the core's
            // answer time, and the request.
            m.authentication(AuthReason::Ok);
            m.upstream_duration(Duration::from_micros(250));
            m.request(RouteClass::Mcp, 200);
        }
    });
    assert_eq!(made, 0);
    // The counter can see allocations: the check itself is live.
    assert!(allocations::made_by(|| drop(std::hint::black_box(vec![1u8; 16]))) >= 1);
}

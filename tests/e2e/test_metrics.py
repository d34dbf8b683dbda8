"""Prometheus metrics on the admin listener (`admin_listen`), on a running mxgate in front of
the real MXCP core:

* a login, MCP calls, a 401 and a rate-limited registration move the counters by exactly what
  happened, read from `/metrics` with the Prometheus client's own text parser;
* `/metrics` is served on the admin listener only, never on the public port (where it is just
  a path bound for the core, refused without a token);
* the admin listener answers the health probes too, and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import browser
from support import UNLIMITED_RATES, McpHttp, Stack, free_port

# Token requests per OAuth client and minute: the rate-limited request is the one past it.
TOKEN_LIMIT = 3


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    rates = {**UNLIMITED_RATES, "per_client": {**UNLIMITED_RATES["per_client"], "token": TOKEN_LIMIT}}
    admin = f"127.0.0.1:{free_port()}"
    with Stack(tmp_path_factory.mktemp("metrics"), with_core=True,
               gateway_extra={"admin_listen": admin, "rate_limits": rates}) as stack:  # fmt: skip
        stack.admin_url = f"http://{admin}"  # type: ignore[attr-defined]
        yield stack


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(stack: Stack) -> Samples:
    r = httpx.get(stack.admin_url + "/metrics", timeout=10)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no series {name}{labels}"
    return samples[key]


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of `name` that has `labels` (and any others)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_counters_move_by_what_happened(measured: Stack) -> None:
    before = scrape(measured)

    login = browser.login(measured.url)
    statuses: list[int] = []
    with McpHttp(measured.url + "/mcp", login.tokens["access_token"]) as mcp:
        mcp.initialize()  # initialize (200) and notifications/initialized (202)
        statuses += [200, 202]
        for _ in range(2):
            r = mcp.request_raw("tools/call", {"name": "whoami", "arguments": {}})
            statuses.append(r.status_code)
        r = mcp.client.delete(mcp.mcp_url, headers=mcp._headers())
        statuses.append(r.status_code)
        mcp.session_id = None
    assert statuses[2:4] == [200, 200], statuses
    unauthenticated = httpx.post(measured.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, timeout=10)
    assert unauthenticated.status_code == 401
    unknown_client = {"grant_type": "refresh_token", "refresh_token": "x", "client_id": "mxc_made_up"}
    token_statuses = [
        httpx.post(measured.url + "/token", data=unknown_client, timeout=10).status_code for _ in range(TOKEN_LIMIT + 1)
    ]
    assert token_statuses == [401] * TOKEN_LIMIT + [429], token_statuses

    after = scrape(measured)

    def moved(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    proxied = len(statuses)
    assert moved("mxgate_authentications_total", outcome="ok", reason="ok") == proxied
    assert moved("mxgate_authentications_total", outcome="denied", reason="missing_token") == 1
    assert moved("mxgate_authentications_total", outcome="denied") == 1
    assert moved("mxgate_authentications_total", outcome="error") == 0
    for status in set(statuses):
        assert moved("mxgate_requests_total", route="mcp", status=str(status)) == statuses.count(status), status
    assert moved("mxgate_requests_total", route="mcp", status="401") == 1
    assert moved("mxgate_requests_total", route="mcp") == proxied + 1
    assert moved("mxgate_requests_total", route="oauth", status="201") == 1, "the login's registration"
    assert moved("mxgate_requests_total", route="oauth", status="401") == TOKEN_LIMIT
    assert moved("mxgate_requests_total", route="oauth", status="429") == 1
    # The core's adapter reads the JWKS (once, or not at all when it has it already).
    assert moved("mxgate_requests_total", route="well_known") == moved(
        "mxgate_requests_total", route="well_known", status="200")  # fmt: skip
    assert moved("mxgate_rate_limited_total", limit="token_per_client") == 1
    assert moved("mxgate_rate_limited_total") == 1

    # One login at the IdP, under the configured provider's own label.
    assert moved("mxgate_logins_total", result="ok") == 1
    assert moved("mxgate_logins_total", provider="oidc", result="ok") == 1
    assert moved("mxgate_logins_total", result="failed") + moved("mxgate_logins_total", result="denied") == 0
    assert moved("mxgate_tokens_issued_total") == 1
    assert moved("mxgate_tokens_refreshed_total") == 0
    # One assertion for the session, cached for every later request.
    assert moved("mxgate_assertions_minted_total") == 1
    assert value(after, "mxgate_active_sessions") == 1
    # The new token missed the cache once (read from the store), then every request hit it.
    assert moved("mxgate_token_cache_lookups_total", result="miss") == 1
    assert moved("mxgate_token_cache_lookups_total", result="hit") == proxied - 1
    assert value(after, "mxgate_token_cache_entries") >= 1
    assert 0 < value(after, "mxgate_token_cache_bytes") <= 8 * 1024 * 1024, "within the default budget"

    # Every request that reached the core was timed; store operations were timed.
    assert moved("mxgate_upstream_duration_seconds_count") == proxied
    assert value(after, "mxgate_upstream_duration_seconds_bucket", le="+Inf") == value(
        after, "mxgate_upstream_duration_seconds_count")  # fmt: skip
    assert moved("mxgate_store_duration_seconds_count", op="get") > 0
    assert moved("mxgate_store_duration_seconds_count", op="put") > 0
    # Counting is timed too: the scrape's session count, and the bounds checked at /register and /authorize.
    assert moved("mxgate_store_duration_seconds_count", op="count") >= 1


def test_refreshing_a_token_is_counted(measured: Stack) -> None:
    before = scrape(measured)
    first = browser.login(measured.url)
    r = browser.refresh(measured.url, first.client_id, first.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    after = scrape(measured)
    assert total(after, "mxgate_tokens_refreshed_total") - total(before, "mxgate_tokens_refreshed_total") == 1
    assert total(after, "mxgate_tokens_issued_total") - total(before, "mxgate_tokens_issued_total") == 1
    assert total(after, "mxgate_active_sessions") - total(before, "mxgate_active_sessions") == 1
    # The rotation revoked the access token paired with the spent refresh token.
    revoked = total(after, "mxgate_tokens_revoked_total", kind="access_token")
    assert revoked - total(before, "mxgate_tokens_revoked_total", kind="access_token") == 1


def test_metrics_are_not_served_on_the_public_port(measured: Stack) -> None:
    public = httpx.get(measured.url + "/metrics", timeout=10)
    assert public.status_code in (401, 404), public.status_code
    assert "mxgate_" not in public.text


def test_the_admin_listener_answers_probes_and_nothing_else(measured: Stack) -> None:
    admin = measured.admin_url  # type: ignore[attr-defined]
    assert httpx.get(admin + "/healthz", timeout=10).status_code == 200
    assert httpx.get(admin + "/readyz", timeout=10).status_code == 200
    assert httpx.get(admin + "/mcp", timeout=10).status_code == 404
    assert httpx.post(admin + "/metrics", timeout=10).status_code == 405

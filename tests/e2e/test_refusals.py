"""Refusals with the right OAuth error: PKCE, code replay, redirect URIs, bad/expired tokens,
refresh token rotation and reuse detection."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import browser
from browser import Browser, Login
from support import RecordingUpstream, Stack

OTHER_REDIRECT = "http://127.0.0.1:9/other-callback"


def _get(stack: Stack, token: str) -> httpx.Response:
    """An authenticated request through mxgate to the echo upstream."""
    return httpx.get(f"{stack.url}/mcp/ping?id={uuid.uuid4().hex}", timeout=10,
                     headers={"authorization": f"Bearer {token}"})  # fmt: skip


def _oauth_error(r: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.headers, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert body.get("error") == error, body
    return body


def _challenge(r: httpx.Response) -> dict[str, str]:
    """The parameters of a ``WWW-Authenticate: Bearer ...`` challenge."""
    value = r.headers.get("www-authenticate", "")
    assert value.lower().startswith("bearer"), r.headers
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def _expect_invalid_token(stack: Stack, r: httpx.Response) -> None:
    assert r.status_code == 401, (r.status_code, r.headers, r.text)
    params = _challenge(r)
    assert params.get("error") == "invalid_token", r.headers
    assert params.get("resource_metadata", "").startswith(stack.url + "/.well-known/oauth-protected-resource"), params


# --- authorization code + PKCE -------------------------------------------------------------


def test_wrong_pkce_verifier_is_invalid_grant(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url, redeem_code=False)
    assert lg.auth.code
    r = browser.redeem(echo_stack.url, lg.client_id, lg.auth.code, browser.pkce_pair()[0], lg.redirect_uri)
    _oauth_error(r, 400, "invalid_grant")
    assert "no-store" in r.headers.get("cache-control", ""), r.headers


def test_missing_pkce_verifier_is_refused(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url, redeem_code=False)
    r = httpx.post(echo_stack.url + "/token", timeout=10, data={
        "grant_type": "authorization_code", "code": lg.auth.code, "redirect_uri": lg.redirect_uri,
        "client_id": lg.client_id,
    })  # fmt: skip
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_grant"), r.text


def test_code_is_bound_to_its_client_and_redirect_uri(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url, redeem_code=False)
    other = browser.register(echo_stack.url, lg.redirect_uri)["client_id"]
    r = browser.redeem(echo_stack.url, other, lg.auth.code, lg.verifier, lg.redirect_uri)
    _oauth_error(r, 400, "invalid_grant")

    lg2 = browser.login(echo_stack.url, redeem_code=False)
    r = browser.redeem(echo_stack.url, lg2.client_id, lg2.auth.code, lg2.verifier, OTHER_REDIRECT)
    _oauth_error(r, 400, "invalid_grant")


def test_replayed_code_is_refused_and_revokes_what_it_issued(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url)
    access, refresh = lg.tokens["access_token"], lg.tokens["refresh_token"]
    assert _get(echo_stack, access).status_code == 200

    replay = browser.redeem(echo_stack.url, lg.client_id, lg.auth.code, lg.verifier, lg.redirect_uri)
    _oauth_error(replay, 400, "invalid_grant")

    _expect_invalid_token(echo_stack, _get(echo_stack, access))
    r = browser.refresh(echo_stack.url, lg.client_id, refresh)
    _oauth_error(r, 400, "invalid_grant")


# --- /authorize refusals that must not redirect ----------------------------------------------


@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:9/not-registered",
    "http://127.0.0.1:9/callback/",
    "http://127.0.0.1:9/callback?x=1",
    "http://evil.example/callback",
    "https://127.0.0.1:9/callback",
    "http://localhost:9/callback",
    "http://127.0.0.1.evil.example:9/callback",
    "http://127.0.0.1:9/CALLBACK",
])  # fmt: skip
def test_unregistered_redirect_uri_gets_an_error_page_and_no_redirect(echo_stack: Stack, redirect_uri: str) -> None:
    client_id = browser.register(echo_stack.url, "http://127.0.0.1:9/callback")["client_id"]
    _, challenge = browser.pkce_pair()
    url = browser.authorization_url(echo_stack.url, client_id, redirect_uri, challenge, "s1")
    r = httpx.get(url, timeout=10)
    assert r.status_code == 400, (r.status_code, r.headers, r.text[:500])
    assert "location" not in r.headers, r.headers
    assert r.headers.get("content-type", "").startswith("text/html"), r.headers
    assert "mxgate-csrf" not in r.headers.get("set-cookie", ""), "a consent page must not be started"


def test_unknown_client_gets_an_error_page_and_no_redirect(echo_stack: Stack) -> None:
    _, challenge = browser.pkce_pair()
    url = browser.authorization_url(echo_stack.url, "mxc_does_not_exist", "http://127.0.0.1:9/callback", challenge, "s")
    r = httpx.get(url, timeout=10)
    assert r.status_code == 400, (r.status_code, r.text[:500])
    assert "location" not in r.headers, r.headers


@pytest.mark.parametrize("registered", ["http://127.0.0.1/cb", "http://127.0.0.1:9/cb"])
def test_loopback_redirect_uri_may_use_any_port(echo_stack: Stack, registered: str) -> None:
    """RFC 8252 §7.3: a registered loopback redirect URI matches with any port."""
    client_id = browser.register(echo_stack.url, registered)["client_id"]
    lg = browser.login(echo_stack.url, client_id=client_id, redirect_uri="http://127.0.0.1:51234/cb")
    assert lg.auth.url.startswith("http://127.0.0.1:51234/cb?"), lg.auth.url
    assert lg.tokens["access_token"]


def test_confidential_client_must_authenticate(echo_stack: Stack) -> None:
    reg = httpx.post(echo_stack.url + "/register", timeout=10, json={
        "redirect_uris": [browser.DEFAULT_REDIRECT_URI], "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
    })  # fmt: skip
    assert reg.status_code == 201, reg.text
    client = reg.json()
    assert client["client_secret"], client
    lg = browser.login(echo_stack.url, client_id=client["client_id"], redeem_code=False)
    form = {"grant_type": "authorization_code", "code": lg.auth.code, "redirect_uri": lg.redirect_uri,
            "code_verifier": lg.verifier}  # fmt: skip
    for auth, extra in (((client["client_id"], "wrong-secret"), {}), (None, {"client_id": client["client_id"]})):
        r = httpx.post(echo_stack.url + "/token", data={**form, **extra}, auth=auth, timeout=10)
        _oauth_error(r, 401, "invalid_client")
    r = httpx.post(echo_stack.url + "/token", data=form, auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert r.status_code == 200, r.text
    assert _get(echo_stack, r.json()["access_token"]).status_code == 200


# --- bearer tokens at the resource ---------------------------------------------------------


def test_no_token_gets_a_challenge_with_resource_metadata(echo_stack: Stack) -> None:
    r = httpx.get(echo_stack.gateway.mcp_url, timeout=10)
    assert r.status_code == 401, (r.status_code, r.text)
    params = _challenge(r)
    assert "error" not in params, f"RFC 6750 §3.1: no error code without credentials: {r.headers}"
    prm_url = params["resource_metadata"]
    prm = httpx.get(prm_url, timeout=10)
    assert prm.status_code == 200, (prm_url, prm.text)
    assert prm.json()["resource"] == echo_stack.gateway.mcp_url
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert r.json().get("error"), r.text


@pytest.mark.parametrize("token", ["mxg_at_" + "A" * 43, "not-a-token", "a.b.c"])
def test_unknown_token_is_invalid_token(echo_stack: Stack, echo_upstream: RecordingUpstream, token: str) -> None:
    before = len(echo_upstream.requests)
    r = _get(echo_stack, token)
    _expect_invalid_token(echo_stack, r)
    assert r.json().get("error") == "invalid_token", r.text
    assert len(echo_upstream.requests) == before, "a refused request reached the upstream"


def test_refresh_token_is_not_an_access_token(echo_stack: Stack, echo_login: Login) -> None:
    _expect_invalid_token(echo_stack, _get(echo_stack, echo_login.tokens["refresh_token"]))


# --- refresh tokens ------------------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_session(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url)
    first = lg.tokens
    r = browser.refresh(echo_stack.url, lg.client_id, first["refresh_token"])
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["token_type"].lower() == "bearer"
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"], "refresh tokens must rotate"
    assert _get(echo_stack, second["access_token"]).status_code == 200

    r = browser.refresh(echo_stack.url, lg.client_id, second["refresh_token"])
    assert r.status_code == 200, r.text
    third = r.json()
    assert _get(echo_stack, third["access_token"]).status_code == 200

    # A spent refresh token may be retried once within the grace window (a lost response)...
    retry = browser.refresh(echo_stack.url, lg.client_id, first["refresh_token"])
    assert retry.status_code == 200, retry.text
    # ... any further use is theft: invalid_grant, and the whole session is revoked.
    reuse = browser.refresh(echo_stack.url, lg.client_id, first["refresh_token"])
    _oauth_error(reuse, 400, "invalid_grant")
    _expect_invalid_token(echo_stack, _get(echo_stack, third["access_token"]))
    _oauth_error(browser.refresh(echo_stack.url, lg.client_id, third["refresh_token"]), 400, "invalid_grant")


def test_refresh_token_is_bound_to_its_client(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url)
    other = browser.register(echo_stack.url)["client_id"]
    _oauth_error(browser.refresh(echo_stack.url, other, lg.tokens["refresh_token"]), 400, "invalid_grant")


def test_unknown_refresh_token_is_invalid_grant(echo_stack: Stack, echo_login: Login) -> None:
    r = browser.refresh(echo_stack.url, echo_login.client_id, "mxg_rt_" + "B" * 43)
    _oauth_error(r, 400, "invalid_grant")


def test_unsupported_grant_type(echo_stack: Stack, echo_login: Login) -> None:
    r = httpx.post(echo_stack.url + "/token", timeout=10,
                   data={"grant_type": "password", "username": "a", "password": "b", "client_id": echo_login.client_id})  # fmt: skip
    _oauth_error(r, 400, "unsupported_grant_type")


def test_concurrent_redemptions_of_one_code_issue_one_token(echo_stack: Stack) -> None:
    lg = browser.login(echo_stack.url, redeem_code=False)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(
            lambda _: browser.redeem(echo_stack.url, lg.client_id, lg.auth.code, lg.verifier, lg.redirect_uri),
            range(12),
        ))  # fmt: skip
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] + [400] * 11, statuses
    for r in results:
        if r.status_code == 400:
            assert r.json()["error"] == "invalid_grant", r.text


def test_concurrent_refreshes_with_one_token_allow_one_retry_then_revoke(echo_stack: Stack) -> None:
    """A refresh token works once, plus one retry within the grace window; the ten other
    presentations are reuse, which revokes the session (so no winner keeps working)."""
    lg = browser.login(echo_stack.url)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(
            lambda _: browser.refresh(echo_stack.url, lg.client_id, lg.tokens["refresh_token"]), range(12)
        ))  # fmt: skip
    winners = [r.json() for r in results if r.status_code == 200]
    assert 1 <= len(winners) <= 2, f"one refresh token was exchanged {len(winners)} times"
    for r in results:
        if r.status_code != 200:
            _oauth_error(r, 400, "invalid_grant")
    for winner in winners:
        _expect_invalid_token(echo_stack, _get(echo_stack, winner["access_token"]))
        _oauth_error(browser.refresh(echo_stack.url, lg.client_id, winner["refresh_token"]), 400, "invalid_grant")


# --- expiry (own mxgate: access 2 s, refresh 4 s, session 6 s) -------------------------------


@pytest.fixture(scope="module")
def short_ttl_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    tokens = {"access_token_ttl": "2s", "refresh_token_ttl": "4s", "session_ttl": "6s"}
    with Stack(tmp_path_factory.mktemp("short-ttl"), echo_upstream.url, tokens=tokens) as stack:
        yield stack


def test_expired_access_token_is_refused_and_refresh_recovers(short_ttl_stack: Stack) -> None:
    stack = short_ttl_stack
    lg = browser.login(stack.url, browser=Browser())
    assert lg.tokens["expires_in"] == 2, lg.tokens
    access = lg.tokens["access_token"]
    assert _get(stack, access).status_code == 200

    deadline = time.monotonic() + 15
    r = _get(stack, access)
    while r.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)
        r = _get(stack, access)
    _expect_invalid_token(stack, r)

    r = browser.refresh(stack.url, lg.client_id, lg.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    assert _get(stack, r.json()["access_token"]).status_code == 200


# --- malformed input: a JSON OAuth error, never a 5xx ----------------------------------------


@pytest.mark.parametrize("method, path, kwargs, status", [
    ("POST", "/token", {"content": b"%%%&&&==\xff\xfe", "headers": {"content-type": "application/x-www-form-urlencoded"}}, None),
    ("POST", "/token", {"content": b"grant_type=refresh_token&grant_type=authorization_code",
                        "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),
    ("POST", "/token", {"json": {"grant_type": "authorization_code"}}, None),
    ("POST", "/token", {"data": {"x": "a" * 3_000_000}}, 413),
    ("GET", "/token", {}, 405),
    ("POST", "/register", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
    ("POST", "/register", {"json": [1, 2]}, 400),
    ("POST", "/register", {"json": {"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "x" * 5_000}}, 400),
    ("POST", "/register", {"json": {"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "x" * 100_000}}, 413),
    ("POST", "/token", {"content": b"grant_type=authorization_code&code=x", "headers": {"content-type": "text/plain"}}, 400),
    ("GET", "/register", {}, 405),
])  # fmt: skip
def test_malformed_requests_get_json_oauth_errors(echo_stack: Stack, method: str, path: str, kwargs: dict,
                                                  status: int | None) -> None:  # fmt: skip
    r = httpx.request(method, echo_stack.url + path, timeout=10, **kwargs)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    if status:
        assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    assert r.json().get("error"), r.text
    assert echo_stack.gateway.proc.poll() is None, "mxgate died"


def test_options_never_reaches_the_core(echo_stack: Stack, echo_upstream: RecordingUpstream) -> None:
    """OPTIONS is answered by mxgate itself, whatever it carries: the MXCP core would open a new
    MCP session for each unauthenticated preflight (issue 6 defect 2). A preflight from an origin
    that is not allowed is refused; a plain OPTIONS gets `Allow`."""
    marker = uuid.uuid4().hex
    preflight = httpx.request("OPTIONS", f"{echo_stack.url}/mcp?id={marker}", timeout=10, headers={
        "origin": "http://app.example", "access-control-request-method": "POST",
        "x-mxcp-user-assertion": "forged", "authorization": "Bearer forged", "cookie": "mxgate-login=x",
    })  # fmt: skip
    assert preflight.status_code == 403, (preflight.status_code, preflight.text)
    assert "access-control-allow-origin" not in preflight.headers
    plain = httpx.request("OPTIONS", f"{echo_stack.url}/mcp?id={marker}", timeout=10)
    assert plain.status_code == 204 and "POST" in plain.headers["allow"], plain.headers
    own = httpx.request("OPTIONS", f"{echo_stack.url}/mcp?id={marker}", timeout=10, headers={
        "origin": echo_stack.url, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, mcp-session-id",
    })  # fmt: skip
    assert own.status_code == 204, own.text
    assert own.headers["access-control-allow-origin"] == echo_stack.url
    assert "mcp-session-id" in own.headers["access-control-allow-headers"]
    assert not echo_upstream.find(lambda req: marker in req["path"]), "an OPTIONS request reached the core"


def test_refresh_token_expires(short_ttl_stack: Stack) -> None:
    lg = browser.login(short_ttl_stack.url)
    # Only a wait shows expiry: any successful check would rotate the token.
    time.sleep(4.5)
    _oauth_error(browser.refresh(short_ttl_stack.url, lg.client_id, lg.tokens["refresh_token"]), 400, "invalid_grant")


def test_session_lifetime_bounds_refreshes(short_ttl_stack: Stack) -> None:
    stack = short_ttl_stack
    started = time.time()
    lg = browser.login(stack.url)
    tokens, refreshed = lg.tokens, 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        r = browser.refresh(stack.url, lg.client_id, tokens["refresh_token"])
        if r.status_code != 200:
            break
        tokens, refreshed = r.json(), refreshed + 1
        # No token outlives the session (6 s from the login, which began at `started`).
        assert time.time() + tokens["expires_in"] <= started + 6 + 1.5, (refreshed, tokens["expires_in"])
        time.sleep(0.5)
    _oauth_error(r, 400, "invalid_grant")
    assert refreshed >= 3, f"only {refreshed} refreshes before the session ended"
    _expect_invalid_token(stack, _get(stack, tokens["access_token"]))

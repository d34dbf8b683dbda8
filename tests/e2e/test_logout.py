"""Ending sessions over HTTP: `/revoke` (RFC 7009, advertised in the metadata) and `/logout`
(the token's session, or with all=true every session of the user; a browser gets its mxgate
cookies cleared). "Cleared on logout", as the MXCP docs promise."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import RecordingUpstream, Stack


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    """An mxgate of its own: logging alice out everywhere must not touch other tests' sessions."""
    with Stack(tmp_path_factory.mktemp("logout"), echo_upstream.url) as stack:
        yield stack


def _status(stack: Stack, token: str) -> int:
    r = httpx.get(f"{stack.url}/mcp/ping?id={uuid.uuid4().hex}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    return r.status_code


def test_revocation_endpoint_is_advertised_and_ends_the_session(echo_stack: Stack) -> None:
    meta = httpx.get(echo_stack.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["revocation_endpoint"] == echo_stack.url + "/revoke"
    lg = browser.login(echo_stack.url)
    assert _status(echo_stack, lg.tokens["access_token"]) == 200
    r = httpx.post(meta["revocation_endpoint"], timeout=10, data={
        "token": lg.tokens["refresh_token"], "token_type_hint": "refresh_token", "client_id": lg.client_id,
    })  # fmt: skip
    assert r.status_code == 200, r.text
    assert _status(echo_stack, lg.tokens["access_token"]) == 401
    again = browser.refresh(echo_stack.url, lg.client_id, lg.tokens["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_logout_all_ends_every_session_of_the_user(own_stack: Stack) -> None:
    echo_stack = own_stack
    first, second, third = (browser.login(echo_stack.url) for _ in range(3))
    r = httpx.post(echo_stack.url + "/logout", headers={"authorization": f"Bearer {first.tokens['access_token']}"}, timeout=10)
    assert r.status_code == 200 and r.json() == {"revoked_sessions": 1}, r.text
    assert _status(echo_stack, first.tokens["access_token"]) == 401
    assert _status(echo_stack, second.tokens["access_token"]) == 200

    r = httpx.post(echo_stack.url + "/logout?all=true", timeout=10,
                   headers={"authorization": f"Bearer {second.tokens['access_token']}"})  # fmt: skip
    assert r.status_code == 200 and r.json() == {"revoked_sessions": 2}, r.text
    assert _status(echo_stack, second.tokens["access_token"]) == 401
    assert _status(echo_stack, third.tokens["access_token"]) == 401


def test_browser_logout_clears_mxgate_cookies(echo_stack: Stack) -> None:
    r = httpx.get(echo_stack.url + "/logout", timeout=10)
    assert r.status_code == 200 and "Signed out" in r.text
    cleared = r.headers.get_list("set-cookie")
    assert any(c.startswith("mxgate-csrf=;") and "Max-Age=0" in c for c in cleared), cleared

"""Tokens, sessions and signing keys survive a restart: stop mxgate with SIGTERM, start it again
with the same config and data dir; the old access token still calls ``whoami`` as alice
(so the core still verifies the assertion: same key) and the refresh token still refreshes."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import McpHttp, Stack

ALICE = {"username": "alice", "email": "alice@example.test", "provider": "oidc", "has_external_token": True}


@pytest.fixture(scope="module")
def restart_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("restart"), with_core=True) as stack:
        yield stack


def _whoami(stack: Stack, token: str) -> dict:
    with McpHttp(stack.gateway.mcp_url, token) as mcp:
        mcp.initialize()
        return mcp.call_tool("whoami")


def test_tokens_survive_a_restart(restart_stack: Stack) -> None:
    stack, gw = restart_stack, restart_stack.gateway
    lg = browser.login(stack.url)
    access, refresh = lg.tokens["access_token"], lg.tokens["refresh_token"]
    assert _whoami(stack, access) == ALICE
    jwks_before = httpx.get(stack.url + "/.well-known/jwks.json", timeout=10).json()

    status = gw.stop(signal.SIGTERM)
    assert status == 0, f"mxgate exited with {status} on SIGTERM\n{gw.logs()}"
    with pytest.raises(httpx.TransportError):
        httpx.get(stack.url + "/healthz", timeout=2)
    gw.start()

    assert httpx.get(stack.url + "/.well-known/jwks.json", timeout=10).json() == jwks_before, \
        "the signing keys changed across the restart"
    assert _whoami(stack, access) == ALICE

    r = browser.refresh(stack.url, lg.client_id, refresh)
    assert r.status_code == 200, r.text
    assert _whoami(stack, r.json()["access_token"]) == ALICE
    # ... and the registered client is still known: a new login with it works.
    again = browser.login(stack.url, client_id=lg.client_id, redirect_uri=lg.redirect_uri)
    assert _whoami(stack, again.tokens["access_token"]) == ALICE

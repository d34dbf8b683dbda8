"""OpenID Connect Back-Channel Logout against the real ``oidc-provider`` fixture.

The fixture registers mxgate's ``/backchannel-logout/oidc`` as the client's
``backchannel_logout_uri`` (so its ID tokens carry ``sid``), and an administrator's "sign out"
of alice at the IdP (``POST /admin/users/alice/logout``, as Keycloak's admin console does)
makes the IdP post a signed logout token to mxgate for each of alice's provider sessions. The
MCP session that uses alice's token through mxgate to the real core is answered 401 at once
(the IdP waits for mxgate's 200 before it answers the administrator), while bob's goes on. The
forged logout token is refused with 400 and ends nothing. (Replays, and every other rule of
the spec, are unit-tested: ``providers/logout_token.rs``, ``providers/oidc.rs``, ``oauth/tests.rs``.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import McpHttp, RecordingUpstream, Stack
from test_provider_keycloak import REALM, keycloak_auth_block

PATH = "/backchannel-logout/oidc"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("backchannel"), with_core=True,
                  gateway_extra={"backchannel_logout": {"oidc": {}}})  # fmt: skip
    stack.idp.extra = (*stack.idp.extra, "--backchannel-logout-uri", stack.url + PATH)
    with stack:
        yield stack


def _admin_logout(stack: Stack, user: str) -> dict:
    r = httpx.post(f"{stack.idp.issuer}/admin/users/{user}/logout", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_an_idp_logout_ends_alices_mcp_session_at_once_and_bobs_goes_on(stack: Stack) -> None:
    alice = browser.login(stack.url, login_hint="alice").tokens["access_token"]
    bob = browser.login(stack.url, login_hint="bob").tokens["access_token"]
    with McpHttp(stack.gateway.mcp_url, alice) as alice_mcp, McpHttp(stack.gateway.mcp_url, bob) as bob_mcp:
        alice_mcp.initialize()
        bob_mcp.initialize()
        assert alice_mcp.call_tool("whoami")["username"] == "alice"
        assert bob_mcp.call_tool("whoami")["username"] == "bob"

        started = time.monotonic()
        result = _admin_logout(stack, "alice")
        assert result == {"sessions": 1, "delivered": 1, "errors": []}, (result, stack.logs())
        r = alice_mcp.request_raw("tools/call", {"name": "whoami", "arguments": {}})
        assert r.status_code == 401, (r.status_code, r.text)
        assert time.monotonic() - started < 1.0

        assert bob_mcp.call_tool("whoami")["username"] == "bob", "bob's session goes on"
    audit = re.search(r'audit event="?backchannel_logout"? user="?oidc:alice"?.*reason="?1 session\(s\) ended \(matched by sid\)',
                      stack.gateway.log())  # fmt: skip
    assert audit, stack.gateway.log()


def test_a_forged_logout_token_is_refused_and_a_provider_session_ends_once(stack: Stack) -> None:
    bob = browser.login(stack.url, login_hint="bob").tokens["access_token"]
    forged = httpx.post(stack.url + PATH, data={"logout_token": "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ."})
    assert forged.status_code == 400, forged.text
    assert forged.json()["error"] == "invalid_request"
    assert forged.headers["cache-control"] == "no-store"
    with McpHttp(stack.gateway.mcp_url, bob) as bob_mcp:
        bob_mcp.initialize()
        assert bob_mcp.call_tool("whoami")["username"] == "bob", "a forged token ends nothing"

        assert _admin_logout(stack, "bob")["delivered"] >= 1
        r = bob_mcp.request_raw("tools/call", {"name": "whoami", "arguments": {}})
        assert r.status_code == 401, (r.status_code, r.text)
    assert _admin_logout(stack, "bob") == {"sessions": 0, "delivered": 0, "errors": []}


def test_nothing_about_it_is_advertised_to_mcp_clients(stack: Stack) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource"):
        text = httpx.get(stack.url + path).text
        assert "backchannel" not in text, (path, text)


def test_keycloak_back_channel_logout_at_its_own_path(
    tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream
) -> None:
    """The ``keycloak`` provider (the fixture at Keycloak's realm paths) on a configured path."""
    path = "/kc-logout"
    stack = Stack(tmp_path_factory.mktemp("backchannel-keycloak"), echo_upstream.url,
                  idp_args=("--keycloak-realm", REALM), auth=keycloak_auth_block,
                  gateway_extra={"backchannel_logout": {"keycloak": {"path": path}}})  # fmt: skip
    stack.idp.extra = (*stack.idp.extra, "--backchannel-logout-uri", stack.url + path)
    with stack:
        alice = browser.login(stack.url, login_hint="alice").tokens["access_token"]
        bob = browser.login(stack.url, login_hint="bob").tokens["access_token"]
        assert _status(stack, alice) == _status(stack, bob) == 200
        assert _admin_logout(stack, "alice") == {"sessions": 1, "delivered": 1, "errors": []}, stack.logs()
        assert _status(stack, alice) == 401
        assert _status(stack, bob) == 200


def _status(stack: Stack, token: str) -> int:
    return httpx.get(stack.gateway.mcp_url, headers={"authorization": f"Bearer {token}"}, timeout=10).status_code

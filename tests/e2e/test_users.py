"""Two users on one mxgate and one core: each call runs as the token's user, CEL policies see
that user, and an MCP session id started by one user cannot be used by another."""

from __future__ import annotations

import pytest

import browser
from browser import Login
from support import McpHttp, Stack, jsonrpc_response


@pytest.fixture(scope="module")
def bob_login(core_stack: Stack) -> Login:
    lg = browser.login(core_stack.url, login_hint="bob")
    return lg


def _call(mcp: McpHttp, name: str) -> dict:
    """The JSON-RPC response message of a tools/call."""
    r = mcp.request_raw("tools/call", {"name": name, "arguments": {}})
    assert r.status_code == 200, (r.status_code, r.headers, r.text)
    return jsonrpc_response(r, mcp._next_id)


def test_bob_is_bob_and_company_policy_denies_him(core_stack: Stack, bob_login: Login) -> None:
    with McpHttp(core_stack.gateway.mcp_url, bob_login.tokens["access_token"]) as mcp:
        mcp.initialize()
        who = mcp.call_tool("whoami")
        assert who == {"username": "bob", "email": "bob@example.org", "provider": "oidc",
                       "has_external_token": True}, who  # fmt: skip
        denied = _call(mcp, "company_only")
    failed = "error" in denied or denied["result"].get("isError")
    assert failed, f"company_only must deny bob: {denied}"
    assert "Welcome" not in str(denied)


def test_mcp_session_of_one_user_is_refused_for_another(core_stack: Stack, core_login: Login, bob_login: Login) -> None:
    with McpHttp(core_stack.gateway.mcp_url, core_login.tokens["access_token"]) as alice:
        alice.initialize()
        assert alice.call_tool("whoami")["username"] == "alice"
        # Bob presents alice's MCP session id.
        thief = McpHttp(core_stack.gateway.mcp_url, bob_login.tokens["access_token"])
        thief.session_id = alice.session_id
        try:
            r = thief.request_raw("tools/call", {"name": "whoami", "arguments": {}})
            assert r.status_code == 404, (r.status_code, r.headers, r.text)
            assert "alice" not in r.text
            get = thief.client.get(core_stack.gateway.mcp_url, headers=thief._headers())
            assert get.status_code == 404, (get.status_code, get.text[:300])
            delete = thief.client.delete(core_stack.gateway.mcp_url, headers=thief._headers())
            assert delete.status_code == 404, (delete.status_code, delete.text[:300])
        finally:
            thief.session_id = None
            thief.close()
        # Alice's session is untouched.
        assert alice.call_tool("whoami")["username"] == "alice"

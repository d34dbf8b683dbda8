"""The ``oidc`` provider and ``email_verified``, against the IdP fixture (a real ``oidc-provider``):
only an email address the provider marks verified becomes the user's email — what the assertion
carries, ``get_user_email()`` returns and CEL policies on ``user.email`` see.

The fixture's carol (``email_verified: false``) and dan (no ``email_verified``, as Microsoft
Entra ID sends ``email``) both claim an address in alice's company domain ``example.test``:

* By default neither reaches the core with an email, and the real core's ``company_only``
  policy (``user.email`` ends with ``@example.test``) denies both, while alice and bob (both
  ``email_verified: true``) keep theirs.
* With ``assume_email_verified: {oidc: true}`` in mxgate.yml, dan's unflagged address counts as
  verified; carol's, marked ``false``, still never does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import browser
from provider_fixtures import assertion
from support import McpHttp, RecordingUpstream, Stack, jsonrpc_response


@pytest.fixture(scope="module")
def trusting_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("oidc-trusting"), echo_upstream.url,
               gateway_extra={"assume_email_verified": {"oidc": True}}) as stack:  # fmt: skip
        yield stack


def _claims(stack: Stack, upstream: RecordingUpstream, user: str) -> dict:
    login = browser.login(stack.url, login_hint=user)
    return assertion(stack.url, upstream, login.tokens["access_token"])


@pytest.mark.parametrize(
    ("user", "email"),
    [("alice", "alice@example.test"), ("bob", "bob@example.org"), ("carol", None), ("dan", None)],
)
def test_by_default_only_an_address_marked_verified_is_the_users_email(
    echo_stack: Stack, echo_upstream: RecordingUpstream, user: str, email: str | None
) -> None:
    claims = _claims(echo_stack, echo_upstream, user)
    assert (claims["provider"], claims["sub"], claims["username"]) == ("oidc", user, user), claims
    assert claims.get("email") == email, claims


@pytest.mark.parametrize(("user", "email"), [("dan", "dan@example.test"), ("carol", None)])
def test_assume_email_verified_trusts_a_missing_flag_never_a_false_one(
    trusting_stack: Stack, echo_upstream: RecordingUpstream, user: str, email: str | None
) -> None:
    claims = _claims(trusting_stack, echo_upstream, user)
    assert claims.get("email") == email, claims


@pytest.mark.parametrize("user", ["carol", "dan"])
def test_the_core_sees_no_email_and_its_email_policy_denies(core_stack: Stack, user: str) -> None:
    token = browser.login(core_stack.url, login_hint=user).tokens["access_token"]
    with McpHttp(core_stack.gateway.mcp_url, token) as mcp:
        mcp.initialize()
        who = mcp.call_tool("whoami")
        assert who == {"username": user, "email": None, "provider": "oidc", "has_external_token": True}, who
        r = mcp.request_raw("tools/call", {"name": "company_only", "arguments": {}})
        assert r.status_code == 200, (r.status_code, r.text)
        denied = jsonrpc_response(r, mcp._next_id)
    assert "error" in denied or denied["result"].get("isError"), f"company_only must deny {user}: {denied}"
    assert "Welcome" not in str(denied)

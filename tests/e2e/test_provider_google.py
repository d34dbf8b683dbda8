"""The ``google`` provider against the IdP fixture in Google mode (``--google``: Google's paths,
``hd`` and ``email_verified`` claims, no ``preferred_username``, refresh tokens only for
``access_type=offline`` at the first consent or with ``prompt=consent``, and refresh answers
without a ``refresh_token``).

Google's issuer ``https://accounts.google.com`` cannot be served here, so the discovery document
is the fixture's, named by ``provider_overrides.google.config_url`` in mxgate.yml, while the MXCP
block names ``auth_url`` and ``token_url`` as MXCP documents them (here: the fixture's). The
scope is MXCP-style without ``openid`` (``email profile``); mxgate adds it.

What is checked: ``access_type=offline`` and ``prompt=consent`` reach the IdP; the assertion the
core receives has provider ``google``, the email, username from the email's local part, and a
capability mapped from ``hd`` by ``claim_mappings``; bob (a consumer account, no ``hd``) does not
get it; carol's address, which Google marks ``email_verified: false``, is neither her email nor
her username; ``ext`` stays usable across two provider refreshes although the IdP never returns a new
refresh token; on the real core, ``get_user_provider()`` is ``google`` and the CEL policy on
``user.email`` (``company_only``) admits alice.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

import browser
from support import IDP_CLIENT_ID, SECRET_ENV, McpHttp, RecordingUpstream, Stack, free_port, header_values

CLAIM_MAPPINGS = {
    "hd": {"example.test": ["company"]},
    "email_verified": {"true": ["verified-email"]},
}


def _google_stack(workdir: Any, upstream: str | None, *, with_core: bool = False) -> Stack:
    """A Stack with the fixture in Google mode on a port chosen up front (mxgate.yml names it)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"

    def auth(idp_issuer: str) -> dict[str, Any]:
        assert idp_issuer == issuer, (idp_issuer, issuer)
        return {
            "provider": "google",
            "google": {
                "client_id": IDP_CLIENT_ID,
                "client_secret": "${" + SECRET_ENV + "}",
                "scope": "email profile",
                "callback_path": "/callback",
                "auth_url": f"{issuer}/o/oauth2/v2/auth",
                "token_url": f"{issuer}/token",
                "claim_mappings": CLAIM_MAPPINGS,
            },
        }

    return Stack(
        workdir, upstream, with_core=with_core, auth=auth,
        idp_args=("--google", "--port", str(port), "--access-token-ttl", "2"),
        gateway_extra={"provider_overrides": {"google": {"config_url": f"{issuer}/.well-known/openid-configuration"}}},
    )  # fmt: skip


@pytest.fixture(scope="module")
def google_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with _google_stack(tmp_path_factory.mktemp("google"), echo_upstream.url) as stack:
        yield stack


@pytest.fixture(scope="module")
def google_core_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with _google_stack(tmp_path_factory.mktemp("google-core"), None, with_core=True) as stack:
        yield stack


def _assertion(stack: Stack, upstream: RecordingUpstream, token: str) -> dict[str, Any]:
    """The assertion the upstream received for one request with ``token``, verified with mxgate's JWKS."""
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack.url}/mcp/who?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    [req] = upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(req, "x-mxcp-user-assertion")
    kid = jwt.get_unverified_header(assertion)["kid"]
    keys = {k["kid"]: k for k in httpx.get(stack.url + "/.well-known/jwks.json", timeout=10).json()["keys"]}
    return jwt.decode(assertion, jwt.PyJWK(keys[kid]).key, algorithms=["EdDSA"], audience="mxcp-core",
                      issuer=stack.url)  # fmt: skip


def _userinfo(stack: Stack, provider_token: str) -> httpx.Response:
    return httpx.get(f"{stack.idp.issuer}/v1/userinfo", headers={"authorization": f"Bearer {provider_token}"},
                     timeout=10)  # fmt: skip


def _wait_until_dead(stack: Stack, provider_token: str) -> None:
    deadline = time.monotonic() + 10
    while _userinfo(stack, provider_token).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)  # until the IdP's 2 s token is dead
    assert _userinfo(stack, provider_token).status_code == 401


def test_offline_access_and_consent_reach_google(google_stack: Stack) -> None:
    browser.login(google_stack.url)
    log = google_stack.idp.log()
    lines = [line for line in log.splitlines() if "route=authorization" in line and "/o/oauth2/v2/auth " in line]
    assert lines, log[-2000:]
    assert all(re.search(r" access_type=offline prompt=consent( |$)", line) for line in lines), lines


def test_alice_has_her_email_and_the_hd_capability(google_stack: Stack, echo_upstream: RecordingUpstream) -> None:
    login = browser.login(google_stack.url)
    claims = _assertion(google_stack, echo_upstream, login.tokens["access_token"])
    assert claims["provider"] == "google"
    assert (claims["sub"], claims["username"], claims["email"]) == ("alice", "alice", "alice@example.test")
    assert claims["name"] == "Alice Example"
    assert claims["capabilities"] == ["company", "verified-email"], claims
    me = _userinfo(google_stack, claims["ext"])
    assert me.status_code == 200 and me.json()["hd"] == "example.test", me.text


def test_consumer_account_without_hd_has_no_company_capability(
    google_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(google_stack.url, login_hint="bob")
    claims = _assertion(google_stack, echo_upstream, login.tokens["access_token"])
    assert (claims["provider"], claims["username"], claims["email"]) == ("google", "bob", "bob@example.org")
    assert claims["capabilities"] == ["verified-email"], claims


def test_an_address_google_marks_unverified_is_not_the_email(
    google_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(google_stack.url, login_hint="carol")
    claims = _assertion(google_stack, echo_upstream, login.tokens["access_token"])
    assert claims["provider"] == "google" and "email" not in claims, claims
    assert claims["username"] == "carol", "the sub: the unverified address gives no username"
    assert claims["capabilities"] == [], claims
    assert _userinfo(google_stack, claims["ext"]).json()["email"] == "carol@example.test", "Google did send it"


def test_refresh_keeps_the_refresh_token_google_does_not_return(
    google_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(google_stack.url)
    token = login.tokens["access_token"]
    first = _assertion(google_stack, echo_upstream, token)["ext"]
    assert _userinfo(google_stack, first).status_code == 200
    # Two expiries: the second refresh must use the refresh token of the login, as Google's
    # refresh answers carry none.
    seen = [first]
    for _ in range(2):
        _wait_until_dead(google_stack, seen[-1])
        ext = _assertion(google_stack, echo_upstream, token)["ext"]
        r = _userinfo(google_stack, ext)
        assert r.status_code == 200 and r.json()["sub"] == "alice", (r.status_code, r.text, ext in seen)
        seen.append(ext)
    refreshes = re.findall(r"POST /token 200 route=token grant_type=refresh_token", google_stack.idp.log())
    assert len(refreshes) >= 2, google_stack.idp.log()[-2000:]

    # mxgate's own refresh token works for this provider too.
    r = browser.refresh(google_stack.url, login.client_id, login.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    assert _assertion(google_stack, echo_upstream, r.json()["access_token"])["email"] == "alice@example.test"


def test_core_sees_google_user_and_cel_reads_the_email(google_core_stack: Stack) -> None:
    login = browser.login(google_core_stack.url)
    with McpHttp(google_core_stack.gateway.mcp_url, login.tokens["access_token"]) as mcp:
        mcp.initialize()
        who = mcp.call_tool("whoami")
        assert who == {"username": "alice", "email": "alice@example.test", "provider": "google",
                       "has_external_token": True}, who  # fmt: skip
        assert "Welcome to example.test, alice" in str(mcp.call_tool("company_only"))

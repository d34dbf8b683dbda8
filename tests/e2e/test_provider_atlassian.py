"""mxgate's ``atlassian`` provider end to end, against ``tests/fixtures/atlassian`` (Atlassian's
OAuth 2.0 (3LO) flow and ``/me``, imitated locally): a user logs in through mxgate, and the
assertion the upstream receives names the Atlassian account (``account_id``, nickname, email,
name, picture) and carries the Atlassian access token in ``ext``.

* The authorization request has ``audience=api.atlassian.com`` and ``prompt=consent``; the token
  requests are JSON, with exactly the documented fields.
* With ``offline_access`` the hour-long (here: 4 s) access token is refreshed when it expires,
  once, and the rotated refresh token is kept: the next expiry refreshes again with the new one.
* Without a nickname the username is the email's local part.
* A wrong client secret ends the login with an OAuth error redirect to the client.
* Only an email ``/me`` marks ``email_verified: true`` reaches the core (nor does it give the
  username): ``false`` never does, and a missing flag does only with
  ``assume_email_verified: {atlassian: true}``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from provider_fixtures import ProviderFixture, ProviderStack, assertion, provider_stack
from support import RecordingUpstream

CLIENT_ID = "mxgate-atlassian"
CLIENT_SECRET = "atlassian-secret"


def atlassian_auth(scope: str = "read:me read:jira-work offline_access", secret: str = CLIENT_SECRET,
                   claim_mappings: dict[str, Any] | None = None):  # fmt: skip
    def block(url: str) -> dict[str, Any]:
        atlassian: dict[str, Any] = {
            "client_id": CLIENT_ID, "client_secret": secret, "scope": scope, "callback_path": "/callback",
            "auth_url": f"{url}/authorize", "token_url": f"{url}/oauth/token",
        }  # fmt: skip
        if claim_mappings:
            atlassian["claim_mappings"] = claim_mappings
        return {"provider": "atlassian", "atlassian": atlassian}

    return block


def _stack(tmp: Path, upstream: RecordingUpstream, auth, *fixture_args: str) -> Iterator[ProviderStack]:
    with provider_stack(tmp, upstream.url, "atlassian", auth, *fixture_args,
                        overrides=lambda url: {"api_url": url}) as ps:  # fmt: skip
        yield ps


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    mappings = {"extended_profile.department": {"R&D": ["research"]}, "account_status": {"active": ["active"]}}
    yield from _stack(tmp_path_factory.mktemp("atlassian"), echo_upstream, atlassian_auth(claim_mappings=mappings),
                      "--token-ttl", "4")  # fmt: skip


@pytest.fixture
def no_nickname(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, atlassian_auth(scope="read:me"), "--user", "bob")


@pytest.fixture
def wrong_secret(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, atlassian_auth(secret="not-the-secret"))


def me_at_atlassian(fixture: ProviderFixture, token: str) -> httpx.Response:
    return httpx.get(fixture.url + "/me", headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_login_gives_the_atlassian_account_and_token(offline: ProviderStack, echo_upstream: RecordingUpstream) -> None:
    token = browser.get_token(offline.url)["access_token"]
    claims = assertion(offline.url, echo_upstream, token)
    assert claims["provider"] == "atlassian"
    assert claims["sub"] == "712020:0b7a2c1e-4d5f-4e3a-9c2b-1a2b3c4d5e6f"
    assert claims["username"] == "alice"
    assert claims["email"] == "alice@acme.example"
    assert claims["name"] == "Alice Liddell"
    assert claims["avatar_url"] == "https://avatar-management.example/alice.png"
    assert claims["groups"] == []
    assert claims["capabilities"] == ["active", "research"], "claim_mappings on /me, nested paths included"
    me = me_at_atlassian(offline.fixture, claims["ext"])
    assert me.status_code == 200 and me.json()["nickname"] == "alice", "ext is alice's Atlassian token"

    fx = offline.fixture
    q = fx.requests("/authorize")[-1]["query"]
    assert q["audience"] == "api.atlassian.com" and q["prompt"] == "consent" and q["response_type"] == "code"
    assert q["scope"] == "read:me read:jira-work offline_access" and q["client_id"] == CLIENT_ID
    [exchange] = fx.requests("/oauth/token", grant_type="authorization_code")[-1:]
    assert exchange["content_type"] == "application/json"
    assert exchange["body_keys"] == ["client_id", "client_secret", "code", "grant_type", "redirect_uri"]


def test_expiring_token_is_refreshed_once_and_the_rotated_refresh_token_kept(
    offline: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    fx = offline.fixture
    refreshes_before = len(fx.requests("/oauth/token", grant_type="refresh_token"))
    token = browser.get_token(offline.url)["access_token"]
    ext = assertion(offline.url, echo_upstream, token)["ext"]
    for round_ in (1, 2):
        deadline = time.monotonic() + 15
        while me_at_atlassian(fx, ext).status_code == 200:
            assert time.monotonic() < deadline, "the 4 s Atlassian token never expired"
            time.sleep(0.25)
        fresh = assertion(offline.url, echo_upstream, token)["ext"]
        assert fresh != ext, f"round {round_}: the expired token was handed on"
        assert me_at_atlassian(fx, fresh).status_code == 200
        assert assertion(offline.url, echo_upstream, token)["ext"] == fresh
        refreshes = fx.requests("/oauth/token", grant_type="refresh_token")[refreshes_before:]
        assert len(refreshes) == round_, f"exactly one refresh per expiry: {refreshes}"
        assert refreshes[-1]["content_type"] == "application/json"
        assert refreshes[-1]["body_keys"] == ["client_id", "client_secret", "grant_type", "refresh_token"]
        ext = fresh
    # The second refresh succeeded only because mxgate stored the rotated refresh token (each is single use).


def test_username_falls_back_to_the_email_local_part(no_nickname: ProviderStack, echo_upstream: RecordingUpstream) -> None:
    claims = assertion(no_nickname.url, echo_upstream, browser.get_token(no_nickname.url)["access_token"])
    assert claims["username"] == "bob.builder"
    assert claims["email"] == "bob.builder@acme.example"
    assert "avatar_url" not in claims


def test_a_wrong_client_secret_ends_the_login_with_an_oauth_error(wrong_secret: ProviderStack) -> None:
    client_id = browser.register(wrong_secret.url)["client_id"]
    _verifier, challenge = browser.pkce_pair()
    state = secrets.token_urlsafe(12)
    url = browser.authorization_url(wrong_secret.url, client_id, browser.DEFAULT_REDIRECT_URI, challenge, state)
    with browser.Browser() as b:
        auth = b.authorize(url, browser.DEFAULT_REDIRECT_URI)
    assert auth.state == state and auth.error == "access_denied" and auth.code is None, auth.params
    assert wrong_secret.fixture.requests("/oauth/token"), "the exchange was tried (and refused with 401)"
    assert wrong_secret.fixture.requests("/me") == []
    assert httpx.get(wrong_secret.url + "/healthz", timeout=5).status_code == 200


def test_the_fixture_refuses_like_atlassian(tmp_path: Path) -> None:
    callback = "http://127.0.0.1:9/callback"
    with ProviderFixture("atlassian", tmp_path, "--redirect-uri", callback) as fx:
        def code(**override: str) -> httpx.Response:
            params = {"audience": "api.atlassian.com", "client_id": CLIENT_ID, "scope": "read:me",
                      "redirect_uri": callback, "state": "s", "response_type": "code", "prompt": "consent"}  # fmt: skip
            params.update(override)
            return httpx.get(fx.url + "/authorize", params=params)

        def exchange(c: str, secret: str = CLIENT_SECRET) -> httpx.Response:
            return httpx.post(fx.url + "/oauth/token", json={
                "grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": secret,
                "code": c, "redirect_uri": callback})  # fmt: skip

        assert code(redirect_uri="http://127.0.0.1:9/other").status_code == 400
        assert code(audience="other").status_code == 400
        c = browser._params(code().headers["location"])["code"]
        r = exchange(c, secret="wrong")
        assert r.status_code == 401 and r.json() == {"error": "access_denied", "error_description": "Unauthorized"}
        c = browser._params(code().headers["location"])["code"]
        form = httpx.post(fx.url + "/oauth/token", data={"grant_type": "authorization_code", "code": c})
        assert form.status_code == 415 and form.json()["error"] == "invalid_request"
        c = browser._params(code().headers["location"])["code"]
        ok = exchange(c).json()
        assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3600 and "refresh_token" not in ok
        again = exchange(c)
        assert again.status_code == 403 and again.json()["error"] == "invalid_grant", "a code is single use"


@pytest.mark.parametrize(
    ("email_verified", "assume_verified", "email"),
    [
        ("false", False, None),
        ("absent", False, None),
        ("absent", True, "bob.builder@acme.example"),
        ("false", True, None),
    ],
)
def test_only_a_verified_email_reaches_the_core(
    tmp_path: Path, echo_upstream: RecordingUpstream, email_verified: str, assume_verified: bool, email: str | None
) -> None:
    extra = {"assume_email_verified": {"atlassian": True}} if assume_verified else None
    # bob has no nickname: his username would come from the email.
    with provider_stack(tmp_path, echo_upstream.url, "atlassian", atlassian_auth(scope="read:me"),
                        "--user", "bob", "--email-verified", email_verified,
                        overrides=lambda url: {"api_url": url}, gateway_extra=extra) as ps:  # fmt: skip
        claims = assertion(ps.url, echo_upstream, browser.get_token(ps.url)["access_token"])
        me = me_at_atlassian(ps.fixture, claims["ext"]).json()
    assert claims["provider"] == "atlassian" and claims["sub"] == "712020:9f8e7d6c-5b4a-4c3d-8e2f-6a5b4c3d2e1f"
    assert claims.get("email") == email, claims
    assert claims["username"] == ("bob.builder" if email else claims["sub"]), claims
    assert me["email"] == "bob.builder@acme.example", "Atlassian did send the address"
    assert me.get("email_verified", "absent") == {"false": False, "absent": "absent"}[email_verified]

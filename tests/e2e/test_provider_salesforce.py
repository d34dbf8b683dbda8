"""mxgate's ``salesforce`` provider end to end, against ``tests/fixtures/salesforce``
(Salesforce's OAuth 2.0 web server flow and Identity URLs, imitated locally): a user logs in
through mxgate, and the assertion the upstream receives names the Salesforce user as the
identity URL of the token response describes them, and carries the Salesforce access token in
``ext``.

* Everything comes from the configured ``auth_url`` / ``token_url`` and the token response's
  ``id``: a sandbox org (usernames with the sandbox suffix, ``login_hint``) works the same way.
* An identity URL on a foreign host is refused before anything is sent there: the login ends
  with an OAuth error redirect to the client.
* A wrong client secret (400 ``invalid_client``) ends the login with an OAuth error redirect.
* Only an email the identity marks ``email_verified: true`` reaches the core: ``false`` never
  does, and a missing flag does only with ``assume_email_verified: {salesforce: true}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import browser
from provider_fixtures import ProviderFixture, ProviderStack, assertion, provider_stack
from support import RecordingUpstream

CLIENT_ID = "3MVG9mxgateFixtureConsumerKey"
CLIENT_SECRET = "salesforce-secret"


def salesforce_auth(scope: str | None = "id api refresh_token", secret: str = CLIENT_SECRET,
                    claim_mappings: dict[str, Any] | None = None):  # fmt: skip
    def block(url: str) -> dict[str, Any]:
        salesforce: dict[str, Any] = {
            "client_id": CLIENT_ID, "client_secret": secret, "callback_path": "/callback",
            "auth_url": f"{url}/services/oauth2/authorize", "token_url": f"{url}/services/oauth2/token",
        }  # fmt: skip
        if scope is not None:
            salesforce["scope"] = scope
        if claim_mappings:
            salesforce["claim_mappings"] = claim_mappings
        return {"provider": "salesforce", "salesforce": salesforce}

    return block


def _stack(tmp: Path, upstream: RecordingUpstream, auth, *fixture_args: str) -> Iterator[ProviderStack]:
    with provider_stack(tmp, upstream.url, "salesforce", auth, *fixture_args) as ps:
        yield ps


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    mappings = {"user_type": {"STANDARD": ["sf.standard"]}, "email_verified": {"true": ["verified"]}}
    yield from _stack(tmp_path_factory.mktemp("sf-prod"), echo_upstream, salesforce_auth(claim_mappings=mappings))


@pytest.fixture
def sandbox(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, salesforce_auth(scope=None), "--environment", "sandbox")


@pytest.fixture
def foreign_identity(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    # `localhost` reaches the same fixture, but it is not the token endpoint's host (127.0.0.1).
    yield from _stack(tmp_path, echo_upstream, salesforce_auth(), "--identity-host", "localhost")


@pytest.fixture
def wrong_secret(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, salesforce_auth(secret="not-the-secret"))


def identity_at_salesforce(fixture: ProviderFixture, identity_url: str, token: str) -> httpx.Response:
    return httpx.get(identity_url, headers={"authorization": f"Bearer {token}"}, timeout=10)


def login_error(stack_url: str) -> browser.AuthResponse:
    client_id = browser.register(stack_url)["client_id"]
    _verifier, challenge = browser.pkce_pair()
    state = secrets.token_urlsafe(12)
    url = browser.authorization_url(stack_url, client_id, browser.DEFAULT_REDIRECT_URI, challenge, state)
    with browser.Browser() as b:
        auth = b.authorize(url, browser.DEFAULT_REDIRECT_URI)
    assert auth.state == state, auth.params
    return auth


def test_login_gives_the_identity_url_user_and_token(production: ProviderStack, echo_upstream: RecordingUpstream) -> None:
    token = browser.get_token(production.url)["access_token"]
    claims = assertion(production.url, echo_upstream, token)
    assert claims["provider"] == "salesforce"
    assert claims["sub"] == "0055e000001XyZaAAK"
    assert claims["username"] == "alice@acme.example"
    assert claims["email"] == "alice@acme.example"
    assert claims["name"] == "Alice Liddell"
    assert claims["avatar_url"] == "https://acme.my.salesforce.com/profilephoto/005/T"
    assert claims["capabilities"] == ["sf.standard", "verified"]
    fx = production.fixture
    identity_url = f"{fx.url}/id/00D5e000000abcdEAA/0055e000001XyZaAAK"
    me = identity_at_salesforce(fx, identity_url, claims["ext"])
    assert me.status_code == 200 and me.json()["username"] == "alice@acme.example", "ext is alice's Salesforce token"

    q = fx.requests("/services/oauth2/authorize")[-1]["query"]
    assert q["scope"] == "id api refresh_token" and q["code_challenge_method"] == "S256"
    [exchange] = fx.requests("/services/oauth2/token")[-1:]
    assert exchange["content_type"].startswith("application/x-www-form-urlencoded")
    assert exchange["body_keys"] == ["client_id", "client_secret", "code", "code_verifier", "grant_type", "redirect_uri"]
    identity_calls = fx.requests("/id/00D5e000000abcdEAA/0055e000001XyZaAAK")
    assert identity_calls and identity_calls[0]["host"] == fx.url.removeprefix("http://")
    # No expires_in in Salesforce's answer: nothing to refresh on a schedule.
    assert fx.requests(grant_type="refresh_token") == []


def test_a_sandbox_org_works_from_its_urls(sandbox: ProviderStack, echo_upstream: RecordingUpstream) -> None:
    login = browser.login(sandbox.url, login_hint="bob@acme.example.dev")
    claims = assertion(sandbox.url, echo_upstream, login.tokens["access_token"])
    assert claims["provider"] == "salesforce"
    assert claims["username"] == "bob@acme.example.dev"
    assert claims["sub"] == "0055e000001BoBbAAK"
    fx = sandbox.fixture
    q = fx.requests("/services/oauth2/authorize")[-1]["query"]
    assert q["login_hint"] == "bob@acme.example.dev"
    assert "scope" not in q, "no scope configured: the connected app's scopes apply"
    assert fx.requests("/id/00D7Y000000sbx1UAA/0055e000001BoBbAAK"), "the sandbox org's identity URL"


def test_an_identity_url_on_a_foreign_host_is_refused(foreign_identity: ProviderStack) -> None:
    auth = login_error(foreign_identity.url)
    assert auth.error == "server_error" and auth.code is None, auth.params
    fx = foreign_identity.fixture
    assert fx.requests("/services/oauth2/token"), "the code was exchanged"
    assert not [r for r in fx.requests() if r["path"].startswith("/id/")], "nothing was sent to the foreign host"
    assert "neither on the token endpoint's host" in foreign_identity.stack.gateway.log()
    assert httpx.get(foreign_identity.url + "/healthz", timeout=5).status_code == 200


def test_a_wrong_client_secret_ends_the_login_with_an_oauth_error(wrong_secret: ProviderStack) -> None:
    auth = login_error(wrong_secret.url)
    assert auth.error == "access_denied" and auth.code is None, auth.params
    assert wrong_secret.fixture.requests("/services/oauth2/token")
    assert not [r for r in wrong_secret.fixture.requests() if r["path"].startswith("/id/")]


def test_the_fixture_refuses_like_salesforce(tmp_path: Path) -> None:
    callback = "http://127.0.0.1:9/callback"
    with ProviderFixture("salesforce", tmp_path, "--redirect-uri", callback) as fx:
        def code(**override: str) -> httpx.Response:
            params = {"response_type": "code", "client_id": CLIENT_ID, "redirect_uri": callback, "state": "s"}
            params.update(override)
            return httpx.get(fx.url + "/services/oauth2/authorize", params=params)

        def exchange(c: str, **override: str) -> httpx.Response:
            data = {"grant_type": "authorization_code", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                    "code": c, "redirect_uri": callback}  # fmt: skip
            data.update(override)
            return httpx.post(fx.url + "/services/oauth2/token", data=data)

        assert code(redirect_uri="http://127.0.0.1:9/other").status_code == 400
        c = browser._params(code().headers["location"])["code"]
        assert c.endswith("=="), "Salesforce codes end in =="
        r = exchange(c, client_secret="wrong")
        assert r.status_code == 400 and r.json()["error"] == "invalid_client"
        c = browser._params(code().headers["location"])["code"]
        r = exchange(c, redirect_uri="http://127.0.0.1:9/other")
        assert r.status_code == 400 and r.json()["error"] == "redirect_uri_mismatch"
        c = browser._params(code().headers["location"])["code"]
        ok = exchange(c).json()
        assert {"access_token", "refresh_token", "id", "instance_url", "signature", "issued_at"} <= set(ok)
        assert "expires_in" not in ok
        again = exchange(c)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant", "a code is single use"
        bad = httpx.get(ok["id"], headers={"authorization": "Bearer nope"})
        assert bad.status_code == 403 and bad.text == "Bad_OAuth_Token"


@pytest.mark.parametrize(
    ("email_verified", "assume_verified", "email"),
    [
        ("false", False, None),
        ("absent", False, None),
        ("absent", True, "alice@acme.example"),
        ("false", True, None),
    ],
)
def test_only_a_verified_email_reaches_the_core(
    tmp_path: Path, echo_upstream: RecordingUpstream, email_verified: str, assume_verified: bool, email: str | None
) -> None:
    extra = {"assume_email_verified": {"salesforce": True}} if assume_verified else None
    with provider_stack(tmp_path, echo_upstream.url, "salesforce", salesforce_auth(),
                        "--email-verified", email_verified, gateway_extra=extra) as ps:  # fmt: skip
        claims = assertion(ps.url, echo_upstream, browser.get_token(ps.url)["access_token"])
        identity_url = f"{ps.fixture.url}/id/00D5e000000abcdEAA/0055e000001XyZaAAK"
        identity = identity_at_salesforce(ps.fixture, identity_url, claims["ext"]).json()
    assert claims["provider"] == "salesforce" and claims["username"] == "alice@acme.example"
    assert claims.get("email") == email, claims
    assert identity["email"] == "alice@acme.example", "Salesforce did send the address"
    assert identity.get("email_verified", "absent") == {"false": False, "absent": "absent"}[email_verified]

"""mxgate's ``github`` provider end to end, against ``tests/fixtures/github`` (GitHub's OAuth web
flow and REST API, imitated locally): a user logs in through mxgate, and the assertion the
upstream receives says who they are (provider, numeric id, login, the primary verified email,
name, avatar, orgs and teams as groups, capabilities from ``claim_mappings``) and carries the
GitHub token in ``ext``.

* OAuth-app tokens never expire: mxgate never tries to refresh them, and the same token keeps
  being handed on (MXCP's GitHub sessions die after an hour).
* GitHub-App user tokens expire: mxgate refreshes them once, at the token endpoint.
* Scopes decide the calls: no ``/user/emails`` without ``user:email``, no orgs/teams without
  ``read:org``; a 403 at ``/user/emails`` falls back to the public email.
* A wrong client secret (GitHub answers it with HTTP 200 and an ``error``) ends the login with
  an OAuth error redirect to the client.
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

CLIENT_ID = "mxgate-github"
CLIENT_SECRET = "github-secret"
ALL_SCOPES = "read:user user:email read:org"


def github_auth(scope: str | None = ALL_SCOPES, secret: str = CLIENT_SECRET,
                claim_mappings: dict[str, Any] | None = None):  # fmt: skip
    def block(url: str) -> dict[str, Any]:
        github: dict[str, Any] = {
            "client_id": CLIENT_ID, "client_secret": secret, "callback_path": "/callback",
            "auth_url": f"{url}/login/oauth/authorize", "token_url": f"{url}/login/oauth/access_token",
        }  # fmt: skip
        if scope is not None:
            github["scope"] = scope
        if claim_mappings:
            github["claim_mappings"] = claim_mappings
        return {"provider": "github", "github": github}

    return block


def api_url(url: str) -> dict[str, str]:
    return {"api_url": url}


def _stack(tmp: Path, upstream: RecordingUpstream, auth, *fixture_args: str) -> Iterator[ProviderStack]:
    with provider_stack(tmp, upstream.url, "github", auth, *fixture_args, overrides=api_url) as ps:
        yield ps


@pytest.fixture(scope="module")
def oauth_app(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    mappings = {"groups": {"acme/mcp-admins": ["tools.admin"], "wonderland": ["tea.party"]},
                "login": {"alice": ["is.alice"]}}  # fmt: skip
    yield from _stack(tmp_path_factory.mktemp("gh-oauth-app"), echo_upstream, github_auth(claim_mappings=mappings))


@pytest.fixture(scope="module")
def github_app(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path_factory.mktemp("gh-app"), echo_upstream, github_auth(), "--app", "--token-ttl", "4")


@pytest.fixture
def user_scope_only(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, github_auth(scope="read:user"))


@pytest.fixture
def emails_forbidden(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, github_auth(scope=None), "--emails-status", "403", "--user", "bob")


@pytest.fixture
def wrong_secret(tmp_path: Path, echo_upstream: RecordingUpstream) -> Iterator[ProviderStack]:
    yield from _stack(tmp_path, echo_upstream, github_auth(secret="not-the-secret"))


def user_at_github(fixture: ProviderFixture, token: str) -> httpx.Response:
    """What GitHub's /user answers to ``token`` (is it a live GitHub token?)."""
    return httpx.get(fixture.url + "/user", timeout=10, headers={
        "authorization": f"Bearer {token}", "accept": "application/vnd.github+json",
        "x-github-api-version": "2022-11-28", "user-agent": "e2e",
    })  # fmt: skip


def login_error(stack_url: str, **extra: str) -> browser.AuthResponse:
    """A login whose provider part fails: where the browser ends up at the client."""
    client_id = browser.register(stack_url)["client_id"]
    _verifier, challenge = browser.pkce_pair()
    state = secrets.token_urlsafe(12)
    url = browser.authorization_url(stack_url, client_id, browser.DEFAULT_REDIRECT_URI, challenge, state, **extra)
    with browser.Browser() as b:
        auth = b.authorize(url, browser.DEFAULT_REDIRECT_URI)
    assert auth.state == state, auth.params
    return auth


def test_oauth_app_login_gives_the_github_user_orgs_teams_and_token(
    oauth_app: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    token = browser.get_token(oauth_app.url)["access_token"]
    claims = assertion(oauth_app.url, echo_upstream, token)
    assert claims["provider"] == "github"
    assert claims["sub"] == "1001", "the numeric GitHub id, as a string"
    assert claims["username"] == "alice"
    assert claims["email"] == "alice@wonderland.example", "the primary verified email (/user has none public)"
    assert claims["name"] == "Alice Liddell"
    assert claims["avatar_url"] == f"{oauth_app.fixture.url}/avatars/u/1001?v=4"
    assert claims["groups"] == ["acme", "wonderland", "acme/engineering", "acme/mcp-admins"]
    assert claims["capabilities"] == ["is.alice", "tea.party", "tools.admin"]
    assert claims["ext"].startswith("gho_")
    me = user_at_github(oauth_app.fixture, claims["ext"])
    assert me.status_code == 200 and me.json()["login"] == "alice", "ext is alice's GitHub token"

    fx = oauth_app.fixture
    [authorize] = fx.requests("/login/oauth/authorize")[-1:]
    q = authorize["query"]
    assert q["client_id"] == CLIENT_ID and q["scope"] == ALL_SCOPES and q["code_challenge_method"] == "S256"
    assert q["redirect_uri"] == oauth_app.stack.gateway.callback_url
    [exchange] = fx.requests("/login/oauth/access_token")[-1:]
    assert exchange["accept"] == "application/json"
    assert exchange["content_type"].startswith("application/x-www-form-urlencoded")
    assert exchange["body_keys"] == ["client_id", "client_secret", "code", "code_verifier", "redirect_uri"]
    api = [r for r in fx.requests() if r["path"].startswith("/user") and r["user_agent"] != "e2e"]
    assert {r["path"] for r in api} == {"/user", "/user/emails", "/user/orgs", "/user/teams"}
    for r in api:
        assert r["accept"] == "application/vnd.github+json", r
        assert r["api_version"] == "2022-11-28", r
        assert r["authorization_scheme"] == "Bearer", r
        assert r["user_agent"].startswith("mxgate/"), r


def test_verified_email_then_public_email_and_paginated_teams(
    oauth_app: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    before = len(oauth_app.fixture.requests("/user/teams"))
    login = browser.login(oauth_app.url, login_hint="bob")
    claims = assertion(oauth_app.url, echo_upstream, login.tokens["access_token"])
    assert claims["username"] == "bob" and claims["sub"] == "1002"
    assert claims["email"] == "bob@verified.example", "the primary is unverified: the first verified one"
    assert "name" not in claims, "GitHub's name is null"
    assert claims["groups"][0] == "bigcorp"
    assert len(claims["groups"]) == 1 + 130, "130 teams over two pages of 100"
    assert claims["groups"][-1] == "bigcorp/team-129"
    assert len(oauth_app.fixture.requests("/user/teams")) - before == 2


def test_oauth_app_token_never_expires_and_is_never_refreshed(
    oauth_app: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    login = browser.login(oauth_app.url)
    first = assertion(oauth_app.url, echo_upstream, login.tokens["access_token"])["ext"]
    # Longer than the GitHub-App token lifetime used below: an expiring token would be dead by now.
    time.sleep(5)
    refreshed = browser.refresh(oauth_app.url, login.client_id, login.tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    # mxgate's own refresh (a new mxgate access token) keeps the same GitHub token.
    assert assertion(oauth_app.url, echo_upstream, refreshed.json()["access_token"])["ext"] == first
    assert user_at_github(oauth_app.fixture, first).status_code == 200
    assert oauth_app.fixture.requests(grant_type="refresh_token") == [], "no refresh was attempted"


def test_github_app_user_token_is_refreshed_once_when_it_expires(
    github_app: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    fx = github_app.fixture
    token = browser.get_token(github_app.url)["access_token"]
    claims = assertion(github_app.url, echo_upstream, token)
    first = claims["ext"]
    assert first.startswith("ghu_") and claims["username"] == "alice"
    assert claims["email"] == "alice@wonderland.example"
    assert claims["groups"] == ["acme", "wonderland", "acme/engineering", "acme/mcp-admins"], (
        "a GitHub App grants no scopes: the configured ones decide"
    )
    deadline = time.monotonic() + 15
    while user_at_github(fx, first).status_code == 200:
        assert time.monotonic() < deadline, "the 4 s GitHub token never expired"
        time.sleep(0.25)
    assert fx.requests(grant_type="refresh_token") == []

    second = assertion(github_app.url, echo_upstream, token)
    assert second["ext"] != first and second["ext"].startswith("ghu_")
    assert user_at_github(fx, second["ext"]).json()["login"] == "alice"
    [refresh] = fx.requests(grant_type="refresh_token")
    assert refresh["body_keys"] == ["client_id", "client_secret", "grant_type", "refresh_token"]
    assert assertion(github_app.url, echo_upstream, token)["ext"] == second["ext"]
    assert len(fx.requests(grant_type="refresh_token")) == 1, "exactly one refresh"


def test_scopes_decide_which_github_calls_are_made(
    user_scope_only: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    ps = user_scope_only
    claims = assertion(ps.url, echo_upstream, browser.get_token(ps.url)["access_token"])
    assert claims["username"] == "alice"
    assert "email" not in claims, "no public email and no user:email scope"
    assert claims["groups"] == []
    assert {r["path"] for r in ps.fixture.requests() if r["path"].startswith("/user")} == {"/user"}, "only /user"
    assert ps.fixture.requests("/login/oauth/authorize")[0]["query"]["scope"] == "read:user"


def test_a_forbidden_email_list_falls_back_to_the_public_email(
    emails_forbidden: ProviderStack, echo_upstream: RecordingUpstream
) -> None:
    ps = emails_forbidden
    claims = assertion(ps.url, echo_upstream, browser.get_token(ps.url)["access_token"])
    assert claims["username"] == "bob"
    assert claims["email"] == "bob@public.example"
    assert ps.fixture.requests("/user/emails"), "the email list was asked for (and refused)"
    query = ps.fixture.requests("/login/oauth/authorize")[0]["query"]
    assert query["scope"] == "read:user user:email", "MXCP's default scope"


def test_a_wrong_client_secret_ends_the_login_with_an_oauth_error(wrong_secret: ProviderStack) -> None:
    ps = wrong_secret
    auth = login_error(ps.url)
    assert auth.error == "access_denied" and auth.code is None, auth.params
    assert auth.iss == ps.url
    [exchange] = ps.fixture.requests("/login/oauth/access_token")
    assert exchange["grant_type"] == "authorization_code"
    assert httpx.get(ps.url + "/healthz", timeout=5).status_code == 200
    assert not [r for r in ps.fixture.requests() if r["path"].startswith("/user")]


def test_the_fixture_refuses_like_github(tmp_path: Path) -> None:
    """The fixture itself: GitHub's 200-with-error answers for a wrong secret, a reused code and
    a wrong redirect URI, and the redirect_uri_mismatch redirect at the authorize step."""
    callback = "http://127.0.0.1:9/callback"
    with ProviderFixture("github", tmp_path, "--redirect-uri", callback) as fx:
        def code(redirect_uri: str = callback) -> httpx.Response:
            return httpx.get(fx.url + "/login/oauth/authorize", params={
                "client_id": CLIENT_ID, "redirect_uri": redirect_uri, "state": "s", "scope": "read:user"})  # fmt: skip

        def exchange(c: str, secret: str = CLIENT_SECRET, redirect_uri: str = callback) -> dict[str, Any]:
            r = httpx.post(fx.url + "/login/oauth/access_token", headers={"accept": "application/json"}, data={
                "client_id": CLIENT_ID, "client_secret": secret, "code": c, "redirect_uri": redirect_uri})  # fmt: skip
            assert r.status_code == 200, "GitHub answers token errors with 200"
            return r.json()

        mismatch = code("http://127.0.0.1:9/other")
        assert mismatch.status_code == 302 and "error=redirect_uri_mismatch" in mismatch.headers["location"]
        c = browser._params(code().headers["location"])["code"]
        assert exchange(c, secret="wrong")["error"] == "incorrect_client_credentials"
        c = browser._params(code().headers["location"])["code"]
        assert exchange(c, redirect_uri="http://127.0.0.1:9/elsewhere")["error"] == "redirect_uri_mismatch"
        c = browser._params(code().headers["location"])["code"]
        ok = exchange(c)
        assert ok["access_token"].startswith("gho_") and ok["scope"] == "read:user" and "expires_in" not in ok
        assert exchange(c)["error"] == "bad_verification_code", "a code is single use"
        form = httpx.post(fx.url + "/login/oauth/access_token", data={"client_id": CLIENT_ID})
        assert form.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert "error=incorrect_client_credentials" in form.text

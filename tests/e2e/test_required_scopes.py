"""`authorization.required_scopes` (here `mxcp:access` and `mxcp:admin`, the MXCP guide's example):
a token must carry both; a token without one is refused with 403 `insufficient_scope`, naming the
scopes and the resource metadata (MXCP 0.12.3 refuses every request once this is set); the
metadata advertises the scopes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import RecordingUpstream, Stack, oidc_auth_block

REDIRECT = browser.DEFAULT_REDIRECT_URI


@pytest.fixture(scope="module")
def scoped(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    def auth(issuer: str) -> dict:
        return {**oidc_auth_block(issuer), "authorization": {"required_scopes": ["mxcp:access", "mxcp:admin"]}}

    with Stack(tmp_path_factory.mktemp("required-scopes"), echo_upstream.url, auth=auth) as stack:
        yield stack


def _client(stack: Stack, scope: str) -> str:
    r = httpx.post(stack.url + "/register", timeout=10, json={
        "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "scope": scope,
    })  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()["client_id"]


def _call(stack: Stack, token: str) -> httpx.Response:
    return httpx.get(f"{stack.url}/mcp/x?id={uuid.uuid4().hex}", headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_the_metadata_advertises_the_required_scopes(scoped: Stack) -> None:
    prm = httpx.get(scoped.url + "/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert {"mxcp:access", "mxcp:admin"} <= set(prm["scopes_supported"])
    challenge = httpx.post(scoped.url + "/mcp", timeout=10).headers["www-authenticate"]
    assert 'scope="mxcp:access mxcp:admin"' in challenge


def test_a_token_without_every_required_scope_is_refused(scoped: Stack) -> None:
    lg = browser.login(scoped.url, client_id=_client(scoped, "mxcp:access"), scope="mxcp:access")
    assert lg.tokens["scope"] == "mxcp:access"
    r = _call(scoped, lg.tokens["access_token"])
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope", r.text
    challenge = r.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="mxcp:access mxcp:admin"' in challenge
    assert f'resource_metadata="{scoped.url}/.well-known/oauth-protected-resource/mcp"' in challenge

    # The refusal is in the audit log: who, which client, from where, why, and the path without its query.
    audit = scoped.gateway.data_dir / "audit" / "audit.jsonl"
    deadline = time.monotonic() + 10
    denied: list[dict] = []
    while not denied and time.monotonic() < deadline:
        records = [json.loads(line) for line in audit.read_text().splitlines()]
        denied = [r for r in records if r["event"] == "request_denied" and r.get("client_id") == lg.client_id]
        time.sleep(0.05)
    assert denied, "no request_denied record"
    assert (denied[0]["user"], denied[0]["client_addr"], denied[0]["request"]) == ("oidc:alice", "127.0.0.1", "GET /mcp/x")
    assert denied[0]["reason"] == "insufficient scope: requires mxcp:access mxcp:admin, granted mxcp:access"


def test_a_token_with_every_required_scope_is_admitted(scoped: Stack) -> None:
    client = _client(scoped, "mxcp:access mxcp:admin")
    lg = browser.login(scoped.url, client_id=client, scope="mxcp:access mxcp:admin")
    assert set(lg.tokens["scope"].split()) == {"mxcp:access", "mxcp:admin"}
    assert _call(scoped, lg.tokens["access_token"]).status_code == 200
    refreshed = browser.refresh(scoped.url, client, lg.tokens["refresh_token"]).json()
    assert _call(scoped, refreshed["access_token"]).status_code == 200, "the scopes survive a refresh"

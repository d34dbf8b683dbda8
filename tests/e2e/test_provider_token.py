"""The provider's access token that mxgate hands to the core (assertion claim ``ext``, what
``get_user_external_token()`` returns) must be usable at the provider. Here the IdP's access
tokens live 2 s; after that, mxgate must refresh the provider token (it holds the IdP refresh
token) rather than keep passing on a dead one (DESIGN: "refresh of provider tokens happens once
per session at a time"; MXCP's "GitHub sessions die after an hour" is to be fixed)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

import browser
from support import RecordingUpstream, Stack, header_values


@pytest.fixture(scope="module")
def short_idp_stack(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("short-idp-token"), echo_upstream.url,
               idp_args=("--access-token-ttl", "2")) as stack:  # fmt: skip
        yield stack


def _ext_seen_by_upstream(stack: Stack, upstream: RecordingUpstream, token: str) -> str:
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack.url}/mcp/ext?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, (r.status_code, r.text)
    [req] = upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(req, "x-mxcp-user-assertion")
    return jwt.decode(assertion, options={"verify_signature": False})["ext"]


def _userinfo(stack: Stack, provider_token: str) -> httpx.Response:
    return httpx.get(stack.idp.issuer + "/me", headers={"authorization": f"Bearer {provider_token}"}, timeout=10)


def test_external_token_stays_usable_after_the_provider_token_expires(
    short_idp_stack: Stack, echo_upstream: RecordingUpstream
) -> None:
    stack = short_idp_stack
    token = browser.get_token(stack.url)["access_token"]
    ext = _ext_seen_by_upstream(stack, echo_upstream, token)
    first = _userinfo(stack, ext)
    assert first.status_code == 200 and first.json()["sub"] == "alice", first.text

    deadline = time.monotonic() + 10
    while _userinfo(stack, ext).status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.25)  # until the IdP's 2 s token is dead
    assert _userinfo(stack, ext).status_code == 401

    fresh = _ext_seen_by_upstream(stack, echo_upstream, token)
    r = _userinfo(stack, fresh)
    assert r.status_code == 200, (
        "mxgate forwards an expired provider access token in `ext` (no provider token refresh): "
        f"userinfo answered {r.status_code}; same token as before: {fresh == ext}"
    )
    assert r.json()["sub"] == "alice"

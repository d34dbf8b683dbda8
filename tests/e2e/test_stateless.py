"""Stateless mode (MXCP's `transport.http.stateless: true`): access tokens are self-contained
(sealed, so the provider token inside stays secret) and checking them reads no store — shown by
wiping mxgate's store and restarting it: the access token still works, as it would on any other
replica with the same `persistence.auth_encryption_key`. What stateless mode cannot do, also
shown: a revoked session's access token is refused at once only by the replica that revoked it
(shown by a restart, which forgets); elsewhere it works until it expires (it just cannot be
refreshed). A browser session's cookie token lives only `access_token_ttl` and is renewed on use
while the session lasts, so browser logout takes effect within that bound."""

from __future__ import annotations

import shutil
import time
import signal
import uuid
from collections.abc import Iterator

import httpx
import jwt
import pytest

import browser
from support import RecordingUpstream, Stack, header_values, oidc_auth_block

# A Fernet key (32 random bytes, url-safe base64), the kind MXCP users set.
KEY = "GeAgz67KcWnsIaGivgJOQGDok-95HRmNbIa7oq_Dotw="


@pytest.fixture(scope="module")
def stateless(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    def auth(issuer: str) -> dict:
        return {**oidc_auth_block(issuer), "persistence": {"type": "sqlite", "auth_encryption_key": KEY}}

    with Stack(tmp_path_factory.mktemp("stateless"), echo_upstream.url, auth=auth,
               transport={"stateless": True}, tokens={"access_token_ttl": "5m"}) as stack:  # fmt: skip
        yield stack


def _assertion(stack: Stack, upstream: RecordingUpstream, token: str) -> dict | None:
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack.url}/mcp/x?id={marker}", headers={"authorization": f"Bearer {token}"}, timeout=10)
    if r.status_code != 200:
        return None
    [seen] = upstream.find(lambda q: marker in q["path"])
    [assertion] = header_values(seen, "x-mxcp-user-assertion")
    return jwt.decode(assertion, options={"verify_signature": False})


def test_self_contained_tokens_need_no_store(stateless: Stack, echo_upstream: RecordingUpstream) -> None:
    lg = browser.login(stateless.url)
    access = lg.tokens["access_token"]
    assert access.startswith("mxg_st_")
    claims = _assertion(stateless, echo_upstream, access)
    assert claims and claims["sub"] == "alice" and claims["ext"], claims
    assert claims["ext"] not in access, "the provider token inside is encrypted"

    gw = stateless.gateway
    assert gw.stop(signal.SIGTERM) == 0
    for item in gw.data_dir.iterdir():  # no sessions, no tokens, no keys but the configured one
        shutil.rmtree(item) if item.is_dir() else item.unlink()
    gw.start()
    after = _assertion(stateless, echo_upstream, access)
    assert after and after["sub"] == "alice", "the token worked with an empty store"

    forged = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    r = httpx.get(f"{stateless.url}/mcp/x", headers={"authorization": f"Bearer {forged}"}, timeout=10)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_refresh_works_and_revocation_stops_refresh_but_not_live_tokens(
    stateless: Stack, echo_upstream: RecordingUpstream
) -> None:
    lg = browser.login(stateless.url)
    r = browser.refresh(stateless.url, lg.client_id, lg.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    newest = r.json()
    assert newest["access_token"].startswith("mxg_st_")
    assert _assertion(stateless, echo_upstream, newest["access_token"])

    out = httpx.post(stateless.url + "/logout", headers={"authorization": f"Bearer {newest['access_token']}"}, timeout=10)
    assert out.status_code == 200, out.text
    # The replica that revoked the session refuses its live tokens at once ...
    assert _assertion(stateless, echo_upstream, newest["access_token"]) is None, "revoked here"
    # ... the documented limit: another replica (here: this one after a restart, which forgets)
    # accepts an issued stateless access token until it expires ...
    gw = stateless.gateway
    assert gw.stop(signal.SIGTERM) == 0
    gw.start()
    assert _assertion(stateless, echo_upstream, newest["access_token"]), "still valid elsewhere until expiry"
    # ... but the session is over: no more refreshing.
    again = browser.refresh(stateless.url, lg.client_id, newest["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


@pytest.fixture(scope="module")
def stateless_short_tokens(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stateless-short-tokens"), echo_upstream.url, transport={"stateless": True},
               tokens={"access_token_ttl": "2s"}) as stack:  # fmt: skip
        yield stack


def _page(client: httpx.Client, stack: Stack, marker: str, cookie: str | None = None) -> httpx.Response:
    headers = {"accept": "application/json"}
    if cookie:
        headers["cookie"] = f"mxgate-session={cookie}"
    return client.get(f"{stack.url}/mcp/page?id={marker}", headers=headers)


def test_a_stateless_browser_cookie_is_short_lived_renewed_and_ended_by_logout(
    stateless_short_tokens: Stack, echo_upstream: RecordingUpstream
) -> None:
    stack = stateless_short_tokens
    with browser.Browser() as b:
        b.authorize(f"{stack.url}/login?return_to=/mcp/page", f"{stack.url}/mcp/page")
        first = b.client.cookies.get("mxgate-session")
        assert first and first.startswith("mxg_st_"), b.client.cookies
        assert _page(b.client, stack, uuid.uuid4().hex).status_code == 200

        time.sleep(2.5)  # the token inside the cookie has expired; the session has not
        renewed = _page(b.client, stack, uuid.uuid4().hex)
        assert renewed.status_code == 200, renewed.text
        assert "mxgate-session=mxg_st_" in renewed.headers.get("set-cookie", ""), renewed.headers
        second = b.client.cookies.get("mxgate-session")
        assert second and second != first

        confirm = b.client.get(f"{stack.url}/logout")
        [form] = browser.parse_forms(confirm.text)
        out = b.client.post(f"{stack.url}/logout", data=form.fields)
        assert out.status_code == 200, out.text

    with httpx.Client(timeout=10) as stranger:  # someone who kept a copy of the cookies
        assert _page(stranger, stack, uuid.uuid4().hex, second).status_code == 401, "refused at once here"
        time.sleep(2.5)
        for kept in (first, second):
            r = _page(stranger, stack, uuid.uuid4().hex, kept)
            assert r.status_code == 401 and "set-cookie" not in r.headers, "an ended session is not renewed"


@pytest.fixture(scope="module")
def stateless_short_idp(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with Stack(tmp_path_factory.mktemp("stateless-short"), echo_upstream.url, transport={"stateless": True},
               idp_args=("--access-token-ttl", "2")) as stack:  # fmt: skip
        yield stack


def test_tokens_never_outlive_the_provider_token_and_refresh_renews_it(
    stateless_short_idp: Stack, echo_upstream: RecordingUpstream
) -> None:
    stack = stateless_short_idp
    lg = browser.login(stack.url)
    assert lg.tokens["expires_in"] <= 2, "capped at the provider token's lifetime"
    first = _assertion(stack, echo_upstream, lg.tokens["access_token"])
    assert first

    deadline = time.monotonic() + 10
    while _assertion(stack, echo_upstream, lg.tokens["access_token"]) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _assertion(stack, echo_upstream, lg.tokens["access_token"]) is None, "expired with the provider token"

    r = browser.refresh(stack.url, lg.client_id, lg.tokens["refresh_token"])
    assert r.status_code == 200, r.text
    renewed = _assertion(stack, echo_upstream, r.json()["access_token"])
    assert renewed and renewed["ext"] != first["ext"], "the refresh renewed the provider token"
    userinfo = httpx.get(stack.idp.issuer + "/me", headers={"authorization": f"Bearer {renewed['ext']}"}, timeout=10)
    assert userinfo.status_code == 200, userinfo.text

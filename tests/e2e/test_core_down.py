"""Core unreachable: an authenticated request gets a prompt 502 with a JSON body, and `/readyz`
says 503 with the reason (liveness, `/healthz`, stays 200) until the core listens again.
An IdP whose discovery document cannot be loaded makes `/readyz` fail with that reason too."""

from __future__ import annotations

from collections.abc import Iterator

import socket
import time

import httpx
import pytest

import browser
from support import RecordingUpstream, Stack, free_port


@pytest.fixture(scope="module")
def down_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    closed = free_port()  # nothing listens there
    with Stack(tmp_path_factory.mktemp("core-down"), f"http://127.0.0.1:{closed}") as stack:
        yield stack


def _ready(stack: Stack) -> httpx.Response:
    return httpx.get(stack.url + "/readyz", timeout=10)


def _poll_ready(stack: Stack, status: int, seconds: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        r = _ready(stack)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_readyz_fails_with_the_reason_while_the_core_is_down_and_passes_once_it_listens(
    down_stack: Stack,
) -> None:
    upstream = down_stack.gateway.upstream.removeprefix("http://")
    r = _poll_ready(down_stack, 503)
    assert r.status_code == 503, r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.json() == {"ready": False, "reasons": [f"upstream {upstream} unreachable: connection refused"]}, r.text
    assert httpx.get(down_stack.url + "/healthz", timeout=10).status_code == 200, "liveness stays up"

    host, port = upstream.rsplit(":", 1)
    with socket.create_server((host, int(port))):  # the core comes up (accepting is enough)
        r = _poll_ready(down_stack, 200)
        assert r.status_code == 200, r.text
        assert r.json() == {"ready": True}
    assert _poll_ready(down_stack, 503).status_code == 503, "down again"


def test_readyz_fails_while_the_providers_discovery_cannot_be_loaded(
    tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream
) -> None:
    with Stack(tmp_path_factory.mktemp("idp-down"), echo_upstream.url) as stack:
        stack.idp.stop()  # before anything asked mxgate for the discovery document
        r = _ready(stack)
        assert r.status_code == 503, r.text
        [reason] = r.json()["reasons"]
        assert reason.startswith("provider `oidc` discovery not loaded: oidc: cannot reach the discovery document"), reason


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_core_down_gives_a_json_502(down_stack: Stack, method: str) -> None:
    token = browser.get_token(down_stack.url)["access_token"]
    r = httpx.request(method, down_stack.gateway.mcp_url, timeout=10,
                      headers={"authorization": f"Bearer {token}", "content-type": "application/json",
                               "accept": "application/json, text/event-stream"},
                      content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}' if method == "POST" else None)  # fmt: skip
    assert r.status_code == 502, (r.status_code, r.headers, r.text)
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and body.get("error"), body
    assert token not in r.text


def test_core_down_does_not_affect_the_oauth_endpoints(down_stack: Stack) -> None:
    assert httpx.get(down_stack.url + "/healthz", timeout=10).status_code == 200
    r = httpx.get(down_stack.url + "/.well-known/oauth-authorization-server", timeout=10)
    assert r.status_code == 200 and r.json()["issuer"] == down_stack.url
    # Without a token it is still a 401, not a 502: authentication comes first.
    assert httpx.get(down_stack.gateway.mcp_url, timeout=10).status_code == 401

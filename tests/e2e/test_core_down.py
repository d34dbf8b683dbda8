"""Core unreachable: an authenticated request gets a prompt 502 with a JSON body."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

import browser
from support import Stack, free_port


@pytest.fixture(scope="module")
def down_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    closed = free_port()  # nothing listens there
    with Stack(tmp_path_factory.mktemp("core-down"), f"http://127.0.0.1:{closed}") as stack:
        yield stack


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

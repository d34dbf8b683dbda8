"""`trust_proxy` (MXCP's `transport.http.trust_proxy`), done safely: X-Forwarded-Proto/-Host name
the public URL, and X-Forwarded-For the client, only when the connection comes from a trusted
proxy address (`trusted_proxies`, loopback by default); from anyone else they are dropped. A
configured public URL (`public_url` / MXCP `base_url`) always wins over forwarded headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

import browser
from support import RecordingUpstream, Stack, header_values

FORWARDED = {
    "x-forwarded-proto": "https",
    "x-forwarded-host": "mcp.example.com",
    "x-forwarded-for": "203.0.113.9",
}


def _stack(tmp: pytest.TempPathFactory, upstream: RecordingUpstream, name: str, **gateway: object) -> Stack:
    extra = {"public_url": None, **gateway}  # public URL derived from `listen`, not configured
    return Stack(tmp.mktemp(name), upstream.url, gateway_extra=extra, transport={"trust_proxy": True})


@pytest.fixture(scope="module")
def trusting(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with _stack(tmp_path_factory, echo_upstream, "trusting") as stack:
        yield stack


@pytest.fixture(scope="module")
def not_trusting_loopback(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with _stack(tmp_path_factory, echo_upstream, "untrusted", trusted_proxies=["10.0.0.0/8"]) as stack:
        yield stack


@pytest.fixture(scope="module")
def configured_url(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Stack]:
    with _stack(tmp_path_factory, echo_upstream, "configured", public_url="https://configured.example") as stack:
        yield stack


def _issuer(stack: Stack, headers: dict[str, str]) -> str:
    r = httpx.get(stack.url + "/.well-known/oauth-authorization-server", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["issuer"]


def _forwarded_to_core(stack: Stack, upstream: RecordingUpstream, token: str, headers: dict[str, str]) -> dict:
    marker = uuid.uuid4().hex
    r = httpx.get(f"{stack.url}/mcp/x?id={marker}", headers={"authorization": f"Bearer {token}", **headers}, timeout=10)
    assert r.status_code == 200, r.text
    [seen] = upstream.find(lambda q: marker in q["path"])
    return seen


def test_a_trusted_proxy_names_the_public_url_and_the_client(trusting: Stack, echo_upstream: RecordingUpstream) -> None:
    assert _issuer(trusting, FORWARDED) == "https://mcp.example.com"
    prm = httpx.get(trusting.url + "/.well-known/oauth-protected-resource/mcp", headers=FORWARDED, timeout=10).json()
    assert prm["resource"] == "https://mcp.example.com/mcp"
    assert prm["authorization_servers"] == ["https://mcp.example.com"]
    challenge = httpx.post(trusting.url + "/mcp", headers=FORWARDED, timeout=10).headers["www-authenticate"]
    assert 'resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp"' in challenge
    assert _issuer(trusting, {}) == trusting.url, "without forwarded headers: the derived URL"

    token = browser.get_token(trusting.url)["access_token"]
    seen = _forwarded_to_core(trusting, echo_upstream, token, FORWARDED)
    assert header_values(seen, "x-forwarded-for") == ["203.0.113.9, 127.0.0.1"]
    assert header_values(seen, "x-real-ip") == ["203.0.113.9"]
    assert header_values(seen, "x-forwarded-proto") == ["https"]
    assert header_values(seen, "x-forwarded-host") == ["mcp.example.com"]


def test_forwarded_headers_from_an_untrusted_address_are_dropped(
    not_trusting_loopback: Stack, echo_upstream: RecordingUpstream
) -> None:
    stack = not_trusting_loopback
    assert _issuer(stack, FORWARDED) == stack.url
    token = browser.get_token(stack.url)["access_token"]
    seen = _forwarded_to_core(stack, echo_upstream, token, FORWARDED)
    assert header_values(seen, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(seen, "x-real-ip") == ["127.0.0.1"]
    assert header_values(seen, "x-forwarded-proto") == ["http"]
    assert header_values(seen, "x-forwarded-host") == [stack.url.removeprefix("http://")]


def test_a_configured_public_url_wins_over_forwarded_headers(configured_url: Stack) -> None:
    assert _issuer(configured_url, FORWARDED) == "https://configured.example"
    assert _issuer(configured_url, {}) == "https://configured.example"

"""mxgate behind nginx and behind Traefik, each running the shipped example configuration
(deploy/nginx/mxgate.conf; deploy/traefik/traefik.yml + dynamic.yml) with only the addresses
changed: mxgate with `trust_proxy` on, the proxy's address (127.0.0.1) alone in
`trusted_proxies`, and no configured public URL, so the public URL comes from the proxy's
X-Forwarded-Proto/-Host.

* The official MCP SDK client logs in through each proxy (401 → metadata → registration →
  login at the IdP → token) and calls `whoami` on the real MXCP core as alice; the issuer, the
  protected resource, the challenge and the authorization URL all name the proxy's URL.
* Server-sent events stream through each proxy unbuffered (the recording upstream holds its
  stream open after the first event until the test has read it).
* A client (connecting from 127.0.0.3) that forges X-Forwarded-For is still seen as
  127.0.0.3 by mxgate (the X-Real-IP it sends on).
* With mxgate's forward-auth endpoint on, no client reaches it through either example.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

import browser
from browser import Browser, SdkHandlers
from front_proxies import DEPLOY, Fronted, proxies_available
from sdk_client import MemoryStorage, oauth_provider
from support import RecordingUpstream, Stack, header_values

PROXIES = ["nginx", "traefik"]
EXAMPLES = {"nginx": "mxgate.conf", "traefik": "dynamic.yml"}
OUTSIDE_CLIENT = "127.0.0.3"  # not a trusted proxy: only 127.0.0.1/32 is
BEHIND = {"public_url": None, "trusted_proxies": ["127.0.0.1/32"]}
REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"


def _fronted(tmp_path_factory: pytest.TempPathFactory, name: str, *, forward_auth: bool = False,
             **stack: Any) -> Iterator[Fronted]:  # fmt: skip
    if why := proxies_available():
        pytest.fail(f"nginx or Traefik missing: {why}")
    tmp = tmp_path_factory.mktemp(name)
    extra = {**BEHIND, "forward_auth": {"enabled": forward_auth}}
    with Fronted(Stack(tmp, gateway_extra=extra, transport={"trust_proxy": True}, **stack), tmp, EXAMPLES) as f:
        yield f


@pytest.fixture(scope="module")
def core_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fronted]:
    # Forward auth on as well: the examples must keep its endpoint out of clients' reach.
    yield from _fronted(tmp_path_factory, "core-behind", with_core=True, forward_auth=True)


@pytest.fixture(scope="module")
def echo_behind(tmp_path_factory: pytest.TempPathFactory, echo_upstream: RecordingUpstream) -> Iterator[Fronted]:
    yield from _fronted(tmp_path_factory, "echo-behind", upstream=echo_upstream.url)


async def _sdk_whoami(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage) -> Any:
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e behind a proxy")
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await session.call_tool("whoami", {})


@pytest.mark.parametrize("proxy", PROXIES)
def test_the_sdk_client_logs_in_through_the_proxy_and_the_core_sees_alice(core_behind: Fronted, proxy: str) -> None:
    front = core_behind.proxies[proxy]
    public = front.url

    meta = httpx.get(public + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert meta["issuer"] == public
    assert meta["authorization_endpoint"] == public + "/authorize"
    prm = httpx.get(public + "/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert prm["resource"] == public + "/mcp"
    assert prm["authorization_servers"] == [public]
    challenge = httpx.post(public + "/mcp", json={}, timeout=10)
    assert challenge.status_code == 401, challenge.text
    assert f'resource_metadata="{public}/.well-known/oauth-protected-resource/mcp"' in challenge.headers[
        "www-authenticate"
    ]

    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    storage = MemoryStorage()
    try:
        whoami = anyio.run(_sdk_whoami, front.mcp_url, handlers, storage)
    finally:
        handlers.browser.close()
    assert [u.split("?")[0] for u in handlers.authorization_urls] == [public + "/authorize"]
    result = handlers.results[0]
    assert result.iss == public, result.params
    assert any(s.url.startswith(public + "/callback") for s in result.steps), result.steps
    assert not whoami.is_error, whoami
    assert whoami.structured_content == {
        "username": "alice",
        "email": "alice@example.test",
        "provider": "oidc",
        "has_external_token": True,
    }


@pytest.mark.parametrize("proxy", PROXIES)
def test_clients_cannot_reach_the_forward_auth_endpoint_through_the_proxy(core_behind: Fronted, proxy: str) -> None:
    stack = core_behind.stack
    token = browser.get_token(stack.url)["access_token"]
    original = {"x-original-uri": "/mcp", "x-original-method": "POST", "x-forwarded-uri": "/mcp",
                "x-forwarded-method": "POST", "x-forwarded-host": stack.url.removeprefix("http://")}  # fmt: skip
    headers = {"authorization": f"Bearer {token}", **original}
    # mxgate itself answers its trusted proxy's address (this is what the examples must prevent) …
    direct = httpx.get(stack.url + "/_mxgate/forward-auth", headers=headers, timeout=10)
    assert direct.status_code == 200 and "x-mxcp-user-assertion" in direct.headers, direct.text
    # … but a client going through either example gets no assertion.
    r = httpx.get(core_behind.proxies[proxy].url + "/_mxgate/forward-auth", headers=headers, timeout=10)
    assert r.status_code >= 400, (r.status_code, r.headers, r.text)
    assert "x-mxcp-user-assertion" not in r.headers and "eyJ" not in r.text, (r.headers, r.text)


def _events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data:"):
            yield line[5:].strip()


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("proxy", PROXIES)
def test_server_sent_events_stream_through_unbuffered(
    echo_behind: Fronted, echo_upstream: RecordingUpstream, proxy: str, method: str
) -> None:
    token = browser.get_token(echo_behind.stack.url)["access_token"]
    key = uuid.uuid4().hex
    gate = echo_upstream.gate(key)
    url = f"{echo_behind.proxies[proxy].url}/sse?id={key}"
    headers = {"authorization": f"Bearer {token}", "accept": "text/event-stream"}
    first: str | None = None
    try:
        with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
            with client.stream(method, url, headers=headers, content=b"{}" if method == "POST" else None) as r:
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream"), r.headers
                events = _events(r.iter_lines())
                first = next(events)
                assert first == "first"
                assert not gate.is_set()
                gate.set()
                assert list(events) == ["second"]
    except httpx.ReadTimeout:
        pytest.fail(
            f"read timed out ({'after' if first else 'before'} the first event) while the upstream held "
            f"the stream open: {proxy} or mxgate buffers the response"
        )
    finally:
        gate.set()
    assert not [e for e in echo_upstream.sse_errors if key in e], echo_upstream.sse_errors


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_forged_x_forwarded_for_does_not_become_the_client(
    echo_behind: Fronted, echo_upstream: RecordingUpstream, proxy: str
) -> None:
    token = browser.get_token(echo_behind.stack.url)["access_token"]
    front = echo_behind.proxies[proxy]
    marker = uuid.uuid4().hex
    forged = {
        "x-forwarded-for": "203.0.113.9",
        "x-real-ip": "203.0.113.9",
        "x-forwarded-host": "evil.example",
        "x-forwarded-proto": "https",
    }
    transport = httpx.HTTPTransport(local_address=OUTSIDE_CLIENT)
    with httpx.Client(transport=transport, timeout=10) as client:
        r = client.get(f"{front.url}/mcp/x?id={marker}", headers={"authorization": f"Bearer {token}", **forged})
        assert r.status_code == 200, r.text
        issuer = client.get(front.url + "/.well-known/oauth-authorization-server", headers=forged).json()["issuer"]
    assert issuer == front.url, "a client's X-Forwarded-Proto/-Host never name the public URL"
    [seen] = echo_upstream.find(lambda q: marker in q["path"])
    assert header_values(seen, "x-real-ip") == [OUTSIDE_CLIENT]
    assert header_values(seen, "x-forwarded-proto") == ["http"]
    assert header_values(seen, "x-forwarded-host") == [f"127.0.0.1:{front.port}"]
    chain = header_values(seen, "x-forwarded-for")[0].split(", ")
    assert chain[-2:] == [OUTSIDE_CLIENT, "127.0.0.1"], chain
    assert "authorization" not in {k.lower() for k, _ in seen["headers"]}


def test_the_examples_keep_long_streams_open_and_drop_idle_connections_first() -> None:
    """What the tests cannot show in seconds or reliably: nginx ends a stream idle for
    `proxy_read_timeout` (60 s by default), Traefik one still written after `writeTimeout`
    (both measured with short values), so every example keeps them long. And a request sent on
    an idle pooled connection that the other side is closing at that moment breaks (measured:
    Traefik → core after 5.0–5.4 s idle, about 1 call in 12 cut mid-body, uvicorn closing at
    5 s), so the proxies drop idle connections first: below 5 s to the core, below mxgate's
    60 s `idle_timeout` to mxgate."""
    for conf in ("mxgate.conf", "forward-auth.conf"):
        text = (DEPLOY / "nginx" / conf).read_text()
        assert re.search(r"^\s*proxy_read_timeout 1h;", text, re.M), conf
        assert re.search(r"^\s*proxy_buffering off;", text, re.M), conf
        assert re.search(r"^\s*proxy_request_buffering off;", text, re.M), conf
        assert re.search(r"^\s*proxy_http_version 1\.1;", text, re.M), conf
    for conf, limits in (("mxgate.conf", {"mxgate": "30s"}), ("forward-auth.conf", {"mxgate": "30s", "mxcp_core": "3s"})):
        upstreams = dict(re.findall(r"upstream (\w+) \{([^}]*)\}", (DEPLOY / "nginx" / conf).read_text()))
        assert set(upstreams) == set(limits), (conf, upstreams)
        for name, idle in limits.items():
            assert f"keepalive_timeout {idle};" in upstreams[name], (conf, upstreams)
    for routes in ("dynamic.yml", "forward-auth.yml"):
        text = (DEPLOY / "traefik" / routes).read_text()
        assert re.search(r"^    mxgate:\n      forwardingTimeouts:\n        idleConnTimeout: 30s$", text, re.M), routes
        assert "        serversTransport: mxgate\n" in text, routes
    fa = (DEPLOY / "traefik" / "forward-auth.yml").read_text()
    assert re.search(r"^    mxcp-core:\n      forwardingTimeouts:\n        idleConnTimeout: 3s$", fa, re.M)
    assert "        serversTransport: mxcp-core\n" in fa
    static = (DEPLOY / "traefik" / "traefik.yml").read_text()
    assert re.search(r"^      respondingTimeouts:\n(        #.*\n)*        writeTimeout: 0s$", static, re.M), static

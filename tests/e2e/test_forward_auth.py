"""Forward-auth mode: nginx (`auth_request`, deploy/nginx/forward-auth.conf) and Traefik
(`ForwardAuth`, deploy/traefik/traefik.yml + forward-auth.yml), each forwarding MCP requests to
the real MXCP core itself after asking mxgate (`forward_auth: {enabled: true}`), and routing the
OAuth endpoints to mxgate. Only the addresses in the shipped examples are changed. mxgate has
`trust_proxy` on, only 127.0.0.1 in `trusted_proxies`, and no configured public URL, so every
public URL comes from the proxy.

* The official MCP SDK client logs in through each proxy and `whoami` on the core is alice.
* No token: 401 with the MCP challenge naming the proxy's protected-resource metadata; nothing
  reaches the core. A token without a required scope (`required_scopes` is on here): 403 with
  the `insufficient_scope` challenge.
* A client-sent `x-mxcp-user-assertion` (a genuine one of alice's, taken from mxgate's
  forward-auth answer; also spelled `x_mxcp_user_assertion`) never reaches the core: with bob's token the core sees bob (two
  assertions would make it see nobody), without a token the request is refused. The core gets
  its own Host, no Origin, no Authorization and no cookie.
* The forward-auth endpoint refuses a caller that is not a trusted proxy (127.0.0.3), and a
  client cannot reach it through either proxy.
* The original request's Origin is checked (403), and an MCP session alice opened
  gets 404 for bob (bound to alice at its first use: mxgate never sees the core issue it).
* A `forward_auth.path` that is one of mxgate's own endpoints stops mxgate at start.
"""

from __future__ import annotations

import base64
import json
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
from front_proxies import FrontProxy, Fronted, proxies_available
from sdk_client import MemoryStorage, oauth_provider
from support import ASSERTION_HEADER, PROTOCOL_VERSION, Gateway, McpHttp, Stack, oidc_auth_block

PROXIES = ["nginx", "traefik"]
EXAMPLES = {"nginx": "forward-auth.conf", "traefik": "forward-auth.yml"}
FORWARD_AUTH_PATH = "/_mxgate/forward-auth"
OUTSIDE = "127.0.0.3"  # not a trusted proxy: only 127.0.0.1/32 is
REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"
REQUIRED_SCOPES = ["mxcp:access", "mxcp:admin"]
ALICE = {"username": "alice", "email": "alice@example.test", "provider": "oidc", "has_external_token": True}


def _auth(issuer: str) -> dict[str, Any]:
    return {**oidc_auth_block(issuer), "authorization": {"required_scopes": REQUIRED_SCOPES}}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fronted]:
    """IdP + mxgate (forward auth on) + the real core, with nginx and Traefik in front."""
    if why := proxies_available():
        pytest.fail(f"nginx or Traefik missing: {why}")
    tmp = tmp_path_factory.mktemp("forward-auth")
    extra = {"public_url": None, "trusted_proxies": ["127.0.0.1/32"], "forward_auth": {"enabled": True}}
    stack = Stack(tmp, with_core=True, gateway_extra=extra, transport={"trust_proxy": True}, auth=_auth)
    with Fronted(stack, tmp, EXAMPLES, to_core=True) as fronted:
        yield fronted


@pytest.fixture(scope="module")
def tokens(deployment: Fronted) -> dict[str, str]:
    """Access tokens of alice and bob (logged in at mxgate directly)."""
    url = deployment.stack.url
    return {
        "alice": browser.login(url).tokens["access_token"],
        "bob": browser.login(url, login_hint="bob").tokens["access_token"],
    }


def ask_mxgate(deployment: Fronted, token: str | None, *, local_address: str | None = None,
               **headers: str) -> httpx.Response:  # fmt: skip
    """A forward-auth check sent to mxgate directly, as Traefik sends one."""
    h = {"x-forwarded-method": "POST", "x-forwarded-uri": "/mcp", "x-forwarded-proto": "http",
         "x-forwarded-host": deployment.proxies["traefik"].url.removeprefix("http://"),
         "x-forwarded-for": "127.0.0.1"}  # fmt: skip
    if token:
        h["authorization"] = f"Bearer {token}"
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(deployment.stack.url + FORWARD_AUTH_PATH, headers=h)


async def _sdk_whoami(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage) -> Any:
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e forward auth")
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    tools = sorted(t.name for t in (await session.list_tools()).tools)
                    return tools, await session.call_tool("whoami", {})


@pytest.mark.parametrize("proxy", PROXIES)
def test_the_sdk_client_logs_in_and_the_core_sees_alice(deployment: Fronted, proxy: str) -> None:
    front = deployment.proxies[proxy]
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    try:
        tools, whoami = anyio.run(_sdk_whoami, front.mcp_url, handlers, MemoryStorage())
    finally:
        handlers.browser.close()
    assert [u.split("?")[0] for u in handlers.authorization_urls] == [front.url + "/authorize"]
    assert handlers.results[0].iss == front.url
    assert "whoami" in tools
    assert not whoami.is_error, whoami
    assert whoami.structured_content == ALICE


@pytest.mark.parametrize("proxy", PROXIES)
def test_no_token_gets_the_challenge_and_reaches_nothing(deployment: Fronted, proxy: str) -> None:
    front = deployment.proxies[proxy]
    for token in (None, "made-up-token"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = httpx.post(front.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, headers=headers,
                       timeout=10)  # fmt: skip
        assert r.status_code == 401, r.text
        [challenge] = r.headers.get_list("www-authenticate")
        assert challenge.startswith("Bearer "), challenge
        assert f'resource_metadata="{front.url}/.well-known/oauth-protected-resource/mcp"' in challenge
        assert ("invalid_token" in challenge) == bool(token), challenge
        assert ASSERTION_HEADER not in r.headers
    prm = httpx.get(front.url + "/.well-known/oauth-protected-resource/mcp", timeout=10).json()
    assert prm["resource"] == front.mcp_url and prm["authorization_servers"] == [front.url]


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_token_without_a_required_scope_gets_403_with_the_challenge(
    deployment: Fronted, proxy: str
) -> None:
    front = deployment.proxies[proxy]
    url = deployment.stack.url
    client = httpx.post(url + "/register", timeout=10, json={
        "redirect_uris": [browser.DEFAULT_REDIRECT_URI], "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"], "scope": "mxcp:access",
    }).json()["client_id"]  # fmt: skip
    token = browser.login(url, client_id=client, scope="mxcp:access").tokens["access_token"]
    r = httpx.post(front.mcp_url, json={}, headers={"authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 403, r.text
    [challenge] = r.headers.get_list("www-authenticate")
    assert 'error="insufficient_scope"' in challenge and 'scope="mxcp:access mxcp:admin"' in challenge
    assert f'resource_metadata="{front.url}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert ASSERTION_HEADER not in r.headers


def test_mxgate_answers_a_trusted_proxy_with_the_assertion_only(
    deployment: Fronted, tokens: dict[str, str]
) -> None:
    r = ask_mxgate(deployment, tokens["alice"])
    assert r.status_code == 200, r.text
    assert r.headers[ASSERTION_HEADER].count(".") == 2
    assert r.headers["cache-control"] == "no-store"
    assert r.content == b""
    assert not {"www-authenticate", "set-cookie", "authorization"} & set(r.headers)
    claims = json.loads(_b64(r.headers[ASSERTION_HEADER].split(".")[1]))
    assert claims["username"] == "alice" and claims["iss"] == deployment.stack.url


def test_mxgate_refuses_a_caller_that_is_not_a_trusted_proxy(
    deployment: Fronted, tokens: dict[str, str]
) -> None:
    r = ask_mxgate(deployment, tokens["alice"], local_address=OUTSIDE)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "access_denied"
    assert ASSERTION_HEADER not in r.headers
    # Through the proxies (which mxgate trusts) a client cannot reach the endpoint either.
    for proxy, front in deployment.proxies.items():
        r = httpx.get(front.url + FORWARD_AUTH_PATH, timeout=10, headers={
            "authorization": f"Bearer {tokens['alice']}", "x-original-uri": "/mcp", "x-forwarded-uri": "/mcp",
            "x-forwarded-host": front.url.removeprefix("http://"),
        })  # fmt: skip
        assert r.status_code == 404, (proxy, r.status_code, r.text)
        assert ASSERTION_HEADER not in r.headers, proxy
        assert "eyJ" not in r.text, (proxy, r.text)


def test_the_original_origin_is_checked(deployment: Fronted, tokens: dict[str, str]) -> None:
    alice = tokens["alice"]
    assert ask_mxgate(deployment, alice, origin="http://evil.example").status_code == 403
    assert ask_mxgate(deployment, None, origin="http://evil.example").status_code == 403
    own = deployment.proxies["traefik"].url
    assert ask_mxgate(deployment, alice, origin=own).status_code == 200
    for proxy, front in deployment.proxies.items():
        r = httpx.post(front.mcp_url, json={}, timeout=10, headers={
            "authorization": f"Bearer {alice}", "origin": "http://evil.example",
        })  # fmt: skip
        assert r.status_code == 403, (proxy, r.status_code, r.text)
    # (A foreign Host gets 421 when mxgate has a configured public URL; here every proxy names
    # the public URL, as `trust_proxy` without one allows: see the unit tests of forward_auth.)


def _mcp(front: FrontProxy, token: str) -> McpHttp:
    return McpHttp(front.mcp_url, token)


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_client_sent_assertion_never_reaches_the_core(
    deployment: Fronted, tokens: dict[str, str], proxy: str
) -> None:
    front = deployment.proxies[proxy]
    alices = ask_mxgate(deployment, tokens["alice"]).headers[ASSERTION_HEADER]
    forged = [(ASSERTION_HEADER, alices), ("X-MXCP-USER-ASSERTION", alices), ("x_mxcp_user_assertion", alices)]
    with _mcp(front, tokens["bob"]) as bob:
        bob.initialize()
        whoami = bob.call_tool("whoami", forged)
        assert whoami["username"] == "bob", whoami
        seen = json.loads(bob.call_tool("request_headers", forged + [("origin", front.url)]))
    seen = {k.lower(): v for k, v in seen.items()}
    assert not {"authorization", "cookie", "origin"} & set(seen), seen
    assert not [name for name in seen if "mxcp" in name], seen
    assert seen["host"] == deployment.stack.core.url.removeprefix("http://"), seen  # type: ignore[union-attr]
    # Without a token, alice's genuine assertion gets the client nowhere.
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": {"name": "forger", "version": "1"},
    }}  # fmt: skip
    headers = {ASSERTION_HEADER: alices, "accept": "application/json, text/event-stream"}
    r = httpx.post(front.mcp_url, timeout=10, headers=headers, json=initialize)
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("proxy", PROXIES)
def test_another_users_mcp_session_is_refused(
    deployment: Fronted, tokens: dict[str, str], proxy: str
) -> None:
    front = deployment.proxies[proxy]
    with _mcp(front, tokens["alice"]) as alice:
        alice.initialize()
        assert alice.call_tool("whoami") == ALICE
        thief = McpHttp(front.mcp_url, tokens["bob"])
        thief.session_id = alice.session_id
        try:
            r = thief.request_raw("tools/call", {"name": "whoami", "arguments": {}})
            assert r.status_code == 404, (r.status_code, r.text)
            r = thief.client.get(front.mcp_url, headers=thief._headers())
            assert r.status_code == 404, (r.status_code, r.text)
        finally:
            thief.session_id = None
            thief.close()
        assert alice.call_tool("whoami") == ALICE, "alice's session still works"


def test_a_path_of_mxgates_own_is_refused_at_start(tmp_path: Any) -> None:
    gateway = Gateway(tmp_path, "http://127.0.0.1:9", extra={"forward_auth": {"enabled": True, "path": "/token"}})
    gateway.write_config("http://127.0.0.1:9")
    gateway.launch()
    assert gateway.proc is not None
    try:
        assert gateway.proc.wait(timeout=30) != 0
    finally:
        gateway.stop()
    assert "forward_auth.path `/token` is one of mxgate's own endpoints" in gateway.log(), gateway.log()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

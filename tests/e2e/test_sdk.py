"""The official MCP Python SDK client, with no credentials, gets all the way to the core's tools:
401 challenge -> protected resource metadata -> AS metadata -> dynamic registration -> PKCE
login through the OpenID provider (the headless browser approves consent) -> token -> tools."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from browser import Browser, SdkHandlers
from sdk_client import MemoryStorage, oauth_provider
from support import Stack

REDIRECT_URI = "http://127.0.0.1:9/sdk-callback"


async def _run_sdk(mcp_url: str, handlers: SdkHandlers, storage: MemoryStorage) -> dict[str, Any]:
    provider = oauth_provider(mcp_url, handlers, storage, "mxgate e2e (MCP SDK)")
    out: dict[str, Any] = {}
    with anyio.fail_after(60):
        async with httpx2.AsyncClient(auth=provider, timeout=20) as http:
            async with streamable_http_client(mcp_url, http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    out["init"] = await session.initialize()
                    out["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                    out["whoami"] = await session.call_tool("whoami", {})
                    out["company_only"] = await session.call_tool("company_only", {})
    return out


def test_sdk_client_logs_in_and_calls_tools_as_alice(core_stack: Stack) -> None:
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    storage = MemoryStorage()
    try:
        out = anyio.run(_run_sdk, core_stack.gateway.mcp_url, handlers, storage)
    finally:
        handlers.browser.close()

    # One interactive login, through mxgate's /authorize with PKCE S256 and the resource.
    assert len(handlers.authorization_urls) == 1, handlers.authorization_urls
    auth_url = urlsplit(handlers.authorization_urls[0])
    q = {k: v[0] for k, v in parse_qs(auth_url.query).items()}
    assert f"{auth_url.scheme}://{auth_url.netloc}{auth_url.path}" == core_stack.url + "/authorize"
    assert q["code_challenge_method"] == "S256"
    assert q["resource"] == core_stack.gateway.mcp_url
    assert q["redirect_uri"] == REDIRECT_URI
    # The browser went mxgate consent -> IdP -> mxgate /callback -> client, and the SDK accepted
    # the response's iss (it validates it against the AS metadata issuer).
    result = handlers.results[0]
    assert result.iss == core_stack.url, result.params
    visited = [s.url for s in result.steps]
    assert any(u.startswith(core_stack.idp.issuer + "/auth") for u in visited), visited
    assert any(u.startswith(core_stack.url + "/callback") for u in visited), visited

    # Dynamic registration happened and the SDK holds mxgate's tokens.
    assert storage.client_info is not None and storage.client_info.client_id == q["client_id"]
    assert storage.tokens is not None and storage.tokens.access_token
    assert storage.tokens.token_type.lower() == "bearer"
    assert storage.tokens.refresh_token

    assert out["init"].server_info.name == "MXCP Server"
    assert {"whoami", "company_only", "request_headers"} <= set(out["tools"]), out["tools"]

    whoami = out["whoami"]
    assert not whoami.is_error, whoami
    assert whoami.structured_content == {
        "username": "alice",
        "email": "alice@example.test",
        "provider": "oidc",
        "has_external_token": True,
    }, whoami

    company = out["company_only"]
    assert not company.is_error, company
    assert company.structured_content == {"result": "Welcome to example.test, alice!"}, company

    # The IdP really logged alice in for mxgate's confidential client.
    assert "user=alice" in core_stack.idp.log()

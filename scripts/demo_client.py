"""The demo's MCP client: the official MCP Python SDK connects to mxgate with no credentials,
discovers how to log in, registers itself, logs in with PKCE (a headless browser approves
mxgate's consent page; the demo provider signs in alice without a form), and calls tools.

    target/py/client/bin/python scripts/demo_client.py [http://127.0.0.1:8000/mcp]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from browser import Browser, SdkHandlers  # noqa: E402
from sdk_client import MemoryStorage, oauth_provider  # noqa: E402

REDIRECT_URI = "http://127.0.0.1:9/demo-callback"  # the headless browser stops before it


def _text(result) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


async def main(mcp_url: str) -> None:
    handlers = SdkHandlers(Browser(), REDIRECT_URI)
    storage = MemoryStorage()
    auth = oauth_provider(mcp_url, handlers, storage, "mxgate demo client")
    async with httpx2.AsyncClient(auth=auth, timeout=30) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                print(f"registered as {storage.client_info.client_id}; logged in through {handlers.authorization_urls[0].split('?')[0]}")
                tools = sorted(t.name for t in (await session.list_tools()).tools)
                print("tools:", ", ".join(tools))
                for name in ("whoami", "company_only"):
                    result = await session.call_tool(name, {})
                    print(f"{name} →", json.dumps(result.structured_content) if result.structured_content else _text(result))
    handlers.browser.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000/mcp")

"""FastMCP's OAuth proxy in front of the demo MXCP core: scenario B's "FastMCP OAuth proxy" row
of scripts/bench.sh (run with target/py/fastmcp/bin/python, PyPI `fastmcp`, pinned in
scripts/setup.sh).

  fastmcp_proxy.py --port P --core URL --issuer URL [--client-id ID] [--client-secret S]
                   [--shared-backend-session]

Serves FastMCP's Streamable HTTP endpoint at http://127.0.0.1:P/mcp: a proxy server from
`fastmcp.server.create_proxy(URL)` (FastMCP's recommended proxy: a fresh backend client session
per request) with `auth=OIDCProxy(...)`, FastMCP's OAuth proxy configured from the OpenID
provider's discovery document at URL. That is the MCP-native peer of mxgate: clients register
with FastMCP (DCR), log in through its consent page and the upstream IdP, and receive a
FastMCP-issued JWT. On every request FastMCP verifies that JWT (HS256), looks the upstream token
up in its client storage (FastMCP's default: a Fernet-encrypted file store under FASTMCP_HOME)
and validates the upstream token against the IdP's JWKS (cached). The fixture IdP issues opaque
access tokens, so the upstream *ID token* is the one validated (`verify_id_token=True`, what
FastMCP's docs prescribe for such IdPs). The core is reached anonymously (FastMCP passes no
identity on), so `whoami` answers NULLs as in the direct and nginx rows.

With --shared-backend-session the proxy is built from an already connected `fastmcp.Client`
instead of the URL: FastMCP then reuses that one backend session for every request (its opt-in,
documented with a warning about request context mixing between concurrent clients). That row
shows FastMCP's own per-call cost (auth and proxying) without a backend handshake per request.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fastmcp import Client
from fastmcp.server import create_proxy
from fastmcp.server.auth.oidc_proxy import OIDCProxy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--core", required=True, help="the core's MCP endpoint, e.g. http://127.0.0.1:9000/mcp")
    p.add_argument("--issuer", required=True, help="the OpenID provider's issuer URL")
    p.add_argument("--client-id", default="mxgate")
    p.add_argument("--client-secret", default="mxgate-secret")
    p.add_argument("--shared-backend-session", action="store_true",
                   help="one backend session for every request (a connected Client), not one per request")  # fmt: skip
    args = p.parse_args()

    base_url = f"http://127.0.0.1:{args.port}"
    auth = OIDCProxy(
        config_url=args.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_id=args.client_id,
        client_secret=args.client_secret,
        base_url=base_url,
        verify_id_token=True,
        # MCP clients register without scopes; the IdP needs `openid` to issue an ID token.
        extra_authorize_params={"scope": "openid profile email"},
    )
    # Logging as quiet as the other rows' (warnings only, no access log).
    http: dict[str, Any] = {"transport": "http", "host": "127.0.0.1", "port": args.port, "path": "/mcp",
                            "show_banner": False, "log_level": "warning", "uvicorn_config": {"access_log": False}}  # fmt: skip
    if not args.shared_backend_session:
        create_proxy(args.core, name="mxgate-bench-fastmcp", auth=auth).run(**http)
        return

    async def serve_shared() -> None:
        async with Client(args.core) as backend:
            await create_proxy(backend, name="mxgate-bench-fastmcp", auth=auth).run_http_async(**http)

    asyncio.run(serve_shared())


if __name__ == "__main__":
    main()

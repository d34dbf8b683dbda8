"""FastMCP's OAuth proxy in front of the demo MXCP core: scenario B's "FastMCP OAuth proxy" row
of scripts/bench.sh (run with target/py/fastmcp/bin/python, PyPI `fastmcp`, pinned in
scripts/setup.sh).

  fastmcp_proxy.py --port P --core URL --issuer URL [--client-id ID] [--client-secret S]

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
"""

from __future__ import annotations

import argparse

from fastmcp.server import create_proxy
from fastmcp.server.auth.oidc_proxy import OIDCProxy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--core", required=True, help="the core's MCP endpoint, e.g. http://127.0.0.1:9000/mcp")
    p.add_argument("--issuer", required=True, help="the OpenID provider's issuer URL")
    p.add_argument("--client-id", default="mxgate")
    p.add_argument("--client-secret", default="mxgate-secret")
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
    proxy = create_proxy(args.core, name="mxgate-bench-fastmcp", auth=auth)
    # Logging as quiet as the other rows' (warnings only, no access log).
    proxy.run(transport="http", host="127.0.0.1", port=args.port, path="/mcp", show_banner=False,
              log_level="warning", uvicorn_config={"access_log": False})  # fmt: skip


if __name__ == "__main__":
    main()

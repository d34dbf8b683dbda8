# shellcheck shell=bash
# Scenario B's "FastMCP OAuth proxy" row of scripts/bench.sh (sourced by it; uses its helpers).
#
# FastMCP (PyPI `fastmcp`, target/py/fastmcp, pinned in scripts/setup.sh) is the MCP-native peer
# users would pick instead of mxgate: scripts/bench/fastmcp_proxy.py runs its proxy server
# (`create_proxy(<core>/mcp)`) with `OIDCProxy`, FastMCP's OAuth proxy, whose upstream is the
# same OpenID provider fixture mxgate uses. The bench logs in through it (DCR, PKCE, FastMCP's
# consent page, the IdP, FastMCP's callback) and sends `tools/call whoami` with the FastMCP-issued
# token: FastMCP verifies it on every call (its JWT, the stored upstream token, the upstream ID
# token against the IdP's JWKS). The core is reached anonymously, as in the direct and nginx rows.

FASTMCP_PY=$ROOT/target/py/fastmcp/bin/python
FASTMCP_SERVER=$ROOT/scripts/bench/fastmcp_proxy.py

start_fastmcp() { # start_fastmcp <port> <core port> <issuer>: process "fastmcp", all cores (one process)
  mkdir -p "$TMP/fastmcp/home"
  # FASTMCP_HOME: FastMCP's default client storage (an encrypted file store) lives in the temp dir.
  FASTMCP_HOME="$TMP/fastmcp/home" PYTHONUNBUFFERED=1 "$FASTMCP_PY" "$FASTMCP_SERVER" --port "$1" \
    --core "http://127.0.0.1:$2/mcp" --issuer "$3" >"$TMP/fastmcp/fastmcp.log" 2>&1 &
  started fastmcp $! TERM
}

fastmcp_version() { "$FASTMCP_PY" -c 'import importlib.metadata as m; print(m.version("fastmcp"))' 2>/dev/null || echo '?'; }

fastmcp_meta() { # fastmcp_meta: the report's note on the FastMCP row (a meta.tsv line)
  printf 'scenario_B_fastmcp\t%s\n' "**FastMCP OAuth proxy** (fastmcp $(fastmcp_version), one Python process, uvicorn, logs at warning, no access log) is FastMCP's \`create_proxy(<core>/mcp)\` with \`auth=OIDCProxy(...)\` on the same OpenID provider (scripts/bench/fastmcp_proxy.py): the bench logs in through it (DCR, PKCE, FastMCP's consent page, IdP, callback) and calls with the FastMCP-issued token, which FastMCP verifies on every call (its HS256 JWT, the upstream token from its default encrypted file store, the IdP's ID token against the cached JWKS; \`verify_id_token\`, as the fixture's access tokens are opaque). The core is reached anonymously (whoami returns NULLs). FastMCP's recommended proxy opens a fresh backend MCP session per request (initialize, initialized, GET stream, the call, DELETE: five requests to the core per call), so its row carries the core's handshake work as well; its \`CPU / req\` is the FastMCP process's alone."
}

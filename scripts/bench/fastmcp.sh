# shellcheck shell=bash
# Scenario B's FastMCP rows of scripts/bench.sh (sourced by it; uses its helpers and variables).
#
# FastMCP (PyPI `fastmcp`, target/py/fastmcp, pinned in scripts/setup.sh) is the MCP-native peer
# users would pick instead of mxgate: scripts/bench/fastmcp_proxy.py runs its proxy server
# (`create_proxy(<core>/mcp)`) with `OIDCProxy`, FastMCP's OAuth proxy, whose upstream is the
# same OpenID provider fixture mxgate uses. The bench logs in through it (DCR, PKCE, FastMCP's
# consent page, the IdP, FastMCP's callback) and sends `tools/call whoami` with the FastMCP-issued
# token: FastMCP verifies it on every call (its JWT, the stored upstream token, the upstream ID
# token against the IdP's JWKS). The core is reached anonymously, as in the direct and nginx rows.
#
# Two rows, each its own process and port:
#   FastMCP OAuth proxy                          FastMCP's default: a fresh backend session per request
#   FastMCP OAuth proxy, shared backend session  built from a connected Client: one backend session
#                                                (FastMCP's opt-in), its own per-call cost alone

FASTMCP_PY=$ROOT/target/py/fastmcp/bin/python
FASTMCP_SERVER=$ROOT/scripts/bench/fastmcp_proxy.py
FASTMCP_PROCS=(fastmcp fastmcp-shared)
FASTMCP_TARGETS=("FastMCP OAuth proxy" "FastMCP OAuth proxy, shared backend session")
declare -A FASTMCP_PORT FASTMCP_TOKEN FASTMCP_SESSION

# fastmcp_ports <port> <port>: the two processes' ports (before the IdP starts: it needs the callbacks)
fastmcp_ports() { FASTMCP_PORT[fastmcp]=$1 FASTMCP_PORT[fastmcp-shared]=$2; }

fastmcp_redirects() { # fastmcp_redirects: adds both callbacks to bench.sh's `redirects` (the IdP's)
  local name
  for name in "${FASTMCP_PROCS[@]}"; do redirects+=(--redirect-uri "http://127.0.0.1:${FASTMCP_PORT[$name]}/auth/callback"); done
}

start_fastmcp() { # start_fastmcp <core port> <issuer>: both processes, all cores (one process each)
  local name flag
  for name in "${FASTMCP_PROCS[@]}"; do
    flag=""
    [ "$name" = fastmcp-shared ] && flag=--shared-backend-session
    mkdir -p "$TMP/$name/home"
    # FASTMCP_HOME: FastMCP's default client storage (an encrypted file store) lives in the temp dir.
    FASTMCP_HOME="$TMP/$name/home" PYTHONUNBUFFERED=1 "$FASTMCP_PY" "$FASTMCP_SERVER" ${flag:+"$flag"} \
      --port "${FASTMCP_PORT[$name]}" --core "http://127.0.0.1:$1/mcp" --issuer "$2" >"$TMP/$name/fastmcp.log" 2>&1 &
    started "$name" $! TERM
  done
}

fastmcp_sessions() { # fastmcp_sessions <expected whoami text>: log in through each, open an MCP session
  local name url
  for name in "${FASTMCP_PROCS[@]}"; do
    url=http://127.0.0.1:${FASTMCP_PORT[$name]}
    wait_for "$name" "$TMP/$name/fastmcp.log" curl -fsS -o /dev/null "$url/.well-known/oauth-authorization-server"
    FASTMCP_TOKEN[$name]=$("$CLIENT_PY" "$HELPER" fastmcp-token "$url")
    FASTMCP_SESSION[$name]=$("$CLIENT_PY" "$HELPER" session "$url/mcp" --token "${FASTMCP_TOKEN[$name]}" --expect "$1")
  done
}

fastmcp_measure() { # fastmcp_measure <expected whoami text> <connections> <round>: both rows
  local i name
  for i in "${!FASTMCP_PROCS[@]}"; do
    name=${FASTMCP_PROCS[$i]}
    BENCH_TOKEN=${FASTMCP_TOKEN[$name]} BENCH_HOST="" BENCH_SESSION=${FASTMCP_SESSION[$name]} BENCH_EXPECT=$1 \
      measure B cores "${FASTMCP_TARGETS[$i]}" "http://127.0.0.1:${FASTMCP_PORT[$name]}/mcp" "$(pid_of "$name")" \
      "$2" "$CORE_DURATION" "$3"
  done
}

fastmcp_rss() { # fastmcp_rss: both processes' memory lines
  rss_line fastmcp "B: FastMCP OAuth proxy (Python, one process)"
  rss_line fastmcp-shared "B: FastMCP OAuth proxy, shared backend session (Python, one process)"
}

fastmcp_version() { "$FASTMCP_PY" -c 'import importlib.metadata as m; print(m.version("fastmcp"))' 2>/dev/null || echo '?'; }

fastmcp_meta() { # fastmcp_meta: the report's note on the FastMCP rows (a meta.tsv line)
  printf 'scenario_B_fastmcp\t%s\n' "**FastMCP OAuth proxy** (fastmcp $(fastmcp_version), one Python process each, uvicorn, logs at warning, no access log) is FastMCP's \`create_proxy(<core>/mcp)\` with \`auth=OIDCProxy(...)\` (its OAuth proxy) on the same OpenID provider (scripts/bench/fastmcp_proxy.py): the bench logs in through it (DCR, PKCE, FastMCP's consent page, IdP, callback) and calls with the FastMCP-issued token, which FastMCP verifies on every call (its HS256 JWT, the upstream token from its default encrypted file store, the IdP's ID token against the cached JWKS; \`verify_id_token\`, as the fixture's access tokens are opaque). The core is reached anonymously (whoami returns NULLs). This recommended proxy opens a **fresh backend MCP session per request** (initialize, initialized, GET stream, the call, DELETE: five requests to the core per call), so its row carries that handshake work at the core as well. **FastMCP OAuth proxy, shared backend session** is the same with \`create_proxy(<connected Client>)\`: one backend session reused by every request (FastMCP's opt-in; it warns of request context mixing between concurrent clients), so its row is FastMCP's own per-call cost, auth included. \`CPU / req\` of both is the FastMCP process's alone."
}

#!/usr/bin/env bash
# `make demo`: a local OpenID provider (logs in alice@example.test without a form), an MXCP
# core (auth off, 127.0.0.1:8001) running with the mxgate adapter, and mxgate in front of it on
# http://127.0.0.1:8000/mcp. Logs go to .demo/*.log; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/setup.sh
echo "demo: building mxgate (release; the first build takes a few minutes)"
cargo build --release --quiet

for port in 8000 8001 9400; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is already in use; stop whatever listens there (an earlier demo?) and retry" >&2
    exit 1
  fi
done

mkdir -p .demo
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "demo: stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  exit 0
}
trap cleanup INT TERM EXIT

wait_http() { # wait_http <url> <name> <log>
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.5
  done
  echo "demo: $2 did not come up; see $3" >&2; tail -20 "$3" >&2; exit 1
}

node tests/fixtures/oidc-provider/server.js --port 9400 \
  --redirect-uri http://127.0.0.1:8000/callback > .demo/idp.log 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:9400/.well-known/openid-configuration "the OpenID provider" .demo/idp.log

(cd demo/core && MXCP_CONFIG=$ROOT/demo/core/config.yml \
  MXGATE_ASSERTION_ISSUER=http://127.0.0.1:8000 \
  MXGATE_JWKS_URL=http://127.0.0.1:8000/.well-known/jwks.json \
  exec "$ROOT/target/py/core/bin/python" -m mxgate_core serve --transport streamable-http --port 8001) \
  > .demo/core.log 2>&1 &
pids+=($!)

DEMO_OIDC_CLIENT_SECRET=mxgate-secret target/release/mxgate serve --config demo/mxgate.yml > .demo/mxgate.log 2>&1 &
pids+=($!)
wait_http http://127.0.0.1:8000/healthz "mxgate" .demo/mxgate.log
for _ in $(seq 1 120); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST http://127.0.0.1:8001/mcp || true)
  [ "$code" != "000" ] && break
  sleep 0.5
done

cat <<MSG

mxgate demo is running:
  OpenID provider   http://127.0.0.1:9400   (logs in alice@example.test, no form)   .demo/idp.log
  MXCP core         http://127.0.0.1:8001   (auth off, mxgate adapter)              .demo/core.log
  mxgate            http://127.0.0.1:8000   (OAuth in front of the core)            .demo/mxgate.log

Connect an MCP client to  http://127.0.0.1:8000/mcp
  - the bundled client (MCP Python SDK: discovery, registration, PKCE login, tools/call whoami):
      target/py/client/bin/python scripts/demo_client.py
  - Claude Code:     claude mcp add --transport http mxcp-demo http://127.0.0.1:8000/mcp
  - MCP Inspector:   npx @modelcontextprotocol/inspector  (Streamable HTTP, URL above)
Your browser shows mxgate's consent page, then the provider signs you in as alice.
Tools: whoami, request_headers, company_only (CEL policy: alice only), admin_only, admin_report (the guide's policy user.role != 'admin'; alice is admin by role_mappings).

Ctrl-C stops the demo.
MSG
wait -n "${pids[@]}" || true
echo "demo: a process exited; see .demo/*.log" >&2

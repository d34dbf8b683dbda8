#!/usr/bin/env bash
# `make bench`: requests/s and p50/p99 latency of a proxied MCP request with a valid mxgate token,
# against baselines measured in the same run (see BENCHMARKS.md for results and how to read them).
#
#   Scenario A (proxy overhead in isolation): a static nginx upstream (`return 200` JSON) measured
#     direct, through nginx as a plain keep-alive reverse proxy, through mxgate with a valid
#     bearer token (token -> session from the in-memory cache, cached assertion, stream through),
#     and through the same mxgate binary with `provider: none` (the cost of auth = the difference).
#   Scenario B (real core): MCP `tools/call whoami` on the demo MXCP core (mxgate_core adapter)
#     direct (anonymous), through nginx (anonymous) and through mxgate (alice, verified per call).
#
# Each target is warmed up, then measured twice: with BENCH_CONNECTIONS connections (throughput)
# and with one connection (unloaded per-request latency); the CPU time each server used, how busy
# the machine was just before (other processes), errors and every MCP response body are recorded.
# Every server runs on free loopback ports from a temp dir with its own config, and everything is
# stopped on exit. Output: a table on stdout and target/bench/latest.md (raw data: latest.raw/).
#
# Settings (environment):
#   BENCH_DURATION=10s          measured time per target and pass (scenario A)
#   BENCH_WARMUP=2s             warm-up before each measurement (not recorded)
#   BENCH_CONNECTIONS=32        connections of the throughput pass (scenario A)
#   BENCH_CORE_DURATION=15s     measured time per target and pass (scenario B; the core is slow)
#   BENCH_CORE_CONNECTIONS=8    connections of the throughput pass (scenario B; more only queue)
#   BENCH_ROUNDS=1              repeat all measurements; the report shows medians over the rounds
#   BENCH_THREADS=1             wrk threads
#   BENCH_LATENCY_PASS=1        also measure with a single connection (0: skip)
#   BENCH_TIMEOUT=10s           wrk request timeout (slower responses count as timeouts)
#   BENCH_SCENARIOS="A B"       which scenarios to run
#   BENCH_PROXY_THREADS=$(nproc) worker threads of mxgate and worker processes of the nginx proxy
#   BENCH_UPSTREAM_WORKERS=1    worker processes of the static nginx upstream
#   BENCH_MXGATE_PRELOAD=       LD_PRELOAD for mxgate (experiments, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
#   BENCH_BUILD=1               cargo build --release first (0: use the existing binary)
#   BENCH_KEEP=0                keep the temp dir (configs, logs, raw wrk output); 1: keep
#   BENCH_OUT=target/bench/latest.md   where the markdown report goes (raw results: latest.raw/)
#   BENCH_LOGINS=30             logins per store backend for the login-cost line (0: skip)
#
# Scenario A also has a row for mxgate on a Redis store (Debian's redis-server, when installed):
# the same cached hot path, with the count of Redis commands during its measurement (expected: 0
# per request). The login flow's server-side CPU (authorize → IdP → callback → consent → token)
# is measured for mxgate on redb and on Redis (mxgate's CPU, plus redis-server's for Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNECTIONS:-32}
THREADS=${BENCH_THREADS:-1}
LATENCY_PASS=${BENCH_LATENCY_PASS:-1}
TIMEOUT=${BENCH_TIMEOUT:-10s}
CORE_CONNS=${BENCH_CORE_CONNECTIONS:-8}
CORE_DURATION=${BENCH_CORE_DURATION:-15s}
ROUNDS=${BENCH_ROUNDS:-1}
SCENARIOS=${BENCH_SCENARIOS:-A B}
PROXY_THREADS=${BENCH_PROXY_THREADS:-$(nproc)}
UPSTREAM_WORKERS=${BENCH_UPSTREAM_WORKERS:-1}
OUT=${BENCH_OUT:-target/bench/latest.md}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
MXGATE_BIN=$ROOT/target/release/mxgate
CLIENT_PY=$ROOT/target/py/client/bin/python
CORE_PY=$ROOT/target/py/core/bin/python
IDP_DIR=$ROOT/tests/fixtures/oidc-provider
LUA=$ROOT/scripts/bench/mcp.lua
HELPER=$ROOT/scripts/bench/mcp_client.py
HZ=$(getconf CLK_TCK)

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in nginx wrk node curl; do
  command -v "$tool" >/dev/null || die "$tool is missing; run MXGATE_SETUP_BENCH=1 scripts/setup.sh (or make bench)"
done
[ -x "$CLIENT_PY" ] && [ -x "$CORE_PY" ] || die "Python environments missing; run scripts/setup.sh"
[ -d "$IDP_DIR/node_modules" ] || die "the OpenID provider fixture is not installed; run scripts/setup.sh"

# The commit the binary is built from (when BENCH_BUILD=0: the tree now, which may differ).
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(GIT_OPTIONAL_LOCKS=0 git status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
  rev="$rev + uncommitted changes"
fi
[ "${BENCH_BUILD:-1}" = 1 ] || rev="binary not rebuilt; tree at $rev"
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  say "building mxgate (release; a cold build takes several minutes)"
  cargo build --release --quiet
fi
[ -x "$MXGATE_BIN" ] || die "$MXGATE_BIN is missing"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxgate-bench.XXXXXX")
chmod 711 "$TMP" # nginx workers (an unprivileged user when started as root) traverse it
RESULTS=$TMP/results
mkdir -p "$RESULTS"
: >"$RESULTS/runs.tsv"

# --- process management -------------------------------------------------------------------
pids=()   # started processes, stopped in reverse order
sigs=()   # the signal each one stops with
names=()
failed=1
cleanup() {
  local i pid
  trap - INT TERM EXIT
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "-${sigs[$i]}" "${pids[$i]}" 2>/dev/null || true
  done
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[$i]}
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "${names[$i]} ($pid) did not stop; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  if [ "$failed" = 1 ]; then
    say "FAILED; logs, configs and raw output are in $TMP"
    for f in "$TMP"/*.log "$TMP"/*/*.log; do
      [ -f "$f" ] || continue
      echo "----- $f (tail)" >&2
      tail -15 "$f" >&2
    done
  elif [ "${BENCH_KEEP:-0}" = 1 ]; then
    say "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started() { # started <name> <pid> <signal>
  names+=("$1"); pids+=("$2"); sigs+=("$3")
}

free_ports() { # free_ports N: N distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

wait_for() { # wait_for <name> <log> <command...>: retry the command for up to 60 s
  local name=$1 log=$2; shift 2
  for _ in $(seq 1 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  say "$name did not come up"; tail -30 "$log" >&2; exit 1
}

tree_pids() { # tree_pids <pid>: the pid and its children (nginx master + workers)
  echo "$1"
  cat "/proc/$1/task/$1/children" 2>/dev/null || pgrep -P "$1" || true
}

cpu_ticks() { # cpu_ticks <pid>...: user+system clock ticks of the processes and their children
  local total=0 root p s
  for root in "$@"; do
    for p in $(tree_pids "$root"); do
      s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
      s=${s##*) }
      # shellcheck disable=SC2086
      set -- $s
      total=$((total + ${12} + ${13}))
    done
  done
  echo "$total"
}

busy_pct() { # busy_pct: % of all CPUs busy over one second (taken while our servers are idle)
  local a b
  read -r -a a < <(head -1 /proc/stat)
  sleep 1
  read -r -a b < <(head -1 /proc/stat)
  # fields: cpu user nice system idle iowait irq softirq steal ...
  local total=0 idle i
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $(((total - idle) * 100 / (total > 0 ? total : 1)))
}

mem_kb() { # mem_kb <field> <pid>: VmRSS/VmHWM summed over the process and its children
  local total=0 p v
  for p in $(tree_pids "$2"); do
    v=$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# --- ports and processes ----------------------------------------------------------------------
read -r P_UP P_NGX_A P_NGX_B P_GW_A P_GW_N P_GW_B P_CORE P_GW_R P_REDIS < <(free_ports 9)
GW_R=http://127.0.0.1:$P_GW_R
LOGINS=${BENCH_LOGINS:-30}
HAVE_REDIS=0
command -v redis-server >/dev/null && command -v redis-cli >/dev/null && HAVE_REDIS=1
redis_commands() { redis-cli -p "$P_REDIS" INFO stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }'; }
GW_A=http://127.0.0.1:$P_GW_A
GW_N=http://127.0.0.1:$P_GW_N
GW_B=http://127.0.0.1:$P_GW_B
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# The small JSON body the static upstream answers (about the size of a small MCP result).
STATIC_BODY='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"username\":\"alice\"}"}],"isError":false}}'

nginx_common() { # nginx_common <name> <workers>
  cat <<EOF
worker_processes $2;
pid $TMP/$1.pid;
error_log $TMP/$1.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path $TMP/$1-tmp/body;
  proxy_temp_path $TMP/$1-tmp/proxy;
  fastcgi_temp_path $TMP/$1-tmp/fastcgi;
  uwsgi_temp_path $TMP/$1-tmp/uwsgi;
  scgi_temp_path $TMP/$1-tmp/scgi;
EOF
}

start_nginx() { # start_nginx <name>: config in $TMP/<name>.conf
  mkdir -p "$TMP/$1-tmp"
  nginx -t -q -p "$TMP" -e "$TMP/$1.log" -c "$TMP/$1.conf" 2>>"$TMP/$1.log" || { cat "$TMP/$1.log" >&2; exit 1; }
  nginx -p "$TMP" -e "$TMP/$1.log" -c "$TMP/$1.conf" >>"$TMP/$1.log" 2>&1 &
  started "$1" $! TERM
}

{
  nginx_common upstream "$UPSTREAM_WORKERS"
  cat <<EOF
  server {
    listen 127.0.0.1:$P_UP;
    location / {
      default_type application/json;
      return 200 '$STATIC_BODY';
    }
  }
}
EOF
} >"$TMP/upstream.conf"

# nginx as a plain reverse proxy: HTTP/1.1 keep-alive to the upstream, the usual forwarded
# headers; for the core also what the core needs (its own Host, no Origin, no buffering).
proxy_location() { # proxy_location <upstream block> <host header>
  cat <<EOF
    location / {
      proxy_pass http://$1;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $2;
      proxy_set_header Origin "";
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_buffering off;
    }
EOF
}
{
  nginx_common proxy "$PROXY_THREADS"
  cat <<EOF
  upstream static_upstream {
    server 127.0.0.1:$P_UP;
    keepalive 64;
    keepalive_requests 1000000;
  }
  upstream core_upstream {
    server 127.0.0.1:$P_CORE;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$P_NGX_A;
$(proxy_location static_upstream "127.0.0.1:$P_UP")
  }
  server {
    listen 127.0.0.1:$P_NGX_B;
$(proxy_location core_upstream "127.0.0.1:$P_CORE")
  }
}
EOF
} >"$TMP/proxy.conf"

say "temp dir $TMP; ports: upstream $P_UP, nginx $P_NGX_A/$P_NGX_B, mxgate $P_GW_A/$P_GW_B, core $P_CORE"

# The MXCP core is the slowest to start: launch it first (scenario B only).
if want B; then
  mkdir -p "$TMP/core"
  (cd "$ROOT/demo/core" && exec env -u MXGATE_ASSERTION_AUDIENCE -u MXGATE_JWKS_FILE -u MXGATE_ASSERTION_SECRET \
    MXCP_CONFIG="$ROOT/demo/core/config.yml" MXCP_DUCKDB_PATH="$TMP/core/core.duckdb" \
    MXCP_DISABLE_ANALYTICS=1 MXGATE_ASSERTION_ISSUER="$GW_B" \
    MXGATE_JWKS_URL="$GW_B/.well-known/jwks.json" PYTHONUNBUFFERED=1 \
    "$CORE_PY" -m mxgate_core serve --transport streamable-http --port "$P_CORE") \
    >"$TMP/core/core.log" 2>&1 &
  started core $! INT
fi

start_nginx upstream
start_nginx proxy

# The OpenID provider fixture (logs alice in without a form).
(cd "$IDP_DIR" && exec node server.js --port 0 \
  --redirect-uri "$GW_A/callback" --redirect-uri "$GW_B/callback" --redirect-uri "$GW_R/callback") >"$TMP/idp.log" 2>&1 &
started idp $! TERM
wait_for "the OpenID provider" "$TMP/idp.log" grep -q '^ready ' "$TMP/idp.log"
ISSUER=$(awk '/^ready / { print $2; exit }' "$TMP/idp.log")

start_mxgate() { # start_mxgate <name> <port> <upstream url> <oidc|none> [redis]
  local dir=$TMP/$1 auth
  mkdir -p "$dir"
  cat >"$dir/mxgate.yml" <<EOF
listen: 127.0.0.1:$2
upstream: $3
public_url: http://127.0.0.1:$2
mcp_path: /mcp
data_dir: data
threads: $PROXY_THREADS
mxcp_config: mxcp-config.yml
project: bench
profile: default
# The login-cost loop logs in from one address many times a minute: no per-address rates here.
rate_limits:
  per_address: {register: 0, authorize: 0, consent: 0, login: 0, callback: 0, token: 0, revoke: 0, logout: 0}
EOF
  local persistence=""
  if [ "${5:-}" = redis ]; then
    cat >>"$dir/mxgate.yml" <<EOF
store:
  type: redis
  url: redis://127.0.0.1:$P_REDIS/0
  key_prefix: "bench:"
EOF
    persistence="persistence:
            auth_encryption_key: bench-only-key-0123456789abcdefghijklmnopqrstuvwxyz"
  fi
  if [ "$4" = none ]; then
    auth="provider: none"
  else
    auth="provider: oidc
          oidc:
            config_url: $ISSUER/.well-known/openid-configuration
            client_id: mxgate
            client_secret: \"\${BENCH_OIDC_CLIENT_SECRET}\"
            scope: openid profile email groups
            callback_path: /callback"
  fi
  cat >"$dir/mxcp-config.yml" <<EOF
mxcp: 1
transport:
  http:
    host: 127.0.0.1
    port: $2
projects:
  bench:
    profiles:
      default:
        auth:
          $auth
          $persistence
EOF
  (cd "$dir" && exec env BENCH_OIDC_CLIENT_SECRET=mxgate-secret MXGATE_LOG=warn \
    ${BENCH_MXGATE_PRELOAD:+LD_PRELOAD=$BENCH_MXGATE_PRELOAD} "$MXGATE_BIN" serve --config "$dir/mxgate.yml") >"$dir/mxgate.log" 2>&1 &
  started "$1" $! TERM
}

if want A; then
  start_mxgate mxgate-a "$P_GW_A" "http://127.0.0.1:$P_UP" oidc
  start_mxgate mxgate-noauth "$P_GW_N" "http://127.0.0.1:$P_UP" none
  if [ "$HAVE_REDIS" = 1 ]; then
    mkdir -p "$TMP/redis"
    redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" \
      >"$TMP/redis/redis.log" 2>&1 &
    started redis $! TERM
    start_mxgate mxgate-redis "$P_GW_R" "http://127.0.0.1:$P_UP" oidc redis
  else
    say "redis-server not installed: no Redis row (MXGATE_SETUP_BENCH=1 scripts/setup.sh installs it)"
  fi
fi
want B && start_mxgate mxgate-b "$P_GW_B" "http://127.0.0.1:$P_CORE" oidc
if want A; then
  wait_for mxgate-a "$TMP/mxgate-a/mxgate.log" curl -fsS -o /dev/null "$GW_A/readyz"
  wait_for mxgate-noauth "$TMP/mxgate-noauth/mxgate.log" curl -fsS -o /dev/null "$GW_N/healthz"
  if [ "$HAVE_REDIS" = 1 ]; then
    wait_for mxgate-redis "$TMP/mxgate-redis/mxgate.log" curl -fsS -o /dev/null "$GW_R/readyz"
  fi
fi
want B && wait_for mxgate-b "$TMP/mxgate-b/mxgate.log" curl -fsS -o /dev/null "$GW_B/readyz"
wait_for "nginx upstream" "$TMP/upstream.log" curl -fsS -o /dev/null "http://127.0.0.1:$P_UP/"
wait_for "nginx proxy" "$TMP/proxy.log" curl -fsS -o /dev/null "http://127.0.0.1:$P_NGX_A/"

pid_of() { # pid_of <name>
  local i
  for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && { echo "${pids[$i]}"; return 0; }; done
  return 0
}

# --- measurements ------------------------------------------------------------------------------
# measure <scenario> <target> <url> <cpu pid or -> <connections> <duration> <round>
# The BENCH_* variables of the Lua script come from the environment.
measure() {
  local scenario=$1 target=$2 url=$3 cpu_pid=$4 conns=$5 duration=$6 round=$7 out before after ticks t bg
  t=$((THREADS < conns ? THREADS : conns))
  out=$RESULTS/$scenario-${target//[^A-Za-z0-9]/_}-c$conns-r$round.txt
  bg=$(busy_pct)
  wrk -t"$t" -c"$conns" -d"$WARMUP" --timeout "$TIMEOUT" -s "$LUA" "$url" >"$out.warmup" 2>&1 ||
    die "wrk warm-up for $scenario/$target failed: $(cat "$out.warmup")"
  before=0
  [ "$cpu_pid" != - ] && before=$(cpu_ticks "$cpu_pid")
  wrk -t"$t" -c"$conns" -d"$duration" --timeout "$TIMEOUT" --latency -s "$LUA" "$url" >"$out" 2>&1 ||
    die "wrk for $scenario/$target failed: $(cat "$out")"
  ticks=""
  [ "$cpu_pid" != - ] && { after=$(cpu_ticks "$cpu_pid"); ticks=$((after - before)); }
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$scenario" "$target" "$conns" "$round" "$(basename "$out")" "$ticks" "$HZ" "$bg" >>"$RESULTS/runs.tsv"
  say "$scenario $target c=$conns round $round: $(awk '
    /^Requests\/sec/ { rps = $2 } /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /Non-2xx/ { bad = ", NON-2XX " $NF } /Socket errors/ { sock = ", " $0 } /^mcp:/ { mcp = ", " $0 }
    END { printf "%s req/s, p50 %s, p99 %s%s%s%s", rps, p50, p99, bad, sock, mcp }' "$out") (CPU busy before: $bg%)"
}

passes() { # passes <throughput connections>: the connection counts to measure
  echo "$1"
  [ "$LATENCY_PASS" = 1 ] && [ "$1" != 1 ] && echo 1
  return 0
}

if want A; then
  say "scenario A: getting a token from mxgate (public client, PKCE, consent, IdP login)"
  TOKEN_A=$("$CLIENT_PY" "$HELPER" token "$GW_A")
  for url in "http://127.0.0.1:$P_UP/mcp" "http://127.0.0.1:$P_NGX_A/mcp" "$GW_A/mcp" "$GW_N/mcp"; do
    "$CLIENT_PY" "$HELPER" check "$url" --token "$TOKEN_A" --expect '"isError":false'
  done
  if [ "$HAVE_REDIS" = 1 ]; then
    TOKEN_R=$("$CLIENT_PY" "$HELPER" token "$GW_R")
    "$CLIENT_PY" "$HELPER" check "$GW_R/mcp" --token "$TOKEN_R" --expect '"isError":false'
  fi
fi
if want B; then
  say "scenario B: waiting for the MXCP core, then one MCP session per target"
  wait_for "the MXCP core" "$TMP/core/core.log" \
    curl -s -o /dev/null -H "Host: 127.0.0.1:$P_CORE" "http://127.0.0.1:$P_CORE/mcp"
  TOKEN_B=$("$CLIENT_PY" "$HELPER" token "$GW_B")
  # direct: the core's own Host, no Origin, no auth (anonymous: the UDFs return NULL)
  EXPECT_ANON='"username":null'
  EXPECT_ALICE='"username":"alice"'
  SESSION_DIRECT=$("$CLIENT_PY" "$HELPER" session "http://127.0.0.1:$P_CORE/mcp" --host "127.0.0.1:$P_CORE" --expect "$EXPECT_ANON")
  # nginx: anonymous as well (nginx does no auth)
  SESSION_NGINX=$("$CLIENT_PY" "$HELPER" session "http://127.0.0.1:$P_NGX_B/mcp" --expect "$EXPECT_ANON")
  # mxgate: alice's token; mxgate adds the assertion, the core verifies it on every call
  SESSION_MXGATE=$("$CLIENT_PY" "$HELPER" session "$GW_B/mcp" --token "$TOKEN_B" --expect "$EXPECT_ALICE")
fi

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
  if want A; then
    # The same request (with the bearer token) to every target.
    export BENCH_MODE=static BENCH_TOKEN=$TOKEN_A BENCH_HOST="" BENCH_SESSION="" BENCH_EXPECT=""
    for conns in $(passes "$CONNS"); do
      measure A direct "http://127.0.0.1:$P_UP/mcp" "$(pid_of upstream)" "$conns" "$DURATION" "$round"
      measure A nginx "http://127.0.0.1:$P_NGX_A/mcp" "$(pid_of proxy)" "$conns" "$DURATION" "$round"
      measure A mxgate "$GW_A/mcp" "$(pid_of mxgate-a)" "$conns" "$DURATION" "$round"
      measure A "mxgate, auth off" "$GW_N/mcp" "$(pid_of mxgate-noauth)" "$conns" "$DURATION" "$round"
      if [ "$HAVE_REDIS" = 1 ]; then
        before_cmds=$(redis_commands)
        BENCH_TOKEN=$TOKEN_R measure A "mxgate, Redis store" "$GW_R/mcp" "$(pid_of mxgate-redis)" "$conns" "$DURATION" "$round"
        printf '%s\t%s\n' "$conns" "$(($(redis_commands) - before_cmds - 1))" >>"$RESULTS/redis_hot_path.tsv"
      fi
    done
  fi
  if want B; then
    export BENCH_MODE=tools BENCH_TOOL=whoami
    for conns in $(passes "$CORE_CONNS"); do
      BENCH_TOKEN="" BENCH_HOST="127.0.0.1:$P_CORE" BENCH_SESSION=$SESSION_DIRECT BENCH_EXPECT=$EXPECT_ANON \
        measure B direct "http://127.0.0.1:$P_CORE/mcp" "$(pid_of core)" "$conns" "$CORE_DURATION" "$round"
      BENCH_TOKEN="" BENCH_HOST="" BENCH_SESSION=$SESSION_NGINX BENCH_EXPECT=$EXPECT_ANON \
        measure B nginx "http://127.0.0.1:$P_NGX_B/mcp" "$(pid_of proxy)" "$conns" "$CORE_DURATION" "$round"
      BENCH_TOKEN=$TOKEN_B BENCH_HOST="" BENCH_SESSION=$SESSION_MXGATE BENCH_EXPECT=$EXPECT_ALICE \
        measure B mxgate "$GW_B/mcp" "$(pid_of mxgate-b)" "$conns" "$CORE_DURATION" "$round"
    done
  fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- the login flow's server-side cost on each store --------------------------------------------
# login_cost <gateway url> <mxgate name> [store pid]: CPU µs per login of mxgate (and of the
# store's server), over $LOGINS logins made one after another.
login_cost() {
  local before after store_before=0 store_after=0
  before=$(cpu_ticks "$(pid_of "$2")")
  [ -n "${3:-}" ] && store_before=$(cpu_ticks "$3")
  "$CLIENT_PY" "$HELPER" logins "$1" --count "$LOGINS"
  after=$(cpu_ticks "$(pid_of "$2")")
  [ -n "${3:-}" ] && store_after=$(cpu_ticks "$3")
  echo "$(((after - before) * 1000000 / HZ / LOGINS)) $(((store_after - store_before) * 1000000 / HZ / LOGINS))"
}
LOGIN_COST=""
if want A && [ "$LOGINS" -gt 0 ]; then
  say "login cost: $LOGINS logins through mxgate on redb"
  read -r redb_us _ < <(login_cost "$GW_A" mxgate-a)
  LOGIN_COST="redb: mxgate ${redb_us} µs CPU per login"
  if [ "$HAVE_REDIS" = 1 ]; then
    say "login cost: $LOGINS logins through mxgate on Redis"
    read -r redis_us server_us < <(login_cost "$GW_R" mxgate-redis "$(pid_of redis)")
    LOGIN_COST="$LOGIN_COST; Redis: mxgate ${redis_us} µs + redis-server ${server_us} µs CPU per login"
  fi
  LOGIN_COST="$LOGIN_COST (authorize → IdP → callback → consent → token; $LOGINS logins one after another; CPU from /proc at $HZ ticks/s, so ±$((1000000 / HZ / LOGINS)) µs)"
fi

# --- resident memory, logs, machine, report ---------------------------------------------------
: >"$RESULTS/rss.tsv"
for name in mxgate-a mxgate-noauth mxgate-redis mxgate-b proxy upstream core; do
  pid=$(pid_of "$name")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || continue
  case $name in
    mxgate-a) label="mxgate (scenario A, $PROXY_THREADS threads)" ;;
    mxgate-noauth) label="mxgate, auth off (scenario A, $PROXY_THREADS threads)" ;;
    mxgate-redis) label="mxgate, Redis store (scenario A, $PROXY_THREADS threads)" ;;
    mxgate-b) label="mxgate (scenario B, $PROXY_THREADS threads)" ;;
    proxy) label="nginx reverse proxy (master + $PROXY_THREADS workers, A and B)" ;;
    upstream) label="nginx static upstream (master + $UPSTREAM_WORKERS worker)" ;;
    core) label="MXCP core (Python, mxgate_core)" ;;
  esac
  printf '%s\t%s\t%s\t%s\n' "$label" "$(mem_kb VmRSS "$pid")" "$(mem_kb VmHWM "$pid")" \
    "$(tree_pids "$pid" | wc -w)" >>"$RESULTS/rss.tsv"
done
for name in mxgate-a mxgate-noauth mxgate-redis mxgate-b; do
  if [ -f "$TMP/$name/mxgate.log" ]; then cp "$TMP/$name/mxgate.log" "$RESULTS/$name.log"; fi
done

{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'ram\t%s\n' "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'loadavg\t%s before the measurements, %s after (1/5/15 min)\n' "$LOAD_BEFORE" "$LOAD_AFTER"
  printf 'versions\t%s\n' "mxgate $rev (release build of $(date -u -r "$MXGATE_BIN" '+%Y-%m-%d %H:%M UTC')), $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'), $(rustc -V | awk '{ print $1, $2 }'), node $(node -v), mxcp $("$CORE_PY" -c 'import importlib.metadata as m; print(m.version("mxcp"))' 2>/dev/null || echo '?')"
  lat=""; [ "$LATENCY_PASS" = 1 ] && lat=" and 1 connection"
  printf 'load\t%s\n' "wrk, $THREADS thread(s), POST of a small JSON-RPC body;$(want A && echo " A: $CONNS connections$lat, $DURATION each;")$(want B && echo " B: $CORE_CONNS connections$lat, $CORE_DURATION each;") $WARMUP warm-up before every measurement; $ROUNDS round(s) (with several rounds each figure is the median over the rounds, the req/s range in brackets; † = busiest round)"
  printf 'servers\t%s\n' "mxgate: $PROXY_THREADS worker threads (\`threads\`)${BENCH_MXGATE_PRELOAD:+, LD_PRELOAD=$BENCH_MXGATE_PRELOAD}, MXGATE_LOG=warn, redb store, EdDSA assertions; nginx proxy: $PROXY_THREADS workers, upstream keepalive 64, HTTP/1.1, proxy_buffering off, access_log off; static upstream: nginx, $UPSTREAM_WORKERS worker, access_log off"
  printf 'scenario_A\t%s\n' "Same POST with \`Authorization: Bearer <valid mxgate token>\` to every target. **mxgate** authenticates it (token hash → session from the in-memory cache), drops it, adds the cached \`x-mxcp-user-assertion\` and forwards over a pooled keep-alive connection. **mxgate, auth off** is the same binary with \`provider: none\` (Pingora plus mxgate's header rewriting, no token check, no assertion): the difference between the two is the cost of authentication."
  if [ -s "$RESULTS/redis_hot_path.tsv" ]; then
    printf 'stores\t%s\n' "Redis commands while **mxgate, Redis store** was measured (by connections; the count's own INFO excluded): $(awk -F'\t' '{ printf "%s%s conn.: %s", sep, $1, $2; sep = ", " }' "$RESULTS/redis_hot_path.tsv") — the cached hot path makes no store round-trip"
  fi
  if [ -n "$LOGIN_COST" ]; then printf 'login_cost\t%s\n' "Login flow, server side: $LOGIN_COST"; fi
  printf 'scenario_B\t%s\n' "One MCP session per target (\`initialize\` + \`notifications/initialized\` through that target), then \`tools/call whoami\` with a JSON-RPC id unique per request. direct and nginx run **anonymous** (no auth; whoami returns NULLs); mxgate runs as alice (token checked by mxgate, assertion verified by the core on each call, whoami returns alice). Every response body is checked. In this scenario \`CPU / req\` of the direct row is the core's own CPU per call."
} >"$RESULTS/meta.tsv"

echo
"$CLIENT_PY" "$ROOT/scripts/bench/report.py" "$RESULTS" "$OUT"
echo
# The raw results (wrk output, CPU and memory figures, mxgate's logs) next to the report, so it
# can be rendered again: scripts/bench/report.py <raw dir> <out.md>
RAW=${OUT%.md}.raw
rm -rf "$RAW"
rm -f "$RESULTS"/*.warmup
cp -r "$RESULTS" "$RAW"
say "report written to ${OUT#"$ROOT"/} (raw results in ${RAW#"$ROOT"/})"
failed=0

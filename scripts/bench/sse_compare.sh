#!/usr/bin/env bash
# SSE time to first event, quick A/B outside the full bench: direct, bare Pingora, mxgate (full
# auth, valid token) and mxgate with `provider: none`, each in front of
# scripts/bench/sse_upstream.py, measured with scripts/bench/sse_ttfe.py (the same client and
# upstream as `make bench`'s SSE table, scripts/bench/sse.sh).
#
#   scripts/bench/sse_compare.sh [requests per run (200)] [rounds (3)]
#
# Uses the release builds already there: target/release/mxgate (`cargo build --release`) and
# target/bare-pingora/release/bare-pingora (`make bench` builds it, or `cargo build --release
# --manifest-path bench/bare-pingora/Cargo.toml --target-dir target/bare-pingora`). Both proxies
# run with 2 threads, unpinned, like the bench's all-cores mode. The targets are measured one
# after another, ROUNDS times in alternation (so a busy moment of the machine spreads over all of
# them); the summary gives, per target, the median over the rounds of each run's p50 and p99.
# SSE_COMPARE_TARGETS (default "direct bare mxgate noauth") picks the rows; without `mxgate` no
# OpenID provider is started. SSE_COMPARE_MXGATE overrides the mxgate binary; SSE_COMPARE_BASELINE
# names a second one (an A/B of two builds): its rows `mxgate-base` and `noauth-base` join every
# round. SSE_COMPARE_HOLD_MS (200, as the bench) is the upstream's hold: the gap between the
# proxies shows when they sit idle between events (with a 1 ms hold it all but disappears).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
REQUESTS=${1:-200}
ROUNDS=${2:-3}
TARGETS=${SSE_COMPARE_TARGETS:-direct bare mxgate noauth}
BASELINE_BIN=${SSE_COMPARE_BASELINE:-}
[ -z "$BASELINE_BIN" ] || TARGETS="$TARGETS mxgate-base noauth-base"
HOLD_MS=${SSE_COMPARE_HOLD_MS:-200}
MXGATE_BIN=${SSE_COMPARE_MXGATE:-$ROOT/target/release/mxgate}
BARE_BIN=$ROOT/target/bare-pingora/release/bare-pingora
CLIENT_PY=$ROOT/target/py/client/bin/python
TMP=$(mktemp -d /tmp/mxgate-sse-compare.XXXXXX)
OUT=$TMP/sse.jsonl
PIDS=()

say() { echo "sse_compare $(date +%T): $*" >&2; }
die() { say "$*"; exit 1; }
cleanup() {
  local pid
  # SIGINT: Pingora's fast shutdown (SIGTERM would wait out its grace period, minutes for bare Pingora).
  for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_until() { # wait_until <what> <command...>: up to 20 s
  local what=$1 _
  shift
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "$what did not start (logs in $TMP)"
}
has() { [[ " $TARGETS " == *" $1 "* ]]; }

[ -x "$MXGATE_BIN" ] || die "no $MXGATE_BIN: cargo build --release"
[ -x "$BARE_BIN" ] || ! has bare || die "no $BARE_BIN (see this script's header)"

P_UP=$(free_port) P_BARE=$(free_port) P_MX=$(free_port) P_NOAUTH=$(free_port) P_MXB=$(free_port) P_NOAUTHB=$(free_port)
python3 "$ROOT/scripts/bench/sse_upstream.py" --port "$P_UP" --hold-ms "$HOLD_MS" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
wait_until "the SSE upstream" grep -q '^ready ' "$TMP/upstream.log"

if has bare; then
  mkdir -p "$TMP/bare"
  (cd "$TMP/bare" && exec "$BARE_BIN" "127.0.0.1:$P_BARE" "127.0.0.1:$P_UP" 2) >"$TMP/bare/bare.log" 2>&1 &
  PIDS+=($!)
fi

ISSUER=""
if has mxgate; then
  (cd "$ROOT/tests/fixtures/oidc-provider" && exec node server.js --port 0 \
    --redirect-uri "http://127.0.0.1:$P_MX/callback" --redirect-uri "http://127.0.0.1:$P_MXB/callback") \
    >"$TMP/idp.log" 2>&1 &
  PIDS+=($!)
  wait_until "the OpenID provider" grep -q '^ready ' "$TMP/idp.log"
  ISSUER=$(awk '/^ready / { print $2; exit }' "$TMP/idp.log")
fi

start_mxgate() { # start_mxgate <dir name> <port> <oidc|none> [binary]
  local dir=$TMP/$1 auth="provider: none" bin=${4:-$MXGATE_BIN}
  mkdir -p "$dir"
  if [ "$3" = oidc ]; then
    auth="provider: oidc
          oidc:
            config_url: $ISSUER/.well-known/openid-configuration
            client_id: mxgate
            client_secret: \"\${SSE_COMPARE_OIDC_SECRET}\"
            scope: openid profile email groups
            callback_path: /callback"
  fi
  cat >"$dir/mxgate.yml" <<EOF
listen: 127.0.0.1:$2
upstream: http://127.0.0.1:$P_UP
public_url: http://127.0.0.1:$2
mcp_path: /mcp
data_dir: data
threads: 2
mxcp_config: mxcp-config.yml
project: bench
profile: default
EOF
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
EOF
  (cd "$dir" && exec env SSE_COMPARE_OIDC_SECRET=mxgate-secret MXGATE_LOG=warn "$bin" serve --config "$dir/mxgate.yml") >"$dir/mxgate.log" 2>&1 &
  PIDS+=($!)
}
has mxgate && start_mxgate mxgate "$P_MX" oidc
has noauth && start_mxgate noauth "$P_NOAUTH" none
has mxgate-base && start_mxgate mxgate-base "$P_MXB" oidc "$BASELINE_BIN"
has noauth-base && start_mxgate noauth-base "$P_NOAUTHB" none "$BASELINE_BIN"
has bare && wait_until "bare Pingora" curl -fsS -o /dev/null "http://127.0.0.1:$P_BARE/"
has noauth && wait_until "mxgate (auth off)" curl -fsS -o /dev/null "http://127.0.0.1:$P_NOAUTH/healthz"
has noauth-base && wait_until "baseline mxgate (auth off)" curl -fsS -o /dev/null "http://127.0.0.1:$P_NOAUTHB/healthz"
TOKEN="" TOKEN_BASE=""
if has mxgate; then
  wait_until mxgate curl -fsS -o /dev/null "http://127.0.0.1:$P_MX/readyz"
  TOKEN=$("$CLIENT_PY" "$ROOT/scripts/bench/mcp_client.py" token "http://127.0.0.1:$P_MX")
fi
if has mxgate-base; then
  wait_until "baseline mxgate" curl -fsS -o /dev/null "http://127.0.0.1:$P_MXB/readyz"
  TOKEN_BASE=$("$CLIENT_PY" "$ROOT/scripts/bench/mcp_client.py" token "http://127.0.0.1:$P_MXB")
fi

url_of() {
  case $1 in
    direct) echo "http://127.0.0.1:$P_UP" ;;
    bare) echo "http://127.0.0.1:$P_BARE" ;;
    mxgate) echo "http://127.0.0.1:$P_MX" ;;
    noauth) echo "http://127.0.0.1:$P_NOAUTH" ;;
    mxgate-base) echo "http://127.0.0.1:$P_MXB" ;;
    noauth-base) echo "http://127.0.0.1:$P_NOAUTHB" ;;
  esac
}
say "$REQUESTS requests per run, $ROUNDS rounds, upstream hold $HOLD_MS ms; raw results in $OUT"
for round in $(seq "$ROUNDS"); do
  for target in $TARGETS; do
    token=$TOKEN
    [ "$target" = mxgate-base ] && token=$TOKEN_BASE
    "$CLIENT_PY" "$ROOT/scripts/bench/sse_ttfe.py" "$(url_of "$target")/mcp" --label "$target" \
      ${token:+--token "$token"} --requests "$REQUESTS" --hold-ms "$HOLD_MS" --out "$OUT" 2>&1 |
      sed "s/^/round $round: /" >&2
  done
done

# Pingora logs each pooled upstream connection it failed to take back (and replaced by a new one).
for target in mxgate noauth mxgate-base noauth-base; do
  has "$target" || continue
  say "$target: $(grep -c 'failed to acquire reusable stream' "$TMP/$target/mxgate.log" || true) \"failed to acquire reusable stream\" (pooled upstream connection lost, a new one opened)"
done
python3 - "$OUT" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    runs.setdefault(r["target"], []).append(r)
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * len(xs) + 0.5) - 1))]
print(f"{'target':<12} {'p50 (median of runs)':>21} {'p99 (median of runs)':>21}  runs: p50 / p99 (µs), errors")
for target, rs in runs.items():
    p50s = [pct(r["ttfe_s"], 0.50) * 1e6 for r in rs if r["ttfe_s"]]
    p99s = [pct(r["ttfe_s"], 0.99) * 1e6 for r in rs if r["ttfe_s"]]
    detail = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(p50s, p99s))
    errors = sum(r["errors"] for r in rs)
    print(f"{target:<12} {statistics.median(p50s):>18.0f} µs {statistics.median(p99s):>18.0f} µs  {detail}, {errors}")
EOF

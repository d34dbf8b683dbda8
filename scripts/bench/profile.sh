#!/usr/bin/env bash
# `make profile`: where a proxied request's CPU goes, in figures that do not depend on how busy
# the machine is (BENCHMARKS.md, "Profile"). For nginx, the bare Pingora proxy, mxgate with
# `provider: none` and mxgate with full authentication (a valid token, cached session and
# assertion), each with one worker in front of the same static nginx upstream:
#
#   - instructions per request in user space (valgrind's callgrind, counters zeroed after a
#     warm-up, then PROFILE_REQUESTS sequential keep-alive requests): the same count on every run
#     of the same binary; the costliest functions (self cost) go to the raw directory;
#   - system calls per request (strace -c attached for PROFILE_REQUESTS requests);
#   - with PROFILE_FLAMEGRAPH=1, a flame graph per target (perf record at 999 Hz, DWARF call
#     graphs, under wrk with one connection for PROFILE_SECONDS; needs perf and inferno, which
#     `MXGATE_SETUP_BENCH=1 scripts/setup.sh` installs).
#
# Output: a markdown table on stdout and in target/bench/profile.md; callgrind files, the top
# functions, strace summaries and flame graphs in target/bench/profile.raw/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
N=${PROFILE_REQUESTS:-2000}
SECONDS_PERF=${PROFILE_SECONDS:-5}
FLAME=${PROFILE_FLAMEGRAPH:-0}
TARGETS=${PROFILE_TARGETS:-nginx bare-pingora mxgate-noauth mxgate}
RAW=$ROOT/target/bench/profile.raw
OUT=$ROOT/target/bench/profile.md
MXGATE_BIN=$ROOT/target/release/mxgate
BARE_BIN=$ROOT/target/bare-pingora/release/bare-pingora
INFERNO=$ROOT/target/tools/inferno/bin
PY=$ROOT/target/py/client/bin/python
say() { echo "profile: $*" >&2; }
die() { say "$*"; exit 1; }

for tool in valgrind callgrind_annotate strace nginx node curl; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install valgrind strace nginx (make bench installs the rest)"
done
if [ "$FLAME" = 1 ]; then
  command -v perf >/dev/null || die "perf is missing: apt-get install linux-perf"
  command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk"
  [ -x "$INFERNO/inferno-flamegraph" ] || die "inferno is missing: MXGATE_SETUP_BENCH=1 scripts/setup.sh"
fi
if [ "${BENCH_BUILD:-1}" = 1 ]; then
  say "building mxgate and the bare Pingora proxy (release)"
  cargo build --release --quiet
  cargo build --release --quiet --locked --manifest-path bench/bare-pingora/Cargo.toml --target-dir target/bare-pingora
fi

rm -rf "$RAW" && mkdir -p "$RAW"
# shellcheck source=scripts/bench/common.sh
. "$ROOT/scripts/bench/common.sh" # TMP, PIDS (stopped on exit), free_port
wait_http() { # wait_http <url>: up to 60 s for any HTTP answer
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done
  die "nothing answers at $1"
}
nginx_conf() { # nginx_conf <name> <server block>
  cat <<EOF
worker_processes 1; master_process off; daemon off; pid $TMP/$1.pid; error_log $TMP/$1.log warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  client_body_temp_path $TMP/tmp; proxy_temp_path $TMP/tmp; fastcgi_temp_path $TMP/tmp;
  uwsgi_temp_path $TMP/tmp; scgi_temp_path $TMP/tmp;
  $2
}
EOF
}
mkdir -p "$TMP/tmp"
UP=$(free_port)
STATIC_BODY='{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}'
nginx_conf upstream "server { listen 127.0.0.1:$UP; location / { default_type application/json; return 200 '$STATIC_BODY'; } }" >"$TMP/upstream.conf"
nginx -p "$TMP" -e "$TMP/upstream.log" -c "$TMP/upstream.conf" &
PIDS+=($!)
wait_http "http://127.0.0.1:$UP/"

# The OpenID provider for the full-auth target: mxgate's redirect URI is known once its port is.
PX_AUTH=$(free_port)
(cd tests/fixtures/oidc-provider && exec node server.js --port 0 --redirect-uri "http://127.0.0.1:$PX_AUTH/callback") >"$TMP/idp.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^ready ' "$TMP/idp.log" && break; sleep 0.2; done
ISSUER=$(awk '/^ready / { print $2; exit }' "$TMP/idp.log")
[ -n "$ISSUER" ] || die "the OpenID provider did not start: $(cat "$TMP/idp.log")"

mxgate_files() { # mxgate_files <dir> <port> <oidc|none>
  local auth="provider: none"
  [ "$3" = oidc ] && auth="provider: oidc
          oidc:
            config_url: $ISSUER/.well-known/openid-configuration
            client_id: mxgate
            client_secret: mxgate-secret
            scope: openid profile email groups
            callback_path: /callback"
  mkdir -p "$1"
  printf 'listen: 127.0.0.1:%s\nupstream: http://127.0.0.1:%s\npublic_url: http://127.0.0.1:%s\nmcp_path: /mcp\ndata_dir: data\nthreads: 1\nmxcp_config: mxcp-config.yml\nproject: p\nprofile: default\n' \
    "$2" "$UP" "$2" >"$1/mxgate.yml"
  cat >"$1/mxcp-config.yml" <<EOF
mxcp: 1
transport: {http: {host: 127.0.0.1, port: $2}}
projects:
  p:
    profiles:
      default:
        auth:
          $auth
EOF
}

# start <target> <port> <wrapper...>: the target with one worker, under the wrapper (may be empty)
start() {
  local target=$1 port=$2
  shift 2
  case $target in
    nginx)
      nginx_conf "proxy-$port" "upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$port; location / { proxy_pass http://up; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Real-IP \$remote_addr; } }" >"$TMP/proxy-$port.conf"
      "$@" nginx -p "$TMP" -e "$TMP/proxy-$port.log" -c "$TMP/proxy-$port.conf" >"$TMP/$target-$port.out" 2>&1 &
      ;;
    bare-pingora)
      mkdir -p "$TMP/bare-$port"
      (cd "$TMP/bare-$port" && exec "$@" "$BARE_BIN" "127.0.0.1:$port" "127.0.0.1:$UP" 1) >"$TMP/$target-$port.out" 2>&1 &
      ;;
    mxgate-noauth | mxgate)
      local dir=$TMP/$target-$port
      mxgate_files "$dir" "$port" "$([ "$target" = mxgate ] && echo oidc || echo none)"
      (cd "$dir" && exec env MXGATE_LOG=warn "$@" "$MXGATE_BIN" serve --config "$dir/mxgate.yml") >"$TMP/$target-$port.out" 2>&1 &
      ;;
  esac
  PIDS+=($!)
  STARTED=$!
  wait_http "http://127.0.0.1:$port/mcp"
}

stop() { kill -INT "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# The port of each target: mxgate's full-auth one is fixed by the IdP's redirect URI, so each
# pass starts, measures and stops its target before the next pass starts it again.
port_of() { if [ "$1" = mxgate ]; then echo "$PX_AUTH"; else free_port; fi; }
token_for() { # token_for <target> <port>: a bearer token for mxgate with auth, else nothing
  if [ "$1" = mxgate ]; then "$PY" scripts/bench/mcp_client.py token "http://127.0.0.1:$2"; fi
}
load() { "$PY" scripts/bench/load_sequential.py "http://127.0.0.1:$1/mcp" "$2" "$3"; }

printf 'target\tinstructions\tsyscalls\tdetail\n' >"$RAW/summary.tsv"
for target in $TARGETS; do
  say "$target: callgrind"
  port=$(port_of "$target")
  start "$target" "$port" valgrind --tool=callgrind --callgrind-out-file="$RAW/$target.callgrind" --dump-instr=no
  vg=$STARTED
  token=$(token_for "$target" "$port")
  load "$port" 300 "$token"
  callgrind_control -z "$vg" >/dev/null
  load "$port" "$N" "$token"
  callgrind_control -d "$vg" >/dev/null
  stop "$vg"
  # The measured requests are the first dump (.1); the file without a number is the rest up to exit.
  "$PY" scripts/bench/callgrind_top.py "$RAW/$target.callgrind.1" "$N" >"$RAW/$target.top.txt"
  rm -f "$RAW/$target.callgrind"
  instructions=$(awk 'NR == 1 { print $2 }' "$RAW/$target.top.txt")

  say "$target: strace"
  start "$target" "$port"
  pid=$STARTED
  token=$(token_for "$target" "$port")
  load "$port" 300 "$token"
  strace -f -c -p "$pid" -o "$RAW/$target.strace.txt" 2>/dev/null &
  st=$!
  sleep 1
  load "$port" "$N" "$token"
  kill -INT "$st"; wait "$st" || true
  syscalls=$(awk -v n="$N" '$NF == "total" { printf "%.2f", $4 / n }' "$RAW/$target.strace.txt")
  detail=$(awk -v n="$N" 'NR > 2 && $4 + 0 >= n / 2 && $NF != "total" { printf "%s%s %.1f", sep, $NF, $4 / n; sep = ", " }' "$RAW/$target.strace.txt")

  if [ "$FLAME" = 1 ]; then
    say "$target: perf, ${SECONDS_PERF}s under wrk (one connection)"
    perf record -q -F 999 --call-graph dwarf,16384 -p "$pid" -o "$RAW/$target.perf.data" -- sleep "$SECONDS_PERF" 2>/dev/null &
    pr=$!
    BENCH_TOKEN=$token wrk -t1 -c1 -d"$((SECONDS_PERF + 1))s" -s scripts/bench/mcp.lua "http://127.0.0.1:$port/mcp" >/dev/null
    wait "$pr" || true
    perf script -i "$RAW/$target.perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" >"$RAW/$target.folded"
    "$INFERNO/inferno-flamegraph" --title "$target: one proxied request's CPU" <"$RAW/$target.folded" >"$RAW/$target.svg"
    rm -f "$RAW/$target.perf.data"
  fi
  stop "$pid"
  printf '%s\t%s\t%s\t%s\n' "$target" "$instructions" "$syscalls" "$detail" >>"$RAW/summary.tsv"
done

{
  echo "| target | instructions / request (user space) | vs nginx | vs bare Pingora | system calls / request |"
  echo "|---|--:|--:|--:|---|"
  awk -F'\t' 'NR > 1 { n[$1] = $2; row[++k] = $0 }
    END {
      for (i = 1; i <= k; i++) {
        split(row[i], f, "\t")
        vn = n["nginx"] ? sprintf("%.2f×", f[2] / n["nginx"]) : "—"
        vb = n["bare-pingora"] ? sprintf("%.2f×", f[2] / n["bare-pingora"]) : "—"
        printf "| %s | %\047d | %s | %s | %s (%s) |\n", f[1], f[2], vn, vb, f[3], f[4]
      }
    }' "$RAW/summary.tsv"
  echo
  echo "PROFILE_REQUESTS=$N sequential keep-alive requests per target; top functions: target/bench/profile.raw/<target>.top.txt"
} | tee "$OUT"

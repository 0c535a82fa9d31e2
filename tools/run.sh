#!/usr/bin/env bash
# Sets up the machine, builds coil (build/, plain) and starts the main program:
# coil-proxy. With no arguments it runs its built-in configuration: the proxy on
# port 8080 in front of a demo upstream on 127.0.0.1:8081
# (try: curl http://127.0.0.1:8080/). Extra arguments go to coil-proxy
# (e.g. -c proxy.conf).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DCOIL_SANITIZE=OFF
cmake --build build -j"${JOBS:-2}"

BIN=build/proxy/coil-proxy
if [ ! -x "$BIN" ]; then
  echo "run.sh: $BIN was not built" >&2
  exit 1
fi
exec "$BIN" "$@"

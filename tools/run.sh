#!/usr/bin/env bash
# Sets up the machine, builds coil (build/, plain) and starts the main program:
# for now the echo server example on port 8080. Extra arguments are passed on.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash tools/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" -DCOIL_SANITIZE=OFF
cmake --build build -j"${JOBS:-2}"

BIN=build/docs/examples/echo_server
if [ ! -x "$BIN" ]; then
  echo "run.sh: $BIN was not built" >&2
  exit 1
fi
exec "$BIN" --port 8080 "$@"

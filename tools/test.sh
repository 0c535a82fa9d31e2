#!/usr/bin/env bash
# Sets up the machine, builds coil twice and runs every test in both builds:
#   build/       plain build (-O2 -g)
#   build-asan/  COIL_SANITIZE=ON (ASan + UBSan, -O1 -g)
# then a third stage, the HTTP parser fuzzers:
#   build-fuzz/  COIL_FUZZ=ON with clang (libFuzzer + ASan + UBSan): the
#                recorded regressions replayed, then each fuzzer run on a
#                copy of its seed corpus: COIL_FUZZ_RUNS inputs (default
#                600000) from seed COIL_FUZZ_SEED (default 1), or, with
#                COIL_FUZZ_SECONDS=N, N seconds from a random seed
# Tests registered with BOTH_BACKENDS run once per backend (io_uring, epoll).
# Ends with one summary line per build, a fuzz line and a total line:
#   fuzz: request N executions, response N executions, N crash(es) (S s each)
#   tests: N passed, N failed, N skipped
# Exits non-zero if setup, a build, any test or a fuzzer fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

JOBS="${JOBS:-2}"

bash tools/setup.sh

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

status=0
summaries=()
total_pass=0 total_fail=0 total_skip=0

# count_ctest LOG -> sets PASS FAIL SKIP from ctest's per-test result lines.
count_ctest() {
  PASS=0 FAIL=0 SKIP=0
  local line
  while IFS= read -r line; do
    case "$line" in
      *" Passed "*|*" Passed") PASS=$((PASS + 1)) ;;
      *"Skipped "*|*"Skipped")  SKIP=$((SKIP + 1)) ;;
      *)                        FAIL=$((FAIL + 1)) ;;
    esac
  done < <(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: ' "$1" || true)
}

# LeakSanitizer needs ptrace-free execution (it stops the world with ptrace);
# under strace/gdb or some sandboxes it cannot run. Probe it once, loudly.
LSAN_NOTE=""
probe_lsan() {
  local cc="${CC:-cc}"
  printf '#include <stdlib.h>\nvoid *volatile g;\nint main(void) { g = malloc(33); g = 0; return 0; }\n' >"$tmp/leak.c"
  if ! "$cc" -O0 -g -fsanitize=address "$tmp/leak.c" -o "$tmp/leak" >"$tmp/leak.cc.log" 2>&1; then
    LSAN_NOTE="cannot build an ASan program with $cc ($(head -n1 "$tmp/leak.cc.log"))"
    return 1
  fi
  ASAN_OPTIONS=detect_leaks=1 "$tmp/leak" >"$tmp/leak.log" 2>&1 || true
  if grep -q 'ERROR: LeakSanitizer: detected memory leaks' "$tmp/leak.log"; then
    return 0
  fi
  if grep -q 'does not work under ptrace' "$tmp/leak.log"; then
    LSAN_NOTE="LeakSanitizer does not work under ptrace (this process is traced: TracerPid $(awk '/^TracerPid/ {print $2}' /proc/self/status))"
  else
    LSAN_NOTE="LeakSanitizer did not report a deliberate leak: $(grep -m1 -i 'sanitizer' "$tmp/leak.log" || echo 'no output')"
  fi
  return 1
}

# run_build NAME DIR -- CMAKE_ARGS...
run_build() {
  local name="$1" dir="$2"
  shift 3
  local log="$tmp/$name.ctest.log"
  echo "=== $name: configure + build ($dir)"
  if ! { cmake -S . -B "$dir" "$@" && cmake --build "$dir" -j"$JOBS"; }; then
    echo "=== $name: BUILD FAILED" >&2
    status=1
    summaries+=("$name: 0 passed, 1 failed, 0 skipped (build failed, no tests run)")
    total_fail=$((total_fail + 1))
    return 0
  fi
  echo "=== $name: ctest"
  local rc=0
  (cd "$dir" && ctest --output-on-failure -j"$JOBS") 2>&1 | tee "$log" || rc=$?
  count_ctest "$log"
  if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then
    FAIL=1 # ctest failed without a per-test failure line (e.g. bad CTestTestfile)
  fi
  if [ "$rc" -ne 0 ] || [ "$FAIL" -ne 0 ]; then
    status=1
  fi
  summaries+=("$name: $PASS passed, $FAIL failed, $SKIP skipped")
  total_pass=$((total_pass + PASS))
  total_fail=$((total_fail + FAIL))
  total_skip=$((total_skip + SKIP))
  return 0
}

run_build plain build -- \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" \
  -DCOIL_SANITIZE=OFF

export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if probe_lsan; then
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
else
  {
    echo "!!! WARNING: LeakSanitizer cannot run in this environment:"
    echo "!!!   $LSAN_NOTE"
    echo "!!! The sanitizer build runs WITHOUT leak detection (detect_leaks=0)."
  } >&2
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1"
  if [ "${COIL_REQUIRE_LSAN:-0}" = 1 ]; then
    echo "!!! COIL_REQUIRE_LSAN=1: treating this as a failure." >&2
    status=1
  fi
fi
run_build asan build-asan -- \
  -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -g" \
  -DCOIL_SANITIZE=ON
unset ASAN_OPTIONS UBSAN_OPTIONS

# The fuzz stage. A crash keeps its input in build-fuzz/artifacts/ (the
# temporary corpus goes away); a crash found here belongs, once understood,
# in tests/fuzz/regressions/<kind>/ so every build replays it.
# By default each fuzzer runs a fixed number of inputs from a fixed seed, so
# the stage gives the same verdict on every run of the same tree: a test
# command must not fail by luck. COIL_FUZZ_SECONDS=N explores instead (a
# random seed, N seconds each): how new findings are made.
FUZZ_RUNS="${COIL_FUZZ_RUNS:-600000}"
FUZZ_SEED="${COIL_FUZZ_SEED:-1}"
if [ -n "${COIL_FUZZ_SECONDS:-}" ]; then
  FUZZ_BOUND=(-max_total_time="$COIL_FUZZ_SECONDS")
  FUZZ_WHAT="${COIL_FUZZ_SECONDS} s each, random seed"
else
  FUZZ_BOUND=(-runs="$FUZZ_RUNS" -seed="$FUZZ_SEED")
  FUZZ_WHAT="$FUZZ_RUNS runs each, seed $FUZZ_SEED"
fi
run_fuzz() {
  local dir=build-fuzz
  echo "=== fuzz: configure + build ($dir)"
  if ! { cmake -S . -B "$dir" -DCMAKE_C_COMPILER=clang -DCOIL_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug &&
         cmake --build "$dir" -j"$JOBS"; }; then
    echo "=== fuzz: BUILD FAILED" >&2
    status=1
    summaries+=("fuzz: build failed, no fuzzer run")
    return 0
  fi
  local parts=() crashes=0 kind
  echo "=== fuzz: regressions"
  if ! (cd "$dir" && ctest --output-on-failure); then
    status=1
    parts+=("regression replay FAILED")
  fi
  # Without LeakSanitizer (see probe_lsan) libFuzzer must not try it either.
  local leaks=1
  [ -z "$LSAN_NOTE" ] || leaks=0
  mkdir -p "$dir/artifacts"
  for kind in request response; do
    local work="$tmp/fuzz-$kind" log="$tmp/fuzz-$kind.log" rc=0 execs
    mkdir -p "$work"
    cp tests/fuzz/corpus/"$kind"/* "$work/"
    echo "=== fuzz: fuzz_http_$kind ($FUZZ_WHAT)"
    "$dir/tests/fuzz/fuzz_http_$kind" "${FUZZ_BOUND[@]}" -max_len=16384 \
      -timeout=10 -rss_limit_mb=2048 -detect_leaks="$leaks" -print_final_stats=1 \
      -dict=tests/fuzz/http.dict -artifact_prefix="$ROOT/$dir/artifacts/$kind-" \
      "$work" >"$log" 2>&1 || rc=$?
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    if [ "$rc" -ne 0 ]; then
      crashes=$((crashes + 1))
      status=1
      grep -E 'invariant broken|ERROR: |SUMMARY: |^Base64: ' "$log" | head -n 8 >&2 || true
      echo "=== fuzz: fuzz_http_$kind FAILED (exit $rc); input kept in $dir/artifacts/$kind-*" >&2
      parts+=("$kind crashed after ${execs:-?} executions")
    else
      echo "    ${execs:-?} executions"
      parts+=("$kind ${execs:-?} executions")
    fi
  done
  local line="" part
  for part in "${parts[@]}"; do
    line+="$part, "
  done
  summaries+=("fuzz: ${line}$crashes crash(es) ($FUZZ_WHAT)")
}
run_fuzz

echo
[ -z "$LSAN_NOTE" ] || echo "note: leak detection was OFF in the asan build: $LSAN_NOTE"
for s in "${summaries[@]}"; do
  echo "$s"
done
echo "tests: $total_pass passed, $total_fail failed, $total_skip skipped"
exit "$status"

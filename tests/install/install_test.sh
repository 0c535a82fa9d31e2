#!/usr/bin/env bash
# Installs a build into a temporary prefix and builds a program against it
# from outside the source tree, twice: with pkg-config and cc, and with a
# CMake project that calls find_package(coil). Runs both programs under each
# backend. Writes only under a temporary directory, which it removes.
#
# usage: install_test.sh BUILD_DIR CONSUMER_SRC_DIR CC [EXTRA_CFLAGS]
#   EXTRA_CFLAGS: the sanitizer flags when the installed libraries were
#   built with them (the consumer must link the same runtime).
set -euo pipefail

build="$1" consumer_src="$2" cc="$3" extra="${4:-}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
fail=0

step() { echo "--- $*"; }
bad() { echo "FAILED: $*"; fail=1; }

step "cmake --install $build --prefix <tmp>"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 || {
  cat "$tmp/install.log"; echo "FAILED: install"; exit 1; }

libdir="$(cd "$prefix" && dirname "$(find . -name coil.pc -path '*/pkgconfig/*' | head -n1)")"
libdir="${libdir%/pkgconfig}"
libdir="${libdir#./}"
[ -n "$libdir" ] || { bad "no coil.pc installed"; exit 1; }
for f in "$libdir/libcoil_runtime.a" "$libdir/libcoil_http.a" "$libdir/libcoil_llhttp.a" \
         "$libdir/pkgconfig/coil.pc" "$libdir/cmake/coil/coilConfig.cmake" \
         "$libdir/cmake/coil/coilConfigVersion.cmake" "$libdir/cmake/coil/coilTargets.cmake" \
         bin/coil-proxy bin/coil-doctor share/man/man1/coil-proxy.1 share/man/man1/coil-doctor.1 \
         include/coil/coil.h include/coil/http.h include/coil/http_client.h; do
  [ -e "$prefix/$f" ] || bad "not installed: $f"
done
[ -x "$prefix/bin/coil-proxy" ] && "$prefix/bin/coil-proxy" --help >/dev/null || bad "installed coil-proxy --help"

# Every installed header stands on its own.
for h in "$prefix"/include/coil/*.h; do
  echo "#include <coil/$(basename "$h")>" |
    "$cc" -std=gnu11 -Wall -Wextra -Werror -fsyntax-only -I"$prefix/include" -x c - ||
    bad "header $(basename "$h") does not compile alone"
done

# The consumer is built from a copy: nothing is written next to the sources.
cp -r "$consumer_src" "$tmp/src"

step "pkg-config --static --cflags --libs coil"
export PKG_CONFIG_PATH="$prefix/$libdir/pkgconfig"
pc_flags="$(pkg-config --static --cflags --libs coil)"
echo "$pc_flags"
case "$pc_flags" in *"$prefix"*) ;; *) bad "coil.pc does not point into the prefix" ;; esac
# shellcheck disable=SC2086 # word splitting of the flag lists is intended
"$cc" -std=gnu11 -Wall -Wextra -Werror $extra "$tmp/src/consumer.c" -o "$tmp/consumer-pc" $pc_flags ||
  bad "build with pkg-config"

step "find_package(coil)"
if cmake -S "$tmp/src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
     -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" >"$tmp/cmake.log" 2>&1 &&
   cmake --build "$tmp/build" >>"$tmp/cmake.log" 2>&1; then
  cp "$tmp/build/consumer" "$tmp/consumer-cmake"
else
  cat "$tmp/cmake.log"
  bad "build with find_package(coil)"
fi
# The CMake build must have used the installed package, not the build tree.
grep -q "coil_DIR:PATH=$prefix/" "$tmp/build/CMakeCache.txt" 2>/dev/null ||
  bad "find_package(coil) did not find the installed package"

ran=0
for bin in consumer-pc consumer-cmake; do
  [ -x "$tmp/$bin" ] || continue
  for backend in io_uring epoll; do
    rc=0
    COIL_BACKEND="$backend" COIL_QUIET=1 "$tmp/$bin" || rc=$?
    case "$rc" in
      0) echo "ok      $bin under $backend"; ran=$((ran + 1)) ;;
      77) echo "skipped $bin under $backend (backend not available here)" ;;
      *) bad "$bin under $backend exited $rc" ;;
    esac
  done
done
[ "$ran" -gt 0 ] || bad "no consumer ran"
[ "$fail" -eq 0 ] && echo "install test passed"
exit "$fail"

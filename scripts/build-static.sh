#!/usr/bin/env bash
# Builds the thaw binary into ./build-static for machines where nothing can
# be installed (the GPU machine of bench/gpu_check.sh): libstdc++ and libgcc
# are linked in, the headers-only libraries (nlohmann-json, CLI11) need
# nothing at run time, and libcuda is opened at run time, never linked.
# glibc stays dynamic; the script prints the newest glibc symbol version the
# binary needs, to compare with the target's (`ldd --version`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CMAKE_GENERATOR="Unix Makefiles"
cmake -S . -B build-static -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc"
make --no-print-directory -C build-static -j"${JOBS:-2}" thaw

bin=build-static/thaw
# Only glibc's own libraries may remain dynamic.
bad="$(ldd "$bin" | awk '{print $1}' | grep -vE '^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|/lib64/ld-linux-x86-64\.so\.2)$' || true)"
if [ -n "$bad" ]; then
  echo "build-static.sh: $bin needs libraries besides glibc:" >&2
  echo "$bad" >&2
  exit 1
fi
ldd "$bin"
need="$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
echo "build-static.sh: $bin OK: only glibc is dynamic; newest glibc symbol version needed: $need"

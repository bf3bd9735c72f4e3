#!/usr/bin/env bash
# Configures and builds thaw (and the test zoo) into ./build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CMAKE_GENERATOR="Unix Makefiles"  # we drive the build with make below
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
make --no-print-directory -C build -j"$(nproc)"

#!/usr/bin/env bash
# The one test command: installs dependencies, builds, runs the unit tests
# (ctest) and the end-to-end tests (pytest, with Debian's python). Exits
# non-zero on any failure, and when a test runner finds no test to run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Debian's python has pytest and torch; a python3 earlier on PATH (pyenv)
# may have neither.
PY=/usr/bin/python3

echo "== dependencies"
bash scripts/install-deps.sh

echo "== build"
bash scripts/build.sh

echo "== unit tests (ctest)"
ntests="$(ctest --test-dir build -N | sed -n 's/^Total Tests: *\([0-9][0-9]*\).*/\1/p')"
ntests="${ntests:-0}"
if [ "$ntests" -gt 0 ]; then
  ctest --test-dir build --output-on-failure --no-tests=error
elif [ -e tests/unit/CMakeLists.txt ]; then
  echo "test.sh: tests/unit exists but ctest found no tests" >&2
  exit 1
else
  echo "no unit tests registered with ctest yet (no tests/unit); skipping"
fi

run_pytest() {
  # Each suite on its own: both have a conftest module of their own.
  local rc=0
  PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests in $*" >&2
    return 1
  fi
  return "$rc"
}

echo "== SDK tests (pytest)"
run_pytest tests/unit_py

echo "== end-to-end tests (pytest)"
run_pytest tests/e2e

#!/usr/bin/env bash
# Installs everything thaw needs to build and test on Debian 12 (bookworm).
# Idempotent and quiet: when every package is already installed it does not
# touch apt at all, so reruns (CI) cost a few dpkg-query calls.
set -euo pipefail

pkgs=(
  build-essential cmake g++ binutils   # compiler, linker, ld/objcopy for the restorer blob
  nlohmann-json3-dev libcli11-dev      # image manifest (JSON), command line
  libgtest-dev                         # unit tests
  libxxhash-dev                        # unit tests: xxHash, the reference our XXH3 is checked against
  python3 python3-pytest               # end-to-end tests (Debian's /usr/bin/python3)
  python3-cloudpickle                  # the SDK pickles calls' values with it, as Modal does
                                       # (lambdas, closures, a script's own classes)
  python3-numpy python3-torch          # the demo's worker
  libopenblas0-openmp                  # torch's BLAS: without it Debian's torch uses the reference
                                       # BLAS, and the demo model's call takes 97 ms instead of 15
  util-linux                           # setpriv (a test runs a process as another user)
  gdb                                  # a test stops thaw at a chosen point to kill -9 it there
  tzdata                               # time zones of Cron schedules (/usr/share/zoneinfo)
  python3-fastapi python3-flask        # end-to-end tests: real ASGI and WSGI apps as web endpoints
)
# Node.js: Debian's package, unless some node is already there (for example a
# nodesource install, whose `nodejs` package would conflict with Debian's).
if ! command -v node >/dev/null 2>&1 && ! [ -e /usr/bin/node ]; then
  pkgs+=(nodejs)
fi

missing=()
for p in "${pkgs[@]}"; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != "installed" ]; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} packages already installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp -t thaw-install-deps.XXXXXX)"
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
       "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
         -o Dpkg::Use-Pty=0 "${missing[@]}"; } >"$log" 2>&1; then
  echo "install-deps: apt-get failed:" >&2
  tail -n 40 "$log" >&2
  exit 1
fi
echo "install-deps: done"

#!/usr/bin/env bash
# The main demo (engine level): a torch worker's cold start against its
# restore from a thaw image. Installs dependencies, builds, then runs
# examples/demo_engine.py with Debian's python. Extra arguments go to it
# (--keep keeps the image, --workdir DIR puts it there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh
bash scripts/build.sh >/dev/null
echo "== engine: a torch process checkpointed and restored"
/usr/bin/python3 examples/demo_engine.py "$@"
echo
echo "== functions: a Modal-style torch class deployed with a memory snapshot"
/usr/bin/python3 examples/demo_functions.py
echo
echo "== functions, served: \`thaw serve\` restores each new container as a copy of the snapshot's live template"
/usr/bin/python3 bench/function_bench.py --only serve --rounds 3
echo
echo "== web: the same class's @fastapi_endpoint over HTTP (\`thaw serve --http\`), each request on a new container"
/usr/bin/python3 bench/function_bench.py --only web --rounds 3

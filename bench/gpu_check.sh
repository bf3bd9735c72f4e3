#!/usr/bin/env bash
# The GPU check of issue 4, for a machine with an NVIDIA GPU where nothing
# can be installed: runs thaw (built elsewhere by scripts/build-static.sh and
# carried over) through the real GPU path, end to end, and prints a summary.
#
#   bash bench/gpu_check.sh            on the GPU machine
#   bash bench/gpu_check.sh --cpu      dry run of the same flow on a machine
#                                      without a GPU (THAW_GPU_CHECK_CPU=1 too)
#
# Steps (run in the order cold, gpu-snapshot, runtime, cpu-snapshot,
# gpu-snapshot-small, cpu-snapshot-visible), each under `timeout` so that one
# hang does not eat the budget:
#   info          nvidia-smi, driver, glibc, thaw binary, torch
#   cold          (a) the model process started cold: build, to GPU, forward
#   cpu-snapshot  (b) model on the CPU (GPU hidden) checkpointed, restored,
#                 GPU made visible, .to("cuda"), forward
#   gpu-snapshot  (c) model on the GPU checkpointed, restored (four times: eager,
#                 eager again, twice with --gpu-lazy), forward;
#                 outputs before checkpoint and after restore must be equal
#   gpu-snapshot-small  (c) with a 0.5 GiB model (GIB_SMALL): with (c), the
#                 driver's restore time as a fixed part plus a rate
#   runtime       (d) thaw apps with gpu= deployed and called: a GPU snapshot,
#                 a CPU snapshot (GPU attached after the restore), and a CPU
#                 snapshot that touches CUDA in the snapshot phase (the warning
#                 must show, the snapshot is refused, calls cold-start)
#   cpu-snapshot-visible  diagnosis: (b) with the GPU visible while libcuda
#                 loads, which crashed after the restore on the H100
#   summary       the table
# Environment: THAW (binary; default build-static/thaw, else build/thaw),
# PY (python with torch; default python3), GIB (model size, default 4; 0.25
# in the dry run), GIB_SMALL, OUT (where the log and results go; default a
# temp dir), BUDGET (seconds for all steps, default 530).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CPU_ONLY="${THAW_GPU_CHECK_CPU:-0}"
[ "${1:-}" = "--cpu" ] && CPU_ONLY=1
export CPU_ONLY
if [ "$CPU_ONLY" = 1 ]; then export DEVICE=cpu GIB="${GIB:-0.25}"; else export DEVICE=cuda GIB="${GIB:-4}"; fi
export PY="${PY:-$(command -v python3)}"
if [ -z "${THAW:-}" ]; then
  if [ -x build-static/thaw ]; then THAW="$PWD/build-static/thaw"; else THAW="$PWD/build/thaw"; fi
fi
export THAW
OUT="${OUT:-$(mktemp -d /tmp/gpu_check.XXXXXX)}"
mkdir -p "$OUT"
export RESULTS="$OUT/results" WORK
WORK="$(mktemp -d /tmp/gpu_check_work.XXXXXX)"
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
trap 'rm -rf "$WORK"' EXIT

# All steps together stay within BUDGET seconds (default 530), so that the
# summary prints before the device call's own limit: a step gets what is
# left, less 30 s for the summary, and is skipped with under 40 s.
BUDGET="${BUDGET:-530}"
step() {  # step NAME SECONDS: one step of gpu_check.py under a hard limit
  echo
  local limit=$2 left=$(( BUDGET - SECONDS - 30 ))
  (( left < limit )) && limit=$left
  if (( limit < 40 )); then echo "=== $1 SKIPPED: $left s of the budget left"; return; fi
  echo "=== $1 (at most $limit s) $(date -u +%H:%M:%S)"
  local t0=$SECONDS
  STEP_TIMEOUT=$(( limit - 10 )) timeout -k 5 "$limit" "$PY" bench/gpu_check.py "$1"
  local rc=$?
  [ $rc -eq 124 ] && echo "=== $1 TIMED OUT after $2 s"
  echo "=== $1 rc=$rc in $(( SECONDS - t0 )) s"
}

echo "=== info $(date -u)"
echo "thaw: $THAW   python: $PY   device: $DEVICE   model: $GIB GiB   log: $LOG"
if [ "$CPU_ONLY" != 1 ]; then
  timeout 20 nvidia-smi || echo "nvidia-smi failed"
  timeout 20 nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,memory.used,persistence_mode,mig.mode.current --format=csv || true
fi
cat /proc/driver/nvidia/version 2>/dev/null || echo "no /proc/driver/nvidia/version"
ls -l /dev/nvidia* 2>&1 | head -12
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so' || echo "libcuda not in the ld cache"
grep -E 'MemTotal|MemAvailable' /proc/meminfo; nproc; df -h /tmp | tail -1
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
uname -r
ldd --version | head -1
ldd "$THAW" || true
[ -x "$THAW" ] || { echo "no thaw binary at $THAW (run scripts/build-static.sh first)"; exit 1; }
timeout 60 "$PY" -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "python", sys.version.split()[0])' || true
id -u | grep -qx 0 || echo "WARNING: not root; thaw checkpoint/restore need root"

export PYTHONUNBUFFERED=1 THAW_GPU_COPY_TIMEOUT="${THAW_GPU_COPY_TIMEOUT:-40}"
# In the order of what issue 4 needs most; the diagnosis goes last.
step cold 130
step gpu-snapshot 140
step runtime 130
step cpu-snapshot 120
step gpu-snapshot-small 70
step cpu-snapshot-visible 60
echo
echo "=== kernel log (last lines)"
dmesg 2>/dev/null | tail -15 || true
timeout 30 "$PY" bench/gpu_check.py summary
rc=$?
echo "log: $LOG   results: $RESULTS"
exit $rc

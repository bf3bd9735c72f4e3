"""The model process of bench/gpu_check.sh.

Builds a torch MLP of about --gib GiB from a fixed config with random weights
(seed 0, made on the CPU so every path gets the same ones), moves it to
--device, runs a forward pass and keeps the output. Prints one JSON line
{"phase": "ready", ...timings} and waits for a line on stdin:
  "go"          forward again on the same device; the output must be equal
  "go DEVICE"   move the model to DEVICE first (the CPU-snapshot path), then
                compare with a tolerance (CPU and GPU kernels differ)
then prints {"phase": "result", ...} and exits. "go" may carry options:
  "go move=DEVICE"  move the model to DEVICE first (the CPU-snapshot path)
  "go ref=PATH"     compare the output with the one saved at PATH as well
  "go visible=IDS"  set CUDA_VISIBLE_DEVICES=IDS first (a process started with
                    the GPU hidden, as the runtime's CPU snapshots are)
--weights PATH loads the weights from PATH when it exists (what a real cold
start does: read them from disk, here from the page cache) and else builds
them from the seed and saves them there. --save-ref PATH saves the output (on the CPU) for later comparisons;
--no-forward skips the first forward pass (a model parked on the CPU in
the GPU's dtype, whose CPU kernels may be missing or slow); --pcie times a
host-to-device copy of 1 GiB, pageable and pinned, after the result.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import faulthandler  # noqa: E402

faulthandler.enable(all_threads=True)  # a crash after a restore shows where (on stderr)
T0 = time.monotonic()
import torch  # noqa: E402

T_IMPORT = time.monotonic() - T0


def shape(gib, dtype):
    hidden = 8192 if gib >= 1 else 2048
    layer_bytes = hidden * hidden * torch.finfo(dtype).bits // 8
    return hidden, max(2, int(gib * (1 << 30) // layer_bytes)), layer_bytes


def build(gib, dtype):
    """Weights from seed 0, made on the CPU so every path gets the same ones."""
    hidden, layers, _ = shape(gib, dtype)
    gen = torch.Generator().manual_seed(0)
    weights = [(torch.randn(hidden, hidden, generator=gen) / hidden ** 0.5).to(dtype) for _ in range(layers)]
    x = torch.randn(8, hidden, generator=gen).to(dtype)
    return weights, x


def assemble(weights, gib, dtype):
    hidden, layers, layer_bytes = shape(gib, dtype)
    mods = []
    for w in weights:
        # skip_init: no random init of memory the weights replace at once.
        lin = torch.nn.utils.skip_init(torch.nn.Linear, hidden, hidden, bias=False, dtype=dtype)
        lin.weight = torch.nn.Parameter(w, requires_grad=False)
        mods += [lin, torch.nn.Tanh()]
    return torch.nn.Sequential(*mods).eval(), layers * layer_bytes


def forward(model, x):
    with torch.no_grad():
        out = model(x)
    if out.is_cuda:
        torch.cuda.synchronize()
    return out


def digest(t):
    return hashlib.sha256(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()[:16]


def compare(out, ref, prefix):
    ref = ref.to(out.device)
    return {f"{prefix}equal": bool(torch.equal(out, ref)),
            f"{prefix}close": bool(torch.allclose(out.float(), ref.float(), rtol=1e-2, atol=1e-2)),
            f"{prefix}max_abs_diff": (out.float() - ref.float()).abs().max().item()}


def pcie(n=1 << 30):
    """Host-to-device GB/s of one n-byte copy from pageable and from pinned memory."""
    res = {}
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    for kind in ("pageable", "pinned"):
        host = torch.ones(n, dtype=torch.uint8, pin_memory=(kind == "pinned"))
        best = 0.0
        for _ in range(3):  # the best of three, the first may pay for setup
            torch.cuda.synchronize()
            t = time.monotonic()
            dev.copy_(host, non_blocking=True)
            torch.cuda.synchronize()
            best = max(best, n / 1e9 / (time.monotonic() - t))
        res[f"h2d_{kind}_GBps"] = best
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=("float16", "float32"), default=None)
    ap.add_argument("--gib", type=float, default=4)
    ap.add_argument("--no-forward", action="store_true")
    ap.add_argument("--save-ref")
    ap.add_argument("--weights")
    ap.add_argument("--pcie", action="store_true")
    a = ap.parse_args()
    dtype = getattr(torch, a.dtype) if a.dtype else torch.float16 if a.device.startswith("cuda") else torch.float32
    t = time.monotonic()
    loaded = bool(a.weights) and os.path.exists(a.weights)
    if loaded:
        weights, x = torch.load(a.weights)
    else:
        weights, x = build(a.gib, dtype)
        if a.weights:
            t_save = time.monotonic()
            torch.save((weights, x), a.weights + ".tmp")
            os.rename(a.weights + ".tmp", a.weights)
            t_save = time.monotonic() - t_save
    model, nbytes = assemble(weights, a.gib, dtype)
    del weights
    t_build = time.monotonic() - t - (t_save if not loaded and a.weights else 0)
    t = time.monotonic()
    model, x = model.to(a.device), x.to(a.device)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_to = time.monotonic() - t
    t = time.monotonic()
    ref = None if a.no_forward else forward(model, x)
    t_fwd = time.monotonic() - t
    if a.save_ref and ref is not None:
        torch.save(ref.cpu(), a.save_ref)
    print(json.dumps({"phase": "ready", "device": a.device, "dtype": str(dtype), "model_bytes": nbytes,
                      "weights": "loaded" if loaded else "built",
                      "t_import": T_IMPORT, "t_build": t_build, "t_to": t_to, "t_forward": t_fwd,
                      "digest": digest(ref) if ref is not None else None,
                      "t_total": time.monotonic() - T0}), flush=True)
    opts = dict(w.split("=", 1) for w in sys.stdin.readline().split()[1:] if "=" in w)
    t_after = time.monotonic()
    move_to = opts.get("move")
    if "visible" in opts:
        os.environ["CUDA_VISIBLE_DEVICES"] = opts["visible"]
    t_move = 0.0
    if move_to:
        t = time.monotonic()
        model, x = model.to(move_to), x.to(move_to)
        if move_to.startswith("cuda"):
            torch.cuda.synchronize()
        t_move = time.monotonic() - t
    t = time.monotonic()
    out = forward(model, x)
    t_fwd2 = time.monotonic() - t
    res = {"phase": "result", "device": str(out.device), "digest": digest(out), "t_move": t_move,
           "t_forward": t_fwd2, "t_after_go": time.monotonic() - t_after}
    if ref is not None:  # the output this process computed before its checkpoint
        res.update(compare(out, ref, ""))
    if "ref" in opts:  # the output of another process (the cold start)
        res.update(compare(out, torch.load(opts["ref"]), "ref_"))
    print(json.dumps(res), flush=True)
    if a.pcie and out.is_cuda:
        print(json.dumps({"phase": "pcie", **pcie()}), flush=True)


if __name__ == "__main__":
    main()

"""The model process of bench/gpu_check.sh.

Builds a torch MLP of about --gib GiB from a fixed config with random weights
(seed 0, made on the CPU so every path gets the same ones), moves it to
--device, runs a forward pass and keeps the output. Prints one JSON line
{"phase": "ready", ...timings} and waits for a line on stdin:
  "go"          forward again on the same device; the output must be equal
  "go DEVICE"   move the model to DEVICE first (the CPU-snapshot path), then
                compare with a tolerance (CPU and GPU kernels differ)
then prints {"phase": "result", ...} and exits.
"""
import argparse
import json
import sys
import time

T0 = time.monotonic()
import torch  # noqa: E402

T_IMPORT = time.monotonic() - T0


def build(gib, dtype):
    hidden = 8192 if gib >= 1 else 2048
    layer_bytes = hidden * hidden * torch.finfo(dtype).bits // 8
    layers = max(2, int(gib * (1 << 30) // layer_bytes))
    gen = torch.Generator().manual_seed(0)
    mods = []
    for _ in range(layers):
        lin = torch.nn.Linear(hidden, hidden, bias=False)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(hidden, hidden, generator=gen) / hidden ** 0.5)
        mods += [lin, torch.nn.Tanh()]
    model = torch.nn.Sequential(*mods).to(dtype).eval()
    x = torch.randn(8, hidden, generator=gen).to(dtype)
    return model, x, layers * layer_bytes


def forward(model, x):
    with torch.no_grad():
        out = model(x)
    if out.is_cuda:
        torch.cuda.synchronize()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--gib", type=float, default=4)
    a = ap.parse_args()
    dtype = torch.float16 if a.device.startswith("cuda") else torch.float32
    t = time.monotonic()
    model, x, nbytes = build(a.gib, dtype)
    t_build = time.monotonic() - t
    t = time.monotonic()
    model, x = model.to(a.device), x.to(a.device)
    if a.device.startswith("cuda"):
        torch.cuda.synchronize()
    t_to = time.monotonic() - t
    t = time.monotonic()
    ref = forward(model, x)
    t_fwd = time.monotonic() - t
    print(json.dumps({"phase": "ready", "device": a.device, "model_bytes": nbytes, "t_import": T_IMPORT,
                      "t_build": t_build, "t_to": t_to, "t_forward": t_fwd,
                      "t_total": time.monotonic() - T0}), flush=True)
    line = sys.stdin.readline().split()
    t_after = time.monotonic()
    move_to = line[1] if len(line) > 1 else None
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
    ref_here = ref.to(out.device)
    diff = (out.float() - ref_here.float()).abs().max().item()
    res = {"phase": "result", "device": str(out.device), "equal": bool(torch.equal(out, ref_here)),
           "max_abs_diff": diff, "t_move": t_move, "t_forward": t_fwd2, "t_after_go": time.monotonic() - t_after}
    if move_to:
        res["close"] = bool(torch.allclose(out.float(), ref_here.float(), rtol=1e-2, atol=1e-2))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()

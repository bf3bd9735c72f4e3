"""The torch worker with a process tree: after building its model it starts
a multiprocessing pool of two workers (fork, as model servers do for
preprocessing), which share its memory copy-on-write. Every line read from
stdin is answered with the model's output sum and a result the pool
computed, so an answer after a restore shows both the model and the pool
came back.

Run with Debian's python:  /usr/bin/python3 bench/pool_worker.py
"""
import time

t0 = time.monotonic()

import multiprocessing  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402


def tokens(n):
    return sum(i * i for i in range(n * 1000))


def main():
    torch.manual_seed(1234)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 16))
    model.eval()
    x = torch.randn(32, 256)
    pool = multiprocessing.get_context("fork").Pool(2)

    def answer():
        with torch.no_grad():
            return f"{model(x).sum().item():.6f} {sum(pool.map(tokens, range(4)))}"

    answer()
    print(f"READY {time.monotonic() - t0:.3f}", flush=True)
    for line in iter(sys.stdin.readline, ""):
        if line.strip() in ("quit", "exit"):
            break
        print(answer(), flush=True)
    pool.terminate()


if __name__ == "__main__":
    main()

"""A plain function with a memory snapshot: its global scope is slow (it
imports torch, about 2 s here) and is what the snapshot holds.

    thaw deploy examples/modal_style/hello.py      # takes the snapshot now
    thaw call hello hello --args '["thaw"]'         # restores from it
    thaw run examples/modal_style/hello.py           # ephemeral, no snapshot

Written as Modal code; only the import line differs.
"""
import time

_t0 = time.perf_counter()

import thaw as modal  # noqa: E402

app = modal.App("hello")
image = modal.Image.debian_slim().pip_install("torch")

with image.imports():
    import torch

GLOBAL_SCOPE_SECONDS = time.perf_counter() - _t0
# Computed once, in the global scope: restored containers have it already.
TABLE = torch.arange(16, dtype=torch.float32).reshape(4, 4)


@app.function(image=image, enable_memory_snapshot=True)
def hello(name: str = "world") -> str:
    return (f"hello {name} from torch {torch.__version__}: trace={float(TABLE.trace()):.0f}, "
            f"global scope took {GLOBAL_SCOPE_SECONDS:.2f} s when it ran")


@app.local_entrypoint()
def main(name: str = "world"):
    print(hello.remote(name))

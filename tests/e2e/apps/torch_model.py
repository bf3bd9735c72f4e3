"""A class that builds a torch model in @enter(snap=True) and records the
order of its lifecycle hooks, both in the instance (what a call sees) and
in $E2E_DIR/hooks (one line per hook, across containers)."""
import os
import socket
import time

import thaw

E2E_DIR = os.environ["E2E_DIR"]
image = thaw.Image.debian_slim().pip_install("torch").env({"E2E_DIR": E2E_DIR})
app = thaw.App("e2e-torch", image=image)

with image.imports():
    import torch


def record(event):
    with open(os.path.join(E2E_DIR, "hooks"), "a") as f:
        f.write(f"{event} {socket.gethostname()}\n")


record("global")
ORDER = ["global"]


@app.cls(enable_memory_snapshot=True)
class Model:
    @thaw.enter(snap=True)
    def load(self):
        record("enter_snap")
        self.order = ORDER + ["enter_snap"]
        torch.manual_seed(1234)
        self.model = torch.nn.Sequential(
            torch.nn.Linear(256, 1024), torch.nn.ReLU(),
            torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
            torch.nn.Linear(1024, 16),
        ).eval()
        self.x = torch.randn(32, 256)
        with torch.no_grad():
            self.model(self.x)  # warm up before the snapshot

    @thaw.enter(snap=False)
    def setup(self):
        record("enter")
        self.order.append("enter")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)

    @thaw.method()
    def predict(self):
        with torch.no_grad():
            out = self.model(self.x.to(self.device)).sum().item()
        return {"sum": round(out, 4), "order": self.order + ["call"],
                "container": socket.gethostname(), "time": time.time()}

    @thaw.exit()
    def close(self):
        record("exit")

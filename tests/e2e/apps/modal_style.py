"""Typical Modal memory-snapshot code, unchanged but for the import line:
the Embedder pattern from Modal's guide (load on the CPU in snap=True, move
to the device in snap=False), with a small torch model built locally."""
import thaw as modal

app = modal.App("e2e-modal-style")
image = modal.Image.debian_slim().pip_install("torch")

with image.imports():
    import torch


@app.cls(image=image, enable_memory_snapshot=True, gpu="a10g")
class Embedder:
    @modal.enter(snap=True)
    def load(self):
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Embedding(1000, 64), torch.nn.LayerNorm(64))

    @modal.enter(snap=False)
    def setup(self):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)

    @modal.method()
    def embed(self, ids):
        with torch.no_grad():
            out = self.model(torch.tensor(ids, device=self.device))
        return [round(float(v), 4) for v in out[:, 0]]


@app.function()
def shout(text: str) -> str:
    return text.upper() + "!"


@app.local_entrypoint()
def main():
    print("shout:", shout.remote("hello from modal code"))
    print("embed:", Embedder().embed.remote([1, 2, 3]))
    print("map:", list(shout.map(["a", "b", "c"])))

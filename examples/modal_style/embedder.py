"""The Embedder pattern from Modal's memory-snapshot guide, with a model
built locally (nothing can be downloaded here): a small BERT-style text
encoder with the shape of bge-small (384 wide, 6 layers), random weights
from a fixed seed.

  @enter(snap=True)   builds the model on the CPU   -> captured in the snapshot
  @enter(snap=False)  moves it to its device        -> runs after every restore

    thaw deploy examples/modal_style/embedder.py
    thaw call embedder Embedder --method run --args '[["hello", "world"]]'
    thaw run examples/modal_style/embedder.py

Written as Modal code; only the import line differs.
"""
import hashlib

import thaw as modal

app = modal.App("embedder")
image = modal.Image.debian_slim().pip_install("torch")

with image.imports():
    import torch

CONFIG = {
    "vocab_size": 30522,
    "hidden": 384,
    "layers": 6,
    "heads": 12,
    "ffn": 1536,
    "max_len": 128,
    "seed": 1234,
}


def tokenize(text, cfg=CONFIG):
    """Word pieces → ids by hashing (a stand-in for a real tokenizer)."""
    ids = [101]
    for word in text.lower().split():
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        ids.append(1000 + int.from_bytes(digest, "little") % (cfg["vocab_size"] - 1000))
    ids.append(102)
    return ids[: cfg["max_len"]]


def build_model(cfg=CONFIG):
    torch.manual_seed(cfg["seed"])

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = torch.nn.Embedding(cfg["vocab_size"], cfg["hidden"])
            self.pos = torch.nn.Embedding(cfg["max_len"], cfg["hidden"])
            layer = torch.nn.TransformerEncoderLayer(
                cfg["hidden"], cfg["heads"], cfg["ffn"], dropout=0.0, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(
                layer, cfg["layers"], enable_nested_tensor=False)
            self.norm = torch.nn.LayerNorm(cfg["hidden"])

        def forward(self, ids, mask):
            pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
            h = self.tok(ids) + self.pos(pos)
            h = self.encoder(h, src_key_padding_mask=~mask)
            h = self.norm(h)
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return Encoder().eval()


@app.cls(image=image, enable_memory_snapshot=True, gpu="a10g")
class Embedder:
    @modal.enter(snap=True)
    def load(self):
        self.model = build_model()
        with torch.no_grad():  # warm up on the CPU, so the snapshot holds a ready model
            self._embed(["warm up"], "cpu")

    @modal.enter(snap=False)
    def setup(self):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model.to(self.device)

    def _embed(self, texts, device):
        batch = [tokenize(t) for t in texts]
        width = max(len(b) for b in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.bool)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = torch.tensor(b)
            mask[i, : len(b)] = True
        with torch.no_grad():
            return self.model(ids.to(device), mask.to(device)).cpu()

    @modal.method()
    def run(self, texts):
        """Embeddings (lists of 384 floats) of the texts."""
        return self._embed(list(texts), self.device).tolist()

    @modal.method()
    def similarity(self, a, b):
        ea, eb = self._embed([a, b], self.device)
        return float(ea @ eb)

    @modal.fastapi_endpoint()
    def embed(self, text: str):
        """Over HTTP (`thaw serve --socket S --http 8000`):
        curl 'http://127.0.0.1:8000/embedder/Embedder.embed?text=hello'"""
        v = self._embed([text], self.device)[0]
        return {"dims": len(v), "first": [round(float(x), 4) for x in v[:4]]}


@app.local_entrypoint()
def main():
    vectors = Embedder().run.remote(["a memory snapshot", "thaws in milliseconds"])
    print(f"{len(vectors)} embeddings of width {len(vectors[0])}; first values "
          f"{[round(v, 4) for v in vectors[0][:4]]}")
    print(f"similarity: {Embedder().similarity.remote('cold start', 'warm start'):.4f}")

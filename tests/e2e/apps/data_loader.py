"""A torch DataLoader with worker processes (num_workers=2,
persistent_workers=True) made and iterated once in @enter(snap=True), as
a training or batch-inference job warms its input pipeline: the snapshot
holds the worker processes, their queues and the listener each keeps to
pass tensors to the main process (torch's file-descriptor sharing). A
restored container iterates it again with the same workers."""
import os

import thaw

app = thaw.App("e2e-data-loader")


class Squares:
    def __len__(self):
        return 16

    def __getitem__(self, i):
        import torch
        return torch.tensor([i, i * i]), os.getpid()


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Loader:
    @thaw.enter(snap=True)
    def setup(self):
        from torch.utils.data import DataLoader
        self.loader = DataLoader(Squares(), batch_size=4, num_workers=2, persistent_workers=True)
        self.warm = [batch.sum().item() for batch, _ in self.loader]
        self.workers = sorted({int(p) for _, pids in self.loader for p in pids})

    @thaw.method()
    def sums(self):
        seen = set()
        sums = []
        for batch, pids in self.loader:
            sums.append(batch.sum().item())
            seen.update(int(p) for p in pids)
        return {"warm": self.warm, "sums": sums, "same_workers": sorted(seen) == self.workers}

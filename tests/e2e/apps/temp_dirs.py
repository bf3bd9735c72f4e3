"""A class whose @enter(snap=True) keeps a tempfile.TemporaryDirectory (a
model's files unpacked there, say) and a NamedTemporaryFile, which each
call reads; the first call closes the file, as code done with it does.
Every container restored from the snapshot shares them (containers share
the host's /tmp): one ending, or closing the file, must not remove them
for the others."""
import os
import tempfile

import thaw

app = thaw.App("e2e-temp-dirs")


@app.cls(enable_memory_snapshot=True)
class Unpacked:
    @thaw.enter(snap=True)
    def unpack(self):
        self.dir = tempfile.TemporaryDirectory()
        with open(os.path.join(self.dir.name, "weights.txt"), "w") as f:
            f.write("weights")
        self.scratch = tempfile.NamedTemporaryFile("w+")
        self.scratch.write("scratch")
        self.scratch.flush()

    @thaw.method()
    def read(self):
        with open(os.path.join(self.dir.name, "weights.txt")) as f:
            weights = f.read()
        self.scratch.seek(0)
        scratch = self.scratch.read()
        self.scratch.close()
        return {"weights": weights, "scratch": scratch, "paths": [self.dir.name, self.scratch.name]}

"""A class whose @enter(snap=True) keeps a tempfile.TemporaryDirectory (a
model's files unpacked there, say) and a NamedTemporaryFile, which each
call reads; the call then removes the file it read and closes the
temporary file, as code done with them does. They are in the container's
own temporary directory, which the snapshot copies: each restored
container finds them as the snapshot left them. A third, a directory made
in the host's /tmp on purpose, is one for all containers: kept for them
all."""
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
        self.host_dir = tempfile.TemporaryDirectory(dir="/tmp", prefix="e2e-temp-dirs-")
        with open(os.path.join(self.host_dir.name, "config.txt"), "w") as f:
            f.write("config")

    @thaw.method()
    def read(self):
        weights_path = os.path.join(self.dir.name, "weights.txt")
        with open(weights_path) as f:
            weights = f.read()
        os.remove(weights_path)
        self.scratch.seek(0)
        scratch = self.scratch.read()
        self.scratch.close()
        with open(os.path.join(self.host_dir.name, "config.txt")) as f:
            config = f.read()
        return {"weights": weights, "scratch": scratch, "config": config, "tmpdir": tempfile.gettempdir(),
                "paths": [self.dir.name, self.scratch.name], "host_dir": self.host_dir.name}

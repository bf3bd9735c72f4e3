"""A class whose @enter(snap=True) keeps an anonymous temporary file open
(tempfile.TemporaryFile: deleted while open), which the snapshot holds."""
import tempfile

import thaw

app = thaw.App("e2e-temp-file")


@app.cls(enable_memory_snapshot=True)
class Scratch:
    @thaw.enter(snap=True)
    def load(self):
        self.tmp = tempfile.TemporaryFile()
        self.tmp.write(b"scratch")
        self.tmp.flush()

    @thaw.method()
    def read(self):
        self.tmp.seek(0)
        got = self.tmp.read().decode()
        self.tmp.write(b" and more")  # each container's own copy: the next reads "scratch" again
        return got

"""A class mounting a Volume read-write, called through a with_options
handle that mounts it read-only (Volume.read_only()), as in Modal."""
import errno
import os

import thaw

E2E_DIR = os.environ["E2E_DIR"]
MNT = os.path.join(E2E_DIR, "mnt", "data")
vol = thaw.Volume.from_name("e2e-handle-vol", create_if_missing=True)
app = thaw.App("e2e-volume-handles", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


@app.cls(enable_memory_snapshot=True, volumes={MNT: vol})
class Writer:
    @thaw.method()
    def write(self, name):
        try:
            with open(os.path.join(MNT, name), "w") as f:
                f.write("written")
            refused = None
        except OSError as e:
            refused = errno.errorcode.get(e.errno)
        return {"refused": refused, "files": sorted(os.listdir(MNT))}

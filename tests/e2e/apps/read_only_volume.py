"""Volume.read_only(), as in Modal: the same Volume mounted read-only at one
path (writes fail with EROFS) and read-write at another."""
import errno
import os

import thaw as modal

E2E_DIR = os.environ["E2E_DIR"]
RO = os.path.join(E2E_DIR, "mnt", "ro")
RW = os.path.join(E2E_DIR, "mnt", "rw")
vol = modal.Volume.from_name("e2e-ro", create_if_missing=True)
app = modal.App("e2e-read-only-volume", image=modal.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


@app.function(enable_memory_snapshot=True, volumes={RO: vol.read_only(), RW: vol})
def touch(name):
    with open(os.path.join(RW, name), "w") as f:
        f.write("written")
    with open(os.path.join(RO, name)) as f:
        seen = f.read()
    try:
        open(os.path.join(RO, name + ".no"), "w").close()
        refused = None
    except OSError as e:
        refused = errno.errorcode.get(e.errno)
    return {"seen": seen, "refused": refused, "left": sorted(os.listdir(RW))}

"""A function whose global scope opens a file in a Volume and keeps it open:
the snapshot holds that open file. If the file is deleted before a restore,
the restore must fail and the call must still succeed (cold start)."""
import os
import socket

import thaw

E2E_DIR = os.environ["E2E_DIR"]
MOUNT = os.path.join(E2E_DIR, "mnt", "weights")
weights = thaw.Volume.from_name("e2e-weights", create_if_missing=True)
app = thaw.App("e2e-volume", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))

PATH = os.path.join(MOUNT, "weights.bin")
WEIGHTS = None
if not thaw.is_local():  # in the container, where the Volume is mounted
    if not os.path.exists(PATH):
        with open(PATH, "wb") as f:
            f.write(b"w" * 4096)
    WEIGHTS = open(PATH, "rb")  # held open, and so in the snapshot


@app.function(enable_memory_snapshot=True, volumes={MOUNT: weights})
def weight_bytes():
    WEIGHTS.seek(0)
    return {"bytes": len(WEIGHTS.read()), "container": socket.gethostname()}

"""Image.add_local_file / add_local_dir at paths of the app's choosing: the
container finds them there (bound read-only), restored or cold."""
import errno
import os

import thaw

E2E_DIR = os.environ["E2E_DIR"]
SRC = os.path.join(E2E_DIR, "local-src")
image = (thaw.Image.debian_slim()
         .env({"E2E_DIR": E2E_DIR})
         .add_local_file(os.path.join(SRC, "settings.txt"), os.path.join(E2E_DIR, "remote", "etc") + "/")
         .add_local_dir(os.path.join(SRC, "data"), os.path.join(E2E_DIR, "remote", "data")))
app = thaw.App("e2e-local-files", image=image)


@app.function(enable_memory_snapshot=True)
def read():
    remote = os.path.join(E2E_DIR, "remote")
    with open(os.path.join(remote, "etc", "settings.txt")) as f:
        settings = f.read()
    data = sorted(os.listdir(os.path.join(remote, "data")))
    try:
        open(os.path.join(remote, "data", "new.txt"), "w").close()
        refused = None
    except OSError as e:
        refused = errno.errorcode.get(e.errno)
    return {"settings": settings, "data": data, "refused": refused}

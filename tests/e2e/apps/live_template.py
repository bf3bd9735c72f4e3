"""A function served from the restore shell's live template (`thaw serve`):
each container is a copy-on-write copy of the snapshot, restored once and
held. What the call reports shows the copy is a container like any other:
its pid and parent, its own session, cwd and hostname, a Volume mounted
where the function asked for it, its own random numbers; `die` ends the
container with an exit code the runtime must see."""
import os
import random
import socket

import thaw

E2E_DIR = os.environ["E2E_DIR"]
MOUNT = "/mnt/e2e-template"
vol = thaw.Volume.from_name("e2e-template", create_if_missing=True)
app = thaw.App("e2e-template", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))

SNAP = {"pid": os.getpid(), "cwd": os.getcwd()}
BLOB = bytes(range(256)) * 4096  # 1 MiB the copies share until one writes


def open_fds():
    # listdir's own fd is closed by the time it returns: its link is gone
    return sorted(int(fd) for fd in os.listdir("/proc/self/fd") if os.path.lexists(f"/proc/self/fd/{fd}"))


@app.function(enable_memory_snapshot=True, volumes={MOUNT: vol}, scaledown_window=2)
def probe(tag):
    with open(os.path.join(MOUNT, f"{tag}.txt"), "w") as f:
        f.write(socket.gethostname())
    return {
        "snap": SNAP,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "cwd": os.getcwd(),
        "container": socket.gethostname(),
        "random": random.random(),
        "blob_ok": BLOB[1000] == 1000 % 256 and len(BLOB) == 1 << 20,
        "maps_have_thaw": any("thaw" in l.split()[-1] for l in open("/proc/self/maps") if len(l.split()) > 5),
        "fds": open_fds(),
    }


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def die(code):
    os._exit(code)

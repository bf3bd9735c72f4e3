"""A function whose global scope maps a file (and closes its fd, as a loader
of model weights might): the snapshot, and a live template made of it, map
that file. Changed after the template was made, the file must not reach a
copy: the restore falls back, and the call still succeeds."""
import ctypes
import mmap
import os

import thaw

E2E_DIR = os.environ["E2E_DIR"]
PATH = os.path.join(E2E_DIR, "data.bin")
app = thaw.App("e2e-mapped", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))

SIZE = 0
if not thaw.is_local():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    fd = os.open(PATH, os.O_RDONLY)
    SIZE = os.fstat(fd).st_size
    ADDR = libc.mmap(None, SIZE, mmap.PROT_READ, mmap.MAP_PRIVATE, fd, 0)
    os.close(fd)  # only the mapping stays


@app.function(enable_memory_snapshot=True, scaledown_window=2)
def first_bytes():
    return {"mapped": ctypes.string_at(ADDR, 4).decode(), "size": SIZE}

"""A class whose @enter(snap=True) makes a named semaphore and a shared
memory object in /dev/shm (sem_open through libc, and a file of /dev/shm
mapped shared, as shm_open makes), which the snapshot holds. A call takes
the semaphore for a while: containers restored from the snapshot at once
each have their own /dev/shm, so neither finds it taken by the other."""
import ctypes
import mmap
import os
import time

import thaw

app = thaw.App("e2e-shm-semaphore")

libc = ctypes.CDLL(None, use_errno=True)  # glibc has sem_open itself since 2.34
libc.sem_open.restype = ctypes.c_void_p
libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
libc.sem_trywait.argtypes = libc.sem_post.argtypes = [ctypes.c_void_p]


@app.cls(enable_memory_snapshot=True)
class Guarded:
    @thaw.enter(snap=True)
    def make(self):
        self.sem = libc.sem_open(b"/e2e-shm-semaphore", os.O_CREAT, 0o600, 1)
        if not self.sem:
            raise OSError(ctypes.get_errno(), "sem_open")
        fd = os.open("/dev/shm/e2e-shm-table", os.O_CREAT | os.O_RDWR, 0o640)
        os.ftruncate(fd, 1 << 20)
        self.table = mmap.mmap(fd, 1 << 20)
        os.close(fd)
        self.table[:5] = b"table"

    @thaw.method()
    def hold(self, seconds):
        took = libc.sem_trywait(self.sem) == 0
        time.sleep(seconds)
        if took:
            libc.sem_post(self.sem)
        mode = os.stat("/dev/shm/e2e-shm-table").st_mode & 0o777
        return {"took": took, "table": bytes(self.table[:5]).decode(), "mode": oct(mode),
                "shm": sorted(os.listdir("/dev/shm"))}

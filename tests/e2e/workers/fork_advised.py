"""Memory a fork leaves out or zeroes, for tests/e2e/test_templates.py: a
MADV_DONTFORK mapping, a MADV_WIPEONFORK one and a MADV_DONTFORK one made
PROT_NONE, each 8 MiB with a pattern in part of it (the rest untouched).
Prints READY; each stdin line "sum" answers the three regions' SHA-256s and
their VmFlags advice (dc, wf) as /proc/self/smaps shows them."""
import ctypes
import hashlib
import mmap
import sys

MADV_WIPEONFORK = 18
PROT_NONE, PROT_RW = 0, 3
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
SIZE = 8 << 20


def region(advice, seed):
    m = mmap.mmap(-1, SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    if libc.madvise(addr, SIZE, advice) != 0:
        raise OSError(ctypes.get_errno(), "madvise")
    for off in range(0, SIZE // 2, 4096 * 3):  # every third page of the first half
        m[off:off + 64] = hashlib.sha256(f"{seed}:{off}".encode()).digest() * 2
    return m, addr


regions = [region(mmap.MADV_DONTFORK, "a"), region(MADV_WIPEONFORK, "b"), region(mmap.MADV_DONTFORK, "c")]
libc.mprotect(regions[2][1], SIZE, PROT_NONE)


def flags(addr):
    lines = open("/proc/self/smaps").read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{addr:x}-"):
            for later in lines[i + 1:]:
                if later.startswith("VmFlags:"):
                    return "+".join(f for f in later.split()[1:] if f in ("dc", "wf")) or "-"
    return "?"


print("READY", flush=True)
for line in sys.stdin:
    libc.mprotect(regions[2][1], SIZE, PROT_RW)
    sums = [hashlib.sha256(m[:]).hexdigest()[:12] for m, _ in regions]
    libc.mprotect(regions[2][1], SIZE, PROT_NONE)
    print(" ".join(sums + [flags(a) for _, a in regions]), flush=True)

"""Functions with resource limits: memory=(request, limit) caps the
container's memory cgroup, so using more than the limit gets the container
killed, and the caller is told it ran out of memory."""
import thaw

app = thaw.App("e2e-limits")


def _memory_cgroup_limit():
    """The limit of this process's memory cgroup (v1, else v2), in bytes."""
    lines = [line.strip().split(":", 2) for line in open("/proc/self/cgroup")]
    for _, controllers, path in lines:
        if "memory" in controllers.split(","):
            return int(open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read())
    for hierarchy_id, _, path in lines:
        if hierarchy_id == "0":
            value = open(f"/sys/fs/cgroup{path}/memory.max").read().strip()
            return None if value == "max" else int(value)
    return None


@app.function(memory=(64, 200))
def limit():
    return _memory_cgroup_limit()


@app.function(memory=(64, 200))
def hog(mib):
    blocks = [bytearray(1 << 20) for _ in range(mib)]
    return len(blocks)


@app.function(timeout=1)
def stuck_in_c(iterations):
    """Minutes inside one C call, where the worker's alarm cannot interrupt."""
    import hashlib
    return hashlib.pbkdf2_hmac("sha256", b"x", b"y", iterations).hex()


@app.function(retries=thaw.Retries(max_retries=2, initial_delay=0.1, backoff_coefficient=1.0))
def flaky(counter_file, failures):
    """Fails its first `failures` runs (counted in counter_file)."""
    import os
    n = int(open(counter_file).read()) if os.path.exists(counter_file) else 0
    with open(counter_file, "w") as f:
        f.write(str(n + 1))
    if n < failures:
        raise RuntimeError(f"run {n + 1} fails")
    return n + 1

"""Multi-threaded Python worker for tests/e2e/test_runtimes.py.

Threads besides the main one:
  work-0..2  each computes a SHA-256 chain (h = sha256(h)) from its own seed,
             in chunks, until asked to stop;
  consumer   blocked in queue.get() until the main thread hands it jobs;
  sleeper    loops in time.sleep(0.005), counting its ticks.

Prints "READY" once every thread runs, then reads commands from stdin:
  status  -> "status <steps of work-0> <steps of work-1> <steps of work-2> <sleeper ticks>"
  go      -> stops the workers, feeds the consumer jobs and prints
             "work-<k> <steps> <hex digest>" per worker (the caller can check the
             digest is the chain of that many steps), "jobs <digest>" (fixed),
             "sleeper <ticks>", then "DONE" and exits 0 once all threads joined.
Run with Debian's python: /usr/bin/python3.
"""
import hashlib
import queue
import sys
import threading
import time

N_WORK = 3
CHUNK = 500


def seed(k):
    return hashlib.sha256(f"work-{k}".encode()).digest()


class Worker(threading.Thread):
    def __init__(self, k, stop):
        super().__init__(name=f"work-{k}", daemon=True)
        self.k = k
        self.stop = stop
        self.steps = 0
        self.h = seed(k)
        self.started_ev = threading.Event()

    def run(self):
        self.started_ev.set()
        h, steps = self.h, 0
        while not self.stop.is_set():
            for _ in range(CHUNK):
                h = hashlib.sha256(h).digest()
            steps += CHUNK
            self.h, self.steps = h, steps  # published together (GIL)
            time.sleep(0.0005)  # leave the CPU to the others now and then


def consumer(jobs, results):
    while True:
        item = jobs.get()  # blocks here until "go"
        if item is None:
            results.put(None)
            return
        n, data = item
        results.put((n, hashlib.sha256(data * (n + 1)).hexdigest()))


class Sleeper(threading.Thread):
    def __init__(self, stop):
        super().__init__(name="sleeper", daemon=True)
        self.stop = stop
        self.ticks = 0

    def run(self):
        while not self.stop.is_set():
            time.sleep(0.005)
            self.ticks += 1


def main():
    stop = threading.Event()
    workers = [Worker(k, stop) for k in range(N_WORK)]
    jobs, results = queue.Queue(), queue.Queue()
    cons = threading.Thread(target=consumer, args=(jobs, results), name="consumer", daemon=True)
    sleeper = Sleeper(stop)
    for t in (*workers, cons, sleeper):
        t.start()
    for w in workers:
        w.started_ev.wait()
    while sleeper.ticks == 0 or any(w.steps == 0 for w in workers):
        time.sleep(0.001)
    print("READY", flush=True)
    for line in iter(sys.stdin.readline, ""):
        cmd = line.strip()
        if cmd == "status":
            print("status " + " ".join(str(w.steps) for w in workers) + f" {sleeper.ticks}",
                  flush=True)
        elif cmd == "go":
            stop.set()
            for w in workers:
                w.join(timeout=30)
            sleeper.join(timeout=30)
            for n in range(20):
                jobs.put((n, f"job-{n}".encode()))
            jobs.put(None)
            h = hashlib.sha256()
            while (r := results.get(timeout=30)) is not None:
                h.update(f"{r[0]}={r[1]};".encode())
            cons.join(timeout=30)
            alive = [t.name for t in (*workers, cons, sleeper) if t.is_alive()]
            for w in workers:
                print(f"work-{w.k} {w.steps} {w.h.hex()}")
            print(f"jobs {h.hexdigest()[:16]}")
            print(f"sleeper {sleeper.ticks}")
            print(f"alive {','.join(alive) or '-'}")
            print("DONE", flush=True)
            return 0
        else:
            print(f"unknown {cmd}", flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())

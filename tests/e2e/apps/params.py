"""Classes with modal.parameter()s (containers, and a snapshot, per set of
values), and generators, for handles looked up with from_name()."""
import os
import socket

import thaw

app = thaw.App("e2e-params")


@app.cls(enable_memory_snapshot=True)
class Greeter:
    name: str = thaw.parameter()
    punct: str = thaw.parameter(default="!")

    @thaw.enter()
    def prepare(self):
        self.greeting = f"hello {self.name}{self.punct}"

    @thaw.method()
    def greet(self, times=1):
        return " ".join([self.greeting] * times)

    @thaw.method()
    def letters(self):
        yield from self.name


LOADED = []  # what this process's @enter(snap=True) loaded


@app.cls(enable_memory_snapshot=True)
class Loader:
    model: str = thaw.parameter(default="base")
    size: int = thaw.parameter(default=1)
    blob: bytes = thaw.parameter(default=b"\x00")

    @thaw.enter(snap=True)
    def load(self):
        LOADED.append(f"{self.model}x{self.size}")
        self.weights = [self.model] * self.size
        self.pid = os.getpid()

    @thaw.method()
    def info(self):
        return {"weights": self.weights, "loaded": LOADED, "container": socket.gethostname(),
                "blob": self.blob.hex()}


@app.function()
def countdown(n):
    yield from range(n, 0, -1)

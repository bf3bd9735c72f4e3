"""A method calling the other methods of its class through self, as Modal
allows: self.other.remote()/.spawn()/.map() in containers of the same class
and parameters, self.other.local() and self.other() in this one."""
import socket

import thaw as modal

app = modal.App("e2e-self-calls")


@app.cls(enable_memory_snapshot=True)
class Model:
    k: int = modal.parameter(default=1)

    @modal.enter(snap=True)
    def load(self):
        self.base = 10

    @modal.method()
    def helper(self, x):
        return {"v": x * self.k + self.base, "host": socket.gethostname()}

    @modal.method()
    def outer(self, x):
        me = socket.gethostname()
        remote = self.helper.remote(x)
        return {"direct": self.helper(x)["v"], "local": self.helper.local(x)["v"],
                "remote": remote["v"], "remote_elsewhere": remote["host"] != me,
                "spawn": self.helper.spawn(x).get(timeout=60)["v"],
                "map": [r["v"] for r in self.helper.map([1, 2])]}


@app.local_entrypoint()
def main():
    print("RESULT", Model(k=3).outer.remote(2))

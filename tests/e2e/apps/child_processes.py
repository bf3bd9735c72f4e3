"""A class whose snapshot phase starts child processes, as a model server's
does: a helper it talks to over pipes (subprocess) and a pool of workers
(multiprocessing, fork). The snapshot holds the whole process tree, as
Modal's holds the whole container: a restored container has its children,
with the state they had."""
import multiprocessing
import os
import subprocess
import sys

import thaw

app = thaw.App("e2e-children")

# Counts the lines it has read: its count says which state it came from.
HELPER = """
import sys
count = 0
for line in sys.stdin:
    count += 1
    print(f"{count}: {line.strip()}", flush=True)
"""


def square(x):
    return x * x


@app.cls(enable_memory_snapshot=True, scaledown_window=2)
class Children:
    @thaw.enter(snap=True)
    def start(self):
        self.helper = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        self.warm = self.talk("warm")
        self.pool = multiprocessing.get_context("fork").Pool(2)
        self.pool.map(square, range(4))

    def talk(self, text):
        self.helper.stdin.write(text + "\n")
        self.helper.stdin.flush()
        return self.helper.stdout.readline().strip()

    @thaw.method()
    def ask(self, text):
        return {"warm": self.warm, "helper": self.talk(text), "squares": self.pool.map(square, range(5)),
                "helper_is_my_child": os.waitpid(self.helper.pid, os.WNOHANG) == (0, 0)}

"""serialized=True, deployed with memory snapshots: a function and a class
made inside a function, from a greeting the deploying process's environment
holds ($E2E_GREETING) and containers do not. Only their pickled closures
know it, and their containers never import this file (they leave a trace
in $E2E_DIR if they do)."""
import os

import thaw

E2E_DIR = os.environ["E2E_DIR"]
if os.environ.get("THAW_CONTAINER_ID"):
    with open(os.path.join(E2E_DIR, "imported-in-container"), "a") as f:
        f.write(f"{os.getpid()}\n")

app = thaw.App("e2e-serialized")
image = thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR})


def build(greeting):
    @app.function(serialized=True, enable_memory_snapshot=True, image=image)
    def greet(name):
        return f"{greeting}, {name}!"

    @app.cls(serialized=True, enable_memory_snapshot=True, image=image)
    class Phrasebook:
        @thaw.enter(snap=True)
        def load(self):
            self.words = {"hello": greeting}
            self.woke = False
            with open(os.path.join(os.environ["E2E_DIR"], "phrasebook-loaded"), "a") as f:
                f.write(f"{os.getpid()}\n")

        @thaw.enter(snap=False)
        def wake(self):
            self.woke = True

        @thaw.method()
        def say(self, word):
            return {"text": self.words[word], "woke": self.woke}

    return greet, Phrasebook


greet, Phrasebook = build(os.environ.get("E2E_GREETING", "no greeting"))

"""A function whose calls queue (max_containers=1), for
Function.get_current_stats(), and a class of the same app for App.lookup."""
import socket
import time

import thaw

app = thaw.App("e2e-stats")


@app.function(max_containers=1, scaledown_window=2)
def slow(seconds):
    time.sleep(seconds)
    return socket.gethostname()


@app.cls()
class Greeter:
    @thaw.method()
    def hello(self, name):
        return f"hello {name}"

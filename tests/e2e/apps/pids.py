"""Process and thread ids as the function sees them: recorded in
@enter(snap=True) (the snapshot phase), compared by a call after a restore.

A helper thread started in the snapshot phase reports its own native id on
request, and the call checks that glibc's idea of that thread (the tid it
cached when the thread was created) still reaches it: signal.pthread_kill
sends to (getpid(), cached tid).
"""
import os
import queue
import signal
import threading

import thaw

app = thaw.App("e2e-pids")


def ids_helper(requests, answers):
    while True:
        requests.get()
        answers.put(threading.get_native_id())


@app.cls(enable_memory_snapshot=True)
class Ids:
    @thaw.enter(snap=True)
    def record(self):
        self.requests, self.answers = queue.Queue(), queue.Queue()
        self.helper = threading.Thread(target=ids_helper, args=(self.requests, self.answers), daemon=True)
        self.helper.start()
        self.snap = {"pid": os.getpid(), "main_tid": threading.get_native_id(),
                     "helper_tid": self.helper_tid()}

    def helper_tid(self):
        self.requests.put(None)
        return self.answers.get(timeout=30)

    @thaw.method()
    def ids(self):
        try:
            signal.pthread_kill(self.helper.ident, 0)
            reachable = "ok"
        except OSError as e:
            reachable = f"{type(e).__name__}: {e}"
        now = {"pid": os.getpid(), "main_tid": threading.get_native_id(),
               "helper_tid": self.helper_tid(), "pthread_kill": reachable}
        return {"snap": self.snap, "now": now}

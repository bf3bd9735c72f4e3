"""User code that uses SIGALRM itself, as evaluation code does to bound a
step ("time_limit": a handler, setitimer, a TimeoutError of its own): the
handler is installed in @enter(snap=True), the timer armed and disarmed in
the call. The worker's own timeout must neither take the user's signal
(a call that "exceeded its timeout of 300 s" at once) nor be disarmed
when the user's code disarms its timer."""
import signal
import time

import thaw

app = thaw.App("e2e-alarms")


class StepTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise StepTimeout("step took too long")


@app.cls(enable_memory_snapshot=True, timeout=300)
class Evaluator:
    @thaw.enter(snap=True)
    def install(self):
        signal.signal(signal.SIGALRM, _on_alarm)

    @thaw.method()
    def run(self):
        outcomes = []
        for step_seconds in (0.05, 60):
            signal.setitimer(signal.ITIMER_REAL, step_seconds)
            try:
                if step_seconds > 1:
                    outcomes.append("finished")  # a quick step: the timer is disarmed below
                else:
                    time.sleep(30)  # a step that overruns its limit
                    outcomes.append("slept")
            except StepTimeout as e:
                outcomes.append(f"StepTimeout: {e}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        return {"outcomes": outcomes, "handler_is_mine": signal.getsignal(signal.SIGALRM) is _on_alarm}


@app.function(timeout=2)
def disarms_then_overruns():
    """Disarms ITIMER_REAL, then runs past its own timeout: the worker's
    deadline still ends it."""
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.alarm(0)
    time.sleep(120)
    return "not interrupted"

"""Ctrl-C on the commands that wait for calls, `thaw run` and `thaw call`:
the calls in flight are cancelled, their containers stopped (no process,
no cgroup left), and the command ends soon with status 130; a second
Ctrl-C ends it at once, whatever it is doing.

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e/test_interrupts.py
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from test_functions import APPS, PYTHON, THAW_BIN, thaw  # noqa: F401 - the fixture

START_TIMEOUT = 120  # until the call runs (a cold start on a loaded VM)
EXIT_TIMEOUT = 30    # from the interrupt to the end of the command
CGROUP_ROOT = Path("/sys/fs/cgroup")


class Command:
    """A thaw command started in the background, its stderr in a file."""

    def __init__(self, thaw, *args):
        self.log_path = thaw.tmp / f"{args[0]}.log"
        self.thaw = thaw
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([str(THAW_BIN), *map(str, args)], env=thaw.env, cwd=thaw.tmp,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         start_new_session=True)

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_started(self):
        """The container id of the call, once its function runs."""
        marker = self.thaw.e2e / "started"
        deadline = time.monotonic() + START_TIMEOUT
        while not marker.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the call did not start (rc={self.proc.poll()}):\n{self.log()}")
            time.sleep(0.05)
        return marker.read_text().strip()

    def interrupt(self):
        self.proc.send_signal(signal.SIGINT)

    def wait_exit(self):
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            pytest.fail(f"still running {EXIT_TIMEOUT} s after the interrupt:\n{self.log()}")

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def background(thaw):  # noqa: F811 - the fixture from test_functions
    started = []

    def start(*args):
        c = Command(thaw, *args)
        started.append(c)
        return c
    yield start
    for c in started:
        c.kill()


def container_processes(container_id):
    """Host pids in the container's cgroups (empty if it has none)."""
    pids = set()
    for ctrl in ("freezer", "memory"):
        procs = CGROUP_ROOT / ctrl / "thaw" / container_id / "cgroup.procs"
        try:
            pids.update(int(p) for p in procs.read_text().split())
        except OSError:
            pass
    return pids


def assert_container_gone(container_id, pids):
    for ctrl in ("freezer", "memory"):
        d = CGROUP_ROOT / ctrl / "thaw" / container_id
        assert not d.exists(), f"cgroup left behind: {d}"
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and
             Path(f"/proc/{p}/stat").read_text().split(")")[-1].split()[0] != "Z"]
    assert not alive, f"processes of container {container_id} still running: {alive}"


def interrupted_once(cmd):
    """Interrupts cmd once its call (or container) runs; it must end with
    130. Returns (container id, its pids before, cmd's log)."""
    cid = cmd.wait_started()
    pids = container_processes(cid)
    assert pids  # what must be gone afterwards
    cmd.interrupt()
    assert cmd.wait_exit() == 130, cmd.log()
    return cid, pids, cmd.log()


def test_ctrl_c_on_run_cancels_the_call_in_flight(thaw, background):  # noqa: F811
    run = background("run", APPS / "interrupt.py")
    cid, pids, log = interrupted_once(run)
    assert "thaw run: interrupted (SIGINT): cancelling the calls in flight" in log, log
    assert "woke up" not in log
    assert_container_gone(cid, pids)
    thaw.logs.append(log)
    thaw.assert_containers_gone()


def test_ctrl_c_on_run_stops_a_container_still_starting(thaw, background):  # noqa: F811
    run = background("run", f"{APPS / 'interrupt.py'}::SlowStart.go")
    cid, pids, log = interrupted_once(run)  # in @enter, which sleeps
    assert "Container ready" not in log
    assert_container_gone(cid, pids)
    thaw.logs.append(log)
    thaw.assert_containers_gone()


def test_a_second_ctrl_c_on_run_exits_at_once(thaw, background):  # noqa: F811
    # The entrypoint ignores SIGINT and sleeps: only the second Ctrl-C ends
    # `thaw run`, at whatever point the first one's work has reached.
    run = background("run", APPS / "interrupt.py", "--stubborn")
    cid = run.wait_started()
    pids = container_processes(cid)
    assert pids  # what must be gone afterwards
    run.interrupt()
    # Two signals sent at once may arrive as one.
    deadline = time.monotonic() + EXIT_TIMEOUT
    while "thaw run: interrupted (SIGINT)" not in run.log():
        assert time.monotonic() < deadline, run.log()
        time.sleep(0.05)
    run.interrupt()
    assert run.wait_exit() == 130, run.log()
    assert_container_gone(cid, pids)
    thaw.logs.append(run.log())
    thaw.assert_containers_gone()


def test_ctrl_c_on_call_stops_its_container(thaw, background):  # noqa: F811
    thaw.deploy(APPS / "interrupt.py")
    call = background("call", "e2e-interrupt", "sleeper")
    cid, pids, log = interrupted_once(call)
    assert "cancelled: e2e-interrupt.sleeper: thaw call was interrupted (SIGINT)" in log, log
    assert_container_gone(cid, pids)
    thaw.logs.append(log)
    thaw.assert_containers_gone()


def test_ctrl_c_on_deploy_stops_its_snapshot_container(thaw, background):  # noqa: F811
    """Interrupted while the snapshot phase runs: its container goes, the
    version is recorded as failed (not made current), status 130."""
    deploy = background("deploy", APPS / "interrupt_deploy.py")
    cid, pids, log = interrupted_once(deploy)  # in @enter(snap=True), which sleeps
    assert "thaw deploy was interrupted (SIGINT)" in log and "was not made current" in log, log
    assert_container_gone(cid, pids)
    history = thaw.run("app", "history", "e2e-interrupt-deploy").stdout
    assert "failed" in history and "interrupted" in history, history
    thaw.logs.append(log)
    thaw.assert_containers_gone()


def test_a_killed_deploy_is_listed_as_failed_and_not_rolled_back_to(thaw, background):  # noqa: F811
    """SIGKILL (no chance to record anything) while the snapshot phase runs:
    its container ends, `thaw app history` lists the version as failed,
    not as an ordinary earlier version, and a rollback does not pick it."""
    quick = thaw.tmp / "interrupt_deploy.py"  # the same app, without the sleep
    quick.write_text((APPS / "interrupt_deploy.py").read_text().replace("time.sleep(120)", "pass"))
    thaw.deploy(quick)
    (thaw.e2e / "started").unlink()
    deploy = background("deploy", APPS / "interrupt_deploy.py")
    cid = deploy.wait_started()
    pids = container_processes(cid)
    assert pids
    deploy.proc.kill()  # thaw deploy only: its container is left to notice
    deploy.proc.wait()
    # Its worker, in @enter(snap=True) for 120 s more, leaves at once: it
    # watches the control channel while starting. (The cgroups stay: a
    # runtime killed so cannot remove them, docs/runtime.md.)
    deadline = time.monotonic() + 60
    while [p for p in pids if Path(f"/proc/{p}").exists()] and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = [p for p in pids if Path(f"/proc/{p}").exists()]
    assert not alive, f"processes of the snapshot container {cid} still running: {alive}"
    history = thaw.run("app", "history", "e2e-interrupt-deploy").stdout
    assert re.search(r"v2 .* failed +the deploy stopped before it finished", history), history
    assert re.search(r"v1 .* deployed", history), history
    cp = thaw.run("app", "rollback", "e2e-interrupt-deploy", "2", check=False)
    assert cp.returncode != 0 and "never finished deploying" in cp.stderr, cp.stderr


def _serve_with_a_call_in_flight(thaw, *serve_args):
    """`thaw serve` (serve_args), a client calling the 120 s sleeper through
    it: (client, container id, its pids) once the call runs."""
    thaw.deploy(APPS / "interrupt.py")
    sock = thaw.serve(*serve_args)
    client = subprocess.Popen([PYTHON, "-c", "import thaw\n"
                               "print(thaw.Function.from_name('e2e-interrupt', 'sleeper').remote())"],
                              env={**thaw.env, "THAW_RUNTIME_SOCKET": str(sock)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    marker = thaw.e2e / "started"
    deadline = time.monotonic() + START_TIMEOUT
    while not marker.exists():
        if client.poll() is not None or time.monotonic() > deadline:
            client.kill()
            pytest.fail(f"the call did not start: {client.communicate()}\n{thaw.serve_log()}")
        time.sleep(0.05)
    cid = marker.read_text().strip()
    return client, cid, container_processes(cid)


def test_ctrl_c_on_serve_lets_calls_finish_and_a_second_one_stops_them(thaw):  # noqa: F811
    """The first Ctrl-C on `thaw serve` takes no new calls and says the
    calls in flight finish first; the second cancels them, kills their
    containers and exits 130 (it waited, silent, for the calls to end)."""
    client, cid, pids = _serve_with_a_call_in_flight(thaw)
    try:
        assert pids
        thaw.serving.send_signal(signal.SIGINT)
        deadline = time.monotonic() + EXIT_TIMEOUT
        while "thaw serve: stopping (SIGINT)" not in thaw.serve_log():
            assert time.monotonic() < deadline, thaw.serve_log()
            time.sleep(0.05)
        assert thaw.serving.poll() is None, thaw.serve_log()  # the call sleeps on
        thaw.serving.send_signal(signal.SIGINT)
        assert thaw.serving.wait(timeout=EXIT_TIMEOUT) == 130, thaw.serve_log()
        assert "interrupted again" in thaw.serve_log()
        assert_container_gone(cid, pids)
        out, err = client.communicate(timeout=EXIT_TIMEOUT)
        assert client.returncode != 0 and "woke up" not in out, (out, err)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


def test_the_sdks_private_runtime_cancels_calls_when_stopped(thaw):  # noqa: F811
    """`thaw serve --no-warm` is the SDK's runtime for one script: stopped
    as the script ends, it cancels what still runs (a spawned call never
    fetched) instead of waiting for it (10 s, then SIGKILL, cgroups left)."""
    client, cid, pids = _serve_with_a_call_in_flight(thaw, "--no-warm")
    try:
        assert pids
        thaw.serving.send_signal(signal.SIGTERM)
        assert thaw.serving.wait(timeout=EXIT_TIMEOUT) == 0, thaw.serve_log()
        assert_container_gone(cid, pids)
    finally:
        client.kill()
        client.wait()

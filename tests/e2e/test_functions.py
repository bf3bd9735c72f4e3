"""End-to-end tests of the function runtime: `thaw deploy | run | serve |
call` with the real SDK (python/thaw), real containers and real snapshots.

Every test has its own store (THAW_HOME under tmp_path) and its own
$E2E_DIR, where the apps in tests/e2e/apps/ leave traces (how often their
global scope ran, which lifecycle hooks ran in which container).

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e/test_functions.py
Environment: THAW_BIN (default <repo>/build/thaw).
"""

import concurrent.futures
import datetime
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zoneinfo
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
THAW_BIN = Path(os.environ.get("THAW_BIN") or REPO / "build" / "thaw")
APPS = Path(__file__).resolve().parent / "apps"
PYTHON = "/usr/bin/python3"

DEPLOY_TIMEOUT = 240   # a torch app: import, model, checkpoint
CALL_TIMEOUT = 120
RUN_TIMEOUT = 180

RESTORING = "Restoring Function from memory snapshot."
CREATING = "Creating memory snapshot for Function."
COLD = "Cold-starting container for Function."
FALLBACK = "Restore from memory snapshot failed:"


class Thaw:
    """thaw commands against a private store, with every process they leave
    running (a `thaw serve`) stopped at the end."""

    def __init__(self, tmp_path):
        if not os.access(THAW_BIN, os.X_OK):
            pytest.fail(f"thaw binary not found at {THAW_BIN} (set THAW_BIN or build it)")
        self.tmp = Path(tmp_path)
        self.home = self.tmp / "home"
        self.e2e = self.tmp / "e2e"
        self.e2e.mkdir()
        self.env = dict(os.environ)
        for k in ("THAW_RUNTIME_SOCKET", "THAW_APP_MODE", "THAW_PYTHONPATH"):
            self.env.pop(k, None)
        self.env.update({
            "THAW_HOME": str(self.home),
            "THAW_BIN": str(THAW_BIN),
            "E2E_DIR": str(self.e2e),
            "PYTHONPATH": str(REPO / "python"),
        })
        self.serving = None
        self.logs = []  # every stderr seen, for the leftover check

    # ------------------------------------------------------------ commands
    def run(self, *args, timeout=CALL_TIMEOUT, check=True, cwd=None):
        try:
            cp = subprocess.run([str(THAW_BIN), *map(str, args)], env=self.env, cwd=cwd or self.tmp,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, errors="replace",
                                timeout=timeout)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"thaw {' '.join(map(str, args))} timed out after {timeout}s\n"
                        f"stderr so far:\n{e.stderr}")
        self.logs.append(cp.stderr)
        if check and cp.returncode != 0:
            pytest.fail(f"thaw {' '.join(map(str, args))} failed (rc={cp.returncode}):\n"
                        f"stdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
        return cp

    def deploy(self, app_file):
        return self.run("deploy", app_file, timeout=DEPLOY_TIMEOUT)

    def call(self, app, fn, *args, method=None, cold=False):
        """(value, stderr, wall seconds) of one `thaw call`."""
        cmd = ["call", app, fn, "--args", json.dumps(list(args))]
        if method:
            cmd += ["--method", method]
        if cold:
            cmd.append("--cold")
        t = time.monotonic()
        cp = self.run(*cmd)
        wall = time.monotonic() - t
        return json.loads(cp.stdout), cp.stderr, wall

    def serve(self, *extra):
        """Starts `thaw serve` on a socket in tmp (extra: more of its
        arguments); returns the socket path."""
        path = self.tmp / "runtime.sock"
        log = open(self.tmp / "serve.log", "w")
        self.serving = subprocess.Popen([str(THAW_BIN), "serve", "--socket", str(path), *extra],
                                        env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        while not path.exists():
            if self.serving.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"thaw serve did not listen:\n{self.serve_log()}")
            time.sleep(0.05)
        return path

    def serve_log(self):
        return (self.tmp / "serve.log").read_text(errors="replace")

    def stop_serve(self):
        """SIGTERM, as a user would; returns the whole log."""
        p, self.serving = self.serving, None
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            pytest.fail(f"thaw serve did not stop on SIGTERM:\n{self.serve_log()}")
        log = self.serve_log()
        self.logs.append(log)
        return log

    def client(self, code, socket_path, timeout=CALL_TIMEOUT):
        """Runs Python code that uses the SDK against a runtime; returns the
        JSON its last stdout line holds."""
        env = dict(self.env, THAW_RUNTIME_SOCKET=str(socket_path))
        try:
            cp = subprocess.run([PYTHON, "-c", code], env=env, cwd=self.tmp, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"client timed out after {timeout}s; runtime log:\n{self.serve_log()}")
        if cp.returncode != 0:
            pytest.fail(f"client failed (rc={cp.returncode}):\n{cp.stderr}\n"
                        f"runtime log:\n{self.serve_log()}")
        return json.loads(cp.stdout.strip().splitlines()[-1])

    # ------------------------------------------------------------ store
    def snapshot_keys(self):
        d = self.home / "snapshots"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.exists() else []

    def meta(self, key):
        return json.loads((self.home / "snapshots" / key / "meta.json").read_text())

    def trace(self, name):
        p = self.e2e / name
        return p.read_text().splitlines() if p.exists() else []

    def cleanup(self):
        if self.serving is not None:
            # SIGTERM first, as stop_serve: a runtime killed with SIGKILL
            # leaves its containers' (empty) cgroups until the next sweep.
            try:
                self.serving.send_signal(signal.SIGTERM)
                self.serving.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.serving.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.serving.wait()

    def assert_containers_gone(self):
        """Every container the logs name has left no cgroup behind."""
        ids = set()
        for log in self.logs:
            ids.update(re.findall(r"\(container ([0-9a-f]{12})", log))
        for ctrl in ("memory", "freezer"):
            root = Path("/sys/fs/cgroup") / ctrl / "thaw"
            left = [i for i in ids if (root / i).exists()]
            assert not left, f"cgroups left behind in {root}: {left}"


@pytest.fixture
def thaw(tmp_path):
    t = Thaw(tmp_path)
    try:
        yield t
    finally:
        t.cleanup()


def count(text, line):
    return text.count(line)


# ---------------------------------------------------------------- tests
def test_plain_function_global_scope_is_captured(thaw):
    cp = thaw.deploy(APPS / "plain.py")
    assert f"{CREATING} (e2e-plain.square)" in cp.stderr
    assert "Memory snapshot created in" in cp.stderr
    assert "Deployed app e2e-plain version 1." in cp.stdout
    # Once while introspected (on the host), once in the snapshot's container.
    runs = len(thaw.trace("global_runs"))
    assert runs == 2

    first, log, _ = thaw.call("e2e-plain", "square", 7)
    assert first["value"] == 49 and first["table_ok"]
    assert RESTORING in log and re.search(r"Restored in \d+ ms\.", log), log
    assert COLD not in log and FALLBACK not in log
    second, log, _ = thaw.call("e2e-plain", "square", 8)
    assert second["value"] == 64 and RESTORING in log
    # The global scope did not run again: both containers hold the
    # snapshot's state, down to the time it was loaded.
    assert len(thaw.trace("global_runs")) == runs
    assert first["loaded_at"] == second["loaded_at"]
    assert first["container"] != second["container"]
    # The snapshot phase's objects were frozen before the checkpoint, so a
    # collection after the restore does not walk (and fault in) all of them.
    assert first["frozen"] > 1000, first

    cold, log, _ = thaw.call("e2e-plain", "square", 9, cold=True)
    assert cold["value"] == 81 and COLD in log and RESTORING not in log
    assert len(thaw.trace("global_runs")) == runs + 1
    assert cold["loaded_at"] > first["loaded_at"]
    assert cold["frozen"] == 0, cold
    thaw.assert_containers_gone()


def test_torch_class_hook_order_and_restore_time(thaw):
    cp = thaw.deploy(APPS / "torch_model.py")
    assert f"{CREATING} (e2e-torch.Model)" in cp.stderr
    hooks = thaw.trace("hooks")
    snap_container = hooks[-1].split()[1]
    assert hooks[-2:] == [f"global {snap_container}", f"enter_snap {snap_container}"]

    restored, log, restore_wall = thaw.call("e2e-torch", "Model", method="predict")
    assert RESTORING in log and COLD not in log, log
    assert restored["order"] == ["global", "enter_snap", "enter", "call"]
    c = restored["container"]
    # In the restored container only @enter(snap=False) ran before the call,
    # and @exit when `thaw call` stopped it.
    assert [h for h in thaw.trace("hooks") if h.endswith(" " + c)] == [f"enter {c}", f"exit {c}"]

    cold, cold_log, cold_wall = thaw.call("e2e-torch", "Model", method="predict", cold=True)
    assert COLD in cold_log
    c = cold["container"]
    assert [h for h in thaw.trace("hooks") if h.endswith(" " + c)] == \
        [f"global {c}", f"enter_snap {c}", f"enter {c}", f"exit {c}"]
    assert cold["sum"] == restored["sum"]  # the same model either way

    restored_ms = float(re.search(r"Restored in (\d+) ms", log).group(1))
    ready = re.search(r"Container ready in ([\d.]+) (ms|s)", cold_log)
    cold_ms = float(ready.group(1)) * (1 if ready.group(2) == "ms" else 1000)
    print(f"\ntorch class: container ready cold {cold_ms:.0f} ms, restored {restored_ms:.0f} ms "
          f"({cold_ms / restored_ms:.1f}x); `thaw call` wall time cold {cold_wall:.2f} s, "
          f"restored {restore_wall:.2f} s ({cold_wall / restore_wall:.1f}x)")
    assert restored_ms < cold_ms
    assert restore_wall < cold_wall
    thaw.assert_containers_gone()


def test_restored_worker_keeps_its_pid_and_thread_ids(thaw):
    thaw.deploy(APPS / "pids.py")
    value, log, _ = thaw.call("e2e-pids", "Ids", method="ids")
    assert RESTORING in log and COLD not in log and FALLBACK not in log, log
    snap, now = value["snap"], value["now"]
    assert snap["pid"] == 2  # the worker is pid 2 of its container (docs/runtime.md)
    assert now["pid"] == snap["pid"], value
    assert now["main_tid"] == snap["main_tid"], value
    assert now["helper_tid"] == snap["helper_tid"], value
    assert now["pthread_kill"] == "ok", value  # glibc's cached tid is the thread's
    cold, log, _ = thaw.call("e2e-pids", "Ids", method="ids", cold=True)
    assert COLD in log and cold["now"]["pid"] == 2 and cold["now"]["pthread_kill"] == "ok"
    thaw.assert_containers_gone()


def test_code_change_invalidates_the_snapshot(thaw):
    app_dir = thaw.tmp / "app"
    app_dir.mkdir()
    app = app_dir / "plain.py"
    shutil.copy(APPS / "plain.py", app)
    thaw.deploy(app)
    [old] = thaw.snapshot_keys()

    cp = thaw.deploy(app)  # unchanged: same key, nothing retired
    assert "Memory snapshot for Function is up to date." in cp.stderr
    assert thaw.snapshot_keys() == [old]

    app.write_text(app.read_text() + "\n# a change\n")
    cp = thaw.deploy(app)
    assert "Deployed app e2e-plain version 3." in cp.stdout
    assert CREATING in cp.stderr
    assert f"Retired memory snapshot {old[:12]}" in cp.stderr
    [new] = thaw.snapshot_keys()
    assert new != old
    assert thaw.meta(new)["version"] == 3

    value, log, _ = thaw.call("e2e-plain", "square", 3)
    assert value["value"] == 9 and RESTORING in log


def test_rollback_deploys_a_previous_versions_code_again(thaw):
    app_dir = thaw.tmp / "app"
    app_dir.mkdir()
    app = app_dir / "plain.py"
    shutil.copy(APPS / "plain.py", app)
    thaw.deploy(app)
    [v1_key] = thaw.snapshot_keys()
    app.write_text(app.read_text().replace('"value": x * x,', '"value": x * x + 1000,'))
    thaw.deploy(app)
    assert thaw.call("e2e-plain", "square", 3)[0]["value"] == 1009
    # A version whose snapshot could not be prepared is never rolled back to.
    app.write_text(app.read_text() + """
class Broken:
    @thaw.enter(snap=True)
    def load(self):
        raise RuntimeError("broken on purpose")

    @thaw.method()
    def f(self):
        return 1


Broken = app.cls(enable_memory_snapshot=True)(Broken)
""")
    cp = thaw.run("deploy", app, check=False, timeout=DEPLOY_TIMEOUT)
    assert cp.returncode != 0 and "version 3 was not made current" in cp.stderr, cp.stderr
    history = thaw.run("app", "history", "e2e-plain").stdout.splitlines()
    assert re.match(r"v3 .* failed .*broken on purpose", history[1]), history
    assert re.match(r"v2 .* deployed", history[2]), history

    # The default target: the newest version before the deployed one that
    # finished, v1; deployed again as v4 with v1's snapshot key.
    cp = thaw.run("app", "rollback", "e2e-plain")
    assert "Rolling back app e2e-plain to v1" in cp.stderr and "version 4." in cp.stdout, cp.stderr
    assert thaw.snapshot_keys() == [v1_key]
    value, log, _ = thaw.call("e2e-plain", "square", 3)
    assert value["value"] == 9 and RESTORING in log
    history = thaw.run("app", "history", "e2e-plain").stdout.splitlines()
    assert re.match(r"v4 .* deployed +rollback to v1", history[1]), history

    cp = thaw.run("app", "rollback", "e2e-plain", "v2")
    assert "version 5." in cp.stdout, cp.stderr
    assert thaw.call("e2e-plain", "square", 3)[0]["value"] == 1009
    for args, message in ((["v5"], "is the deployed version already"), (["v3"], "never finished deploying"),
                          (["v9"], "has no version v9"), (["three"], "give a version number")):
        cp = thaw.run("app", "rollback", "e2e-plain", *args, check=False)
        assert cp.returncode != 0 and message in cp.stderr, (args, cp.stderr)
    thaw.run("app", "stop", "e2e-plain")
    cp = thaw.run("app", "rollback", "e2e-plain", check=False)
    assert cp.returncode != 0 and "is stopped: name the version" in cp.stderr, cp.stderr
    thaw.run("app", "rollback", "e2e-plain", "1")
    assert thaw.call("e2e-plain", "square", 3)[0]["value"] == 9


def test_app_history_shows_a_deploy_under_way(thaw):
    """While a deploy prepares its snapshot (its version marked), its
    version is "deploying", not "broken"."""
    app = thaw.tmp / "slow.py"
    gate = thaw.tmp / "gate"
    app.write_text(f"""import os, time
import thaw
app = thaw.App("e2e-slow")


@app.cls(enable_memory_snapshot=True)
class Slow:
    @thaw.enter(snap=True)
    def load(self):
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)

    @thaw.method()
    def f(self):
        return 1
""")
    gate.touch()
    thaw.deploy(app)
    gate.unlink()
    app.write_text(app.read_text().replace("return 1", "return 2"))
    p = subprocess.Popen([str(THAW_BIN), "deploy", str(app)], env=thaw.env, cwd=thaw.tmp,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (thaw.home / "apps" / "e2e-slow" / "v2").exists():
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.05)
        history = thaw.run("app", "history", "e2e-slow").stdout.splitlines()
        assert re.match(r"v2 +deploying +a deploy is under way", history[1]), history
        assert re.match(r"v1 .* deployed", history[2]), history
    finally:
        gate.touch()
        out, err = p.communicate(timeout=DEPLOY_TIMEOUT)
    assert p.returncode == 0, err
    history = thaw.run("app", "history", "e2e-slow").stdout.splitlines()
    assert re.match(r"v2 .* deployed", history[1]), history
    assert thaw.call("e2e-slow", "Slow", method="f")[0] == 2
    # A version a deploy left without its record is "broken" even while
    # another command (a stop, say) holds the app's lock.
    (thaw.home / "apps" / "e2e-slow" / "v3").mkdir()
    with open(thaw.home / "apps" / "e2e-slow" / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        history = thaw.run("app", "history", "e2e-slow").stdout.splitlines()
    assert re.match(r"v3 +broken", history[1]), history


def test_secrets_and_volumes_made_with_the_cli_reach_a_function(thaw):
    app = thaw.tmp / "cli_objects.py"
    app.write_text("""
import os
import thaw
app = thaw.App("e2e-cli-objects")
vol = thaw.Volume.from_name("e2e-cli-vol")

@app.function(secrets=[thaw.Secret.from_name("e2e-cli-secret")], volumes={"/mnt/e2e-cli": vol})
def read():
    with open("/mnt/e2e-cli/in/data.txt") as f:
        data = f.read()
    with open("/mnt/e2e-cli/out.txt", "w") as f:
        f.write("written by " + os.environ["TOKEN"])
    return {"token": os.environ["TOKEN"], "mode": os.environ["MODE"], "data": data}
""")
    cp = thaw.run("deploy", app, check=False, timeout=DEPLOY_TIMEOUT)
    assert cp.returncode != 0 and "e2e-cli-secret" in cp.stderr, cp.stderr
    dotenv = thaw.tmp / "s.env"
    dotenv.write_text('# comment\nexport MODE="dotenv"\nTOKEN=from-file\n')
    thaw.run("secret", "create", "e2e-cli-secret", "--from-dotenv", dotenv, "TOKEN=t0k=en")
    secret_file = thaw.home / "secrets" / "e2e-cli-secret.json"
    assert secret_file.stat().st_mode & 0o777 == 0o600
    cp = thaw.run("secret", "create", "e2e-cli-secret", "X=1", check=False)
    assert cp.returncode != 0 and "add --force" in cp.stderr, cp.stderr
    assert re.search(r"^e2e-cli-secret +2 ", thaw.run("secret", "list").stdout, re.M)

    thaw.run("volume", "create", "e2e-cli-vol")
    local = thaw.tmp / "in"
    local.mkdir()
    (local / "data.txt").write_text("uploaded")
    thaw.run("volume", "put", "e2e-cli-vol", local, "/")
    thaw.deploy(app)
    value, _, _ = thaw.call("e2e-cli-objects", "read")
    assert value == {"token": "t0k=en", "mode": "dotenv", "data": "uploaded"}, value
    cp = thaw.run("volume", "get", "e2e-cli-vol", "/out.txt", "-")
    assert cp.stdout == "written by t0k=en", cp.stdout
    assert "/in/data.txt" in thaw.run("volume", "ls", "e2e-cli-vol", "in").stdout
    # A link a container made in the volume is never followed by the CLI.
    (thaw.home / "volumes" / "e2e-cli-vol" / "etc").symlink_to("/etc")
    for args in (("get", "e2e-cli-vol", "/etc/hostname", "-"), ("put", "e2e-cli-vol", dotenv, "/etc/x"),
                 ("ls", "e2e-cli-vol", "/etc")):
        cp = thaw.run("volume", *args, check=False)
        assert cp.returncode != 0 and "symbolic link" in cp.stderr, (args, cp.stderr)
    assert not Path("/etc/x").exists()
    thaw.run("volume", "rm", "e2e-cli-vol", "etc")
    assert Path("/etc/hostname").exists()
    cp = thaw.run("volume", "rm", "e2e-cli-vol", "in", check=False)
    assert cp.returncode != 0 and "add -r" in cp.stderr, cp.stderr
    thaw.run("volume", "rm", "e2e-cli-vol", "in", "-r")
    assert not (thaw.home / "volumes" / "e2e-cli-vol" / "in").exists()
    thaw.run("secret", "delete", "e2e-cli-secret")
    assert not secret_file.exists()
    thaw.run("volume", "delete", "e2e-cli-vol")
    assert "e2e-cli-vol" not in thaw.run("volume", "list").stdout


def test_app_logs_keep_what_its_containers_printed(thaw):
    app = thaw.tmp / "logs_app.py"
    app.write_text("""
import sys
import thaw
app = thaw.App("e2e-logs")
print("loaded in the snapshot phase")

@app.function(enable_memory_snapshot=True)
def shout(x):
    print(f"out {x}")
    print(f"err {x}", file=sys.stderr, flush=True)
    return x
""")
    cp = thaw.run("app", "logs", "e2e-logs", check=False)
    assert cp.returncode != 0 and "never deployed" in cp.stderr, cp.stderr
    thaw.deploy(app)
    for x in (1, 2):
        thaw.call("e2e-logs", "shout", x)
    lines = thaw.run("app", "logs", "e2e-logs").stdout.splitlines()
    assert lines == ["loaded in the snapshot phase", "out 1", "err 1", "out 2", "err 2"], lines
    assert thaw.run("app", "logs", "e2e-logs", "-n", "1").stdout.splitlines() == ["err 2"]
    follower = subprocess.Popen([str(THAW_BIN), "app", "logs", "e2e-logs", "-f", "-n", "0"], env=thaw.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        thaw.call("e2e-logs", "shout", 3)
        deadline, seen = time.monotonic() + 30, ""
        while "err 3" not in seen and time.monotonic() < deadline:
            time.sleep(0.3)
            seen = (thaw.home / "logs" / "e2e-logs.log").read_text()
        time.sleep(0.5)  # the follower polls every 0.2 s
    finally:
        follower.terminate()
    out = follower.communicate(timeout=10)[0].splitlines()
    assert out[-2:] == ["out 3", "err 3"] and out.count("out 1") == 1, out


def test_a_read_only_volume_refuses_writes(thaw):
    thaw.deploy(APPS / "read_only_volume.py")
    want = {"seen": "written", "refused": "EROFS", "left": ["a"]}
    value, err, _ = thaw.call("e2e-read-only-volume", "touch", "a")
    assert value == want and RESTORING in err, err
    value, err, _ = thaw.call("e2e-read-only-volume", "touch", "a", cold=True)
    assert value == want, err
    thaw.assert_containers_gone()


def test_deleted_volume_file_falls_back_to_a_cold_start(thaw):
    thaw.deploy(APPS / "volume_reader.py")
    value, log, _ = thaw.call("e2e-volume", "weight_bytes")
    assert value["bytes"] == 4096 and RESTORING in log and FALLBACK not in log
    [key] = thaw.snapshot_keys()

    (thaw.home / "volumes" / "e2e-weights" / "weights.bin").unlink()
    value, log, _ = thaw.call("e2e-volume", "weight_bytes")
    assert value["bytes"] == 4096  # the call still succeeds
    m = re.search(FALLBACK + r" (.*); cold-starting the container\.", log)
    assert m, log
    assert "weights.bin" in m.group(1)
    meta = thaw.meta(key)
    assert meta["failures"] == 1 and meta["recreated"] is True

    # Recreated once: the next call restores again, without failing.
    value, log, _ = thaw.call("e2e-volume", "weight_bytes")
    assert value["bytes"] == 4096 and RESTORING in log and FALLBACK not in log
    thaw.assert_containers_gone()


SPAWN_CLIENT = """
import json, thaw
f = thaw.Function.from_name("e2e-plain", "square")
calls = [f.spawn(i, sleep={sleep}) for i in range({n})]
print(json.dumps([c.get() for c in calls]))
"""


def test_two_restored_containers_draw_different_random_numbers(thaw):
    thaw.deploy(APPS / "plain.py")
    sock = thaw.serve()
    results = thaw.client(SPAWN_CLIENT.format(n=2, sleep=1.0), sock)
    log = thaw.stop_serve()
    assert count(log, RESTORING) == 2 and COLD not in log, log
    a, b = results
    assert a["container"] != b["container"]
    assert a["loaded_at"] == b["loaded_at"]  # one snapshot
    assert a["random"] != b["random"]
    thaw.assert_containers_gone()


def test_four_concurrent_calls_each_restore_a_container(thaw):
    thaw.deploy(APPS / "plain.py")
    runs = len(thaw.trace("global_runs"))
    sock = thaw.serve()
    results = thaw.client(SPAWN_CLIENT.format(n=4, sleep=2.0), sock)
    log = thaw.stop_serve()
    assert [r["value"] for r in results] == [0, 1, 4, 9]
    assert len({r["container"] for r in results}) == 4
    assert count(log, RESTORING) == 4 and count(log, "Restored in") == 4, log
    assert COLD not in log and FALLBACK not in log
    assert len(thaw.trace("global_runs")) == runs
    thaw.assert_containers_gone()


def test_pool_min_and_max_containers(thaw):
    thaw.deploy(APPS / "pool_limits.py")
    sock = thaw.serve()
    deadline = time.monotonic() + 30  # min_containers=2: restored at startup
    while thaw.serve_log().count("Restored in") < 2:
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    r = thaw.client("""
import json, thaw
warm = thaw.Function.from_name("e2e-pool", "warm")
one = thaw.Function.from_name("e2e-pool", "one_at_a_time")
print(json.dumps({"warm": warm.remote(), "one": list(one.map(range(4)))}))
""", sock)
    deadline = time.monotonic() + 30  # scaledown_window=1: one_at_a_time's container stops
    while "Stopping idle container" not in thaw.serve_log():
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    time.sleep(2)
    log = thaw.stop_serve()
    stopped = re.findall(r"Stopping idle container \w+ of (\S+)\.", log)
    assert stopped == ["e2e-pool.one_at_a_time"], log  # min_containers keeps warm's
    assert count(log, "Restored in") == 2, log  # the call used a warm container
    assert len(set(r["one"])) == 1  # max_containers=1: all four in one container
    assert count(log, COLD) == 1
    thaw.assert_containers_gone()


def test_the_sdks_own_runtime_warms_no_app(thaw):
    """A script using from_name with no runtime around gets a private one
    (`thaw serve --no-warm`): it runs the script's calls, and does not start
    every deployed app's min_containers."""
    thaw.deploy(APPS / "pool_limits.py")
    code = ("import thaw, time\n"
            "print(thaw.Function.from_name('e2e-pool', 'one_at_a_time').remote(1))\n"
            "time.sleep(1.5)\n")  # time enough for a warm-up to show
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                        text=True, timeout=CALL_TIMEOUT)
    assert cp.returncode == 0 and cp.stdout.strip(), cp.stderr
    assert "containers start when called" in cp.stderr, cp.stderr
    assert "e2e-pool.warm" not in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_update_autoscaler_changes_a_running_functions_scaling(thaw):
    thaw.deploy(APPS / "pool_limits.py")
    sock = thaw.serve()
    deadline = time.monotonic() + 30  # warm's min_containers=2: restored at startup
    while thaw.serve_log().count("Restored in") < 2:
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    # From a script with its own runtime (no THAW_RUNTIME_SOCKET): the
    # settings are kept with the version, and `thaw serve` applies them on
    # its next tick: one_at_a_time gets a warm container. Bad values and
    # names are refused.
    code = """
import json, thaw
one = thaw.Function.from_name("e2e-pool", "one_at_a_time")
one.update_autoscaler(min_containers=1, scaledown_window=30)
errors = []
for bad in ({"max_containers": 0}, {"min_containers": True}, {"scaledown_window": -1},
            {"min_containers": 2}):  # above its max_containers=1
    try:
        one.update_autoscaler(**bad)
    except thaw.exception.InvalidError as e:
        errors.append(str(e))
try:
    thaw.Function.from_name("e2e-pool", "nothing").update_autoscaler(min_containers=1)
except thaw.exception.NotFoundError as e:
    errors.append(str(e))
print(json.dumps(errors))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                        text=True, timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    errors = json.loads(cp.stdout.strip().splitlines()[-1])
    assert len(errors) == 5 and "has no function or class 'nothing'" in errors[4], errors
    assert "min_containers (2) would be above max_containers (1)" in errors[3], errors
    deadline = time.monotonic() + 30  # (it takes no snapshot: a cold start)
    while not ("(e2e-pool.one_at_a_time)" in thaw.serve_log() and "Container ready in" in thaw.serve_log()):
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    # Through `thaw serve` itself (an instance handle's way, Modal's too):
    # warm's two containers are let go at once, past the new window.
    thaw.client("""
import json, thaw
warm = thaw.Function.from_name("e2e-pool", "warm")
warm.update_autoscaler(min_containers=0, scaledown_window=1)
print(json.dumps(warm.remote()))
""", sock)
    deadline = time.monotonic() + 30
    while len(re.findall(r"Stopping idle container \w+ of e2e-pool\.warm\.", thaw.serve_log())) < 2:
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    # Raised again from another runtime: serve's pool of warm, which exists
    # now, follows on its next tick.
    cp = subprocess.run([PYTHON, "-c", "import thaw; thaw.Function.from_name('e2e-pool', 'warm')"
                         ".update_autoscaler(min_containers=1)"], env=thaw.env, cwd=thaw.tmp,
                        capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    deadline = time.monotonic() + 30
    while not re.search(r"Container \w+ of e2e-pool\.warm is ready \(min_containers=1\)", thaw.serve_log()):
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    # one_at_a_time keeps its container (min_containers=1, a 30 s window).
    log = thaw.stop_serve()
    assert not re.search(r"Stopping idle container \w+ of e2e-pool\.one_at_a_time", log), log
    # Kept with the version, so the next deploy starts from the decorators.
    [kept] = (thaw.home / "apps" / "e2e-pool").glob("**/autoscaler.json")
    assert json.loads(kept.read_text()) == {"one_at_a_time": {"min_containers": 1, "scaledown_window": 30},
                                            "warm": {"min_containers": 1, "scaledown_window": 1}}
    thaw.assert_containers_gone()


BUFFER_CLIENT = """
import json, thaw
print(json.dumps(thaw.Function.from_name("e2e-buffer", "held").remote({tag!r})))
"""
BUFFER_READY = re.compile(r"Buffer container (\w+) of e2e-buffer\.held is ready")


def test_buffer_containers_keep_an_idle_container_under_load(thaw):
    thaw.deploy(APPS / "buffer.py")
    sock = thaw.serve()
    env = dict(thaw.env, THAW_RUNTIME_SOCKET=str(sock))

    def client(tag):
        return subprocess.Popen([PYTHON, "-c", BUFFER_CLIENT.format(tag=tag)], env=env, cwd=thaw.tmp,
                                text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def wait_for_buffers(n):
        deadline = time.monotonic() + 60
        while len(BUFFER_READY.findall(thaw.serve_log())) < n:
            assert time.monotonic() < deadline, f"no buffer container #{n}:\n{thaw.serve_log()}"
            time.sleep(0.1)
        return BUFFER_READY.findall(thaw.serve_log())

    clients = []
    try:
        clients.append(client("a"))
        [spare] = wait_for_buffers(1)  # while call a is held: one idle container besides its own
        clients.append(client("b"))
        buffers = wait_for_buffers(2)  # b took the spare; a new one replaces it
        assert buffers[0] == spare and buffers[1] != spare
    finally:
        for tag in ("a", "b"):
            (thaw.e2e / f"release-{tag}").touch()
    outs = []
    for p in clients:
        out, err = p.communicate(timeout=CALL_TIMEOUT)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs[1] == spare  # the second call ran in the buffer container
    assert outs[0] not in buffers
    deadline = time.monotonic() + 30  # no load: scaled down to min_containers=0
    while thaw.serve_log().count("Stopping idle container") < 3:
        assert time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.1)
    log = thaw.stop_serve()
    assert count(log, "Restored in") == 3 and COLD not in log and FALLBACK not in log, log
    thaw.assert_containers_gone()


def test_undeployed_run_takes_no_snapshot(thaw):
    cp = thaw.run("run", APPS / "plain.py", timeout=RUN_TIMEOUT)
    assert "square(12) = 144" in cp.stdout
    assert "ephemeral" in cp.stderr and COLD in cp.stderr
    assert CREATING not in cp.stderr and RESTORING not in cp.stderr
    assert thaw.snapshot_keys() == []
    assert not any((thaw.home / "apps").iterdir())
    thaw.assert_containers_gone()


def test_sys_exit_in_a_remote_function_is_an_error_for_its_caller(thaw):
    """SystemExit raised in the function again in the caller ended the
    caller, with sys.exit(0) silently and with status 0."""
    app = thaw.tmp / "exits.py"
    app.write_text("""import sys
import thaw

app = thaw.App("e2e-exits")


@app.function()
def leave(code):
    sys.exit(code)


@app.local_entrypoint()
def main():
    for code in (0, 3):
        try:
            leave.remote(code)
            print("no error")
        except thaw.exception.RemoteError as e:
            print(f"RemoteError for {code}:", str(e).splitlines()[0])
    print("caller went on")
""")
    cp = thaw.run("run", app, timeout=RUN_TIMEOUT)
    assert "RemoteError for 0: e2e-exits.leave raised SystemExit: 0" in cp.stdout, (cp.stdout, cp.stderr)
    assert "RemoteError for 3: e2e-exits.leave raised SystemExit: 3" in cp.stdout, (cp.stdout, cp.stderr)
    assert "caller went on" in cp.stdout
    thaw.assert_containers_gone()


def test_thaw_call_prints_results_json_cannot_hold_as_is_or_fails_that_call(thaw):
    """`thaw call` prints a result as JSON: keys JSON cannot hold (a tuple)
    as their repr; a value that contains itself fails that call, naming it,
    and the container goes on (it died of the traceback)."""
    app = thaw.tmp / "odd_results.py"
    app.write_text("""import os
import thaw

app = thaw.App("e2e-odd-results")


@app.function()
def tuple_keys():
    return {(1, 2): 3, "n": [4]}


@app.function()
def circular():
    x = []
    x.append(x)
    return os.getpid(), x


@app.function()
def gen():
    yield {(5,): 6}
""")
    thaw.deploy(app)
    assert thaw.call("e2e-odd-results", "tuple_keys")[0] == {"(1, 2)": 3, "n": [4]}
    cp = thaw.run("call", "e2e-odd-results", "gen")
    assert json.loads(cp.stdout.splitlines()[0]) == {"(5,)": 6}, cp.stdout
    cp = thaw.run("call", "e2e-odd-results", "circular", check=False)
    assert cp.returncode != 0 and "the result (tuple) has no JSON form" in cp.stderr, cp.stderr
    assert "container exited" not in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_a_generator_whose_values_were_dropped_fails_even_if_it_had_ended(thaw):
    """A consumer that falls behind by more than 256 MiB has the stream
    cancelled and fails. When the cap tripped on the last values, the
    generator had ended (ok) before the cancel reached it, and the caller
    got 2 of 9 values and no error."""
    app = thaw.tmp / "slow_reader.py"
    app.write_text("""import time
import thaw

app = thaw.App("e2e-slow-reader")


@app.function()
def gen(n: int):
    for i in range(n):
        yield bytes([i]) * (40 << 20)


@app.local_entrypoint()
def main(n: int = 9):
    got = 0
    try:
        for v in gen.remote_gen(n):
            got += 1
            if got == 1:
                time.sleep(3)  # busy: a backlog builds up
        print(f"no error after {got} of {n}")
    except thaw.exception.ExecutionError as e:
        print(f"error after {got} of {n}: {e}")
""")
    cp = thaw.run("run", app, timeout=RUN_TIMEOUT)
    assert "more slowly than they came" in cp.stdout or "no error after 9 of 9" in cp.stdout, cp.stdout
    assert "no error after" not in cp.stdout or "9 of 9" in cp.stdout, cp.stdout
    thaw.assert_containers_gone()


def test_modal_style_file_runs_with_import_thaw_as_modal(thaw):
    cp = thaw.run("run", APPS / "modal_style.py", timeout=RUN_TIMEOUT)
    assert "shout: HELLO FROM MODAL CODE!" in cp.stdout, cp.stderr
    assert "map: ['A!', 'B!', 'C!']" in cp.stdout
    m = re.search(r"embed: \[(.*)\]", cp.stdout)
    assert m and len(m.group(1).split(",")) == 3
    assert thaw.snapshot_keys() == []

    # Deployed, the same file snapshots its class and restores it.
    thaw.deploy(APPS / "modal_style.py")
    value, log, _ = thaw.call("e2e-modal-style", "Embedder", [1, 2, 3], method="embed")
    assert len(value) == 3 and RESTORING in log
    assert f"embed: [{', '.join(str(v) for v in value)}]" in cp.stdout  # same model
    thaw.assert_containers_gone()


def test_run_converts_entrypoint_options_by_string_type_hints(thaw):
    # The app has `from __future__ import annotations`: every hint is a string.
    cp = thaw.run("run", APPS / "entry_args.py", "--n", "4", "--when", "2024-05-01T12:30:00", "--verbose",
                  timeout=RUN_TIMEOUT)
    assert "describe: int 8 2024-05-01T12:30:00 True" in cp.stdout, cp.stderr
    cp = thaw.run("run", f"{APPS / 'entry_args.py'}::describe", "--n", "3", timeout=RUN_TIMEOUT)
    assert "int 3 None False" in cp.stdout, cp.stderr
    # `--` keeps the entrypoint's options apart from thaw's (CLI11 refused it).
    cp = thaw.run("run", f"{APPS / 'entry_args.py'}::describe", "--", "--n", "5", timeout=RUN_TIMEOUT)
    assert "int 5 None False" in cp.stdout, cp.stderr
    cp = thaw.run("run", APPS / "entry_args.py", "--n", "four", check=False, timeout=RUN_TIMEOUT)
    assert cp.returncode != 0 and "argument --n: 'four' is not an int" in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_snapshot_ls_shows_the_version_of_a_failed_creation(thaw):
    cp = thaw.deploy(APPS / "unsnappable.py")
    assert "could not be taken" in cp.stderr, cp.stderr
    [key] = thaw.snapshot_keys()
    assert thaw.meta(key)["create_failed"]["version"] == 1
    [row] = [line for line in thaw.run("snapshot", "ls").stdout.splitlines() if line.startswith(key[:12])]
    assert row.split()[2] == "v1" and "creation failed" in row, row
    value, log, _ = thaw.call("e2e-unsnappable", "ping")
    assert value == "pong" and COLD in log
    thaw.assert_containers_gone()


def test_a_multiprocessing_manager_of_the_snapshot_phase_answers_in_restored_containers(thaw):
    """A Manager started in @enter(snap=True): its server process and the
    connections its proxies hold to it are in the snapshot (the snapshot
    was refused before: a connection its listener had accepted), and each
    restored container's proxies find the state the snapshot phase left."""
    cp = thaw.deploy(APPS / "manager.py")
    assert "could not be taken" not in cp.stderr, cp.stderr
    for key in ("first", "second"):
        value, log, _ = thaw.call("e2e-manager", "Shared", key, method="use")
        assert RESTORING in log and FALLBACK not in log, log
        address = value.pop("address")
        assert address.startswith("/dev/shm/thaw-tmp/pymp-"), address
        assert value == {"table": {"loaded": "in the snapshot", key: 1}, "job": "queued in the snapshot"}, value
    thaw.assert_containers_gone()


def test_a_checkpoint_refused_for_a_passing_state_is_taken_again(thaw):
    """The snapshot phase leaves a connection waiting to be accepted for a
    moment: the checkpoint is refused for a state that passes by itself,
    taken again a little later (the log says so), and the snapshot holds
    the connection once accepted."""
    cp = thaw.deploy(APPS / "passing_state.py")
    assert "refused for a passing state" in cp.stderr and "trying again in 100 ms" in cp.stderr, cp.stderr
    assert "could not be taken" not in cp.stderr, cp.stderr
    value, log, _ = thaw.call("e2e-passing-state", "Server", method="read")
    assert RESTORING in log and FALLBACK not in log, log
    assert value == "sent before the snapshot", value
    thaw.assert_containers_gone()


def test_child_processes_of_the_snapshot_phase_come_back_with_it(thaw):
    """As with Modal, whose snapshot holds the whole container: a helper
    process (subprocess, over pipes) and a multiprocessing pool started in
    @enter(snap=True) are in the snapshot, and every restored container
    has them, in the state they had (the helper has read one line)."""
    cp = thaw.deploy(APPS / "child_processes.py")
    assert "could not be taken" not in cp.stderr, cp.stderr
    assert "4 processes" in cp.stderr, cp.stderr  # the worker, its helper, two pool workers
    value, log, _ = thaw.call("e2e-children", "Children", "hello", method="ask")
    assert RESTORING in log and FALLBACK not in log, log
    assert value == {"warm": "1: warm", "helper": "2: hello", "squares": [0, 1, 4, 9, 16],
                     "helper_is_my_child": True}, (value, log)
    # A second restored container starts from the snapshot again.
    value, log, _ = thaw.call("e2e-children", "Children", "again", method="ask")
    assert RESTORING in log and FALLBACK not in log, log
    assert value["helper"] == "2: again", (value, log)
    # A cold start (no snapshot) runs the same code for the same answer.
    value, log, _ = thaw.call("e2e-children", "Children", "again", method="ask", cold=True)
    assert RESTORING not in log and value["helper"] == "2: again", (value, log)
    thaw.assert_containers_gone()


def test_a_torch_data_loader_with_worker_processes_comes_back_with_its_workers(thaw):
    """A DataLoader with persistent worker processes, iterated in
    @enter(snap=True): the snapshot holds the workers (3 processes), and a
    restored container's loader gets its batches from those same workers,
    as the cold container's does from its own."""
    cp = thaw.deploy(APPS / "data_loader.py")
    assert "could not be taken" not in cp.stderr and "3 processes" in cp.stderr, cp.stderr
    sums = [20, 148, 404, 788]  # the batches of (i, i*i), four at a time
    for cold in (False, False, True):
        value, log, _ = thaw.call("e2e-data-loader", "Loader", method="sums", cold=cold)
        assert (RESTORING in log) != cold and FALLBACK not in log, log
        assert value == {"warm": sums, "sums": sums, "same_workers": True}, (value, log)
    thaw.assert_containers_gone()


def test_a_daemon_the_snapshot_phase_left_running_is_named_as_left_out(thaw):
    """A process the function started that left its process tree (a
    double-forked daemon, adopted by the container's init) is not in the
    snapshot: deploy says so, naming it, and restored containers work."""
    cp = thaw.deploy(APPS / "daemon.py")
    assert re.search(r"Snapshot note: process \d+ \(sleep 1000\) runs in the container apart from the "
                     r"function's processes", cp.stderr), cp.stderr
    value, log, _ = thaw.call("e2e-daemon", "ping")
    assert value == "pong" and RESTORING in log and FALLBACK not in log, log
    thaw.assert_containers_gone()


def test_a_udp_socket_of_the_snapshot_works_in_restored_containers(thaw):
    cp = thaw.deploy(APPS / "udp_socket.py")
    assert "could not be taken" not in cp.stderr, cp.stderr
    value, log, _ = thaw.call("e2e-udp", "echo", "one")
    assert value == "one" and RESTORING in log and FALLBACK not in log, log
    # Through `thaw serve`: copies of a live template, whose held process
    # keeps the snapshot's port, so each copy's socket gets another.
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    out = thaw.client("""
import json, thaw
echo = thaw.Function.from_name("e2e-udp", "echo")
print(json.dumps(list(echo.map(["a", "b", "c"]))))
""", sock)
    log = thaw.stop_serve()
    assert out == ["a", "b", "c"], log
    assert "failed" not in log, log
    thaw.assert_containers_gone()


def test_a_connection_of_the_snapshot_comes_back_dropped_and_the_client_reconnects(thaw):
    """As with Modal: a TCP connection opened in the snapshot phase does not
    keep the snapshot from being taken; restored, it reads as dropped by its
    peer, and the function's client connects again."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        conns = []
        while not stop.is_set():
            try:
                c, _ = server.accept()
                conns.append(c)
            except OSError:
                pass
            for c in list(conns):
                try:
                    c.setblocking(False)
                    if c.recv(100):
                        c.sendall(b"pong\n")
                except BlockingIOError:
                    pass
                except OSError:
                    conns.remove(c)
        for c in conns:
            c.close()

    t = threading.Thread(target=serve)
    t.start()
    try:
        thaw.env["E2E_TCP_PORT"] = str(server.getsockname()[1])
        cp = thaw.deploy(APPS / "tcp_client.py")
        assert "could not be taken" not in cp.stderr, cp.stderr
        assert "Snapshot note: " in cp.stderr and "restored closed, as a connection its peer reset" in cp.stderr, \
            cp.stderr
        value, log, _ = thaw.call("e2e-tcp", "query")
        assert value == "reconnected after ConnectionResetError: pong" and RESTORING in log, (value, log)
        # Copies of a live template, each with a dropped connection of its own.
        sock = thaw.serve()
        wait_for_log(thaw, "Live template of snapshot")
        out = thaw.client("""
import json, thaw
query = thaw.Function.from_name("e2e-tcp", "query")
print(json.dumps([query.remote(), query.remote()]))
""", sock)
        log = thaw.stop_serve()
        assert out[0] == "reconnected after ConnectionResetError: pong", log
        assert out[1] in (out[0], "same connection: pong"), log  # the second may reuse the first's container
        assert "failed" not in log, log
        thaw.assert_containers_gone()
    finally:
        stop.set()
        t.join()
        server.close()


def test_connections_to_processes_outside_the_container_come_back_closed(thaw):
    """A unix stream socket to an outside server comes back as closed by it
    (the restore used to fail on every cold start, asking for --inherit-fd),
    a syslog handler's datagram socket is connected to its name again, and
    a dup of stderr writes to the restored container's stderr."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(thaw.e2e / "server.sock"))
    server.listen(8)
    accepted = []
    acceptor = threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True)
    acceptor.start()
    syslog = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    syslog.bind(str(thaw.e2e / "syslog.sock"))
    syslog.settimeout(30)
    try:
        cp = thaw.deploy(APPS / "outside.py")
        assert "could not be taken" not in cp.stderr, cp.stderr
        assert "a socket connected to another process: restored as one that process closed" in cp.stderr, cp.stderr
        [key] = thaw.snapshot_keys()
        assert any("restored as one that process closed" in n for n in thaw.meta(key)["notes"]), thaw.meta(key)
        value, log, _ = thaw.call("e2e-outside", "use_them")
        assert value == "b''" and RESTORING in log and FALLBACK not in log, (value, log)
        assert "written through the dup of stderr" in log, log
        assert b"hello from a restored container" in syslog.recv(200)
        # A copy of the live template: the dup gets the copy's stderr too.
        sock = thaw.serve()
        wait_for_log(thaw, "Live template of snapshot")
        out = thaw.client("""
import json, thaw
print(json.dumps(thaw.Function.from_name("e2e-outside", "use_them").remote()))
""", sock)
        log = thaw.stop_serve()
        assert out == "b''" and "a copy of the live template" in log, log
        logs = thaw.run("app", "logs", "e2e-outside", "-n", "0").stdout
        assert logs.count("written through the dup of stderr") == 2, logs
        thaw.assert_containers_gone()
    finally:
        for c in accepted:
            c.close()
        server.close()
        syslog.close()


def test_an_open_deleted_file_of_the_snapshot_phase_is_in_the_snapshot(thaw):
    """An anonymous temporary file (deleted while open) kept by the snapshot
    phase comes back with its content in each restored container (it was
    refused: the deploy said to close it, and every container cold-started)."""
    cp = thaw.deploy(APPS / "temp_file.py")
    assert "deleted" not in cp.stderr, cp.stderr
    for _ in range(2):
        value, log, _ = thaw.call("e2e-temp-file", "Scratch", method="read")
        assert value == "scratch" and RESTORING in log and COLD not in log, log
    thaw.assert_containers_gone()


def test_temporary_files_of_the_snapshot_phase_come_back_in_each_restored_container(thaw):
    """A TemporaryDirectory and a NamedTemporaryFile made in
    @enter(snap=True) are in the container's own temporary directory,
    which the snapshot copies: each restored container finds them as the
    snapshot left them, though the one before removed the file it read,
    closed the temporary file and ran the directory's finalizer at its exit
    (in the host's /tmp that containers share, that removed them for every
    later restore: a FileNotFoundError, or a restore that failed and fell
    back). None of them reaches the host. A directory made in the host's
    /tmp on purpose is one for all: its removal is switched off in the
    snapshot phase, and the deploy says so."""
    cp = thaw.deploy(APPS / "temp_dirs.py")
    assert "in the host's filesystem, which every container restored from the snapshot shares" in cp.stderr, cp.stderr
    assert "e2e-temp-dirs-" in cp.stderr and "(TemporaryDirectory)" in cp.stderr, cp.stderr
    assert "(NamedTemporaryFile)" not in cp.stderr, cp.stderr
    [key] = thaw.snapshot_keys()
    assert thaw.meta(key)["dev_shm_files"] >= 2, thaw.meta(key)
    value = None
    for _ in range(3):  # one `thaw call` each: each container ends before the next
        value, log, _ = thaw.call("e2e-temp-dirs", "Unpacked", method="read")
        assert RESTORING in log and FALLBACK not in log, log
        assert value["weights"] == "weights" and value["scratch"] == "scratch", value
        assert value["config"] == "config" and value["tmpdir"] == "/dev/shm/thaw-tmp", value
    thaw.assert_containers_gone()
    for p in value["paths"]:  # each container's own
        assert p.startswith("/dev/shm/thaw-tmp/") and not os.path.exists(p), p
    assert os.path.exists(value["host_dir"]), value  # the snapshot's: left for its restores
    shutil.rmtree(value["host_dir"])


def test_copies_of_a_live_template_get_the_snapshot_s_temporary_files(thaw):
    """Through `thaw serve`: a copy of the live template gets the
    snapshot's temporary directory in its own /dev/shm, filled before the
    copy's files are opened (its NamedTemporaryFile is one of them). The
    template's held process, restored outside any container, made the
    files of /dev/shm it had open in the host's /dev/shm; it opens a
    stand-in now."""
    thaw.deploy(APPS / "temp_dirs.py")
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    # One call per container: the first removes the file it read.
    out = thaw.client("""
import json, thaw
U = thaw.Cls.from_name("e2e-temp-dirs", "Unpacked")
print(json.dumps(U().read.remote()))
""", sock)
    log = thaw.stop_serve()
    assert count(log, TEMPLATE) == 1 and FALLBACK not in log and COLD not in log, log
    assert out["weights"] == "weights" and out["scratch"] == "scratch", out
    assert out["tmpdir"] == "/dev/shm/thaw-tmp", out
    # The template, held outside any container, made none of its files.
    scratch = out["paths"][1]
    assert scratch.startswith("/dev/shm/thaw-tmp/") and not os.path.exists(scratch), scratch
    thaw.assert_containers_gone()
    shutil.rmtree(out["host_dir"], ignore_errors=True)


def test_a_restore_gets_the_dev_shm_files_of_the_image_its_restore_shell_read(thaw):
    """The restore shell reads the image once and restores it many times;
    the files of the snapshot's /dev/shm must be that image's, which it
    holds, not whatever the image's path leads to when a container is set
    up (a snapshot recreated meanwhile puts another image, with files of
    its own, there)."""
    thaw.deploy(APPS / "temp_dirs.py")
    [key] = thaw.snapshot_keys()
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")  # the shell has read the image
    image = thaw.home / "snapshots" / key / "image"
    os.rename(image / "dev-shm", thaw.tmp / "dev-shm-the-shell-read")
    (image / "dev-shm").mkdir()  # another image's: nothing in its /dev/shm
    value = thaw.client("""
import json, thaw
print(json.dumps(thaw.Cls.from_name("e2e-temp-dirs", "Unpacked")().read.remote()))
""", sock)
    log = thaw.stop_serve()
    assert RESTORING in log and FALLBACK not in log, log
    assert value["weights"] == "weights" and value["scratch"] == "scratch", value
    thaw.assert_containers_gone()
    shutil.rmtree(value["host_dir"])


def test_a_multiprocessing_manager_of_the_snapshot_phase_serves_two_containers_at_once(thaw):
    """The Manager's server listens on a path in the container's temporary
    directory (multiprocessing's pymp-*): in the host's /tmp only one
    container at a time could bind it again, the others cold-started.
    Each container has its own now, so two restore at once."""
    thaw.deploy(APPS / "manager.py")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        calls = [ex.submit(thaw.call, "e2e-manager", "Shared", key, 2, method="use") for key in ("a", "b")]
        results = [c.result() for c in calls]
    for (value, log, _), key in zip(results, ("a", "b")):
        assert RESTORING in log and COLD not in log and FALLBACK not in log, log
        address = value.pop("address")
        assert address.startswith("/dev/shm/thaw-tmp/pymp-"), address
        assert value == {"table": {"loaded": "in the snapshot", key: 1}, "job": "queued in the snapshot"}, value
    thaw.assert_containers_gone()


def test_an_sqlite_database_the_snapshot_holds_survives_containers_that_close_it(thaw):
    """The snapshot holds an SQLite connection in WAL mode: a restored
    container that ends closes the last connection, and SQLite deletes the
    database's -wal and -shm files, which every later restore fell back for
    (the mapped -shm file gone). Restores find them by name now, made again
    where gone, and see every row written before."""
    thaw.deploy(APPS / "sqlite_wal.py")
    rows = ["snapshot"]
    for who in ("first", "second", "third"):  # one container each, ended before the next
        value, log, _ = thaw.call("e2e-sqlite-wal", "Store", who, method="add")
        assert RESTORING in log and FALLBACK not in log, log
        rows.append(who)
        assert value == rows, value
        # Its @exit closed the last connection: SQLite deleted them.
        volume = Path(thaw.home) / "volumes" / "e2e-sqlite"
        assert (volume / "data.db").exists() and not (volume / "data.db-wal").exists(), list(volume.iterdir())
    thaw.assert_containers_gone()


def test_containers_restored_at_once_have_their_own_semaphores_and_shared_memory(thaw):
    """A named semaphore and a shared memory object made in the snapshot
    phase come back in each restored container's own /dev/shm, made from
    the snapshot: two containers restored at once each take their own
    semaphore (sharing one by name, the second found it taken and a pool's
    lock could hang), and none of it reaches the host's /dev/shm."""
    thaw.deploy(APPS / "shm_semaphore.py")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        calls = [ex.submit(thaw.call, "e2e-shm-semaphore", "Guarded", 3, method="hold") for _ in range(2)]
        results = [c.result() for c in calls]
    for value, log, _ in results:
        assert RESTORING in log and COLD not in log, log
        assert value == {"took": True, "table": "table", "mode": "0o640",
                         "shm": ["e2e-shm-table", "sem.e2e-shm-semaphore", "thaw-tmp"]}, value
    assert not any(n.startswith(("e2e-shm-table", "sem.e2e-shm")) for n in os.listdir("/dev/shm"))
    thaw.assert_containers_gone()


def test_an_sqlite_database_opened_in_the_temporary_directory_is_writable_after_restore(thaw):
    """SQLite writes only while its database's path names the inode it
    opened: each restored container's /dev/shm, a fresh tmpfs, gives the
    file its number back (a number the snapshot phase skipped included),
    so the connection kept from the snapshot writes, in every container,
    two at once among them, each to its own copy. Its device number is
    not given back, which the deploy's warning says."""
    cp = thaw.deploy(APPS / "sqlite_temp.py")
    value, log, _ = thaw.call("e2e-sqlite-temp", "Store", 2, method="add")
    assert RESTORING in log and COLD not in log, log
    assert value == {"sum": 3, "same_inode": True}, (value, log)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        calls = [ex.submit(thaw.call, "e2e-sqlite-temp", "Store", x, method="add") for x in (5, 7)]
        results = [c.result() for c in calls]
    assert [v for v, _, _ in results] == [{"sum": 6, "same_inode": True}, {"sum": 8, "same_inode": True}], results
    assert all(RESTORING in log and COLD not in log for _, log, _ in results), results
    # Not the device number: a connection opened after the restore would
    # not share the kept one's locks, which the deploy says.
    assert "leaves SQLite databases in the container's own temporary directory open: " \
           "/dev/shm/thaw-tmp/store.db;" in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


@pytest.mark.parametrize("server", ["LocalServer", "HostUnixServer", "UnixServer"])
def test_a_port_another_container_of_the_snapshot_holds_does_not_blame_it(thaw, server):
    # Two containers at once of a snapshot whose listening socket has a port
    # (or a unix socket's path in the host's /tmp): the second cannot bind
    # it (containers share the host's network and filesystem) and starts
    # cold. That is no fault of the snapshot: it was counted as one,
    # recreated, and after a few such starts given up for every container.
    # A unix socket in the container's own temporary directory is each
    # container's own: all three restore.
    thaw.deploy(APPS / "listening.py")
    sock = thaw.serve()
    out = thaw.client(
        "import json, concurrent.futures as cf, thaw\n"
        f"S = thaw.Cls.from_name('e2e-listening', '{server}')\n"
        "with cf.ThreadPoolExecutor(3) as ex:\n"
        "    res = list(ex.map(lambda h: S().ask.remote(h), [3, 3, 3]))\n"
        "assert res == [True, True, True], res\n"
        "print(json.dumps('ok'))\n", sock, timeout=240)
    assert out == "ok"
    log = thaw.stop_serve()
    own = server == "UnixServer"
    assert ("Address already in use" in log and "the snapshot not blamed" in log) != own, log
    assert "Recreating the memory snapshot" not in log, log
    for key in thaw.snapshot_keys():  # the app's classes'
        meta = thaw.meta(key)
        assert meta.get("failures", 0) == 0 and not meta.get("recreated"), meta
    assert count(log, RESTORING) == 3 and count(log, COLD) == (0 if own else 2), log
    thaw.assert_containers_gone()
    for d in Path("/tmp").glob("e2e-listening-*"):
        shutil.rmtree(d, ignore_errors=True)


def test_a_thaw_home_in_dev_shm_is_seen_by_containers_with_their_own_dev_shm(thaw):
    """THAW_HOME in the host's /dev/shm (a tmpfs, chosen for speed): a
    container's own /dev/shm must not hide it (the worker's code, its
    Volumes), for a cold start or a restore."""
    home = Path(f"/dev/shm/thaw-e2e-home-{os.getpid()}")
    shutil.rmtree(home, ignore_errors=True)
    try:
        thaw.home = home
        thaw.env["THAW_HOME"] = str(home)
        thaw.deploy(APPS / "plain.py")
        for _ in range(2):
            value, log, _ = thaw.call("e2e-plain", "square", 4)
            assert value["value"] == 16 and RESTORING in log and COLD not in log, log
        value, log, _ = thaw.call("e2e-plain", "square", 5, cold=True)
        assert value["value"] == 25 and COLD in log, log
        thaw.assert_containers_gone()
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_container_killed_while_starting_says_so(thaw):
    thaw.deploy(APPS / "dies_starting.py")
    cp = thaw.run("call", "e2e-dies-starting", "never", check=False)
    assert cp.returncode != 0
    assert ("the container exited: killed by SIGKILL (status 137) before the worker sent 'ready'"
            in cp.stderr), cp.stderr
    assert "Connection reset by peer" not in cp.stderr, cp.stderr


def test_memory_limit_is_in_force_and_running_out_is_named(thaw):
    if not (os.access("/sys/fs/cgroup/memory/cgroup.procs", os.W_OK)
            or os.path.exists("/sys/fs/cgroup/cgroup.controllers")):
        pytest.skip("no memory cgroup on this host")
    thaw.deploy(APPS / "limits.py")
    value, log, _ = thaw.call("e2e-limits", "limit")
    assert value == 200 << 20, log
    assert "not applied" not in log
    value, log, _ = thaw.call("e2e-limits", "hog", 20)
    assert value == 20
    # Past the limit the kernel kills the container; the caller learns why.
    cp = thaw.run("call", "e2e-limits", "hog", "--args", "[600]", check=False)
    assert cp.returncode != 0
    assert "ran out of memory" in cp.stderr and "limit of 200 MiB" in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_an_error_in_enter_after_restore_is_the_functions_unless_a_cold_start_works(thaw):
    thaw.deploy(APPS / "enter_fails.py")
    key, = thaw.snapshot_keys()
    time.sleep(1.2)  # the snapshot's state is now "old" (see the app)

    # The user's bug: the cold start fails the same way. The caller gets the
    # error; the snapshot is not blamed, recreated or given up on.
    (thaw.e2e / "always_fail").touch()
    for _ in range(2):
        cp = thaw.run("call", "e2e-enter-fails", "Service", "--method", "ping", check=False)
        assert cp.returncode != 0 and "ConnectionError: the database is down" in cp.stderr, cp.stderr
        assert "cold-starting to tell whether the memory snapshot is at fault" in cp.stderr
        assert "Recreating the memory snapshot" not in cp.stderr
    meta = thaw.meta(key)
    assert meta["failures"] == 0 and meta["recreated"] is False, meta
    (thaw.e2e / "always_fail").unlink()
    value, log, _ = thaw.call("e2e-enter-fails", "Service", method="ping")
    assert value == "pong" and RESTORING in log and COLD not in log

    # Only the restored process fails: the snapshot is at fault, the call
    # still succeeds from the cold start, and the failure is counted.
    (thaw.e2e / "fail_if_old").touch()
    value, log, _ = thaw.call("e2e-enter-fails", "Service", method="ping")
    assert value == "pong", log
    assert "the memory snapshot is at fault." in log and COLD in log
    assert thaw.meta(key)["failures"] == 1
    thaw.assert_containers_gone()


def test_a_call_stuck_in_native_code_ends_at_its_timeout(thaw):
    thaw.deploy(APPS / "limits.py")
    cp = thaw.run("call", "e2e-limits", "stuck_in_c", "--args", "[2000000000]", check=False)
    assert cp.returncode != 0
    assert "FunctionTimeoutError: e2e-limits.stuck_in_c exceeded its timeout of 1 s and did not stop" \
        in cp.stderr, cp.stderr
    # Through the SDK it is the Modal exception, naming the function once.
    code = ("import thaw\nfrom thaw.exception import FunctionTimeoutError\n"
            "f = thaw.Function.from_name('e2e-limits', 'stuck_in_c')\n"
            "try:\n    f.remote(2000000000)\nexcept FunctionTimeoutError as e:\n"
            "    print(repr(str(e)))\n")
    out = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                         text=True, timeout=CALL_TIMEOUT)
    assert "exceeded its timeout of 1 s" in out.stdout, out.stdout + out.stderr
    assert out.stdout.count("e2e-limits.stuck_in_c") == 1, out.stdout
    thaw.assert_containers_gone()


def test_sigalrm_and_itimer_real_are_the_functions_own(thaw):
    """The worker's timeout does not use SIGALRM: a handler the snapshot
    phase installed still gets the user's own alarm in restored and cold
    containers (it used to be replaced for each call, and the user's timer
    fired the worker's: "exceeded its timeout of 300 s" at once), and a
    function that disarms ITIMER_REAL still ends at its timeout."""
    thaw.deploy(APPS / "alarms.py")
    want = {"outcomes": ["StepTimeout: step took too long", "finished"], "handler_is_mine": True}
    for cold in (False, True):
        value, log, _ = thaw.call("e2e-alarms", "Evaluator", method="run", cold=cold)
        assert value == want, (value, log)
        assert (RESTORING in log) != cold and FALLBACK not in log, log
    cp = thaw.run("call", "e2e-alarms", "disarms_then_overruns", check=False)
    assert cp.returncode != 0 and "not interrupted" not in cp.stdout, cp.stdout
    # The worker's deadline ended it, not the runtime's last resort.
    assert "FunctionTimeoutError: disarms_then_overruns exceeded its timeout of 2 s" \
        in cp.stderr and "did not stop" not in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_retries_are_the_runtimes_for_every_caller(thaw):
    thaw.deploy(APPS / "limits.py")
    counter = thaw.e2e / "flaky_cli"
    value, log, _ = thaw.call("e2e-limits", "flaky", str(counter), 2)
    assert value == 3 and log.count("retry ") == 2, log
    assert "e2e-limits.flaky failed (RuntimeError: run 1 fails); retry 1 of 2" in log
    # Out of retries: the last failure is the caller's.
    counter = thaw.e2e / "flaky_out"
    cp = thaw.run("call", "e2e-limits", "flaky", "--args", json.dumps([str(counter), 5]), check=False)
    assert cp.returncode != 0 and "RuntimeError: run 3 fails" in cp.stderr, cp.stderr
    assert counter.read_text() == "3"
    # A deployed function looked up by name gets them too.
    counter = thaw.e2e / "flaky_sdk"
    code = ("import thaw\n"
            f"print(thaw.Function.from_name('e2e-limits', 'flaky').remote({str(counter)!r}, 1))\n")
    out = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                         text=True, timeout=CALL_TIMEOUT)
    assert out.stdout.strip() == "2", out.stdout + out.stderr
    thaw.assert_containers_gone()


def test_thaw_call_passes_class_parameters(thaw):
    thaw.deploy(APPS / "params.py")
    cp = thaw.run("call", "e2e-params", "Greeter", "--method", "greet", "--params", '{"name": "ann"}',
                  "--kwargs", '{"times": 2}')
    assert json.loads(cp.stdout) == "hello ann! hello ann!", cp.stderr
    cp = thaw.run("call", "e2e-params", "Greeter", "--method", "greet", "--params",
                  '{"name": "bo", "punct": "?"}')
    assert json.loads(cp.stdout) == "hello bo?"
    cp = thaw.run("call", "e2e-params", "Greeter", "--method", "greet", check=False)
    assert cp.returncode != 0 and "cannot be created without parameters" in cp.stderr, cp.stderr
    cp = thaw.run("call", "e2e-params", "Greeter", "--method", "greet", "--params", "[1]", check=False)
    assert cp.returncode != 0 and "--params must be a JSON object" in cp.stderr
    thaw.assert_containers_gone()


def test_a_method_calls_other_methods_through_self(thaw):
    # As in Modal: inside a method, self.other has .remote()/.spawn()/.map()
    # (containers of the same class and parameters) and .local(); it was a
    # plain bound method ('function' object has no attribute 'remote').
    thaw.deploy(APPS / "self_calls.py")
    expected = {"direct": 16, "local": 16, "remote": 16, "remote_elsewhere": True,
                "spawn": 16, "map": [13, 16]}
    cp = thaw.run("call", "e2e-self-calls", "Model", "--method", "outer", "--args", "[2]",
                  "--params", '{"k": 3}')
    assert json.loads(cp.stdout) == expected, cp.stderr
    assert RESTORING in cp.stderr
    cp = thaw.run("run", APPS / "self_calls.py", timeout=RUN_TIMEOUT)
    assert "RESULT " + repr(expected) in cp.stdout, cp.stdout + cp.stderr
    thaw.assert_containers_gone()


def test_each_set_of_class_parameters_has_its_containers_and_snapshot(thaw):
    thaw.deploy(APPS / "params.py")
    deployed = set(thaw.snapshot_keys())

    def info(params=None):
        args = ["call", "e2e-params", "Loader", "--method", "info"]
        cp = thaw.run(*args, *(["--params", json.dumps(params)] if params is not None else []))
        return json.loads(cp.stdout), cp.stderr

    value, log = info()
    assert value["weights"] == ["base"] and value["loaded"] == ["basex1"] and RESTORING in log, log
    # Other values: their own snapshot, taken after @enter(snap=True) ran
    # with them; the defaults' instance is never made there.
    value, log = info({"model": "big", "size": 2})
    assert value["weights"] == ["big", "big"] and value["loaded"] == ["bigx2"], value
    assert "Creating memory snapshot" in log, log
    [own] = set(thaw.snapshot_keys()) - deployed
    assert thaw.meta(own)["handle"] is True
    value, log = info({"size": 2, "model": "big"})
    assert value["loaded"] == ["bigx2"] and RESTORING in log and "Creating" not in log, log
    # The defaults, given or not, are the class's own containers and snapshot.
    value, log = info({"model": "base", "size": 1})
    assert value["loaded"] == ["basex1"] and "Creating" not in log, log
    assert set(thaw.snapshot_keys()) == deployed | {own}
    cp = thaw.run("call", "e2e-params", "Loader", "--method", "info", "--params", '{"nope": 1}', check=False)
    assert cp.returncode != 0 and "has no parameter 'nope'" in cp.stderr, cp.stderr
    # Bytes through the CLI, as the SDK sends them: its own set of values.
    value, log = info({"blob": {"__bytes__": "AAE="}})
    assert value["blob"] == "0001" and value["loaded"] == ["basex1"] and "Creating memory snapshot" in log, log
    # A float is not routed (as JSON 2.0 would be 2): the shared pool's
    # container makes the instance, and says an int parameter takes no float.
    cp = thaw.run("call", "e2e-params", "Loader", "--method", "info", "--params", '{"size": 2.0}', check=False)
    assert cp.returncode != 0 and "parameter 'size' is int, got float 2.0" in cp.stderr, cp.stderr

    # Through the SDK: each set of values in containers of its own, bytes too.
    sock = thaw.serve()
    out = thaw.client("""
import json, thaw
Loader = thaw.Cls.from_name("e2e-params", "Loader")
out = [Loader(model=m, blob=b).info.remote() for m, b in (("a", b"\\x01"), ("b", b"\\x00"), ("a", b"\\x01"))]
out.append(Loader().info.remote())
print(json.dumps(out))
""", sock)
    a, b, a_again, default = out
    assert a["loaded"] == ["ax1"] and a["blob"] == "01" and b["loaded"] == ["bx1"], out
    assert a["container"] == a_again["container"] != b["container"] != default["container"], out
    assert default["loaded"] == ["basex1"], out
    thaw.stop_serve()
    thaw.assert_containers_gone()


def test_a_wrongly_typed_class_parameter_is_refused_before_anything_starts(thaw):
    thaw.deploy(APPS / "params.py")
    keys = thaw.snapshot_keys()
    listed = thaw.run("snapshot", "ls").stdout
    for params, said in (('{"size": "big"}', 'Loader(...): parameter \'size\' is int, got str "big"'),
                         ('{"blob": "00"}', "Loader(...): parameter 'blob' is bytes, got str"),
                         ('{"size": true}', "Loader(...): parameter 'size' is int, got bool true")):
        cp = thaw.run("call", "e2e-params", "Loader", "--method", "info", "--params", params, check=False)
        assert cp.returncode != 0 and said in cp.stderr, cp.stderr
        assert CREATING not in cp.stderr and COLD not in cp.stderr and RESTORING not in cp.stderr, cp.stderr
    # No snapshot was made for them (it would count toward the cap of the
    # class's handle snapshots and push out good ones).
    assert thaw.snapshot_keys() == keys
    assert thaw.run("snapshot", "ls").stdout == listed
    thaw.assert_containers_gone()


def test_from_name_handles_know_generators(thaw):
    thaw.deploy(APPS / "params.py")
    code = """
import json, thaw
from thaw.exception import InvalidError
f = thaw.Function.from_name("e2e-params", "countdown")
out = {"gen": list(f.remote_gen(3))}
try:
    f.remote(3)
except InvalidError as e:
    out["remote"] = str(e)
g = thaw.Cls.from_name("e2e-params", "Greeter")(name="ab")
out["method_gen"] = list(g.letters.remote_gen())
out["method"] = g.greet.remote()
print(json.dumps(out))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out["gen"] == [3, 2, 1] and "remote_gen" in out["remote"], out
    assert out["method_gen"] == ["a", "b"] and out["method"] == "hello ab!", out
    thaw.assert_containers_gone()


CLOUDPICKLE_CALLER = """
import json, thaw

OFFSET = 100  # a global of this script, which its functions take along


class Celsius:
    def __init__(self, deg):
        self.deg = deg

    def describe(self):
        return f"{self.deg} C is {self.deg * 9 / 5 + 32:g} F"


def scale(k):
    return lambda x: x * k


def shifted(x):
    return x + OFFSET


def main():
    def local(x):
        return -x
    f = lambda name: thaw.Function.from_name("e2e-cloudpickled", name)
    apply = f("apply")
    back = f("echo").remote(Celsius(5))
    out = {
        "lambda": apply.remote(lambda x: x ** 2, 7),
        "closure": apply.remote(scale(3), 5),
        "main_function": apply.remote(shifted, 1),
        "local_function": apply.remote(local, 4),
        "instance": f("describe").remote(Celsius(100)),
        # The same class object comes back, not a copy of it.
        "echoed": [type(back) is Celsius, back.describe()],
        "returned_closure": f("adder").remote(10)(5),
        "generated": [g(2) for g in f("powers").remote_gen(3)],
        "map": list(apply.map([lambda x: x + 1, scale(2)], [10, 10])),
        "starmap": list(apply.starmap([(scale(4), 1), (local, 2)])),
        "spawn": apply.spawn(lambda x: x - 1, 9).get(),
        "method": thaw.Cls.from_name("e2e-cloudpickled", "Runner")().run.remote(
            lambda a, b: [a, b], "x", Celsius(0).describe()),
    }
    print(json.dumps(out))


main()
"""


def test_lambdas_closures_and_the_callers_own_classes_travel_both_ways(thaw):
    # Modal pickles arguments and results with cloudpickle, so code written
    # for it passes such values; plain pickle refuses them (a lambda, a
    # local function) or sends them by a name the container cannot find
    # (Celsius of the caller's __main__).
    thaw.deploy(APPS / "cloudpickled.py")
    script = thaw.tmp / "caller.py"
    script.write_text(CLOUDPICKLE_CALLER)
    cp = subprocess.run([PYTHON, str(script)], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                        text=True, timeout=RUN_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out == {
        "lambda": 49, "closure": 15, "main_function": 101, "local_function": -4,
        "instance": {"text": "100 C is 212 F", "class": "Celsius", "module": "__main__"},
        "echoed": [True, "5 C is 41 F"],
        "returned_closure": 15,
        "generated": [1, 2, 4],
        "map": [11, 20],
        "starmap": [4, -2],
        "spawn": 8,
        "method": ["x", "0 C is 32 F"],
    }, out
    # Through restored containers: the worker's pickling survives the snapshot.
    assert RESTORING in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


SERIALIZED_CALLER = """
import json, thaw
greet = thaw.Function.from_name("e2e-serialized", "greet")
print(json.dumps({"map": list(greet.map(["Ada", "Bob"])), "remote": greet.remote("Cy")}))
"""


def test_serialized_functions_and_classes_made_in_a_function_run_from_snapshots(thaw):
    # Made by a function from what the deploying process holds; containers
    # load the pickled closures (Modal's serialized=True), never the file,
    # which here would make them with another greeting.
    env = dict(thaw.env, E2E_GREETING="Bonjour")
    cp = subprocess.run([str(THAW_BIN), "deploy", str(APPS / "serialized.py")], env=env,
                        cwd=thaw.tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                        timeout=DEPLOY_TIMEOUT)
    thaw.logs.append(cp.stderr)
    assert cp.returncode == 0, cp.stderr
    assert count(cp.stderr, "Memory snapshot created") == 2, cp.stderr

    value, log, _ = thaw.call("e2e-serialized", "greet", "Ada")
    assert value == "Bonjour, Ada!" and RESTORING in log and COLD not in log, (value, log)
    value, log, _ = thaw.call("e2e-serialized", "Phrasebook", "hello", method="say")
    assert value == {"text": "Bonjour", "woke": True} and RESTORING in log and COLD not in log, \
        (value, log)
    # @enter(snap=True) ran once, for the snapshot; the restored container did not run it again.
    assert len((thaw.e2e / "phrasebook-loaded").read_text().split()) == 1

    script = thaw.tmp / "caller.py"
    script.write_text(SERIALIZED_CALLER)
    cp = subprocess.run([PYTHON, str(script)], env=thaw.env, cwd=thaw.tmp, capture_output=True,
                        text=True, timeout=RUN_TIMEOUT)
    thaw.logs.append(cp.stderr)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout.strip().splitlines()[-1]) == {
        "map": ["Bonjour, Ada!", "Bonjour, Bob!"], "remote": "Bonjour, Cy!"}
    assert RESTORING in cp.stderr and COLD not in cp.stderr, cp.stderr
    assert not (thaw.e2e / "imported-in-container").exists()
    thaw.assert_containers_gone()


SERIALIZED_SCRIPT = """
import json, sys
import thaw

if __name__ != "__main__":
    raise SystemExit("a container imported the script: serialized functions come pickled")

app = thaw.App("e2e-serialized-script")


def main(factor):
    @app.function(serialized=True)
    def scale(x):
        return x * factor

    @app.cls(serialized=True)
    class Counter:
        @thaw.enter()
        def start(self):
            self.base = factor * 100

        @thaw.method()
        def add(self, x):
            return self.base + x

    with app.run():
        print(json.dumps({"remote": scale.remote(5), "map": list(scale.map([1, 2, 3])),
                          "spawn": scale.spawn(7).get(), "method": Counter().add.remote(1)}))


main(int(sys.argv[1]))
"""


def test_serialized_functions_of_a_main_script_run_in_its_ephemeral_app(thaw):
    # Defined in a function of a script run as `python script.py`: importing
    # the script cannot define them (it refuses to be imported at all).
    script = thaw.tmp / "script.py"
    script.write_text(SERIALIZED_SCRIPT)
    env = dict(thaw.env, THAW_RUNTIME_SOCKET=str(thaw.serve()))
    outs = []
    for factor in (3, 4):  # run again with the same names: the new definitions run
        cp = subprocess.run([PYTHON, str(script), str(factor)], env=env, cwd=thaw.tmp,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert cp.returncode == 0, cp.stderr + thaw.serve_log()
        outs.append(json.loads(cp.stdout.strip().splitlines()[-1]))
    assert outs == [{"remote": 15, "map": [3, 6, 9], "spawn": 21, "method": 301},
                    {"remote": 20, "map": [4, 8, 12], "spawn": 28, "method": 401}]
    log = thaw.stop_serve()
    assert "imported the script" not in log, log
    thaw.assert_containers_gone()


NOTEBOOK_CELLS = """
import json, os
import thaw as modal

app = modal.App("e2e-notebook")
FACTOR = 6


def helper(x):
    return x * FACTOR


@app.function()
def scale(x):
    return helper(x), open("data.txt").read().strip(), os.getcwd()


@app.cls()
class Counter:
    @modal.enter()
    def start(self):
        self.base = 1000

    @modal.method()
    def add(self, x):
        return self.base + x


with app.run():
    print(json.dumps({"remote": scale.remote(7), "map": [r[0] for r in scale.map([1, 2])],
                      "method": Counter().add.remote(5)}))
"""


@pytest.mark.parametrize("how", ["stdin", "-c"])
def test_an_app_defined_where_there_is_no_file_runs_its_functions_serialized(thaw, how):
    # A notebook's cells, the REPL, `python -c` or a script piped to `python
    # -`: no file for containers to import. As in Modal, its functions and
    # classes are sent themselves (serialized=True implied), and the
    # containers work in the caller's directory (it failed: "app file
    # /cwd/<stdin>: No such file or directory").
    work = thaw.tmp / f"notebook-{how}"
    work.mkdir()
    (work / "data.txt").write_text("from the caller's directory\n")
    env = dict(thaw.env, THAW_RUNTIME_SOCKET=str(thaw.serve()))
    argv, stdin = ([PYTHON, "-"], NOTEBOOK_CELLS) if how == "stdin" else ([PYTHON, "-c", NOTEBOOK_CELLS], "")
    cp = subprocess.run(argv, input=stdin, env=env, cwd=work, capture_output=True, text=True,
                        timeout=RUN_TIMEOUT)
    assert cp.returncode == 0, cp.stderr + thaw.serve_log()
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out == {"remote": [42, "from the caller's directory", str(work)], "map": [6, 12], "method": 1005}, out
    thaw.stop_serve()
    thaw.assert_containers_gone()


SERIALIZED_ENTRYPOINT = """
import thaw

app = thaw.App("e2e-serialized-entry")


@app.local_entrypoint()
def main(n: int = 2):
    @app.function(serialized=True)
    def power(x):
        return x ** n

    print("powers:", list(power.map([1, 2, 3])), power.remote(10))
"""


def test_thaw_run_calls_a_serialized_function_its_entrypoint_makes(thaw):
    app_file = thaw.tmp / "entry.py"
    app_file.write_text(SERIALIZED_ENTRYPOINT)
    cp = thaw.run("run", app_file, "--n", "3", timeout=RUN_TIMEOUT)
    assert "powers: [1, 8, 27] 1000" in cp.stdout, cp.stdout + cp.stderr
    thaw.assert_containers_gone()


def test_generator_values_stream_and_a_gone_consumer_cancels(thaw):
    thaw.deploy(APPS / "stream.py")
    d = thaw.tmp / "stream-handshake"
    d.mkdir()
    code = f"""
import concurrent.futures, json, pathlib, thaw
d = pathlib.Path({str(d)!r})
got = []
for v in thaw.Function.from_name("e2e-stream", "handshake").remote_gen(str(d)):
    got.append(v)
    (d / "got-first").touch()
endless = thaw.Function.from_name("e2e-stream", "endless")
it = endless.remote_gen()
first = [next(it), next(it)]
it.close()
again = concurrent.futures.ThreadPoolExecutor(1).submit(lambda: next(endless.remote_gen()))
print(json.dumps({{"got": got, "first": first, "again": again.result(timeout=90)}}))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out == {"got": ["first", "second"], "first": [0, 1], "again": 0}, out
    # `thaw call` prints a generator's values one per line, as they come.
    (d / "got-first").unlink()
    proc = subprocess.Popen([str(THAW_BIN), "call", "e2e-stream", "handshake", "--args", json.dumps([str(d)])],
                            env=thaw.env, cwd=thaw.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == '"first"'
        (d / "got-first").touch()
        rest, err = proc.communicate(timeout=CALL_TIMEOUT)
    finally:
        proc.kill()
    assert proc.returncode == 0 and rest.strip() == '"second"', rest + err
    thaw.assert_containers_gone()


def test_unknown_method_is_refused_before_any_container_starts(thaw):
    thaw.deploy(APPS / "params.py")
    cp = thaw.run("call", "e2e-params", "Greeter", "--method", "gret", "--params", '{"name": "x"}', check=False)
    assert cp.returncode != 0
    assert "has no @method() named 'gret' (it has: greet, letters)" in cp.stderr, cp.stderr
    assert RESTORING not in cp.stderr and COLD not in cp.stderr, cp.stderr
    # No method at all, likewise.
    cp = thaw.run("call", "e2e-params", "Greeter", "--params", '{"name": "x"}', check=False)
    assert cp.returncode != 0
    assert ("'Greeter' of app 'e2e-params' is a class; the call must name one of its @method()s "
            "(it has: greet, letters); with thaw call: --method NAME") in cp.stderr, cp.stderr
    assert RESTORING not in cp.stderr and COLD not in cp.stderr and CREATING not in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_a_function_called_as_a_class_is_refused_before_any_container_starts(thaw):
    # --method on a function used to start (or restore) a container, whose
    # worker then failed with a traceback of thaw's own code; --params was
    # dropped without a word.
    thaw.deploy(APPS / "plain.py")
    cp = thaw.run("call", "e2e-plain", "square", "--args", "[3]", "--method", "run", check=False)
    assert cp.returncode != 0
    assert ("'square' of app 'e2e-plain' is a function, not a class: it has no method 'run'; call it without "
            "one (with thaw call: drop --method)") in cp.stderr, cp.stderr
    assert "Traceback" not in cp.stderr and RESTORING not in cp.stderr and COLD not in cp.stderr, cp.stderr
    cp = thaw.run("call", "e2e-plain", "square", "--args", "[3]", "--params", '{"size": 2}', check=False)
    assert cp.returncode != 0
    assert "'square' of app 'e2e-plain' is a function, not a class: it takes no class parameters" in cp.stderr
    assert RESTORING not in cp.stderr and COLD not in cp.stderr, cp.stderr
    value, _, _ = thaw.call("e2e-plain", "square", 3)
    assert value["value"] == 9
    thaw.assert_containers_gone()


def test_a_full_disk_under_thaw_home_fails_cleanly_and_says_what_to_do(thaw):
    # THAW_HOME on a tmpfs too small for plain.py's snapshot (~14 MiB),
    # later full: the deploy says the disk is full (not "checkpoint
    # refused"), leaves no partial image or version behind, a cold start
    # once there is room takes the snapshot, and so does a deploy.
    small = thaw.tmp / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(small)], check=True)
    try:
        thaw.home = small / "home"
        thaw.env["THAW_HOME"] = str(thaw.home)
        cp = thaw.deploy(APPS / "plain.py")
        advice = f"the disk holding THAW_HOME ({thaw.home}) is full: free space there"
        assert "memory snapshot of e2e-plain.square could not be written:" in cp.stderr, cp.stderr
        assert advice in cp.stderr, cp.stderr
        assert "square (function): no memory snapshot (no space left under THAW_HOME)" in cp.stdout, cp.stdout
        left = [p.name for k in thaw.snapshot_keys() for p in (thaw.home / "snapshots" / k).iterdir()]
        assert left == ["meta.json"], left
        value, log, _ = thaw.call("e2e-plain", "square", 7)
        assert value["value"] == 49 and COLD in log
        assert "No memory snapshot for e2e-plain.square (creating it failed:" in log and advice in log, log

        with open(small / "fill", "wb") as f:  # the rest of the disk
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        cp = thaw.run("deploy", APPS / "plain.py", check=False, timeout=DEPLOY_TIMEOUT)
        assert cp.returncode != 0
        assert "could not store version 2:" in cp.stderr and advice in cp.stderr, cp.stderr
        assert not (thaw.home / "apps" / "e2e-plain" / "v2").exists()
        history = thaw.run("app", "history", "e2e-plain").stdout
        assert "broken" not in history and "v2" not in history, history

        (small / "fill").unlink()
        subprocess.run(["mount", "-o", "remount,size=200m", str(small)], check=True)
        # With room again, a cold start tries the snapshot again (after a
        # minute by default; at once here), without waiting for a deploy.
        thaw.env["THAW_SNAPSHOT_RETRY_SECONDS"] = "0"
        value, log, _ = thaw.call("e2e-plain", "square", 6)
        assert value["value"] == 36, log
        assert "Trying again to create the memory snapshot of e2e-plain.square (the disk was full)" in log, log
        assert "Memory snapshot created in" in log, log
        value, log, _ = thaw.call("e2e-plain", "square", 5)
        assert value["value"] == 25 and RESTORING in log, log
        del thaw.env["THAW_SNAPSHOT_RETRY_SECONDS"]
        cp = thaw.deploy(APPS / "plain.py")  # the snapshot the cold start made serves it
        assert "Deployed app e2e-plain version 2." in cp.stdout and "is up to date" in cp.stderr, cp.stderr
        value, log, _ = thaw.call("e2e-plain", "square", 8)
        assert value["value"] == 64 and RESTORING in log, log
    finally:
        thaw.cleanup()
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_snapshot_image_without_its_record_is_made_again(thaw):
    # meta.json holds the CPU flags a restore is checked against and whose
    # snapshot it is (for retiring it): an image without one (a creator
    # that died between the two, before the record went first) is made
    # again, not restored unchecked and left unowned.
    thaw.deploy(APPS / "plain.py")
    [key] = thaw.snapshot_keys()
    (thaw.home / "snapshots" / key / "meta.json").unlink()
    value, log, _ = thaw.call("e2e-plain", "square", 5)
    assert value["value"] == 25
    assert CREATING in log and RESTORING in log, log
    meta = thaw.meta(key)
    assert meta["app"] == "e2e-plain" and meta["function"] == "square" and meta["cpu_flags"], meta
    listing = thaw.run("snapshot", "ls").stdout
    assert "e2e-plain.square" in listing and "?.?" not in listing, listing


def test_snapshot_rm_needs_a_key(thaw):
    # An empty "prefix" matched every key, so with one snapshot in the store
    # `thaw snapshot rm "$KEY"` (KEY unset) removed it.
    thaw.deploy(APPS / "plain.py")
    [key] = thaw.snapshot_keys()
    for bad in ("", "E2E-PLAIN", "../x"):
        cp = thaw.run("snapshot", "rm", bad, check=False)
        assert cp.returncode != 0 and f"'{bad}' is not a snapshot key" in cp.stderr, cp.stderr
    assert thaw.snapshot_keys() == [key]
    cp = thaw.run("snapshot", "rm", key[:6])
    assert f"Removed snapshot {key}." in cp.stdout
    assert thaw.snapshot_keys() == []


def test_a_changed_sdk_gives_a_new_snapshot(thaw):
    # The worker loop (thaw's Python package) is in every snapshot's memory:
    # a snapshot made with other SDK code must not be restored.
    sdk = thaw.tmp / "sdk"
    shutil.copytree(REPO / "python" / "thaw", sdk / "thaw", ignore=shutil.ignore_patterns("__pycache__"))
    thaw.env["THAW_PYTHONPATH"] = str(sdk)
    thaw.deploy(APPS / "plain.py")
    [old] = thaw.snapshot_keys()
    cp = thaw.deploy(APPS / "plain.py")
    assert "Memory snapshot for Function is up to date." in cp.stderr
    with open(sdk / "thaw" / "_worker.py", "a") as f:
        f.write("\n# a newer worker\n")
    cp = thaw.deploy(APPS / "plain.py")
    assert CREATING in cp.stderr and f"Retired memory snapshot {old[:12]}" in cp.stderr, cp.stderr
    [new] = thaw.snapshot_keys()
    assert new != old
    value, log, _ = thaw.call("e2e-plain", "square", 4)
    assert value["value"] == 16 and RESTORING in log


def test_single_use_containers_serve_one_input_each(thaw):
    cp = thaw.deploy(APPS / "single_use.py")
    assert "max_inputs= is deprecated" in cp.stderr, cp.stderr
    code = """
import json, thaw
once = thaw.Function.from_name("e2e-single-use", "once")
twice = thaw.Function.from_name("e2e-single-use", "twice")
print(json.dumps({"once": [once.remote(i) for i in range(3)], "twice": [twice.remote(i) for i in range(4)]}))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert len(set(out["once"])) == 3, out
    a, b, c, d = out["twice"]
    assert a == b and c == d and a != c, out
    # Every container came from the snapshot, and each was stopped after its inputs.
    assert cp.stderr.count(RESTORING) == 5, cp.stderr
    assert cp.stderr.count("it has served its max_inputs=1") == 3, cp.stderr
    thaw.assert_containers_gone()


def test_scheduled_functions_run_while_serve_runs(thaw):
    cp = thaw.deploy(APPS / "scheduled.py")
    assert "tick: runs on Period(seconds=1) while `thaw serve` runs" in cp.stdout, cp.stdout
    ticks = thaw.e2e / "ticks"
    assert not ticks.exists()  # deploying runs nothing
    thaw.serve()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not ticks.exists() or len(ticks.read_text().split()) < 3):
        time.sleep(0.2)
    log = thaw.stop_serve()
    runs = ticks.read_text().split() if ticks.exists() else []
    assert len(runs) >= 3, log
    assert "Scheduled e2e-scheduled.tick: Period(seconds=1); first run at" in log, log
    first = re.search(r"Scheduled e2e-scheduled.weekly: Cron\('0 3 \* \* mon', timezone='America/New_York'\); "
                      r"first run at (\d+-\d+-\d+ \d+:\d+):00 UTC \(03:00 America/New_York\)", log)
    assert first, log
    # A Monday, 03:00 New York time.
    when = datetime.datetime.strptime(first.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=datetime.timezone.utc)
    local = when.astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert (local.weekday(), local.hour, local.minute) == (0, 3, 0), (when, local)
    assert "Scheduled run of e2e-scheduled.tick finished in" in log and RESTORING in log, log
    # One run at a time: never two at once, so the runs are apart.
    assert all(float(b) > float(a) for a, b in zip(runs, runs[1:])), runs
    thaw.assert_containers_gone()


def test_a_schedule_thaw_cannot_run_fails_the_deploy(thaw):
    app = thaw.tmp / "bad_schedule.py"
    app.write_text("import thaw\napp = thaw.App('e2e-bad-schedule')\n\n"
                   "@app.function(schedule=thaw.Cron('61 * * * *'))\ndef f():\n    pass\n")
    cp = thaw.run("deploy", app, check=False)
    assert cp.returncode != 0
    assert "the minute field '61': 61 is outside 0-59" in cp.stderr, cp.stderr
    app.write_text(app.read_text().replace("61 * * * *", "0 0 30 2 *"))  # 30 February
    cp = thaw.run("deploy", app, check=False)
    assert cp.returncode != 0 and "matches no minute in the next five years" in cp.stderr, cp.stderr
    assert thaw.run("app", "ls").stdout.count("e2e-bad-schedule") == 0


def test_dict_and_queue_are_shared_with_containers(thaw):
    thaw.deploy(APPS / "shared_state.py")
    code = """
import json, thaw, time
record = thaw.Function.from_name("e2e-shared-state", "record")
call = thaw.Function.from_name("e2e-shared-state", "square_jobs").spawn(3)
thaw.Queue.from_name("e2e-jobs", create_if_missing=True).put_many([2, 3, 4])
seen = [record.remote("a"), record.remote("a"), record.remote("b")]
done = call.get(timeout=90)
squares = sorted(thaw.Queue.from_name("e2e-results").get_many(3, timeout=30))
woken = thaw.Function.from_name("e2e-shared-state", "take_when_woken").spawn()
time.sleep(2)  # for it to wait, past its first look
thaw.Queue.from_name("e2e-wake", create_if_missing=True).put("wake")
print(json.dumps({"seen": seen, "done": done, "squares": squares, "woken": woken.get(timeout=60),
                  "counts": dict(thaw.Dict.from_name("e2e-counts").items())}))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out == {"seen": [1, 2, 1], "done": "done", "squares": [4, 9, 16], "woken": "wake",
                   "counts": {"a": 2, "b": 1}}, out
    assert RESTORING in cp.stderr and FALLBACK not in cp.stderr, cp.stderr
    thaw.assert_containers_gone()


def test_a_slow_generator_consumer_does_not_hold_up_the_container(thaw):
    thaw.deploy(APPS / "stream.py")
    code = """
import json, thaw
busy = thaw.Cls.from_name("e2e-stream", "Busy")()
it = busy.big.remote_gen(40)
first = next(it)
# The generator's other 39 MiB are on their way; the same container (the
# only one) must still answer another call before this one reads on.
pong = busy.ping.remote()
rest = sum(1 for _ in it)
print(json.dumps({"first": len(first), "pong": pong, "rest": rest}))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert out == {"first": 1 << 20, "pong": "pong", "rest": 39}, out
    thaw.assert_containers_gone()


def test_single_use_containers_are_replaced_to_keep_min_containers(thaw):
    thaw.deploy(APPS / "single_use.py")
    sock = thaw.serve()
    ready = re.compile(r"Container (\w+) of e2e-single-use\.kept is ready \(min_containers=1\)")
    first = thaw.client("import json, thaw\n"
                        "print(json.dumps(thaw.Function.from_name('e2e-single-use', 'kept').remote(0)))", sock)
    deadline = time.monotonic() + 60
    # The warm container served the input and stopped; another one is started to keep min_containers.
    while time.monotonic() < deadline and not ready.search(thaw.serve_log()):
        time.sleep(0.1)
    log = thaw.stop_serve()
    assert f"Stopping container {first} of e2e-single-use.kept: it has served its max_inputs=1." in log, log
    assert ready.search(log), log
    thaw.assert_containers_gone()


def test_a_burst_of_map_inputs_fills_concurrent_containers(thaw):
    thaw.deploy(APPS / "concurrent_map.py")
    code = """
import json, thaw
print(json.dumps(list(thaw.Function.from_name("e2e-concurrent-map", "where").map(range(6)))))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    ids = json.loads(cp.stdout.strip().splitlines()[-1])
    # Six inputs arriving at once, three per container: two containers, not six.
    assert len(ids) == 6 and len(set(ids)) <= 2, ids
    thaw.assert_containers_gone()


def test_batched_inputs_reach_the_function_as_lists(thaw):
    cp = thaw.deploy(APPS / "batched.py")
    assert "batch of one" not in cp.stderr, cp.stderr
    code = """
import json, thaw
add = thaw.Function.from_name("e2e-batched", "add")
sums = list(add.starmap([(i, 100 * i) for i in range(8)]))
short = thaw.Function.from_name("e2e-batched", "short")
errors = []
for call in [short.spawn(1), short.spawn(xs=2)]:
    try:
        call.get()
        errors.append(None)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
Scaler = thaw.Cls.from_name("e2e-batched", "Scaler")
scaled = list(Scaler(factor=3).scale.map([1, 2, 3, 4]))
lone = Scaler().scale.remote(5)
print(json.dumps({"sums": sums, "errors": errors, "scaled": scaled, "lone": lone}))
"""
    cp = subprocess.run([PYTHON, "-c", code], env=thaw.env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout.strip().splitlines()[-1])
    assert [r["sum"] for r in out["sums"]] == [101 * i for i in range(8)], out
    # Eight inputs for one container taking four at a time, gathered for up
    # to 3 s: batches of at most four, and full ones among them.
    sizes = [r["batch"] for r in out["sums"]]
    assert max(sizes) == 4 and all(1 <= s <= 4 for s in sizes), sizes
    assert len({r["pid"] for r in out["sums"]}) == 1, out["sums"]
    assert all(e and "returned 1 outputs for a batch of" in e for e in out["errors"]), out["errors"]
    assert [v for v, _ in out["scaled"]] == [3, 6, 9, 12], out
    assert all(1 <= n <= 3 for _, n in out["scaled"]), out
    assert out["lone"] == [5, 1], out
    thaw.assert_containers_gone()


def test_spawned_results_are_read_by_id_from_other_processes(thaw):
    thaw.deploy(APPS / "jobs.py")
    sock = thaw.serve()
    go = thaw.tmp / "go"
    ids = thaw.client(f"""
import json, thaw
job = thaw.Function.from_name("e2e-jobs", "job")
failing = thaw.Function.from_name("e2e-jobs", "failing_job")
print(json.dumps([job.spawn(21, {str(go)!r}).object_id, failing.spawn().object_id]))
""", sock)
    assert all(i.startswith("fc-") for i in ids), ids
    # Another process, the spawner gone: not ready, then ready once let go.
    out = thaw.client(f"""
import json, pathlib, thaw
from thaw.exception import NotFoundError
job = thaw.FunctionCall.from_id({ids[0]!r})
try:
    job.get(timeout=0)
    early = "ready"
except TimeoutError as e:
    early = str(e)
pathlib.Path({str(go)!r}).touch()
value = job.get()
try:
    thaw.FunctionCall.from_id({ids[1]!r}).get(timeout=60)
    failed = None
except ValueError as e:
    failed = str(e)
try:
    thaw.FunctionCall.from_id("fc-0123456789abcdef01234567").get()
    missing = None
except NotFoundError as e:
    missing = str(e)
print(json.dumps({{"early": early, "value": value, "failed": failed, "missing": missing}}))
""", sock)
    assert "no result within 0 s" in out["early"], out
    assert out["value"] == 42 and out["failed"] == "the job failed on purpose", out
    assert "never spawned" in out["missing"], out
    # A process with a runtime of its own (no socket) reads the kept result.
    env = {k: v for k, v in thaw.env.items() if k != "THAW_RUNTIME_SOCKET"}
    cp = subprocess.run([PYTHON, "-c", f"import thaw; print(thaw.FunctionCall.from_id({ids[0]!r}).get())"],
                        env=env, cwd=thaw.tmp, capture_output=True, text=True, timeout=CALL_TIMEOUT)
    assert cp.returncode == 0 and cp.stdout.strip() == "42", cp.stderr
    thaw.stop_serve()
    thaw.assert_containers_gone()


# Client code: cancel `call`, then read what get() says (None: a result).
CANCEL_AND_GET = """
call.cancel()
try:
    call.get(timeout=30)
    err = None
except thaw.exception.ExecutionError as e:
    err = str(e)
"""


def spawn_running_job(thaw, sock, go):
    """Spawns e2e-jobs.job (it runs until `go` exists) from a client that
    then exits; returns its FunctionCall id once the job has started."""
    call_id = thaw.client(f"""
import json, thaw
print(json.dumps(thaw.Function.from_name("e2e-jobs", "job").spawn(1, {str(go)!r}).object_id))
""", sock)
    started = Path(str(go) + ".started")
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, f"the job never started:\n{thaw.serve_log()}"
        time.sleep(0.05)
    return call_id


def test_cancelled_calls_stop_and_say_so(thaw):
    thaw.deploy(APPS / "jobs.py")
    sock = thaw.serve()
    go = thaw.tmp / "go"
    # A call cancelled by another process while it runs.
    call_id = spawn_running_job(thaw, sock, go)
    out = thaw.client(f"""
import json, thaw
call = thaw.FunctionCall.from_id({call_id!r})
{CANCEL_AND_GET}
print(json.dumps(err))
""", sock)
    assert out and "cancelled" in out, out
    # Its container is stopped (in the background): the job never finishes.
    (container,) = re.findall(r"\(container ([0-9a-f]{12})", thaw.serve_log())
    deadline = time.monotonic() + 30
    while (Path("/sys/fs/cgroup/freezer/thaw") / container).exists():
        assert time.monotonic() < deadline, f"container {container} still runs:\n{thaw.serve_log()}"
        time.sleep(0.1)
    go.touch()
    time.sleep(1.0)
    assert not (thaw.tmp / "go.finished").exists(), thaw.serve_log()
    # The spawner cancels its own call; cancelling a finished call is a no-op.
    go2 = thaw.tmp / "go2"
    out = thaw.client(f"""
import json, pathlib, thaw
job = thaw.Function.from_name("e2e-jobs", "job")
call = job.spawn(2, {str(go2)!r})
{CANCEL_AND_GET}
pathlib.Path({str(go2)!r}).touch()
done = job.spawn(3, {str(go2)!r})
value = done.get(timeout=60)
done.cancel()
print(json.dumps({{"err": err, "value": value, "again": done.get()}}))
""", sock)
    assert "cancelled" in out["err"] and out["value"] == 6 and out["again"] == 6, out
    thaw.stop_serve()
    thaw.assert_containers_gone()


def test_a_spawned_call_whose_runtime_stopped_is_reported_lost(thaw):
    thaw.deploy(APPS / "jobs.py")
    sock = thaw.serve()
    call_id = spawn_running_job(thaw, sock, thaw.tmp / "never")
    # The runtime crashes while the call runs.
    thaw.serving.kill()
    thaw.serving.wait()
    thaw.serving = None
    env = {k: v for k, v in thaw.env.items() if k != "THAW_RUNTIME_SOCKET"}
    code = f"""
import thaw
try:
    thaw.FunctionCall.from_id({call_id!r}).get(timeout=60)
except Exception as e:
    print(type(e).__name__, e)
"""
    cp = subprocess.run([PYTHON, "-c", code], env=env, cwd=thaw.tmp, capture_output=True, text=True,
                        timeout=CALL_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("ExecutionError") and "(e2e-jobs.job) was lost" in cp.stdout, cp.stdout
    # Not only "use thaw serve": a thaw serve that was killed loses calls too.
    assert "(it was stopped or killed; the runtime the SDK starts for a script ends with that script)" \
        in cp.stdout, cp.stdout
    # The container does not run on without its runtime: its worker leaves
    # (the input's result has nowhere to go), and the restore shells with it.
    def ours():
        found = []
        for d in Path("/proc").iterdir():
            try:
                if d.name.isdigit() and str(thaw.tmp).encode() in (d / "cmdline").read_bytes():
                    found.append(d.name)
            except OSError:
                pass
        return found
    deadline = time.monotonic() + 30
    while ours() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ours(), "processes of the crashed runtime live on"


def test_class_handles_with_other_settings(thaw):
    thaw.deploy(APPS / "options.py")
    sock = thaw.serve()
    out = thaw.client("""
import json, thaw
from thaw.exception import FunctionTimeoutError
Probe = thaw.Cls.from_name("e2e-options", "Probe")
plain = Probe().info.remote()
sweet = Probe.with_options(env={"FLAVOUR": "sweet"})().info.remote()
try:
    Probe.with_options(timeout=1)().info.remote(3)
    timed_out = None
except FunctionTimeoutError as e:
    timed_out = str(e)
wide = list(Probe.with_concurrency(max_inputs=3)().info.map([1.0] * 3))
narrow = list(Probe().info.map([0.2] * 3))
print(json.dumps({"plain": plain, "sweet": sweet, "timed_out": timed_out, "wide": wide,
                  "narrow": narrow}))
""", sock)
    assert out["plain"]["flavour"] is None and out["plain"]["snap_flavour"] is None, out
    # env= reaches the snapshot phase too: that handle has a snapshot of its own.
    assert out["sweet"]["flavour"] == "sweet" and out["sweet"]["snap_flavour"] == "sweet", out
    assert out["sweet"]["container"] != out["plain"]["container"], out
    assert "exceeded its timeout of 1" in out["timed_out"], out
    # max_containers=1: three inputs at once in one container with
    # with_concurrency(max_inputs=3), one at a time without.
    assert len({r["container"] for r in out["wide"]}) == 1, out["wide"]
    assert max(r["at_once"] for r in out["wide"]) == 3, out["wide"]
    assert max(r["at_once"] for r in out["narrow"]) == 1, out["narrow"]
    log = thaw.stop_serve()
    # One snapshot made while serving, for env=; timeout and concurrency
    # handles restore from the deployed one.
    assert log.count("Creating memory snapshot") == 1, log
    assert COLD not in log and FALLBACK not in log, log
    assert len(thaw.snapshot_keys()) == 2  # the deployed one and the env= handle's
    cp = thaw.run("app", "stop", "e2e-options")
    assert "a handle's" in cp.stderr, cp.stderr
    assert thaw.snapshot_keys() == [], thaw.snapshot_keys()
    thaw.assert_containers_gone()


def test_handle_snapshots_are_capped_per_function(thaw):
    thaw.deploy(APPS / "options.py")
    thaw.env["THAW_MAX_HANDLE_SNAPSHOTS"] = "2"
    sock = thaw.serve()
    out = thaw.client("""
import json, thaw
Probe = thaw.Cls.from_name("e2e-options", "Probe")
got = [Probe.with_options(env={"FLAVOUR": f})().info.remote()["snap_flavour"]
       for f in ("a", "b", "c", "b", "d")]
print(json.dumps(got))
""", sock)
    # Each env gets a snapshot of its own, made with it.
    assert out == ["a", "b", "c", "b", "d"], out
    log = thaw.stop_serve()
    made = re.findall(r"1 threads; key (\w+)\)", log)
    assert len(made) == 4, log   # a, b, c, d
    # At most 2 per function: c's removed a's, the least recently called;
    # d's removed c's, since b was called after c.
    removed = re.findall(r"Removed memory snapshot (\w+) of a handle of e2e-options\.Probe, the least recently used", log)
    assert removed == [made[0], made[2]], log
    assert len(thaw.snapshot_keys()) == 3, thaw.snapshot_keys()  # the deployed one and b's and d's
    listed = thaw.run("snapshot", "ls").stdout
    handles = [line.split()[0] for line in listed.splitlines() if "a with_options handle's" in line]
    assert sorted(handles) == sorted([made[1], made[3]]), listed
    assert FALLBACK not in log and COLD not in log, log
    thaw.assert_containers_gone()


def test_one_serve_per_socket_and_one_runs_the_schedules(thaw):
    thaw.deploy(APPS / "scheduled.py")
    sock = thaw.serve()
    cp = thaw.run("serve", "--socket", sock, check=False, timeout=30)
    assert cp.returncode != 0 and "another thaw runtime is listening on" in cp.stderr, cp.stderr
    log2 = thaw.tmp / "serve2.log"
    with open(log2, "w") as f:
        second = subprocess.Popen([str(THAW_BIN), "serve", "--socket", str(thaw.tmp / "second.sock")],
                                  env=thaw.env, stdin=subprocess.DEVNULL, stdout=f, stderr=f)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "runs the schedules" not in log2.read_text():
            time.sleep(0.1)
        time.sleep(3)  # a few ticks of both
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    text = log2.read_text()
    assert os.path.exists(sock), "the first serve's socket must stay while it runs"
    log = thaw.stop_serve()
    assert "Another `thaw serve` of this store runs the schedules" in text, text
    assert "Scheduled run of" not in text, text
    assert "Scheduled run of e2e-scheduled.tick" in log, log


def test_min_containers_of_a_version_deployed_while_serving(thaw):
    thaw.serve()
    thaw.deploy(APPS / "single_use.py")
    deadline = time.monotonic() + 60
    warm = "Restoring Function from memory snapshot. (e2e-single-use.kept)"
    while time.monotonic() < deadline and warm not in thaw.serve_log():
        time.sleep(0.2)
    log = thaw.stop_serve()
    assert warm in log, log
    thaw.assert_containers_gone()


TEMPLATE = "a copy of the live template"
TEMPLATE_CLIENT = """
import json, thaw
f = thaw.Function.from_name("e2e-template", "probe")
calls = [f.spawn(t) for t in ("a", "b")]
print(json.dumps([c.get() for c in calls]))
"""


def wait_for_log(thaw, text, timeout=60):
    deadline = time.monotonic() + timeout
    while text not in thaw.serve_log():
        if thaw.serving.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no {text!r} in the runtime log:\n{thaw.serve_log()}")
        time.sleep(0.05)


def test_serve_restores_copies_of_a_live_template(thaw):
    """`thaw serve` keeps each snapshot restored and held by its restore
    shell; containers are copies of it that behave as restored ones."""
    thaw.deploy(APPS / "live_template.py")
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    results = thaw.client(TEMPLATE_CLIENT, sock)
    log = thaw.stop_serve()
    assert count(log, RESTORING) == 2 and count(log, TEMPLATE) == 2, log
    assert COLD not in log and FALLBACK not in log and "reads the image" not in log, log
    a, b = results
    for r in results:
        assert r["pid"] == r["snap"]["pid"] == 2, r  # the image's pid, in the container's namespace
        assert r["ppid"] == 1 and r["sid"] == r["pid"], r  # its init's child, a session of its own
        assert r["cwd"] == r["snap"]["cwd"] and r["blob_ok"] and not r["maps_have_thaw"], r
        assert r["fds"] == [0, 1, 2, 3], r  # the control channel, no fd of the template's
    assert a["container"] != b["container"] and a["random"] != b["random"]
    vol = thaw.home / "volumes" / "e2e-template"
    assert (vol / "a.txt").read_text() == a["container"]  # its mount namespace has the Volume
    assert (vol / "b.txt").read_text() == b["container"]
    thaw.assert_containers_gone()


def test_a_copy_of_the_live_template_exits_with_its_own_status(thaw):
    thaw.deploy(APPS / "live_template.py")
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    out = thaw.client("""
import json, thaw
try:
    thaw.Function.from_name("e2e-template", "die").remote(7)
    print(json.dumps("returned"))
except Exception as e:
    print(json.dumps(str(e)))
""", sock)
    log = thaw.stop_serve()
    assert TEMPLATE in log, log
    assert "exited (status 7)" in out or "exited (status 7)" in log, (out, log)
    thaw.assert_containers_gone()


def test_serve_without_templates_restores_from_the_image(thaw):
    thaw.deploy(APPS / "live_template.py")
    path = thaw.tmp / "runtime.sock"
    log = open(thaw.tmp / "serve.log", "w")
    thaw.serving = subprocess.Popen([str(THAW_BIN), "serve", "--socket", str(path), "--no-template"],
                                    env=thaw.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
    log.close()
    deadline = time.monotonic() + 30
    while not path.exists():
        assert thaw.serving.poll() is None and time.monotonic() < deadline, thaw.serve_log()
        time.sleep(0.05)
    results = thaw.client(TEMPLATE_CLIENT, path)
    log = thaw.stop_serve()
    assert count(log, RESTORING) == 2 and TEMPLATE not in log and "Live template" not in log, log
    assert all(r["pid"] == 2 for r in results)
    thaw.assert_containers_gone()


def test_a_file_changed_after_the_live_template_was_made_never_reaches_a_copy(thaw):
    (thaw.e2e / "data.bin").write_bytes(b"old!" * 1024)
    thaw.deploy(APPS / "mapped_file.py")
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    (thaw.e2e / "data.bin").unlink()
    (thaw.e2e / "data.bin").write_bytes(b"new!" * 2048)
    out = thaw.client("""
import json, thaw
print(json.dumps(thaw.Function.from_name("e2e-mapped", "first_bytes").remote()))
""", sock)
    log = thaw.stop_serve()
    assert "restore from the live template failed" in log and "data.bin" in log, log
    assert FALLBACK in log, log  # the image's restore refuses it too; the snapshot is recreated
    assert out == {"mapped": "new!", "size": 8192}, out
    thaw.assert_containers_gone()


def test_a_copy_of_a_multithreaded_snapshot_keeps_its_tids(thaw):
    """pids.py's snapshot has a helper thread: the template holds the main
    thread only, each copy makes the helper anew with its tid."""
    thaw.deploy(APPS / "pids.py")
    sock = thaw.serve()
    wait_for_log(thaw, "Live template of snapshot")
    value = thaw.client("""
import json, thaw
print(json.dumps(thaw.Cls.from_name("e2e-pids", "Ids")().ids.remote()))
""", sock)
    log = thaw.stop_serve()
    assert TEMPLATE in log and FALLBACK not in log, log
    snap, now = value["snap"], value["now"]
    assert now["pid"] == snap["pid"] == 2 and now["main_tid"] == snap["main_tid"], value
    assert now["helper_tid"] == snap["helper_tid"] and now["pthread_kill"] == "ok", value
    thaw.assert_containers_gone()



def test_gpu_restore_settings_reach_the_restore_shells(thaw):
    """The restore shells restore on the runtime's behalf with a clean
    environment, except the GPU restore's settings (THAW_GPU_*, THAW_LIBCUDA):
    `THAW_GPU_LAZY=1 thaw serve` must reach the engine there."""
    thaw.deploy(APPS / "plain.py")
    thaw.env.update({"THAW_GPU_LAZY": "1", "THAW_GPU_CALL_TIMEOUT": "7"})
    thaw.serve()
    deadline = time.monotonic() + 60
    shells = []
    while not shells:
        assert time.monotonic() < deadline, f"no restore shell started:\n{thaw.serve_log()}"
        time.sleep(0.1)
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                if b"__restore-shell" in cmd and any(str(thaw.home).encode() in c for c in cmd):
                    shells.append(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
            except OSError:
                pass
    env = shells[0]
    assert b"THAW_GPU_LAZY=1" in env and b"THAW_GPU_CALL_TIMEOUT=7" in env, env
    assert not any(e.startswith(b"E2E_DIR=") or e.startswith(b"THAW_HOME=") for e in env), env
    thaw.stop_serve()

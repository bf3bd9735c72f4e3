"""End-to-end tests of Modal API pieces on the real runtime:
Function.get_current_stats(), App.lookup(), read-only volumes of
with_options handles, Image.add_local_file/dir, thaw.experimental's
stop_fetching_inputs(), and the sweep of serialized functions' pickles.

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e/test_modal_api.py
"""

import json
import os
import subprocess
import time

from test_functions import (APPS, COLD, FALLBACK, PYTHON, RESTORING, RUN_TIMEOUT, SERIALIZED_ENTRYPOINT,
                            SERIALIZED_SCRIPT, THAW_BIN, thaw)  # noqa: F401 - the fixture


def pickles(thaw):  # noqa: F811 - the fixture from test_functions
    d = thaw.home / "serialized"
    return sorted(p.name for p in d.glob("*.pkl")) if d.exists() else []


def test_stats_count_queued_inputs_and_containers_and_lookup_finds_the_app(thaw):  # noqa: F811
    thaw.deploy(APPS / "stats.py")
    sock = thaw.serve()
    out = thaw.client("""
import json, time, thaw
from thaw.exception import NotFoundError

def stats(f):
    s = f.get_current_stats()
    return [s.backlog, s.num_total_runners]

slow = thaw.Function.from_name("e2e-stats", "slow")
before = stats(slow)
calls = [slow.spawn(2) for _ in range(3)]
seen = []
deadline = time.monotonic() + 60
while time.monotonic() < deadline and (not seen or seen[-1] != [2, 1]):
    seen.append(stats(slow))
    time.sleep(0.05)
hosts = [c.get() for c in calls]
after = stats(slow)
deadline = time.monotonic() + 30
while time.monotonic() < deadline and stats(slow) != [0, 0]:
    time.sleep(0.2)
scaled_down = stats(slow)
errors = []
for f in (thaw.Function.from_name("e2e-stats", "nothing"), thaw.Function.from_name("e2e-none", "slow")):
    try:
        f.get_current_stats()
        errors.append(None)
    except NotFoundError as e:
        errors.append(str(e))

app = thaw.App.lookup("e2e-stats")
looked_up = {"functions": sorted(app.registered_functions), "classes": sorted(app.registered_classes),
             "hello": app.registered_classes["Greeter"]().hello.remote("Ada"),
             "slow": isinstance(app.registered_functions["slow"].remote(0), str)}
try:
    thaw.App.lookup("e2e-none")
    missing = None
except NotFoundError as e:
    missing = str(e)
empty = thaw.App.lookup("e2e-none", create_if_missing=True)
print(json.dumps({"before": before, "seen": seen[-1], "hosts": len(set(hosts)), "after": after,
                  "scaled_down": scaled_down, "errors": errors, "looked_up": looked_up,
                  "missing": missing, "empty": [empty.name, len(empty.registered_functions)]}))
""", sock)
    assert out["before"] == [0, 0], out
    # max_containers=1: one input runs, two wait.
    assert out["seen"] == [2, 1] and out["hosts"] == 1, out
    assert out["after"] == [0, 1], out  # idle, until its scaledown_window passes
    assert out["scaled_down"] == [0, 0], out
    assert "has no function or class 'nothing'" in out["errors"][0], out
    assert "app 'e2e-none' is not deployed" in out["errors"][1], out
    assert out["looked_up"] == {"functions": ["slow"], "classes": ["Greeter"], "hello": "hello Ada",
                                "slow": True}, out
    assert "e2e-none" in out["missing"] and "create_if_missing=True" in out["missing"], out
    assert out["empty"] == ["e2e-none", 0], out
    thaw.stop_serve()
    thaw.run("app", "stop", "e2e-stats")
    stopped = thaw.client("""
import json, thaw
from thaw.exception import NotFoundError
try:
    thaw.App.lookup("e2e-stats")
    print(json.dumps(None))
except NotFoundError as e:
    print(json.dumps(str(e)))
""", thaw.serve())
    assert "is stopped" in stopped, stopped
    thaw.stop_serve()
    thaw.assert_containers_gone()


def test_a_handle_mounts_a_read_only_volume_read_only(thaw):  # noqa: F811
    thaw.deploy(APPS / "volume_handles.py")
    sock = thaw.serve()
    out = thaw.client("""
import json, os, thaw
mnt = os.path.join(os.environ["E2E_DIR"], "mnt", "data")
Writer = thaw.Cls.from_name("e2e-volume-handles", "Writer")
vol = thaw.Volume.from_name("e2e-handle-vol")
read_only = Writer.with_options(volumes={mnt: vol.read_only()})
print(json.dumps({"rw": Writer().write.remote("a"), "ro": read_only().write.remote("b"),
                  "ro_again": read_only().write.remote("c"),
                  "rw_handle": Writer.with_options(volumes={mnt: vol})().write.remote("d")}))
""", sock)
    assert out["rw"] == {"refused": None, "files": ["a"]}, out
    assert out["ro"] == {"refused": "EROFS", "files": ["a"]}, out
    assert out["ro_again"] == out["ro"], out
    assert out["rw_handle"] == {"refused": None, "files": ["a", "d"]}, out
    log = thaw.stop_serve()
    # The read-only handle and the read-write one each have a snapshot of their own.
    assert log.count("Creating memory snapshot") == 2, log
    assert RESTORING in log and COLD not in log and FALLBACK not in log, log
    thaw.assert_containers_gone()


def test_local_files_and_dirs_are_where_the_image_puts_them(thaw):  # noqa: F811
    src = thaw.e2e / "local-src"
    (src / "data").mkdir(parents=True)
    (src / "settings.txt").write_text("level=3\n")
    (src / "data" / "x.txt").write_text("x")
    (src / "data" / "y.txt").write_text("y")
    thaw.deploy(APPS / "local_files.py")
    want = {"settings": "level=3\n", "data": ["x.txt", "y.txt"], "refused": "EROFS"}
    value, log, _ = thaw.call("e2e-local-files", "read")
    assert value == want and RESTORING in log and FALLBACK not in log, log
    value, log, _ = thaw.call("e2e-local-files", "read", cold=True)
    assert value == want and COLD in log, log
    # And in copies of a live template (thaw serve).
    out = thaw.client("""
import json, thaw
print(json.dumps(thaw.Function.from_name("e2e-local-files", "read").remote()))
""", thaw.serve())
    assert out == want, out
    log = thaw.stop_serve()
    assert RESTORING in log and COLD not in log and FALLBACK not in log, log
    # The host keeps its own (the mount points made for them, empty), and
    # the local copy was not written to.
    assert (thaw.e2e / "remote" / "etc" / "settings.txt").read_text() == ""
    assert sorted(os.listdir(src / "data")) == ["x.txt", "y.txt"]
    thaw.assert_containers_gone()


HIDING_APP = """
import os, thaw
image = thaw.Image.debian_slim().add_local_dir(os.environ["E2E_DIR"], {where!r})
app = thaw.App("e2e-hiding", image=image)

@app.function()
def f():
    return 1
"""


def test_a_local_dir_that_would_hide_what_containers_need_is_refused(thaw):  # noqa: F811
    app_file = thaw.tmp / "hiding.py"
    app_file.write_text(HIDING_APP.format(where=str(thaw.tmp)))  # holds THAW_HOME and the app
    thaw.deploy(app_file)
    cp = thaw.run("call", "e2e-hiding", "f", check=False)
    assert cp.returncode != 0, cp.stdout
    assert f"binding it at {thaw.tmp} would hide {thaw.home}" in cp.stderr, cp.stderr
    assert "choose a remote_path outside it" in cp.stderr, cp.stderr


def test_stop_fetching_inputs_retires_the_container_gracefully(thaw):  # noqa: F811
    thaw.deploy(APPS / "stop_fetching.py")
    sock = thaw.serve()
    out = thaw.client("""
import json, thaw
W = thaw.Cls.from_name("e2e-stop-fetching", "Worker")
print(json.dumps([W().work.remote(stop) for stop in (False, False, True, False)]))
""", sock)
    first, second, stopping, after = out
    assert first["container"] == second["container"] == stopping["container"], out
    assert after["container"] != stopping["container"], out
    assert {r["concurrency"] for r in out} == {1}, out
    gone = stopping["container"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and gone not in thaw.trace("exits"):
        time.sleep(0.1)
    assert gone in thaw.trace("exits"), thaw.serve_log()  # its @exit ran
    log = thaw.stop_serve()
    assert f"Stopping container {gone} of e2e-stop-fetching.Worker: its code called stop_fetching_inputs()." \
        in log, log
    thaw.assert_containers_gone()


def test_thaw_run_leaves_no_serialized_pickles(thaw):  # noqa: F811
    app_file = thaw.tmp / "entry.py"
    app_file.write_text(SERIALIZED_ENTRYPOINT)
    cp = thaw.run("run", app_file, "--n", "3", timeout=RUN_TIMEOUT)
    assert "powers: [1, 8, 27] 1000" in cp.stdout, cp.stdout + cp.stderr
    assert "Removed 1 serialized function file" in cp.stderr, cp.stderr
    assert pickles(thaw) == []


def test_deployed_pickles_live_as_long_as_their_version_is_current(thaw):  # noqa: F811
    def deploy(greeting):
        cp = subprocess.run([str(THAW_BIN), "deploy", str(APPS / "serialized.py")],
                            env=dict(thaw.env, E2E_GREETING=greeting), cwd=thaw.tmp,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
        thaw.logs.append(cp.stderr)
        assert cp.returncode == 0, cp.stderr
        return cp.stderr

    deploy("Bonjour")
    first = pickles(thaw)
    assert len(first) == 2, first  # greet and Phrasebook
    deploy("Hola")  # another closure: other pickles; the replaced version's go
    second = pickles(thaw)
    assert len(second) == 2 and not set(first) & set(second), (first, second)
    value, log, _ = thaw.call("e2e-serialized", "greet", "Ada")
    assert value == "Hola, Ada!" and RESTORING in log, log
    assert pickles(thaw) == second
    thaw.run("app", "stop", "e2e-serialized")
    assert pickles(thaw) == []
    thaw.assert_containers_gone()


def test_pickles_stay_while_a_process_or_a_runtime_holds_them(thaw):  # noqa: F811
    script = thaw.tmp / "script.py"
    # The script waits for a line on stdin once its calls are done.
    script.write_text(SERIALIZED_SCRIPT.replace("main(int(sys.argv[1]))", "main(int(sys.argv[1]))\ninput()"))
    env = dict(thaw.env, THAW_RUNTIME_SOCKET=str(thaw.serve()))
    p = subprocess.Popen([PYTHON, "-u", str(script), "2"], env=env, cwd=thaw.tmp, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert json.loads(line)["remote"] == 10, line + p.stderr.read()
        held = pickles(thaw)
        assert len(held) == 2, held  # scale and Counter
        thaw.run("app", "ls")  # a sweep: the script holds them
        assert pickles(thaw) == held
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(timeout=30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    thaw.run("app", "ls")  # the runtime's pools still hold them
    assert pickles(thaw) == held
    log = thaw.stop_serve()
    assert "Removed 2 serialized function files" in log, log
    assert pickles(thaw) == []

    # A script whose runtime it started itself: gone when it exits.
    cp = subprocess.run([PYTHON, str(script), "3"], input="\n", env=thaw.env, cwd=thaw.tmp,
                        capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout.splitlines()[0])["remote"] == 15, cp.stdout
    assert pickles(thaw) == []
    thaw.assert_containers_gone()

"""thaw's GPU checkpoint/restore path against a FAKE CUDA driver.

tests/gpu_fake/libcuda.so.1 stands in for NVIDIA's driver: thaw loads it
through THAW_LIBCUDA, and the target program has it LD_PRELOADed so that
thaw sees "libcuda mapped" and takes the GPU path. What these tests check is
thaw's side: the driver is loaded only when needed, calls are resolved and
sequenced, hangs are cut off by the watchdog, errors are clear, and a target
is left running after a failed GPU checkpoint. Nothing here touches a GPU;
bench/gpu_check.sh runs the real path on one.
"""

import json
import re
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO

FAKE = Path(os.environ.get("THAW_FAKE_CUDA") or REPO / "build" / "tests" / "gpu_fake" / "libcuda.so.1")
MIB = 1 << 20


@pytest.fixture
def fake(tmp_path, monkeypatch, zoo):
    """Environment for thaw (the fake driver, its state dir and call log)
    and for targets (the fake preloaded, none of thaw's fake settings)."""
    if not FAKE.exists():
        pytest.fail(f"fake libcuda not built at {FAKE}")
    state = tmp_path / "fake-cuda"
    state.mkdir()
    log = tmp_path / "fake-cuda.log"
    monkeypatch.setenv("THAW_LIBCUDA", str(FAKE))
    monkeypatch.setenv("THAW_FAKE_CUDA_DIR", str(state))
    monkeypatch.setenv("THAW_FAKE_CUDA_LOG", str(log))
    for k in list(os.environ):
        if k.startswith("THAW_FAKE_CUDA_") and k not in ("THAW_FAKE_CUDA_DIR", "THAW_FAKE_CUDA_LOG"):
            monkeypatch.delenv(k)

    def target_env(testtmp, preload=True):
        e = {k: v for k, v in os.environ.items() if not k.startswith("THAW_FAKE_CUDA") and k != "THAW_LIBCUDA"}
        e["THAW_TEST_TMP"] = str(testtmp)
        if preload:
            e["LD_PRELOAD"] = str(FAKE)
        return e

    zoo.env = target_env

    class Fake:
        def calls(self):
            """The calls the fake saw, in order (its own bookkeeping omitted)."""
            if not log.exists():
                return []
            return [l.split()[0] for l in log.read_text().splitlines()
                    if not l.startswith(("restore_thread_id", "lock_timeout_ms"))]

        def log_text(self):
            return log.read_text() if log.exists() else ""

        def reset_log(self):
            if log.exists():
                log.unlink()

    return Fake()


def _checkpoint(zoo, p, img, kill):
    return zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, *(["--kill"] if kill else []))


def test_gpu_checkpoint_kill_restore(zoo, thaw_bin, fake):
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode == 0, cp.stderr
    assert "GPU state 1024.0 MiB moved to host memory" in cp.stderr, cp.stderr
    assert fake.calls() == ["loaded", "cuInit", "lock", "checkpoint"], fake.log_text()
    info = json.loads(zoo.thaw("inspect", "--json", img).stdout)
    assert info["gpu"]["model"] == "Fake GPU 80GB"
    assert info["gpu"]["uuid"] == "GPU-11111213-1415-1617-1819-1a1b1c1d1e1f"
    assert info["gpu"]["memory_bytes"] == 1024 * MIB
    assert info["gpu"]["driver_version"] == 13000
    assert info["gpu"]["restore_tid"] not in (0, p.pid)  # the fake's "cuda-restore" thread
    assert "1024 MiB of GPU memory held" in zoo.thaw("inspect", img).stdout
    zoo.kill(p)
    fake.reset_log()
    rc, out, err = zoo.restore(img, "--stats")
    assert rc == 0 and out == expected, err
    assert "GPU state restored and unlocked" in err, err
    assert fake.calls() == ["loaded", "cuInit", "restore", "unlock"], fake.log_text()
    assert "restore_pairs" not in fake.log_text()


def test_gpu_checkpoint_leaves_target_running(zoo, thaw_bin, fake):
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    cp = _checkpoint(zoo, p, zoo.img_path(), kill=False)
    assert cp.returncode == 0, cp.stderr
    assert fake.calls() == ["loaded", "cuInit", "lock", "checkpoint", "restore", "unlock"], fake.log_text()
    rc, out, err = zoo.finish(p)
    assert rc == 0 and out == expected, err


@pytest.mark.parametrize("how,message", [
    ("hang_lock", "cuCheckpointProcessLock timed out after 3 s"),
    # As on the H100 for a process that ran cuInit with the GPU hidden: it
    # holds no device file, and the error says what to change.
    ("fail_lock", "cuCheckpointProcessLock failed: CUDA_ERROR_OPERATING_SYSTEM (304): the process initialized CUDA "
                  "without a GPU (it holds no NVIDIA device file; was CUDA_VISIBLE_DEVICES empty?)"),
    ("fail_checkpoint", "cuCheckpointProcessCheckpoint failed: CUDA_ERROR_ILLEGAL_STATE (401)"),
    ("wrong_state", "after cuCheckpointProcessCheckpoint the driver reports the process LOCKED, "
                    "expected CHECKPOINTED"),
])
def test_failed_gpu_checkpoint_leaves_target_as_before(zoo, thaw_bin, fake, monkeypatch, how, message):
    if how == "hang_lock":
        monkeypatch.setenv("THAW_FAKE_CUDA_HANG", "lock")
        monkeypatch.setenv("THAW_GPU_LOCK_TIMEOUT", "1")
    elif how == "fail_checkpoint":
        monkeypatch.setenv("THAW_FAKE_CUDA_FAIL", "checkpoint")
    elif how == "fail_lock":  # and every later query fails, as on the H100
        monkeypatch.setenv("THAW_FAKE_CUDA_FAIL", "wedge")
    else:
        monkeypatch.setenv("THAW_FAKE_CUDA_STATE_AFTER_CHECKPOINT", "1")
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()
    t0 = time.monotonic()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode != 0
    assert time.monotonic() - t0 < 30
    assert f"gpu checkpoint: pid {p.pid}: {message}" in cp.stderr, cp.stderr
    assert not img.exists()
    calls = fake.calls()
    if how == "wrong_state":  # it was left LOCKED: thaw unlocks it
        assert calls[-1] == "unlock", calls
    if how == "hang_lock":
        assert "hang" in calls, calls
        assert "without a GPU" not in cp.stderr, "our own timeout is not the driver's refusal"
    if how == "fail_lock":  # nothing was changed, so nothing is put back
        assert "restore" not in calls and "unlock" not in calls, calls
        assert "could not put the GPU state back" not in cp.stderr, cp.stderr
    rc, out, err = zoo.finish(p)
    assert rc == 0 and out == expected, f"target after a failed GPU checkpoint: {err}"


def _gpu_image(zoo, fake):
    p = zoo.start("simple")
    img = zoo.img_path()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode == 0, cp.stderr
    zoo.kill(p)
    fake.reset_log()
    return img


@pytest.mark.parametrize("env,message", [
    ({"THAW_LIBCUDA": "/nonexistent/libcuda.so.1"},
     "the image holds GPU state (Fake GPU 80GB, 1.0 GiB) and this machine has no usable CUDA driver: "
     "no CUDA driver: dlopen /nonexistent/libcuda.so.1"),
    ({"THAW_FAKE_CUDA_VERSION": "12040"}, "CUDA driver API 12.4 (12040) is too old for GPU snapshots"),
    ({"THAW_FAKE_CUDA_MODEL": "Other GPU", "THAW_FAKE_CUDA_UUID_BYTE": "0x33"},
     "the image's GPU state was taken on a Fake GPU 80GB; this machine has Other GPU"),
    ({"THAW_FAKE_CUDA_TOTAL_MIB": "512"}, "the image needs 1.0 GiB of free GPU memory: GPU 0"),
    ({"THAW_FAKE_CUDA_HANG": "restore", "THAW_GPU_COPY_TIMEOUT": "1"}, "cuCheckpointProcessRestore timed out after 5 s"),
    ({"THAW_FAKE_CUDA_FAIL": "unlock"}, "cuCheckpointProcessUnlock failed: CUDA_ERROR_ILLEGAL_STATE (401)"),
])
def test_failed_gpu_restore_is_an_error(zoo, thaw_bin, fake, monkeypatch, env, message):
    img = _gpu_image(zoo, fake)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    rc, out, err = zoo.restore(img)
    assert rc != 0
    assert time.monotonic() - t0 < 30
    assert "restore: gpu restore: pid " in err and message in err, err
    assert out == "", "the half-restored process must not have run"


def test_gpu_restore_onto_another_gpu_passes_uuid_pairs(zoo, thaw_bin, fake, monkeypatch):
    expected = zoo.run_uninterrupted("simple")
    img = _gpu_image(zoo, fake)
    monkeypatch.setenv("THAW_FAKE_CUDA_UUID_BYTE", "0x22")
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == expected, err
    assert "restore_pairs 1 11111213141516171819" in fake.log_text()
    assert " 22111213141516171819" in fake.log_text()


def test_ordinary_process_never_loads_the_driver(zoo, thaw_bin, fake):
    """No libcuda in the target: thaw does not even dlopen the driver."""
    zoo.env = lambda testtmp: {**{k: v for k, v in os.environ.items() if not k.startswith("THAW_FAKE")},
                               "THAW_TEST_TMP": str(testtmp)}
    expected = zoo.run_uninterrupted("threads")
    p = zoo.start("threads")
    img = zoo.img_path()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode == 0, cp.stderr
    zoo.kill(p)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == expected, err
    assert fake.calls() == [], fake.log_text()
    assert json.loads(zoo.thaw("inspect", "--json", img).stdout)["gpu"] is None


def test_libcuda_without_a_driver_checkpoints_cpu_only(zoo, thaw_bin, fake, monkeypatch):
    """libcuda loaded where there is no driver (the CPU-snapshot case)."""
    monkeypatch.setenv("THAW_LIBCUDA", "/nonexistent/libcuda.so.1")
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode == 0, cp.stderr
    assert "has libcuda loaded, but no CUDA driver" in cp.stderr
    zoo.kill(p)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == expected, err


@pytest.mark.parametrize("visible", [None, ""])
def test_libcuda_loaded_without_cuda_state(zoo, thaw_bin, fake, tmp_path, visible):
    """libcuda loaded, CUDA never initialized (torch at import): the CPU
    state only, with a warning unless the GPU was hidden when it loaded
    libcuda (on an H100 such a process crashed at its first CUDA call after
    the restore; one started with CUDA_VISIBLE_DEVICES= worked)."""
    base = zoo.env

    def env(testtmp, **kw):
        e = base(testtmp, **kw)
        e["FAKE_CUDA_TARGET_UNINITIALIZED"] = "1"
        e.pop("CUDA_VISIBLE_DEVICES", None)
        if visible is not None:
            e["CUDA_VISIBLE_DEVICES"] = visible
        return e
    zoo.env = env
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()
    cp = _checkpoint(zoo, p, img, kill=True)
    assert cp.returncode == 0, cp.stderr
    assert "has libcuda loaded but no CUDA state on a GPU; checkpointing its CPU state only" in cp.stderr, cp.stderr
    warned = "loaded libcuda with a GPU visible; after a restore its first CUDA call may crash" in cp.stderr
    assert warned == (visible is None), cp.stderr
    zoo.kill(p)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == expected, err
    assert json.loads(zoo.thaw("inspect", "--json", img).stdout)["gpu"] is None


def test_two_cuda_processes_are_refused_by_name(zoo, thaw_bin, fake, tmp_path):
    env = zoo.env(tmp_path)
    p = subprocess.Popen(["/bin/sh", "-c", "sleep 60 & wait"], env=env, start_new_session=True)
    zoo.procs.append(p)
    deadline = time.monotonic() + 10
    kids = ""
    while not kids and time.monotonic() < deadline:
        time.sleep(0.05)
        kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().strip()
    p.own_group = True
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
    assert cp.returncode != 0
    assert f"more than one process of the tree uses CUDA ({p.pid} (sh), {kids} (sleep))" in cp.stderr or \
        f"more than one process of the tree uses CUDA ({kids} (sleep), {p.pid} (sh))" in cp.stderr, cp.stderr
    assert fake.calls() == [], "refused before loading the driver"


@pytest.mark.parametrize("flags", [[], ["--gpu-lazy"], ["--gpu-lazy", "--detach"]],
                         ids=["eager", "gpu-lazy", "gpu-lazy-detached"])
def test_gpu_restore_thread_reads_its_host_copy(zoo, thaw_bin, fake, monkeypatch, flags):
    """The driver's restore thread copies device memory back from the
    process's own host memory while every other thread is held. The fake's
    thread checks a 64 MiB pattern there: the restore must have brought that
    memory back first (eager) or serve its faults while the driver works
    (--gpu-lazy: the pager is started before the driver's restore)."""
    base = zoo.env

    def env(testtmp, **kw):
        e = base(testtmp, **kw)
        e["FAKE_CUDA_TARGET_BACKUP_MIB"] = "64"
        e["FAKE_CUDA_TARGET_DIR"] = os.environ["THAW_FAKE_CUDA_DIR"]
        return e
    zoo.env = env
    monkeypatch.setenv("THAW_FAKE_CUDA_BACKUP", "1")
    monkeypatch.setenv("THAW_GPU_COPY_TIMEOUT", "1")  # a restore that waits for nobody fails, not hangs
    expected = zoo.run_uninterrupted("simple")
    img = _gpu_image(zoo, fake)
    rc, out, err = zoo.restore(img, "--stats", *flags)
    if "--detach" in flags:
        pid, _, out = out.partition("\n")
        assert pid.isdigit(), err
    assert rc == 0 and out == expected, err
    assert re.search(r"backup_checked \d+ 8388608 words, 0 differ", fake.log_text()), fake.log_text()
    assert fake.calls()[-3:] == ["backup_checked", "restore", "unlock"], fake.log_text()
    lazy = re.search(r"restore: lazy memory ([0-9.]+) MiB", err)
    if flags == ["--gpu-lazy"]:
        assert lazy and float(lazy.group(1)) >= 64, err
    elif not flags:
        assert not lazy, err

"""End-to-end tests: checkpoint/restore every zoo program and compare its
output with an uninterrupted run.  Helpers live in conftest.py."""

import json
import os
import re
import resource
import shutil
import select
import signal
import socket
import threading
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from runtime_helpers import LineReader, lazy_stats, settled_smaps_flags

# program -> extra arguments
PROGRAMS = {
    "simple": [],
    "threads": [],
    "fpu": [],
    "mmaps": [],
    "signals": [],
    "fds": [],
    "pipes": [],
    "unix": [],
    "unix_bound": [],
    "eventfd": [],
    "epoll": [],
    "timerfd": [],
    "posix_timers": [],
    "tcp_listen": [],
    "udp": [],
    "signalfd": [],
    "inotify": [],
    "memfd": [],
    "process": ["first-arg", "second arg"],
    "rseq_robust": [],
    "big_heap": ["32"],
    "lazy_memory": [],
    "busy_writer": [],
    "scheduling": [],
    "prctl_settings": [],
    "tree": [],
    "tree_shm_file": [],
    "tree_groups": [],
    "tree_mappings": [],
    "widowed_pipes": [],
    "named_sem": [],
    "locks": [],
    "deleted_files": [],
    "shm_named": [],
    "unix_path": [],
    "unix_accepted": [],
    "pidfds": [],
}
ALL_PROGRAMS = list(PROGRAMS) + ["tree_unsupported", "unsupported_tcp", "children",
                                  "unsupported_io_uring"]


def _show(label, rc, out, err):
    return f"{label}: rc={rc}\n--- stdout ---\n{out}--- stderr ---\n{err}"


def _assert_same(expected, rc, out, err, what):
    assert rc == 0 and out == expected, (
        f"{what} differs from the uninterrupted run\n"
        f"--- expected ---\n{expected}" + _show(what, rc, out, err))


# ------------------------------------------------------------------ zoo only

@pytest.mark.parametrize("prog", ALL_PROGRAMS)
def test_zoo_uninterrupted(zoo, prog):
    """The zoo program itself works (no thaw involved)."""
    out = zoo.run_uninterrupted(prog, *PROGRAMS.get(prog, []))
    assert out.endswith("DONE\n")


# ------------------------------------------------------- checkpoint/restore

@pytest.mark.parametrize("mode", ["lazy", "eager"])
@pytest.mark.parametrize("prog", list(PROGRAMS))
def test_checkpoint_kill_restore(zoo, thaw_bin, prog, mode):
    """checkpoint -> SIGKILL the original -> restore -> go: same output, with
    the default lazy memory fill and with --eager (every page filled before
    the process runs)."""
    args = PROGRAMS[prog]
    expected = zoo.run_uninterrupted(prog, *args)
    p = zoo.start(prog, *args)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    extra = ["--eager", "--stats"] if mode == "eager" else []
    rc, out, err = zoo.restore(img, *extra)
    _assert_same(expected, rc, out, err, f"restored {prog} ({mode})")
    if mode == "eager":
        assert "lazy memory" not in err, f"--eager restore used the pager:\n{err}"


@pytest.mark.parametrize("prog", list(PROGRAMS))
def test_checkpoint_leaves_target_running(zoo, thaw_bin, prog):
    """checkpoint without --kill: the original keeps running correctly."""
    args = PROGRAMS[prog]
    expected = zoo.run_uninterrupted(prog, *args)
    p = zoo.start(prog, *args)
    zoo.checkpoint(p, zoo.img_path())
    assert p.poll() is None, f"{prog} died during checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, f"original {prog} after checkpoint")


def test_deleted_files_come_back_where_they_were_or_in_memory(zoo, thaw_bin):
    """deleted_files' files, deleted while open or mapped, are made anew in
    their directory, unnamed (O_TMPFILE: /proc shows "DIR/#N (deleted)"),
    by each restore; with the directory gone, as memfds: the same output
    either way."""
    expected = zoo.run_uninterrupted("deleted_files")
    p = zoo.start("deleted_files")
    (d,) = p.testtmp.glob("thaw-zoo-deleted-*")
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    r = zoo.restore_start(img)
    deadline = time.monotonic() + 20
    links = []
    while time.monotonic() < deadline and len(links) < 3:
        kids = [q for q in _descendants(r.pid) if Path(f"/proc/{q}/comm").exists()
                and Path(f"/proc/{q}/comm").read_text().strip() == "deleted_files"]
        links = [os.readlink(f"/proc/{kids[0]}/fd/{fd}") for fd in (3, 4, 5)] if kids else []
        time.sleep(0.05)
    assert len(links) == 3 and all(l.startswith(f"{d}/#") and l.endswith(" (deleted)") for l in links), links
    rc, out, err = zoo.finish(r)
    _assert_same(expected, rc, out, err, "deleted_files restored in their directory")
    assert not d.exists()  # the restored program removed it, as it does at its end
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, "deleted_files restored with their directory gone")


def test_a_deleted_file_comes_back_with_its_owner_and_mode(zoo, thaw_bin, tmp_path):
    """A deleted file a restore makes anew is its owner's, with its mode, as
    it was, not thaw's (root, 0600): the restored process, of another user
    (nobody), can still change its mode and open it again through
    /proc/self/fd."""
    path = tmp_path / "owned"
    path.write_bytes(b"mine")
    os.chown(path, 65534, 65534)
    os.chmod(path, 0o640)
    fd = os.open(path, os.O_RDWR)
    code = ("import os, sys\n"
            "fd = int(sys.argv[1])\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "st = os.fstat(fd)\n"
            "os.fchmod(fd, 0o600)\n"
            "print(st.st_uid, st.st_gid, oct(st.st_mode & 0o777), open(f'/proc/self/fd/{fd}', 'rb').read().decode())\n")
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
                          code, str(fd)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         pass_fds=(fd,))
    zoo.procs.append(p)
    os.close(fd)
    assert p.stdout.readline() == b"READY\n", p.stderr.read()
    path.unlink()
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == "65534 65534 0o640 mine\n", _show("restore", rc, out, err)


def test_a_private_mapping_of_a_file_deleted_from_a_tmpfs_comes_back(zoo, thaw_bin):
    """A library unpacked into a tmpfs (/tmp is one on many systems),
    mapped privately and deleted, as some loaders do: kept as a deleted
    file, as it is on a disk, not refused; the restored mapping has the
    file's content and the process's own change to it."""
    d = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="thaw-test-"))
    try:
        lib = d / "lib.so"
        lib.write_bytes(b"lib" * 2000)
        code = ("import mmap, os, sys\n"
                f"fd = os.open({str(lib)!r}, os.O_RDONLY)\n"
                "m = mmap.mmap(fd, 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)\n"
                "os.close(fd)\n"
                f"os.unlink({str(lib)!r})\n"
                "m[4096:4099] = b'own'\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "print(m[:6].decode(), m[4096:4099].decode(), len(m), flush=True)\n")
        p = _start_python(zoo, code)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        p.wait(timeout=10)
        rc, out, err = zoo.restore(img)
        assert rc == 0 and out == "liblib own 6000\n", _show("restore", rc, out, err)
    finally:
        shutil.rmtree(d)


def test_a_mapped_file_removed_from_its_name_but_linked_elsewhere_is_refused(zoo, thaw_bin, tmp_path):
    """A mapped file removed from its name that keeps another (a hard link)
    is not a deleted file (its content is on disk, shared): refused, and the
    message says so rather than that deleted files are not supported."""
    (tmp_path / "a").write_bytes(b"data" * 1024)
    os.link(tmp_path / "a", tmp_path / "b")
    code = ("import ctypes, os, sys\n"  # Python's mmap would keep an fd of the file
            "libc = ctypes.CDLL(None)\n"
            "libc.mmap.restype = ctypes.c_void_p\n"
            "libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, "
            "ctypes.c_long]\n"
            f"fd = os.open({str(tmp_path / 'a')!r}, os.O_RDONLY)\n"
            "m = libc.mmap(None, 4096, 1, 1, fd, 0)\n"  # PROT_READ, MAP_SHARED
            "os.close(fd)\n"
            f"os.unlink({str(tmp_path / 'a')!r})\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(ctypes.string_at(m, 4).decode(), flush=True)\n")
    _refused_and_runs_on(zoo, code, "the mapped file was removed from this name but has other links (hard links)",
                         b"data\n")


def test_a_deleted_file_too_large_for_the_image_is_refused_by_name(zoo, thaw_bin, tmp_path):
    """A deleted file holding more than 256 MiB (allocated, not a hole) is
    not copied into the image: the checkpoint fails naming the fd and its
    size, and the process runs on with the file."""
    code = ("import os, sys, tempfile\n"
            f"f = tempfile.TemporaryFile(dir={str(tmp_path)!r})\n"
            "os.posix_fallocate(f.fileno(), 0, 300 << 20)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(os.fstat(f.fileno()).st_size >> 20)\n")
    p = _start_python(zoo, code)
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
    assert cp.returncode != 0 and "the file was deleted while open (or mapped) and holds 300 MiB, more than the " \
        "256 MiB a checkpoint copies into the image" in cp.stderr, cp.stderr
    assert f"({tmp_path}/#" in cp.stderr, cp.stderr  # the fd, by its name
    out, _ = p.communicate(b"go\n", timeout=60)
    assert out == b"300\n", out


def test_a_deleted_executable_is_refused_by_name(zoo, thaw_bin, tmp_path):
    """A program whose executable was deleted since it started (replaced by
    an upgrade, say) cannot be restored: a restore sets the process's
    executable again by its path. Its mappings of the file alone would be
    kept as a deleted file's: the checkpoint is refused, naming the file,
    instead of writing an image that no restore accepts; the program runs
    on."""
    expected = zoo.run_uninterrupted("simple")
    exe = tmp_path / "simple-copy"
    shutil.copy(zoo.prog_path("simple"), exe)
    p = zoo.start(str(exe))
    exe.unlink()
    img = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img)
    assert cp.returncode != 0 and f"its executable {exe} was deleted" in cp.stderr, cp.stderr
    assert not Path(img).exists()
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "simple after its refused checkpoint")


def test_a_restore_refuses_a_lock_the_original_still_holds(zoo, thaw_bin):
    """locks' original, left running, still holds its exclusive flock (and
    the rest): a restore of it fails, naming the lock, instead of letting two
    processes hold one exclusive lock; the original keeps every lock (the
    probes after its go)."""
    expected = zoo.run_uninterrupted("locks")
    p = zoo.start("locks")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    rc, out, err = zoo.restore(img)
    assert rc != 0 and out == "", _show("restore beside the original", rc, out, err)
    assert "/f): it held a write lock (flock) at checkpoint" in err and "restore once it is released" in err, err
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "original locks after a refused restore")


def _unix_path_dir(p):
    (d,) = p.testtmp.glob("thaw-zoo-unixpath-*")
    return d


def _files_of(d):
    return sorted((f.name, f.stat().st_ino, f.stat().st_mode) for f in d.iterdir())


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_restored_unix_path_listener_answers_a_client(zoo, thaw_bin, mode):
    """unix_path's listener, bound to a path: after a restore (the original
    killed, its stale socket file left behind) a client from outside
    connects to the path and gets the restored process's answer."""
    p = zoo.start("unix_path")
    path = _unix_path_dir(p) / "listen"
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    assert path.is_socket()  # the killed original's, stale
    r = zoo.restore_start(img, *(["--eager"] if mode == "eager" else []))
    r.stdin.write(b"serve\n")
    lines = []
    while b"serving\n" not in lines:
        line = r.stdout.readline()
        assert line, _show("restore", r.wait(timeout=10), b"".join(lines).decode(), r.stderr.read().decode())
        lines.append(line)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(20)
        c.connect(str(path))
        c.sendall(b"hi there\n")
        assert c.recv(100) == b"pong hi there\n"
    rc, out, err = zoo.finish(r, data=b"")
    out = b"".join(lines).decode() + out
    assert rc == 0 and out == "bound paths and their files ok\nserving\nserved hi there\nDONE\n", \
        _show("restore", rc, out, err)


def test_a_restore_beside_the_original_still_listening_on_its_path_is_refused(zoo, thaw_bin):
    """unix_path's original, left running, still listens on its path: a
    restore of it fails, naming the path and what to do, as a TCP port in
    use does, and leaves the original's files as they were (it still
    accepts there after its go)."""
    expected = zoo.run_uninterrupted("unix_path")
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    before = _files_of(d)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    rc, out, err = zoo.restore(img)
    assert rc != 0 and out == "", _show("restore beside the original", rc, out, err)
    assert f"unix socket bound to {d}/listen: Address already in use: another socket is bound there and in use" in err, err
    assert "stop it, or restore once it is gone" in err, err
    assert _files_of(d) == before
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "original unix_path after a refused restore")


def test_a_unix_path_socket_s_removed_directory_is_made_again(zoo, thaw_bin):
    """A directory removed after the checkpoint (multiprocessing removes its
    pymp-* directory when the original exits) is made again, 0700 as mkdtemp
    made it, and the sockets bound in it; the program checks the modes."""
    expected = zoo.run_uninterrupted("unix_path")
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    shutil.rmtree(d)
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, "unix_path restored with its directory gone")
    assert not d.exists()  # the program removed it at its end


def test_a_failed_restore_removes_the_socket_files_it_made(zoo, thaw_bin):
    """A restore that bound the listener at its path and then failed (a
    regular file where the datagram socket's was) leaves no socket file
    behind: the error names the path, and what is there is as before but
    for the stale file the original left, which the restore replaced."""
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    (d / "dgram").unlink()
    (d / "dgram").write_text("not a socket")
    rc, out, err = zoo.restore(img)
    assert rc != 0 and f"unix socket bound to {d}/dgram: what is there now is not a socket" in err, \
        _show("restore", rc, out, err)
    assert sorted(f.name for f in d.iterdir()) == ["dgram"], list(d.iterdir())
    assert (d / "dgram").read_text() == "not a socket"


def test_a_non_root_process_s_unix_path_files_come_back_its_own(zoo, thaw_bin):
    """unix_path run as nobody, its directory removed after the checkpoint:
    the directory and socket files a restore makes are nobody's again, so
    the restored program (nobody) can use them and, at its end, remove
    them."""
    top = Path(tempfile.mkdtemp(prefix="thaw-test-"))
    try:
        os.chmod(top, 0o777)
        expected = zoo.run_uninterrupted("unix_path")
        p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              str(zoo.prog_path("unix_path"))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, close_fds=True, env=zoo.env(top))
        zoo.procs.append(p)
        assert p.stdout.readline() == b"READY\n", p.stderr.read()
        (d,) = top.glob("thaw-zoo-unixpath-*")
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        p.wait(timeout=10)
        shutil.rmtree(d)
        r = zoo.restore_start(img)
        deadline = time.monotonic() + 20
        owners = None
        while owners != {(65534, 65534)} and time.monotonic() < deadline:
            time.sleep(0.02)
            try:
                owners = {(f.lstat().st_uid, f.lstat().st_gid) for f in (d, d / "listen", d / "dgram")}
            except FileNotFoundError:
                pass  # not made yet
        rc, out, err = zoo.finish(r)
        assert owners == {(65534, 65534)}, owners
        _assert_same(expected, rc, out, err, "unix_path as nobody, restored with its directory gone")
        assert not d.exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_unix_socket_whose_file_was_removed_keeps_its_name_without_it(zoo, thaw_bin, tmp_path):
    """A socket whose file was removed while it stayed bound (the name,
    for getsockname, without a way in): restored with its name and no file."""
    path = tmp_path / "gone.sock"
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.bind({str(path)!r}); s.listen(2); os.unlink({str(path)!r})\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(s.getsockname(), os.path.exists(s.getsockname()), flush=True)\n")
    img = _python_image(zoo, code)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == f"{path} False\n", _show("restore", rc, out, err)
    assert not path.exists()


def test_a_unix_socket_bound_to_a_relative_path_comes_back_bound_from_its_directory(zoo, thaw_bin, tmp_path):
    """A name relative to the working directory (zmq's ipc://name.sock):
    bound again from that directory, with the same name, after the stale
    file the killed original left there."""
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "s.bind('rel.sock')\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "c.sendto(b'here', 'rel.sock')\n"
            "print(s.getsockname(), s.recv(10).decode(), os.getcwd() == sys.argv[1])\n")
    p = _start_python(zoo, code, str(tmp_path), cwd=tmp_path)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == "rel.sock here True\n", _show("restore", rc, out, err)


def test_a_unix_socket_bound_to_a_path_of_108_bytes_comes_back(zoo, thaw_bin):
    """A path of 108 bytes, all of sun_path with no room for a NUL (bind
    takes it; Python's bind does not, hence ctypes), its stale file left by
    the killed original: the restore probes that file, whose name is too
    long to reach through /proc/self/fd/N/, replaces it and binds there
    again (the kernel reports the name with a NUL after it). A connection
    it had accepted comes back with that name too."""
    top = tempfile.mkdtemp(prefix="tw", dir="/tmp")
    try:
        path = f"{top}/" + "s" * (108 - len(top) - 1)
        assert len(path) == 108
        code = ("import ctypes, os, socket, sys\n"
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                f"a = b'\\x01\\x00' + {path!r}.encode()\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                "assert libc.bind(s.fileno(), a, len(a)) == 0\n"
                "s.listen(2)\n"
                "c0 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                "assert libc.connect(c0.fileno(), a, len(a)) == 0\n"
                "a0 = s.accept()[0]\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                f"print(s.getsockname() == {path!r}, libc.connect(c.fileno(), a, len(a)), flush=True)\n"
                "s.accept()[0].close()\n"
                f"print(a0.getsockname() == {path!r}, c0.getpeername() == {path!r}, flush=True)\n")
        img = _python_image(zoo, code)
        assert Path(path).is_socket()  # the killed original's, stale
        rc, out, err = zoo.restore(img)
        assert rc == 0 and out == "True 0\nTrue True\n", _show("restore", rc, out, err)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("gone", [False, True])
def test_a_unix_path_reached_through_another_user_s_symlink_to_root_s_directory_is_refused(zoo, thaw_bin, gone):
    """A symbolic link of another user's on the way to unix_path's
    directory (here its parent, the test's tmp, in place of the real one),
    to a directory of root's: the restore, as root, does not make the
    directory or bind the socket there, which that user could not have done
    themselves; it says why and leaves nothing there."""
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    top = p.testtmp
    real = top.with_name(top.name + "-real")
    roots = top.with_name(top.name + "-roots")  # root's, 0755
    roots.mkdir()
    if not gone:
        (roots / d.name).mkdir(mode=0o700)
    top.rename(real)
    try:
        top.symlink_to(roots)
        os.lchown(top, 65534, 65534)
        rc, out, err = zoo.restore(img)
        assert rc != 0 and out == "" and (f"unix socket bound to {d}/" in err and f"is reached through {top}, "
                                          f"a symbolic link of uid 65534 (to {roots})") in err, \
            _show("restore", rc, out, err)
        assert [f.name for f in roots.rglob("*")] == ([] if gone else [d.name])
    finally:
        top.unlink(missing_ok=True)
        real.rename(top)
        shutil.rmtree(roots)


def test_a_unix_path_restore_waits_for_the_directory_s_lock(zoo, thaw_bin):
    """Whoever replaces a stale socket file holds its directory's lock
    (flock) from the check to the bind: two restores of one image that both
    found the file stale would otherwise both remove it, the second taking
    the first's own file away, and both succeed, one unreachable. Held here
    by the test for good: the restore gives up, names the lock, and leaves
    the stale file; once it is released a restore works."""
    import fcntl
    expected = zoo.run_uninterrupted("unix_path")
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    stale = (d / "listen").lstat().st_ino
    lock = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        rc, out, err = zoo.restore(img)
        assert rc != 0 and out == "", _show("restore", rc, out, err)
        assert f"unix socket bound to {d}/listen: its directory {d} is locked (flock) by another process" in err, err
        assert (d / "listen").lstat().st_ino == stale
    finally:
        os.close(lock)
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, "unix_path restored once its directory's lock was released")


def test_a_restore_that_fails_by_itself_removes_the_files_it_made_before_it_exits(zoo, thaw_bin, tmp_path):
    """A restored process that fails removes the socket files it made
    itself, while its sockets still hold them: once it has exited another
    restore may replace one, stale then, with a file of the same inode
    number (ext4 gives a freed one again at once) that thaw would take for
    its own, and its init, with its mount namespace, may be gone before
    thaw looks. Here thaw is stopped until both are gone: the process
    bound a/s, then gave up on b's directory, which the test holds locked."""
    import fcntl
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.bind({str(a / 's')!r}); s.listen(1)\n"
            "t = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            f"t.bind({str(b / 't')!r})\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n")
    img = _python_image(zoo, code)
    (a / "s").unlink()  # the killed original's: the restore makes it anew
    lock = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = zoo.restore_start(img)
        deadline = time.monotonic() + 30
        while not (a / "s").exists():  # bound; the restore now waits for b's lock
            assert r.poll() is None and time.monotonic() < deadline, r.stderr.read()
            time.sleep(0.01)
        os.kill(r.pid, signal.SIGSTOP)
        try:
            (init,) = [int(k) for t in os.listdir(f"/proc/{r.pid}/task")
                       for k in Path(f"/proc/{r.pid}/task/{t}/children").read_text().split()]
            while Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                assert time.monotonic() < deadline, "the restored process's init did not end"
                time.sleep(0.01)
        finally:
            os.kill(r.pid, signal.SIGCONT)
        rc, out, err = zoo.finish(r, data=b"")
    finally:
        os.close(lock)
    assert rc != 0 and f"its directory {b} is locked (flock)" in err, _show("restore", rc, out, err)
    assert not (a / "s").exists(), "the failed restore left the socket file it made"


def test_a_unix_socket_bound_in_an_overlay_comes_back_with_its_file(zoo, thaw_bin, tmp_path):
    """A socket bound in an overlay whose layers are on different
    filesystems (a container's root on a read-only image, its upper layer
    a tmpfs): stat shows its file with another device number than the one
    sock_diag gives, which is the overlay's. Its file is there: restored
    with it, not as a socket whose file was removed."""
    lower, merged = tmp_path / "lower", tmp_path / "merged"
    upper = Path(tempfile.mkdtemp(prefix="thaw-test-ovl-", dir="/dev/shm"))
    lower.mkdir()
    merged.mkdir()
    (upper / "u").mkdir()
    (upper / "w").mkdir()
    mnt = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                          f"lowerdir={lower},upperdir={upper}/u,workdir={upper}/w", str(merged)],
                         capture_output=True, text=True)
    try:
        if mnt.returncode != 0:
            pytest.skip(f"no overlay mount here: {mnt.stderr}")
        path = merged / "s.sock"
        code = ("import os, socket, sys\n"
                "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                f"s.bind({str(path)!r}); s.listen(2)\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                f"c.connect({str(path)!r}); s.accept()\n"
                "print('connected', flush=True)\n")
        img = _python_image(zoo, code)
        rc, out, err = zoo.restore(img)
        assert rc == 0 and out == "connected\n", _show("restore", rc, out, err)
    finally:
        if mnt.returncode == 0:
            subprocess.run(["umount", str(merged)], check=True)
        shutil.rmtree(upper, ignore_errors=True)


@pytest.mark.parametrize("planted", ["directory", "symlink"])
def test_a_unix_path_socket_s_directory_planted_by_another_user_is_refused(zoo, thaw_bin, planted):
    """unix_path's directory (root's, 0700) is gone after the checkpoint and
    another user put one of theirs in its place, or a symbolic link to it, as
    anyone can in /tmp: the restore does not bind there (whoever owns the
    directory could replace the socket with one of their own and take its
    clients), it says why, and leaves nothing in it."""
    p = zoo.start("unix_path")
    d = _unix_path_dir(p)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    shutil.rmtree(d)
    theirs = p.testtmp / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    theirs.chmod(0o777)
    if planted == "symlink":
        d.symlink_to(theirs)
        os.lchown(d, 65534, 65534)
        why = f"its directory {d} is uid 65534's, not uid 0's as at the checkpoint"
    else:
        theirs.rename(d)
        theirs = d
        why = f"its directory {d} is uid 65534's, not uid 0's as at the checkpoint"
    rc, out, err = zoo.restore(img)
    assert rc != 0 and out == "" and f"unix socket bound to {d}/" in err and why in err, \
        _show("restore", rc, out, err)
    assert list(theirs.iterdir()) == []


def test_a_unix_socket_bound_through_an_absolute_symlink_in_a_mount_namespace_keeps_its_file(zoo, thaw_bin,
                                                                                           tmp_path):
    """A process in a mount namespace of its own (a container's) binds
    through an absolute symbolic link (/var/run -> /run), to a directory
    mounted only there. The checkpoint looks for the file through the
    process's root, where the link must lead where it led the process, not
    to thaw's own directory: there it found none, took the file for
    removed, and the restore removed it (in the host's namespace here)."""
    real, link = tmp_path / "real", tmp_path / "link"
    real.mkdir()
    link.symlink_to(real)  # absolute
    path = link / "s.sock"
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"s.bind({str(path)!r}); s.listen(2)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            f"print(os.path.exists({str(path)!r}), flush=True)\n")
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c",
                          f"mount -t tmpfs none {real} && exec /usr/bin/python3 -c \"$0\"", code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    zoo.procs.append(p)
    p.prog = "python3 in a mount namespace"
    assert p.stdout.readline() == b"READY\n", p.stderr.read()
    assert not path.exists()  # in its namespace only
    img = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
    assert cp.returncode == 0, cp.stderr
    p.wait(timeout=10)
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == "True\n", _show("restore", rc, out, err)


def test_a_unix_socket_bound_to_a_relative_path_elsewhere_is_refused_by_name(zoo, thaw_bin, tmp_path):
    """A relative name bound before the process changed directory: where it
    was bound from is not recorded anywhere, so it is refused, saying so;
    the process runs on."""
    code = ("import os, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
            "s.bind('rel.sock')\n"
            "os.chdir('/')\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(s.getsockname())\n")
    _refused_and_runs_on(zoo, code, "unix socket bound to the relative path rel.sock, which the working directory "
                         "the process has now (/) does not lead to", b"rel.sock\n", cwd=tmp_path)


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_restored_tree_s_orphan_outlives_its_root(zoo, thaw_bin, mode):
    """tree_groups' child O outlives the program, as it does uninterrupted;
    restored, it did not: init ended the pid namespace as soon as the root
    exited, killing it. `thaw restore` still returns with the root's exit."""
    p = zoo.start("tree_groups")
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    orphan = p.testtmp / "orphan"
    assert not orphan.exists()
    rc, out, err = zoo.restore(img, *(["--eager"] if mode == "eager" else []))
    assert rc == 0 and out.endswith("DONE\n"), _show("restored tree_groups", rc, out, err)
    deadline = time.monotonic() + 10
    while not orphan.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert orphan.exists() and orphan.read_text() == "outlived its parent\n", \
        "the restored program's orphan did not outlive it"


def _descendants(pid):
    """Every process below pid (from /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                kids = Path(f"/proc/{p}/task/{t}/children").read_text().split()
            except FileNotFoundError:
                continue
            out += [int(k) for k in kids]
            todo += [int(k) for k in kids]
    return out


def _mapping_kib(pid, min_kib, name="", at=None):
    """Start address, Rss, Shared_Dirty and Private_Dirty (KiB) of pid's
    first private mapping of at least min_kib whose name starts with `name`
    ("" for anonymous), starting at `at` when given, or None."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        head, _, body = block.partition("\n")
        fields = head.split(maxsplit=5)
        mapped = fields[5] if len(fields) == 6 else ""
        if len(fields) < 5 or not fields[1].endswith("p") or not (mapped.startswith(name) if name else not mapped):
            continue
        kib = {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", body, re.M)}
        start = int(fields[0].split("-")[0], 16)
        if kib.get("Size", 0) >= min_kib and at in (None, start):
            return start, kib["Rss"], kib["Shared_Dirty"], kib["Private_Dirty"]
    return None


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_restored_tree_shares_the_pages_a_fork_left_shared(zoo, thaw_bin, mode):
    """tree's 8 MiB buffer, filled before its forks, is one set of pages in
    all four processes (A changed a few of its own), and so are the pages it
    wrote of a file it mapped privately: restored, they share them again
    (before, each process read a copy of its own, and a tree took that much
    more memory and time), and A's changes are still its own (its checks
    after the go)."""
    expected = zoo.run_uninterrupted("tree")
    p = zoo.start("tree")
    # Where the original has them: a restore moves them there from a staging
    # area, which must not be mistaken for them.
    big_at, lib_at = _mapping_kib(p.pid, 8 << 10)[0], _mapping_kib(p.pid, 64, "/tmp/zoo-tree-lib-")[0]
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    # inspect tells how much of each child's pages is stored once.
    kids = json.loads(zoo.thaw("inspect", img, "--json").stdout)["children"]
    assert len(kids) == 3 and all(k["shared_stored_bytes"] >= 7 << 20 for k in kids), kids
    r = zoo.restore_start(img, *(["--eager"] if mode == "eager" else []))
    seen = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        procs = [q for q in _descendants(r.pid)
                 if Path(f"/proc/{q}/comm").exists() and Path(f"/proc/{q}/comm").read_text().strip() == "tree"]
        seen = {q: (_mapping_kib(q, 8 << 10, at=big_at), _mapping_kib(q, 64, "/tmp/zoo-tree-lib-", at=lib_at))
                for q in procs}
        # 8 pages of the file written before the forks; A wrote one of them
        # again and dropped another: 6 still shared, 24 KiB.
        shared = len(seen) == 4 and all(big and big[2] >= 7 << 10 and lib and lib[2] >= 24
                                        for big, lib in seen.values())
        if shared:
            break
        time.sleep(0.05)
    assert shared, ("the restored tree's buffer or file pages are not shared: (start, Rss, Shared_Dirty, "
                    f"Private_Dirty) KiB of each per process {seen}")
    rc, out, err = zoo.finish(r)
    _assert_same(expected, rc, out, err, f"restored tree ({mode})")


@pytest.mark.parametrize("kill", [False, True])
@pytest.mark.parametrize("what", ["io_uring", "sysv"])
def test_a_tree_whose_grandchild_is_refused_keeps_running(zoo, thaw_bin, what, kill):
    """A checkpoint refused for what a grandchild holds (an fd, found with
    the files; a mapping, found last, with the memory) names that process
    by pid and command line, writes no image and leaves every process of
    the tree running, with --kill too."""
    expected = zoo.run_uninterrupted("tree_unsupported", what)
    p = zoo.start("tree_unsupported", what)
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, kill=kill, expect_ok=False)
    assert cp.returncode != 0, f"checkpoint of tree_unsupported {what} succeeded:\n{cp.stderr}"
    assert re.search(r"child process \d+ \(\S*tree_unsupported " + what + r"\): ", cp.stderr), cp.stderr
    assert ("io_uring is not supported" if what == "io_uring" else "System V shared memory") in cp.stderr, cp.stderr
    assert not img.exists()
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, f"tree_unsupported {what} after failed checkpoint")


@pytest.mark.parametrize("kill", [False, True])
def test_checkpoint_over_the_file_size_limit_fails_cleanly(zoo, thaw_bin, kill):
    """A `thaw checkpoint` whose RLIMIT_FSIZE (ulimit -f) is below the
    image's size says so and leaves the target running and no image, not
    even a temporary directory (SIGXFSZ used to kill thaw mid-write, with
    exit status 153, no message and DIR.tmp.<pid> left behind)."""
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    cp = subprocess.run(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img, *(["--kill"] if kill else [])),
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, preexec_fn=small_files,
                        timeout=120)
    assert cp.returncode == 1, cp.stderr
    assert "file-size limit of 1048576 bytes" in cp.stderr and "ulimit -f" in cp.stderr, cp.stderr
    assert not img.exists() and not list(img.parent.glob(img.name + ".tmp.*"))
    assert p.poll() is None, f"simple died during checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "original simple after the failed checkpoint")


@pytest.mark.parametrize("prog,how", [("signals", "--no-cow"), ("threads", "--no-cow"), ("fpu", "--no-cow"),
                                      ("signals", "cow"), ("threads", "cow")])
def test_checkpoint_killed_leaves_target_running(zoo, thaw_bin, prog, how):
    """kill -9 of `thaw checkpoint` at moments spread over its run: the
    target goes on as if never held. A thread let go in the middle of an
    injected call (dozens of them: every signal action, each thread's
    state) returns through the signal frame thaw left below its stack.
    With the copy-on-write fork (the default) a copy made before thaw
    could make it die with thaw ends itself (see the test below for that
    moment)."""
    expected = zoo.run_uninterrupted(prog)
    flags = [how] if how != "cow" else []
    took = 1e9
    for _ in range(3):  # the quickest: kill moments spread over a checkpoint, not over a slow start
        p = zoo.start(prog)
        t0 = time.monotonic()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path(), *flags)
        took = min(took, time.monotonic() - t0)
        assert cp.returncode == 0, cp.stderr
        zoo.finish(p)
    killed = 0
    for i in range(30):
        p = zoo.start(prog)
        img = zoo.img_path()
        c = subprocess.Popen(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img, *flags),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(took * i / 30)
        c.kill()
        c.wait()
        killed += c.returncode == -signal.SIGKILL
        for left in Path(img).parent.glob(Path(img).name + ".tmp.*"):
            shutil.rmtree(left, ignore_errors=True)
        assert p.poll() is None, f"{prog} died when thaw was killed {took * i / 30 * 1000:.1f} ms in " \
                                 f"(rc {p.returncode})"
        rc, out, err = zoo.finish(p)
        _assert_same(expected, rc, out, err, f"{prog} after thaw was killed {took * i / 30 * 1000:.1f} ms in")
    assert killed >= 10, f"thaw was killed mid-way only {killed} times of 30"


@pytest.mark.skipif(not shutil.which("gdb"), reason="needs gdb (scripts/install-deps.sh installs it)")
@pytest.mark.parametrize("prog", ["signals", "threads"])
def test_checkpoint_killed_at_its_copy_on_write_fork_leaves_target_running(zoo, thaw_bin, prog, tmp_path):
    """kill -9 of `thaw checkpoint` at the worst moment of the default
    (copy-on-write) checkpoint: the copy exists, and thaw has not yet made
    it die with thaw. The copy's own stack ends it (exit_group), the
    target goes on as if never held. (The target carried
    PTRACE_O_EXITKILL there, for its copy to inherit, and died with thaw.)
    gdb stops thaw where it reads the clone event (PTRACE_GETEVENTMSG):
    the copy exists, stopped at its first trap."""
    expected = zoo.run_uninterrupted(prog)
    p = zoo.start(prog)
    script = tmp_path / "kill.gdb"
    script.write_text("set pagination off\nset breakpoint pending on\nbreak ptrace if $rdi == 0x4201\n"
                      "run\nkill\nquit\n")
    img = zoo.img_path()
    g = subprocess.run(["gdb", "-q", "-batch", "-x", str(script), "--args",
                        *zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert "Breakpoint 1, " in g.stdout, g.stdout + g.stderr
    assert not Path(img).exists()
    deadline = time.monotonic() + 10
    copies = []
    while time.monotonic() < deadline:  # the copy ends, at most a zombie of the target's
        kids = " ".join(Path(t, "children").read_text() for t in Path(f"/proc/{p.pid}/task").iterdir())
        copies = [k for k in kids.split() if Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        if not copies:
            break
        time.sleep(0.05)
    assert not copies, f"the copy of {prog} runs on after thaw was killed: {copies}"
    assert p.poll() is None, f"{prog} died when thaw was killed at its fork (rc {p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, f"{prog} after thaw was killed at its fork")
    # A later checkpoint cleans up the killed one's temporary directory.
    cp = zoo.thaw("checkpoint", "--pid", zoo.start("simple").pid, "--out", img, "--no-cow")
    assert not list(Path(img).parent.glob(Path(img).name + ".tmp.*")), cp.stderr


def test_the_zombie_of_a_killed_checkpoints_copy_is_reaped_by_the_next(zoo, thaw_bin):
    """kill -9 of `thaw checkpoint` while it reads the pages from its copy:
    the copy dies with thaw (EXITKILL) and stays a zombie child of the
    target, named thaw-cow-copy. The next checkpoint reaps it instead of
    refusing the target as a process with children."""
    expected = zoo.run_uninterrupted("big_heap", "512")
    p = zoo.start("big_heap", "512")
    img = zoo.img_path()

    def kids():
        out = []
        for t in Path(f"/proc/{p.pid}/task").iterdir():
            for k in Path(t, "children").read_text().split():
                try:
                    out.append((k, Path(f"/proc/{k}/comm").read_text().strip(),
                                Path(f"/proc/{k}/stat").read_text().rsplit(")", 1)[1].split()[0]))
                except OSError:
                    pass
        return out

    for _ in range(5):  # the copy lives for a fraction of a second
        cp = subprocess.Popen(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while cp.poll() is None and time.monotonic() < deadline:
            if any(name == "thaw-cow-copy" for _, name, _ in kids()):
                cp.kill()
                break
        cp.wait()
        deadline = time.monotonic() + 10
        left = kids()
        while any(state != "Z" for _, _, state in left) and time.monotonic() < deadline:  # dying
            time.sleep(0.02)
            left = kids()
        if left:
            break
    assert left and all(name == "thaw-cow-copy" and state == "Z" for _, name, state in left), left
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
    assert cp.returncode == 0, cp.stderr
    assert kids() == [], kids()
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "big_heap after a killed checkpoint and another")


def test_checkpoint_reads_a_copy_on_write_fork(zoo, thaw_bin):
    """A target that runs on is held only until a forked copy of it exists;
    the pages come from the copy. busy_writer rewrites 64 MiB all the time:
    the image still holds one instant of it (both restores check), and the
    original saw no SIGCHLD and has no child left, not even a zombie."""
    expected = zoo.run_uninterrupted("busy_writer")
    p = zoo.start("busy_writer")
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img)
    assert "pages read from a copy-on-write fork; its main thread stopped again" in cp.stderr, cp.stderr
    assert p.poll() is None, f"busy_writer died during checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "original busy_writer after checkpoint")
    for extra in ([], ["--eager"]):
        rc, out, err = zoo.restore(img, *extra)
        _assert_same(expected, rc, out, err, f"restored busy_writer {extra}")


def test_restore_stopped_by_sigterm_leaves_no_process(zoo, thaw_bin):
    """SIGTERM while an eager restore fills memory: the restore stops and
    takes the half-restored process with it (it would stay parked, every
    signal blocked); a pidfile that cannot be written is an error up front."""
    p = zoo.start("big_heap", "768")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    cp = zoo.thaw("restore", img, "--pidfile", "/nonexistent-dir/restored.pid")
    assert cp.returncode != 0 and "--pidfile /nonexistent-dir/restored.pid" in cp.stderr, cp.stderr
    r = zoo.restore_start(img, "--eager")
    time.sleep(0.1)
    r.send_signal(signal.SIGTERM)
    _, err = r.communicate(timeout=60)
    err = err.decode(errors="replace")
    if "interrupted by SIGTERM" not in err:
        pytest.skip(f"the restore was done before SIGTERM came (rc {r.returncode}): {err}")
    assert "the half-restored process was stopped" in err, err
    time.sleep(0.5)

    def cmdline(d):
        try:
            return (d / "cmdline").read_bytes()
        except OSError:
            return b""  # gone meanwhile
    prog = str(zoo.prog_path("big_heap")).encode()
    left = [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and prog in cmdline(d)]
    assert not left, f"processes of the image left: {left}"


def test_restore_killed_leaves_no_process(zoo, thaw_bin):
    """kill -9 of `thaw restore --eager` while it fills memory: the
    namespace's init sees thaw's end of its watch pipe close without the
    word that the restore is done, and kills the half-restored process
    (which would otherwise stay parked, every signal blocked, holding its
    memory). A restore that finished is not touched by thaw's exit
    (--detach)."""
    p = zoo.start("big_heap", "768")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    prog = str(zoo.prog_path("big_heap")).encode()

    def cmdline(d):
        try:
            return (d / "cmdline").read_bytes()
        except OSError:
            return b""  # gone meanwhile

    def left():
        return [d.name for d in Path("/proc").iterdir() if d.name.isdigit() and prog in cmdline(d)]

    def children(pid):
        try:
            return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except OSError:
            return []

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] not in "ZX"
        except OSError:
            return False

    r = zoo.restore_start(img, "--eager")
    deadline = time.monotonic() + 30
    tree = []
    while r.poll() is None and time.monotonic() < deadline:
        inits = children(r.pid)
        tree = inits + [c for i in inits for c in children(i)]
        if len(tree) >= 2:  # init and the process being restored
            break
        time.sleep(0.002)
    r.kill()
    r.communicate(timeout=60)
    if len(tree) < 2:
        pytest.skip("the restore was over (or not started) before it was killed")
    deadline = time.monotonic() + 10
    while any(alive(p) for p in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in tree), f"processes of the restore left after thaw was killed: {tree}"
    assert not left(), f"processes of the image left after thaw was killed: {left()}"

    # Its stdin a pipe kept open (at EOF it would exit: "no go").
    go_r, go_w = os.pipe()
    pidfile = f"{img}.pid"
    with open(f"{img}.log", "w+") as log:
        rc = subprocess.run(zoo.thaw_cmd("restore", img, "--eager", "--detach", "--pidfile", pidfile),
                            stdin=go_r, stdout=log, stderr=log, timeout=120).returncode
        os.close(go_r)
        time.sleep(0.3)
        log.seek(0)
        assert rc == 0, log.read()
        pid = int(Path(pidfile).read_text())
        alive = prog in cmdline(Path(f"/proc/{pid}"))
        if alive:
            os.kill(pid, signal.SIGKILL)  # before its stdin ends: at EOF it exits by itself
        os.close(go_w)
        assert alive, f"a detached eager restore did not survive thaw's exit\n{log.read()}"


def test_signals_that_come_during_a_checkpoint_keep_their_siginfo(zoo, thaw_bin):
    """Real-time signals sigqueue()d or sent with kill() while thaw holds
    the target (they are held back during injected system calls) reach it
    afterwards with their value and si_code, in order, none lost; kill's
    still come from their sender (the target queues them to itself: from
    outside they would come from thaw)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    sig = signal.SIGRTMIN + 5
    p = zoo.start("rt_signals")
    sent = killed = 0
    done = threading.Event()

    def send():
        nonlocal sent, killed
        while not done.is_set() and sent < 50000:
            if libc.sigqueue(p.pid, sig, ctypes.c_void_p(sent + 1)) == 0:
                sent += 1
                if sent % 32 == 0:
                    # Paced: flat out it outruns the target even while it
                    # runs, and a queue beyond 32768 is refused (the test
                    # after the next).
                    time.sleep(0.002)
            if sent % 8 == 0 and killed < 5000:
                os.kill(p.pid, sig + 1)
                killed += 1
    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.05)
        for _ in range(3):
            zoo.checkpoint(p, zoo.img_path())
    finally:
        done.set()
        sender.join()
    time.sleep(0.2)
    rc, out, err = zoo.finish(p)
    assert rc == 0, _show("rt_signals", rc, out, err)
    assert out.strip().splitlines()[0] == f"received {sent}, last {sent}, wrong si_code 0, out of order 0", out
    assert out.strip().splitlines()[1] == f"kill: received {killed}, not from its parent 0", out


def test_unsupported_seccomp(zoo, thaw_bin):
    """A seccomp filter thaw does not have itself would be gone after a
    restore (the sandbox lifted in silence): refused, and the target runs on."""
    expected = zoo.run_uninterrupted("busy_writer", "seccomp")
    p = zoo.start("busy_writer", "seccomp")
    cp = zoo.checkpoint(p, zoo.img_path(), expect_ok=False)
    assert cp.returncode != 0 and "has seccomp filters thaw does not have" in cp.stderr, cp.stderr
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "busy_writer seccomp after failed checkpoint")


@pytest.mark.parametrize("how", ["--no-cow", "mlock"])
def test_checkpoint_holding_the_target(zoo, thaw_bin, how):
    """Without a forked copy (asked for with --no-cow; one that locks
    memory, which the copy would make fault; a process with a seccomp
    filter, as thaw's own when both run in one sandbox, which might forbid
    the clone) the pages are read with the target held: the image is one
    instant all the same."""
    args = [] if how == "--no-cow" else [how]
    expected = zoo.run_uninterrupted("busy_writer", *args)
    p = zoo.start("busy_writer", *args)
    img = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--pid", str(p.pid), "--out", img, *([how] if how == "--no-cow" else []))
    assert cp.returncode == 0, cp.stderr
    why = {"--no-cow": "asked to (--no-cow)", "seccomp": "it has a seccomp filter",
           "mlock": "it has locked memory (mlock)"}[how]
    assert f"pages read from the process, held because {why}" in cp.stderr, cp.stderr
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, f"original busy_writer after checkpoint ({how})")
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, f"restored busy_writer ({how})")


def test_checkpoint_with_kill_flag(zoo, thaw_bin):
    """checkpoint --kill ends the original; the image restores fine."""
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    try:
        rc = p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("original still alive after checkpoint --kill")
    assert rc != 0, f"original exited normally ({rc}) despite --kill"
    zoo.kill(p)
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, "restored simple")


@pytest.mark.parametrize("prog,args", [("simple", []), ("threads", []), ("unix_bound", ["cuda"])])
def test_restore_twice_concurrently(zoo, thaw_bin, prog, args):
    """Two restores of one image running at the same time. unix_bound cuda:
    both hold an abstract-name socket named as the CUDA driver names its own,
    which the second restore cannot have (the first holds it)."""
    expected = zoo.run_uninterrupted(prog, *args)
    p = zoo.start(prog, *args)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    r1 = zoo.restore_start(img)
    r2 = zoo.restore_start(img)
    with ThreadPoolExecutor(max_workers=2) as ex:
        f1 = ex.submit(zoo.finish, r1)
        f2 = ex.submit(zoo.finish, r2)
        res1, res2 = f1.result(), f2.result()
    _assert_same(expected, *res1, f"first concurrent restore of {prog}")
    _assert_same(expected, *res2, f"second concurrent restore of {prog}")


# ------------------------------------------------------ lazy memory restore

def test_lazy_fault_paths(zoo, thaw_bin):
    """With the background copy off, every page lazy_memory reads after the
    restore comes through a fault, and what it does to its memory right
    away is served correctly: a forked child reads it, a moved region keeps
    its data, discarded and unmapped-then-remapped memory reads as zero."""
    expected = zoo.run_uninterrupted("lazy_memory")
    p = zoo.start("lazy_memory")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    rc, out, err = zoo.restore(img, "--lazy-faults-only", "--stats")
    _assert_same(expected, rc, out, err, "lazily restored lazy_memory (faults only)")
    st = lazy_stats(err)
    assert st["lazy_mib"] >= 20, st
    assert st["background_mib"] == 0, st
    assert st["faults"] > 0 and st["fault_mib"] > 0, st
    assert st["forks"] >= 1, f"the pager saw no fork: {st}"
    assert st["dropped_mib"] >= 1, f"the pager saw nothing discarded or unmapped: {st}"


def test_lazy_restore_detached(zoo, thaw_bin):
    """restore --detach returns at once; the pager carries on as a daemon of
    its own until every page is in, and the process's memory is right."""
    expected = zoo.run_uninterrupted("lazy_memory")
    p = zoo.start("lazy_memory")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    rc, out, err = zoo.restore(img, "--detach")
    # thaw prints the pid, then the restored process (which holds thaw's
    # stdout) its own output; EOF comes once it exited.
    pid, _, rest = out.partition("\n")
    assert rc == 0 and pid.isdigit(), _show("restore --detach", rc, out, err)
    assert rest == expected, _show("restore --detach", rc, out, err)


def test_detached_restore_holds_none_of_the_callers_other_fds(zoo, thaw_bin):
    """A caller's fd that thaw inherited but the image does not have: once
    `thaw restore --detach` returned, nothing of the restore holds it (the
    namespace's init did, as long as the process lived), so a caller
    waiting for EOF on such a pipe gets it."""
    p = zoo.start("simple")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    go_r, go_w = os.pipe()
    eof_r, eof_w = os.pipe()
    pidfile = f"{img}.pid"
    try:
        with open(f"{img}.log", "w+") as log:  # the restored process holds it: not a pipe
            rc = subprocess.run(zoo.thaw_cmd("restore", img, "--detach", "--pidfile", pidfile), stdin=go_r,
                                stdout=log, stderr=log, pass_fds=(eof_w,), timeout=120).returncode
            os.close(go_r)
            os.close(eof_w)
            log.seek(0)
            assert rc == 0, log.read()
        pid = int(Path(pidfile).read_text())
        assert b"simple" in Path(f"/proc/{pid}/cmdline").read_bytes(), "the restored process is not running"
        ready, _, _ = select.select([eof_r], [], [], 20)
        holders = [d for d in os.listdir("/proc") if d.isdigit() and _holds_pipe(d, eof_r)]
        assert ready and os.read(eof_r, 1) == b"", f"the caller's pipe is still held open by {holders}"
    finally:
        os.close(go_w)
        os.close(eof_r)


def _holds_pipe(pid, our_fd):
    want = os.readlink(f"/proc/self/fd/{our_fd}")
    try:
        return any(os.readlink(f"/proc/{pid}/fd/{fd}") == want and pid != str(os.getpid())
                   for fd in os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return False


@pytest.mark.parametrize("mode", ["lazy", "faults-only"])
def test_checkpoint_of_a_process_still_being_restored_lazily(zoo, thaw_bin, mode):
    """A process checkpointed while its lazy restore is still filling its
    memory: the pages not in yet are brought in first (pagemap would show
    them missing, as if zero); the second image restores the same process."""
    expected = zoo.run_uninterrupted("lazy_memory")
    p = zoo.start("lazy_memory")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    pidfile = str(zoo.img_path()) + ".pid"
    extra = ["--lazy-faults-only"] if mode == "faults-only" else []
    r = zoo.restore_start(img, *extra, "--pidfile", pidfile)
    deadline = time.monotonic() + 20
    while not (os.path.exists(pidfile) and open(pidfile).read().endswith("\n")):
        assert r.poll() is None and time.monotonic() < deadline, "restore did not write its pidfile"
        time.sleep(0.005)
    pid = int(open(pidfile).read())
    img2 = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--pid", pid, "--out", img2, "--kill")
    assert cp.returncode == 0, cp.stderr
    zoo.kill(r)
    rc, out, err = zoo.restore(img2, "--eager")
    _assert_same(expected, rc, out, err, f"restored from a checkpoint taken during a {mode} restore")


def test_lazy_restore_fills_everything(zoo, thaw_bin):
    """The default (lazy) restore brings every stored page in, by fault or in
    the background, and then lets go of the process's memory: no mapping of
    the restored process keeps the userfaultfd flag."""
    p = zoo.start("big_heap", "64")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    pidfile = str(zoo.img_path()) + ".pid"
    r = zoo.restore_start(img, "--stats", "--pidfile", pidfile)
    deadline = time.monotonic() + 20
    while not (os.path.exists(pidfile) and open(pidfile).read().endswith("\n")):
        assert r.poll() is None and time.monotonic() < deadline, "restore did not write its pidfile"
        time.sleep(0.005)
    pid = int(open(pidfile).read())
    settled_smaps_flags(pid)
    rc, out, err = zoo.finish(r)
    assert rc == 0 and "checksum" in out, _show("restore", rc, out, err)
    st = lazy_stats(err)
    assert st["fault_mib"] + st["working_set_mib"] + st["background_mib"] + st["dropped_mib"] >= \
        st["lazy_mib"] - 0.01, st


def test_lazy_working_set(zoo, thaw_bin):
    """A lazy restore records the blocks it faulted on beside the image (the
    working-set file); later restores copy those first, so they fault far
    less, and stay correct. A damaged file is ignored and replaced;
    --no-working-set neither reads nor writes it."""
    expected = zoo.run_uninterrupted("lazy_memory")
    p = zoo.start("lazy_memory")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    ws = img / "working-set"

    rc, out, err = zoo.restore(img, "--lazy-faults-only", "--stats")
    _assert_same(expected, rc, out, err, "first restore (faults only)")
    first = lazy_stats(err)
    assert first["faults"] > 0 and first["working_set_mib"] == 0, first
    assert ws.exists(), "the restore wrote no working-set file"

    rc, out, err = zoo.restore(img, "--stats")
    _assert_same(expected, rc, out, err, "restore with the working set")
    # Mappings mostly in the working set are filled whole (no lazy memory
    # left at all, then); the rest of it goes in before the process runs.
    if "lazy memory" in err:
        st = lazy_stats(err)
        assert st["working_set_mib"] > 0 or st["early_faults"] > 0, (first, st)
        # faults the working set did not foresee (the others only say the
        # process outran the copy)
        unforeseen = st["faults"] - st["zero_faults"] - st["early_faults"]
        assert unforeseen < first["faults"] - first["zero_faults"], (first, st)

    raw = bytearray(ws.read_bytes())
    raw[-1] ^= 0xFF  # an entry no longer matching the file's checksum
    ws.write_bytes(bytes(raw))
    rc, out, err = zoo.restore(img, "--lazy-faults-only", "--stats")
    _assert_same(expected, rc, out, err, "restore with a damaged working-set file")
    assert ws.read_bytes() != bytes(raw), "the damaged working-set file was not replaced"
    rc, out, err = zoo.restore(img, "--stats")
    _assert_same(expected, rc, out, err, "restore with the replaced working set")
    assert "lazy memory" not in err or (lazy_stats(err)["working_set_mib"] > 0
                                        or lazy_stats(err)["early_faults"] > 0), err

    before = ws.read_bytes()
    rc, out, err = zoo.restore(img, "--stats", "--no-working-set", "--lazy-faults-only")
    _assert_same(expected, rc, out, err, "restore with --no-working-set")
    assert lazy_stats(err)["working_set_mib"] == 0 and ws.read_bytes() == before


# -------------------------------------------------------------- exit status

def test_restore_exit_status(zoo, thaw_bin):
    """thaw restore exits with the restored process's status."""
    p = zoo.start("simple")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    # EOF instead of "go": simple prints "FAIL: no go" and exits 1
    rc, out, err = zoo.restore(img, data=b"")
    assert rc == 1 and out == "FAIL: no go (EOF on stdin)\n", _show("restore", rc, out, err)
    # "die": simple kills itself with SIGTERM -> 128 + 15
    rc, out, err = zoo.restore(img, data=b"die\n")
    assert rc == 128 + signal.SIGTERM, _show("restore", rc, out, err)



def test_exit_status_when_the_process_ends_before_the_pager(zoo, thaw_bin):
    """A lazily restored process that ends before its pages are all in:
    init, done with it, goes (closing its watch on thaw) before the pager
    tells it that thaw is done. Telling a gone init must not kill thaw with
    SIGPIPE (a restore of a short-lived Python program exited -13 now and
    then); thaw exits with the process's own status. Made certain here:
    thaw is stopped while the process is killed and init goes."""
    p = zoo.start("simple")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    pidfile = zoo.tmp_path / "restored.pid"
    r = zoo.restore_start(img, "--lazy-faults-only", "--pidfile", pidfile)
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().endswith("\n")):
        assert time.monotonic() < deadline and r.poll() is None, "the restored process did not start"
        time.sleep(0.02)
    host = int(pidfile.read_text())
    os.kill(r.pid, signal.SIGSTOP)
    try:
        # its lazy heap untouched, the pager (stopped) not done
        os.kill(host, signal.SIGKILL)
        while Path(f"/proc/{host}").exists():  # init reaped it
            assert time.monotonic() < deadline, "the restored process did not end"
            time.sleep(0.02)
        time.sleep(0.3)  # init's watch gives up 50 ms after the process ended
    finally:
        os.kill(r.pid, signal.SIGCONT)
    rc, out, err = zoo.finish(r, data=b"")
    assert rc == 128 + signal.SIGKILL, _show("restore", rc, out, err)


# ------------------------------------------------------------ failure paths

def test_unsupported_tcp(zoo, thaw_bin):
    """A TCP socket makes checkpoint fail cleanly; the target survives."""
    expected = zoo.run_uninterrupted("unsupported_tcp")
    p = zoo.start("unsupported_tcp")
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, expect_ok=False)
    assert cp.returncode != 0, f"checkpoint of a TCP socket succeeded:\n{cp.stderr}"
    assert "TCP connections are not supported" in cp.stderr, f"error does not say so:\n{cp.stderr}"
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "unsupported_tcp after failed checkpoint")


def test_a_zombie_child_with_no_exit_signal_is_refused_and_pointed_out(zoo, thaw_bin):
    """A zombie child with no exit signal, what a killed thaw checkpoint
    leaves of its copy-on-write copy, cannot be made again (a plain wait
    would not see it): refused, pointed out as such, the target survives.
    (An ordinary zombie is restored:
    test_a_child_that_exited_unwaited_is_waited_for_after_restore.)"""
    expected = zoo.run_uninterrupted("children", "zombie")
    p = zoo.start("children", "zombie")
    cp = zoo.checkpoint(p, zoo.img_path(), expect_ok=False)
    assert cp.returncode != 0, f"checkpoint of a process with a clone zombie succeeded:\n{cp.stderr}"
    assert "zombie with no exit signal" in cp.stderr, cp.stderr
    assert re.search(r"child \d+ is a zombie", cp.stderr), cp.stderr
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "children zombie after failed checkpoint")


def test_a_child_sharing_its_parents_fd_table_is_refused(zoo, thaw_bin):
    """children shared-files: its child was made with clone(CLONE_FILES);
    restored apart, the two tables would diverge in silence: refused,
    naming the child and why, and every process runs on."""
    expected = zoo.run_uninterrupted("children", "shared-files")
    p = zoo.start("children", "shared-files")
    cp = zoo.checkpoint(p, zoo.img_path(), expect_ok=False)
    assert cp.returncode != 0, cp.stderr
    assert re.search(r"child process \d+ .*shares its fd table", cp.stderr), cp.stderr
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "children shared-files after a refused checkpoint")


@pytest.mark.parametrize("mode", ["kill", "beside"])
def test_a_running_child_comes_back_with_its_pid(zoo, thaw_bin, mode):
    """children: its child runs (paused) at checkpoint; restored, the
    parent kills it by the pid it had and its waitpid reaps it. Restored
    beside its running original too (the copy's namespace has the pids)."""
    expected = zoo.run_uninterrupted("children")
    p = zoo.start("children")
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, kill=mode == "kill")
    assert "2 processes" in cp.stderr, cp.stderr
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, f"restored children ({mode})")
    if mode == "beside":
        rc, out, err = zoo.finish(p)
        _assert_same(expected, rc, out, err, "original children after the checkpoint and a restore")


def test_pages_a_fork_left_shared_are_stored_once(zoo, thaw_bin):
    """tree: its four processes all have the 8 MiB buffer filled before
    the forks (copy-on-write, never written since): the image stores it
    once (pages.img was four times larger), and each process gets it back
    (A and the parent check theirs)."""
    expected = zoo.run_uninterrupted("tree")
    p = zoo.start("tree")
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    pages = (img / "pages.img").stat().st_size
    assert 8 << 20 <= pages < 12 << 20, f"pages.img is {pages} bytes"
    rc, out, err = zoo.restore(img, "--eager")
    _assert_same(expected, rc, out, err, "restored tree")


@pytest.mark.parametrize("prog", ["tree", "memfd", "mmaps"])
def test_restored_processes_hold_only_their_own_fds(zoo, thaw_bin, prog):
    """Every restored process of a tree has exactly the fds its original
    had: none of thaw's (a restore used to leave the fds of its memfd
    objects open in the process: two extra fds in memfd)."""
    p = zoo.start(prog)

    def fds_of_tree(root):
        out, todo = [], [root]
        while todo:
            pid = todo.pop(0)
            out.append(sorted(int(x) for x in os.listdir(f"/proc/{pid}/fd")))
            kids = []
            for t in os.listdir(f"/proc/{pid}/task"):
                kids += [int(k) for k in Path(f"/proc/{pid}/task/{t}/children").read_text().split()]
            todo += sorted(kids)
        return out

    before = fds_of_tree(p.pid)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    pidfile = zoo.tmp_path / "restored.pid"
    r = zoo.restore_start(img, "--eager", "--pidfile", pidfile)
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        assert r.poll() is None, zoo.finish(r)
        time.sleep(0.05)
    assert pidfile.read_text().strip(), zoo.finish(r, timeout=1)
    after = fds_of_tree(int(pidfile.read_text()))
    rc, out, err = zoo.finish(r)
    assert rc == 0 and out.endswith("DONE\n"), (rc, out, err)
    assert after == before, f"fds after restore {after} != before {before}"


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_child_that_exited_unwaited_is_waited_for_after_restore(zoo, thaw_bin, mode):
    """children exited: its child has exited and is not reaped;
    restored, the program's waitpid for it gets its status, as it would
    have."""
    expected = zoo.run_uninterrupted("children", "exited")
    p = zoo.start("children", "exited")
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    rc, out, err = zoo.restore(img, *(["--eager"] if mode == "eager" else []))
    _assert_same(expected, rc, out, err, f"{mode} restore of a process with an exited child")


def test_inotify_events_queued_at_checkpoint_are_named_as_left_out(zoo, thaw_bin, tmp_path):
    """An inotify instance with an event not read yet: the checkpoint says
    those bytes are not in the image (reading them would take them from the
    running target, which still reads its event after)."""
    watched = tmp_path / "watched"
    watched.mkdir()
    code = (
        "import ctypes, os, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = libc.inotify_init1(0)\n"
        f"assert libc.inotify_add_watch(fd, b'{watched}', 0x100) == 1\n"
        f"open('{watched}/new', 'w').close()\n"
        "print('READY', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(len(os.read(fd, 4096)) > 0)\n")
    p = _start_python(zoo, code)
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
    assert cp.returncode == 0, cp.stderr
    assert "bytes of inotify events not read yet are not in the image" in cp.stderr, cp.stderr
    out, _ = p.communicate(b"go\n", timeout=60)
    assert out == b"True\n", out


@pytest.mark.parametrize("mode,says", [
    ("lease", "it holds a LEASE (a lease or delegation), which a restore cannot take again"),
    ("sockflock", "it holds a file lock (FLOCK), which a restore would not take again on this kind of file"),
    ("caps", "its capabilities differ from thaw's"),
    ("nnp", "no_new_privs is 1"),
    ("netns", "runs in another network namespace"),
])
def test_unsupported_restrictions(zoo, thaw_bin, mode, says):
    """What an image does not hold and a restore would change in silence (a
    lease, a lock on a socket, a dropped capability regained,
    no_new_privs cleared, another network namespace) is refused by name;
    the target keeps it."""
    expected = zoo.run_uninterrupted("unsupported_restrictions", mode)
    p = zoo.start("unsupported_restrictions", mode)
    cp = zoo.checkpoint(p, zoo.img_path(), expect_ok=False)
    assert cp.returncode != 0, f"checkpoint of a process with {mode} succeeded:\n{cp.stderr}"
    assert says in cp.stderr, cp.stderr
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, f"unsupported_restrictions {mode} after failed checkpoint")


@pytest.mark.parametrize("mode", ["plain", "sqpoll"])
def test_unsupported_io_uring(zoo, thaw_bin, mode):
    """io_uring makes checkpoint fail cleanly, naming it; with SQPOLL the
    ring's kernel thread (a thread of the process that never stops for
    ptrace) must not hang the checkpoint. The target runs on."""
    args = [mode] if mode == "sqpoll" else []
    expected = zoo.run_uninterrupted("unsupported_io_uring", *args)
    p = zoo.start("unsupported_io_uring", *args)
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, expect_ok=False)
    assert cp.returncode != 0, f"checkpoint of an io_uring fd succeeded:\n{cp.stderr}"
    assert "io_uring is not supported" in cp.stderr, cp.stderr
    assert p.poll() is None, f"target died after failed checkpoint (rc={p.returncode})"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "unsupported_io_uring after failed checkpoint")


def test_checkpoint_nonexistent_pid(zoo, thaw_bin):
    dead = subprocess.Popen(["true"])
    dead.wait(timeout=10)
    cp = zoo.thaw("checkpoint", "--pid", dead.pid, "--out", zoo.img_path())
    assert cp.returncode != 0, "checkpoint of a nonexistent pid succeeded"
    assert cp.stderr.strip(), "no error message on stderr"
    cp = zoo.thaw("checkpoint", "--pid", 0, "--out", zoo.img_path())
    assert cp.returncode != 0 and "--pid 0 is not a process id" in cp.stderr, cp.stderr
    cp = zoo.thaw("checkpoint", "--pid", os.getpid(), "--out", "")
    assert cp.returncode != 0 and "--out is empty" in cp.stderr, cp.stderr


def test_checkpoint_of_a_thread_id_or_a_kernel_thread_says_what_it_is(zoo, thaw_bin):
    p = zoo.start("threads")
    tids = [int(t) for t in os.listdir(f"/proc/{p.pid}/task") if int(t) != p.pid]
    assert tids, "the zoo program 'threads' has no other thread"
    cp = zoo.thaw("checkpoint", "--pid", tids[0], "--out", zoo.img_path())
    assert cp.returncode != 0
    assert f"that is a thread of process {p.pid}, not a process: use --pid {p.pid}" in cp.stderr, cp.stderr
    assert p.poll() is None
    cp = zoo.thaw("checkpoint", "--pid", 2, "--out", zoo.img_path())  # kthreadd
    assert cp.returncode != 0 and "that is a kernel thread (kthreadd)" in cp.stderr, cp.stderr


def _largest_file(root):
    best, size = None, -1
    for dirpath, _, files in os.walk(root):
        for f in files:
            path = Path(dirpath) / f
            if path.is_file() and not path.is_symlink():
                s = path.stat().st_size
                if s > size:
                    best, size = path, s
    return best, size


def test_checkpoint_of_exited_process(zoo, thaw_bin):
    """A process that exited but was not reaped yet (a zombie) is reported as
    exited, not as a ptrace permission problem; no image is left."""
    p = zoo.start("simple")
    p.stdin.write(b"go\n")
    p.stdin.flush()
    deadline = time.monotonic() + 10
    while not open(f"/proc/{p.pid}/stat").read().split(") ")[1].startswith("Z"):
        assert time.monotonic() < deadline, "simple did not exit"
        time.sleep(0.01)
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, expect_ok=False)
    assert cp.returncode != 0 and "has exited" in cp.stderr, cp.stderr
    assert not os.path.exists(img)


@pytest.mark.parametrize("detach", [False, True])
def test_corrupt_image_detected(zoo, thaw_bin, detach):
    """A flipped byte in the image (the largest file, i.e. page data) makes
    restore fail with a checksum error. Detached, the pager that finds it
    says so on the process's own stderr before it is stopped."""
    p = zoo.start("big_heap", "8")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    path, size = _largest_file(img)
    assert path is not None and size > 0, f"image {img} has no files"
    with open(path, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    rc, out, err = zoo.restore(img, *(["--detach"] if detach else []))
    if detach:  # thaw is done at once; the process is stopped later
        assert rc == 0 and "DONE" not in out, _show("restore --detach", rc, out, err)
    else:
        assert rc != 0, f"restore of a corrupted image ({path.name}) succeeded\n" + _show(
            "restore", rc, out, err)
    assert "checksum" in err.lower(), f"error does not mention checksum:\n{err}"


def test_missing_mapped_file(zoo, thaw_bin):
    """A file mapped by the process that disappeared after checkpoint makes
    restore fail with an error naming the file."""
    p = zoo.start("mmaps")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    deleted = []
    for dirpath, _, files in os.walk(p.testtmp):
        for f in files:
            path = os.path.join(dirpath, f)
            os.unlink(path)
            deleted.append(path)
    assert deleted, "mmaps created no temp files"
    rc, out, err = zoo.restore(img)
    assert rc != 0, "restore succeeded although mapped files were deleted\n" + _show(
        "restore", rc, out, err)
    names = set(deleted) | {os.path.realpath(d) for d in deleted}
    assert any(n in err for n in names), (
        f"error does not name a missing file ({', '.join(sorted(deleted))}):\n{err}")


# ------------------------------------------------------------------ inspect

def test_inspect_json(zoo, thaw_bin):
    p = zoo.start("threads")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    rc, out, err = zoo.finish(p)
    assert rc == 0, _show("original", rc, out, err)
    cp = zoo.thaw("inspect", img, "--json")
    assert cp.returncode == 0, f"thaw inspect --json failed:\n{cp.stderr}"
    try:
        json.loads(cp.stdout)
    except ValueError as e:
        pytest.fail(f"thaw inspect --json output is not JSON ({e}):\n{cp.stdout[:2000]}")
    cp = zoo.thaw("inspect", img)
    assert cp.returncode == 0, f"thaw inspect failed:\n{cp.stderr}"
    assert cp.stdout.strip(), "thaw inspect printed nothing"


def test_inspect_counts_shared_memory_as_stored(zoo, thaw_bin):
    """Shared anonymous memory and memfds are stored once per object; inspect
    shows each mapping's part of it (it showed 0 KiB for them)."""
    p = zoo.start("mmaps")
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.finish(p)
    info = json.loads(zoo.thaw("inspect", img, "--json").stdout)
    shared = [v for v in info["mappings"] if v["kind"] == "shmem"]
    assert shared and all(v["stored_bytes"] > 0 for v in shared), shared
    assert sum(v["stored_bytes"] for v in info["mappings"]) >= info["pages_bytes"] // 2


def _image_as_nobody(zoo, prog):
    """An image of zoo program `prog` run as nobody (uid/gid 65534),
    checkpointed with --kill once READY."""
    cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(zoo.prog_path(prog))]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         close_fds=True)
    try:
        assert p.stdout.readline() == b"READY\n"
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        p.wait(timeout=10)
        return img
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_non_root_process_keeps_its_credentials(zoo, thaw_bin, tmp_path):
    """A process running as nobody is restored as nobody, in every thread."""
    expected = zoo.run_uninterrupted("threads")
    img = _image_as_nobody(zoo, "threads")
    pidfile = tmp_path / "restored.pid"
    q = subprocess.Popen([str(thaw_bin), "restore", str(img), "--pidfile", str(pidfile)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.time() + 20
        while not (pidfile.exists() and pidfile.read_text().strip()) and time.time() < deadline:
            time.sleep(0.02)
        pid = pidfile.read_text().strip()
        uids = set()
        for task in os.listdir(f"/proc/{pid}/task"):
            status = open(f"/proc/{pid}/task/{task}/status").read()
            uids.add(tuple(next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1:]))
        out, err = q.communicate(b"go\n", timeout=30)
    finally:
        if q.poll() is None:
            os.killpg(q.pid, signal.SIGKILL)
            q.wait()
    assert uids == {("65534", "65534", "65534", "65534")}, uids
    assert q.returncode == 0 and out.decode() == expected, err.decode()


def test_non_root_process_keeps_its_prctl_settings(zoo, thaw_bin):
    """As nobody: the restore changes each thread's credentials from root's,
    and such a change makes the process dumpable and clears the death
    signal by the kernel's rule, so those are set after them."""
    img = _image_as_nobody(zoo, "prctl_settings")
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == "threads: prctl ok\nprocess: prctl ok\nDONE\n", _show("restore", rc, out, err)


@pytest.mark.parametrize("wait", ["poll", "nanosleep", "futex"])
def test_checkpoint_leaves_a_timed_wait_to_finish_its_time(zoo, thaw_bin, wait):
    """A thread in a timed wait the kernel restarts with what is left of its
    time (a relative poll, nanosleep, futex wait with a timeout): the
    checkpoint ran its own calls in the thread and then let it go with the
    wait started over, its whole timeout again. It goes on now with
    restart_syscall (219), which /proc/PID/syscall shows it sleeping in."""
    calls = {
        "poll": "libc.poll(None, 0, 600000)",
        "nanosleep": "ts = (ctypes.c_long * 2)(600, 0); libc.nanosleep(ts, None)",
        "futex": "word = ctypes.c_int(0); ts = (ctypes.c_long * 2)(600, 0); "
                 "libc.syscall(202, ctypes.byref(word), 0, 0, ts, None, 0)",  # FUTEX_WAIT, relative
    }
    code = ("import ctypes\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print('READY', flush=True)\n" + calls[wait] + "\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def sleeping_in():
        deadline = time.time() + 20
        while time.time() < deadline:
            with open(f"/proc/{p.pid}/syscall") as f:
                words = f.read().split()
            if words and words[0] not in ("running", "0", "1"):  # past the READY write
                return words[0]
            time.sleep(0.02)
        return "never asleep"

    try:
        assert p.stdout.readline() == b"READY\n"
        first = sleeping_in()
        assert first in ("7", "35", "202", "230"), first  # poll, nanosleep, futex, clock_nanosleep
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
        assert cp.returncode == 0, cp.stderr
        assert p.poll() is None, "the process died during the checkpoint"
        assert sleeping_in() == "219", f"after the checkpoint it waits in syscall {sleeping_in()}, not restart_syscall"
    finally:
        p.kill()
        p.wait()


def test_names_ending_in_deleted_are_files_like_any_other(zoo, thaw_bin, tmp_path):
    """/proc writes " (deleted)" after an unlinked file's path; a file or
    directory whose name ends so is not deleted: open, mapped and as the
    working directory it is checkpointed and restored."""
    d = tmp_path / "work (deleted)"
    d.mkdir()
    (d / "data (deleted)").write_bytes(b"kept" * 1024)
    code = ("import mmap, os, sys\n"
            "f = open('data (deleted)', 'rb')\n"
            "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(os.getcwd(), f.read(4).decode(), m[:4].decode(), flush=True)\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], cwd=d, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"READY\n"
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
    finally:
        p.kill()
        p.wait()
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc == 0 and out == f"{d} kept kept\n", _show("restore", rc, out, err)


def test_a_deleted_working_directory_is_refused_by_name(zoo, thaw_bin, tmp_path):
    """A process whose working directory was removed: refused, the
    directory named as it was, and the process runs on."""
    d = tmp_path / "gone"
    d.mkdir()
    code = ("import os, sys\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print('still here', flush=True)\n")
    _refused_and_runs_on(zoo, code, f"its working directory {d} was deleted;", b"still here\n", cwd=d,
                         before=d.rmdir)


def test_a_file_changed_only_in_its_modification_time_says_so(zoo, thaw_bin, tmp_path):
    """A file opened read-only whose content was rewritten in place (same
    size, same inode) refuses the restore, and the message says what
    changed, not "size 4096 -> 4096"."""
    data = tmp_path / "data"
    data.write_bytes(b"a" * 4096)
    code = ("import sys\n"
            f"f = open({str(data)!r}, 'rb')\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n")
    img = _python_image(zoo, code)
    st = data.stat()
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 2_500_000_000))
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc != 0 and "changed since checkpoint (modified: its modification time moved by +2.500 s)" in err, \
        _show("restore", rc, out, err)


def test_a_file_mapped_only_shared_may_change_a_privately_mapped_one_may_not(zoo, thaw_bin, tmp_path):
    """A file every mapping of which is shared is the process's shared
    state, not the image's (SQLite's -shm, which each connection writes):
    written since the checkpoint, it restores with what it holds now (it
    was refused as changed). One mapped privately still is refused: the
    pages the image does not hold would come from the new content."""
    shared, private = tmp_path / "shared", tmp_path / "private"
    for f in (shared, private):
        f.write_bytes(b"a" * 4096)
    code = ("import mmap, sys\n"
            f"with open({str(shared)!r}, 'r+b') as f:\n"
            "    s = mmap.mmap(f.fileno(), 4096)\n"
            f"with open({str(private)!r}, 'rb') as f:\n"
            "    p = mmap.mmap(f.fileno(), 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(s[:5].decode(), p[:5].decode(), flush=True)\n")
    img = _python_image(zoo, code)
    with open(shared, "r+b") as f:
        f.write(b"HELLO")
    st = shared.stat()
    os.utime(shared, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc == 0 and out == "HELLO aaaaa\n", _show("restore", rc, out, err)
    private.write_bytes(b"b" * 4096)
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc != 0 and f"mapped file {private}: file changed since checkpoint" in err, _show("restore", rc, out, err)


def test_a_queue_of_signals_too_long_to_read_is_refused_at_once(zoo, thaw_bin):
    """The kernel lets a tracer read a queued signal only by walking the
    queue from its head, so reading N costs N²/2: a flooded process
    (tens of thousands of real-time signals) was held for minutes. Beyond
    32768 the checkpoint is refused, and the process keeps every signal,
    in order."""
    code = ("import ctypes, os, resource, signal, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "resource.setrlimit(resource.RLIMIT_SIGPENDING, (50000, 50000))\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN])\n"
            "for i in range(40000):\n"
            "    assert libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), ctypes.c_void_p(i)) == 0\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "n = 0\n"
            "while (info := signal.sigtimedwait([signal.SIGRTMIN], 0)) is not None:\n"
            "    assert info.si_code == -1, info\n"  # SI_QUEUE
            "    n += 1\n"
            "print(n, flush=True)\n")
    _refused_and_runs_on(zoo, code, "more than 32768 signals queued", b"40000\n")


def test_restored_process_has_exactly_its_fds(zoo, thaw_bin):
    """No fd of the restore's machinery is left in the process. (The status
    pipe's write end once was, in about a third of restores: thaw stopped
    the restorer between its last write and its close.)"""
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    fds = sorted(os.listdir(f"/proc/{p.pid}/fd"), key=int)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    zoo.kill_original(p)
    # The race needs thaw to win a CPU at the wrong moment: busy CPUs help.
    spinners = [subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        _restore_and_compare_fds(zoo, img, fds, expected)
    finally:
        for s in spinners:
            s.kill()
            s.wait()


def _restore_and_compare_fds(zoo, img, fds, expected):
    for i in range(16):
        pidfile = zoo.tmp_path / f"restored-{i}.pid"
        r = zoo.restore_start(img, "--detach", "--pidfile", pidfile)
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            # --detach: thaw may exit (0) between this loop's looks at the
            # pidfile, which it wrote first; only a failure ends the wait.
            assert r.poll() in (None, 0) and time.monotonic() < deadline, "thaw restore did not write its pidfile"
            time.sleep(0.01)
        pid = int(pidfile.read_text())
        assert sorted(os.listdir(f"/proc/{pid}/fd"), key=int) == fds, f"restore {i + 1}"
        rc, out, err = zoo.finish(r)
        # --detach prints the pid first; the process's output follows.
        assert out.startswith(f"{pid}\n"), _show(f"restore {i + 1}", rc, out, err)
        _assert_same(expected, rc, out[len(f"{pid}\n"):], err, f"restore {i + 1}")


def test_detached_restore_does_not_hold_the_callers_stdout(zoo, thaw_bin, tmp_path):
    """`pid=$(thaw restore --detach IMG)` returns at once: nothing of the
    restore but the process keeps thaw's stdout, and this process's own
    stdio is elsewhere (/dev/null)."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", "import time\nwhile True: time.sleep(1)"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
    finally:
        p.kill()
        p.wait()
    try:
        cp = subprocess.run(zoo.thaw_cmd("restore", img, "--detach"), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("thaw restore --detach kept its stdout open after it returned")
    pid = cp.stdout.strip()
    assert cp.returncode == 0 and pid.isdigit(), cp.stderr
    os.kill(int(pid), signal.SIGKILL)


def _python_image(zoo, code, before=None):
    """An image of `python3 -c code` (checkpointed with --kill) taken once it
    printed READY (and `before(process)` ran); its stdio are pipes, which a
    restore hands over."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"READY\n"
        if before:
            before(p)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        return img
    finally:
        p.kill()
        p.wait()


def _refused_and_runs_on(zoo, code, message, expected, cwd=None, before=None):
    """`python3 -c code`, once it printed READY (and `before()` ran): its
    checkpoint is refused with `message` in the error, leaves no image, and
    the process goes on to print `expected` after a line on its stdin."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"READY\n", p.stderr.read()
        if before:
            before()
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img)
        assert cp.returncode != 0 and message in cp.stderr, cp.stderr
        assert not Path(img).exists()
        out, _ = p.communicate(b"go\n", timeout=60)
        assert p.returncode == 0 and out == expected, (out, p.returncode)
    finally:
        p.kill()
        p.wait()


def test_a_checkpoint_beside_another_still_reading_its_copy_says_so(zoo, thaw_bin):
    """While one checkpoint reads the pages from its copy-on-write copy (the
    target already released), a second one finds that copy as a child: it
    says another checkpoint is running, not "process trees are not
    supported". A live child named as thaw names its copy stands in for it
    (a real one lives only while the pages are read)."""
    code = ("import ctypes, os, sys, time\n"
            "kid = os.fork()\n"
            "if kid == 0:\n"
            "    ctypes.CDLL(None).prctl(15, b'thaw-cow-copy', 0, 0, 0)\n"
            "    time.sleep(600)\n"
            "    os._exit(0)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "os.kill(kid, 9)\n"
            "os.waitpid(kid, 0)\n"
            "print('ran on', flush=True)\n")
    _refused_and_runs_on(zoo, code, "another thaw checkpoint of process", b"ran on\n")


def test_restore_of_a_full_fd_table(zoo, thaw_bin):
    """A process whose highest fd is the last its open-files limit allows
    (the restore used to set that limit first, then fail to park its own
    fds above the image's)."""
    code = ("import os, resource, sys, time\n"
            "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"
            "os.dup2(os.open('/dev/null', os.O_RDONLY), 63)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print('limit %d, fd 63 %s' % (resource.getrlimit(resource.RLIMIT_NOFILE)[0],\n"
            "      os.readlink('/proc/self/fd/63')), flush=True)\n")
    rc, out, err = zoo.restore(_python_image(zoo, code), data=b"go\n")
    assert rc == 0 and out == "limit 64, fd 63 /dev/null\n", _show("restore", rc, out, err)


def test_a_restore_under_a_lower_open_files_limit_says_what_to_raise(zoo, thaw_bin):
    """A process with fd 1000, restored by a thaw whose hard open-files
    limit is 256: the restore cannot park its own fds above the image's, and
    says so with the limit it needs (it used to fail with "move fd 4 out of
    the way: Invalid argument"), leaving nothing behind; with that limit it
    runs."""
    code = ("import os, sys\n"
            "os.dup2(os.open('/dev/null', os.O_RDONLY), 1000)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(os.readlink('/proc/self/fd/1000'), flush=True)\n")
    img = _python_image(zoo, code)

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    cp = subprocess.run([str(thaw_bin), "restore", str(img)], input=b"go\n", capture_output=True,
                        preexec_fn=low_limit, timeout=120)
    err = cp.stderr.decode()
    cap_sys_resource = 24
    caps = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("CapEff:")), 16)
    if caps & (1 << cap_sys_resource):  # thaw raises its hard limit itself
        assert cp.returncode == 0 and cp.stdout == b"/dev/null\n", err
    else:
        assert cp.returncode == 1 and cp.stdout == b"", err
        assert "the image has fd 1000" in err and "open-files limit is 256" in err and "ulimit -n" in err, err
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc == 0 and out == "/dev/null\n", _show("restore", rc, out, err)


@pytest.mark.parametrize("hard", [256, 4096])
def test_a_checkpoint_under_a_lower_open_files_limit(zoo, thaw_bin, hard):
    """thaw holds a copy of each of the target's fds while it checkpoints:
    a process with 400 fds, checkpointed by a thaw whose soft open-files
    limit is 256, is taken when the hard limit allows more; below the hard
    limit the error says which `ulimit -n` it needs (it used to fail at some
    fd with "Too many open files"), and the target runs on."""
    code = ("import os, sys\n"
            "fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(400)]\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(len(os.listdir('/proc/self/fd')) > 400, flush=True)\n")
    p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"READY\n"
        img = zoo.img_path()

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

        cp = subprocess.run(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, preexec_fn=low_limit, timeout=120)
        if hard == 256:
            assert cp.returncode == 1 and "open-files limit is 256" in cp.stderr and "ulimit -n" in cp.stderr, \
                cp.stderr
            assert not img.exists()
        else:
            assert cp.returncode == 0, cp.stderr
        out, _ = p.communicate(b"go\n", timeout=60)
        assert p.returncode == 0 and out == b"True\n"
    finally:
        p.kill()
        p.wait()


def test_a_cpuset_is_not_recorded_as_pinning(zoo, thaw_bin):
    """A process in a container's cpuset, checkpointed from outside, runs
    on the CPUs that cpuset allows: the narrower affinity is the
    container's, not the process's, so a restore elsewhere must not pin
    it to those CPU numbers (it used to be recorded as pinning)."""
    if len(os.sched_getaffinity(0)) < 2 or not Path("/sys/fs/cgroup/cpuset/cpuset.cpus").exists():
        pytest.skip("needs two CPUs and the v1 cpuset hierarchy")
    cg = Path(f"/sys/fs/cgroup/cpuset/thaw-test-{os.getpid()}")
    cg.mkdir()
    try:
        (cg / "cpuset.mems").write_text(Path("/sys/fs/cgroup/cpuset/cpuset.mems").read_text())
        first = min(os.sched_getaffinity(0))
        (cg / "cpuset.cpus").write_text(str(first))
        code = ("import os, sys\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "print(sorted(os.sched_getaffinity(0)), flush=True)\n")

        def into_cpuset(p):
            (cg / "cgroup.procs").write_text(str(p.pid))
            assert os.sched_getaffinity(p.pid) == {first}
        img = _python_image(zoo, code, into_cpuset)
    finally:
        cg.rmdir()
    rc, out, err = zoo.restore(img, data=b"go\n")
    assert rc == 0 and out == f"{sorted(os.sched_getaffinity(0))}\n", _show("restore", rc, out, err)


def test_o_path_fds_come_back(zoo, thaw_bin):
    """An fd opened with O_PATH (no file position): the restore seeked it
    and failed, and with --kill the process was lost."""
    code = ("import os, sys\n"
            "fd = os.open('/etc/hostname', os.O_PATH)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(os.readlink('/proc/self/fd/%d' % fd), flush=True)\n")
    rc, out, err = zoo.restore(_python_image(zoo, code), data=b"go\n")
    assert rc == 0 and out == "/etc/hostname\n", _show("restore", rc, out, err)


def test_unsupported_sysv_shared_memory(zoo, thaw_bin):
    """A System V shared memory segment attached with shmat: refused by
    name (a restore would give the process a private copy, no longer the
    segment), and the target runs on as before."""
    code = ("import ctypes, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "libc.shmat.restype = ctypes.c_void_p\n"
            "sid = libc.shmget(0, 4096, 0o1600)\n"  # IPC_PRIVATE, IPC_CREAT | 0600
            "p = libc.shmat(sid, None, 0)\n"
            "libc.shmctl(sid, 0, None)\n"  # IPC_RMID: gone once detached
            "ctypes.memmove(p, b'kept', 4)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(ctypes.string_at(p, 4).decode(), flush=True)\n")
    _refused_and_runs_on(zoo, code, "System V shared memory", b"kept\n")


def test_unconnected_unix_stream_and_seqpacket_sockets(zoo, thaw_bin):
    """Sockets made and never connected (a client about to connect): they
    come back as such and can connect after the restore."""
    code = ("import os, socket, sys\n"
            "st = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "sp = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "for s, kind in ((st, socket.SOCK_STREAM), (sp, socket.SOCK_SEQPACKET)):\n"
            "    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == kind\n"
            "    srv = socket.socket(socket.AF_UNIX, kind)\n"
            "    srv.bind('\\0thaw-test-%d-%d' % (os.getpid(), kind))\n"
            "    srv.listen(1)\n"
            "    s.connect(srv.getsockname())\n"
            "    c, _ = srv.accept()\n"
            "    s.send(b'hi')\n"
            "    print(kind, c.recv(2).decode(), flush=True)\n")
    rc, out, err = zoo.restore(_python_image(zoo, code), data=b"go\n")
    assert rc == 0 and out == "1 hi\n5 hi\n", _show("restore", rc, out, err)


def test_interrupted_checkpoint_puts_everything_back(zoo, thaw_bin):
    """Ctrl-C while thaw holds the target: thaw stops at its next safe point,
    lets the target go as it was (even with --kill), leaves no image, no
    temporary directory, and only then ends by the signal."""
    expected = zoo.run_uninterrupted("big_heap", "512")
    p = zoo.start("big_heap", "512")
    img = zoo.img_path()
    thaw = subprocess.Popen(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img, "--no-cow", "--kill"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 30
    while "tracing stop" not in Path(f"/proc/{p.pid}/status").read_text():
        assert thaw.poll() is None and time.monotonic() < deadline, "thaw never held the target"
        time.sleep(0.001)
    thaw.send_signal(signal.SIGINT)
    _, err = thaw.communicate(timeout=60)
    assert thaw.returncode == -signal.SIGINT, (thaw.returncode, err)
    assert "interrupted by SIGINT" in err, err
    assert not Path(img).exists() and not list(Path(img).parent.glob(Path(img).name + ".tmp.*"))
    assert p.poll() is None, "the target died"
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "big_heap after an interrupted checkpoint")


def test_a_stopped_process_comes_back_stopped(zoo, thaw_bin):
    """Stopped by job control at checkpoint (SIGSTOP, Ctrl-Z), a process is
    restored stopped, and goes on as before once continued."""
    expected = zoo.run_uninterrupted("simple")
    p = zoo.start("simple")
    os.kill(p.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while "T (stopped)" not in Path(f"/proc/{p.pid}/status").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    assert "T (stopped)" in Path(f"/proc/{p.pid}/status").read_text(), "the original was continued"
    zoo.kill_original(p)
    pidfile = zoo.tmp_path / "stopped.pid"
    r = zoo.restore_start(img, "--pidfile", pidfile)
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert r.poll() is None and time.monotonic() < deadline + 20
        time.sleep(0.01)
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    assert "T (stopped)" in Path(f"/proc/{pid}/status").read_text()
    os.kill(pid, signal.SIGCONT)
    rc, out, err = zoo.finish(r)
    _assert_same(expected, rc, out, err, "restored stopped process after SIGCONT")


def test_udp_ports_the_kernel_chose_are_chosen_again_when_taken(zoo, thaw_bin):
    """Restored while the original still holds its UDP ports (as a runtime
    restores one snapshot many times on one host): the sockets bound by the
    kernel get new ports from it, connected ones stay connected to their
    peer's address, and the thread blocked in recvfrom receives at the new
    address. The original runs on undisturbed."""
    expected = zoo.run_uninterrupted("udp")
    p = zoo.start("udp")
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img)
    assert "has datagrams queued for reading, which the image does not hold" in cp.stderr, cp.stderr
    # The original goes on while the restored copy runs: had the copy taken
    # the original's port too (both have SO_REUSEADDR), the original's own
    # datagram would have gone to the copy, bound last.
    pidfile = zoo.tmp_path / "restored.pid"
    r = zoo.restore_start(img, "--pidfile", pidfile)
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().endswith("\n"):
        assert r.poll() is None and time.monotonic() < deadline, "the restore did not start"
        time.sleep(0.02)
    rc, out, err = zoo.finish(p)
    _assert_same(expected, rc, out, err, "original udp while a restore of it runs")
    rc, out, err = zoo.finish(r)
    _assert_same(expected, rc, out, err, "restore of udp beside its original")


def _free_udp_port_below_the_ephemeral_range():
    lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(max(lo - 2000, 1024), lo):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free UDP port below the ephemeral range")


def test_udp_port_the_program_chose_is_refused_while_taken(zoo, thaw_bin):
    """A port the program bound itself is not moved (its peers know it): a
    restore while another socket holds it fails saying so, and one after
    the original has gone gets it."""
    port = str(_free_udp_port_below_the_ephemeral_range())
    expected = zoo.run_uninterrupted("udp", port)
    p = zoo.start("udp", port)
    img = zoo.img_path()
    zoo.checkpoint(p, img)
    rc, out, err = zoo.restore(img)
    assert rc != 0 and f"UDP 127.0.0.1:{port}: bind to its port again (another socket holds it" in err, \
        _show("restore while the port is taken", rc, out, err)
    zoo.kill_original(p)
    rc, out, err = zoo.restore(img)
    _assert_same(expected, rc, out, err, "restore of udp once its port is free")


def _start_python(zoo, code, *args, **popen):
    """`python3 -c code args...` with pipes, once it printed READY; the
    harness kills it at the end."""
    p = subprocess.Popen(["/usr/bin/python3", "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, **popen)
    zoo.procs.append(p)
    p.prog = "python3 -c"
    assert p.stdout.readline() == b"READY\n", p.stderr.read()
    return p


def _serve_template(zoo, img, sock):
    """`thaw template img --socket sock`, once it listens."""
    t = subprocess.Popen(zoo.thaw_cmd("template", img, "--socket", sock), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    t.own_group = True
    t.prog = "thaw template"
    zoo.procs.append(t)
    deadline = time.monotonic() + 30
    while not sock.exists():
        assert t.poll() is None and time.monotonic() < deadline, t.stderr.read()
        time.sleep(0.05)
    return t


TCP_CLIENT = """
import selectors, socket, sys, threading
port = int(sys.argv[1])
listener = socket.create_server(("127.0.0.1", 0))
inner = socket.create_connection(listener.getsockname())
accepted, _ = listener.accept()
outer = socket.create_connection(("127.0.0.1", port))  # a peer outside the process
fresh = socket.socket()  # never used: comes back as it is
bound = socket.socket()
bound.bind(("127.0.0.1", 0))
was_reset = socket.create_connection(listener.getsockname())  # reset, and its error read already
other, _ = listener.accept()
other.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\\1\\0\\0\\0\\0\\0\\0\\0")
other.close()
try:
    was_reset.recv(1)
except ConnectionResetError:
    pass
seen = {}
def reader():
    try:
        seen["blocked recv"] = repr(outer.recv(10))
    except OSError as e:
        seen["blocked recv"] = type(e).__name__
t = threading.Thread(target=reader)
t.start()
sel = selectors.DefaultSelector()
sel.register(inner, selectors.EVENT_READ)
print("READY", flush=True)
sys.stdin.readline()
accepted.sendall(b"x") if "{mode}" == "original" else None
print("select", bool(sel.select(timeout=10)))
for what, op in [("recv", lambda: inner.recv(10)), ("send", lambda: inner.send(b"y"))]:
    try:
        print(what, repr(op()))
    except OSError as e:
        print(what, type(e).__name__)
t.join(20)
print("blocked recv", seen.get("blocked recv"), flush=True)
print("reset read before", repr(was_reset.recv(10)), flush=True)
print("fresh", fresh.getsockname(), bound.getsockname() != ("0.0.0.0", 0), flush=True)
fresh.connect(listener.getsockname())
print("fresh connects", bool(listener.accept()), flush=True)
"""


def test_tcp_connections_come_back_closed_with_tcp_close(zoo, thaw_bin):
    """`--tcp-close`: a process's TCP connections (to itself and to a peer
    outside) are restored as connections their peer dropped: a read says
    ECONNRESET, a write EPIPE, select wakes, a thread blocked in recv gets
    ECONNRESET. The original, left running, keeps its connections. Without
    the flag the checkpoint is refused, saying how to have them closed."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = str(server.getsockname()[1])
        for mode in ["original", "restored"]:
            code = TCP_CLIENT.replace("{mode}", mode)
            p = _start_python(zoo, code, port)
            peer, _ = server.accept()
            img = zoo.img_path()
            cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img)
            assert cp.returncode != 0 and "checkpoint with --tcp-close" in cp.stderr, cp.stderr
            kill = ["--kill"] if mode == "restored" else []
            img = zoo.img_path()
            cp = zoo.thaw("checkpoint", "--tcp-close", *kill, "--pid", p.pid, "--out", img)
            assert cp.returncode == 0, cp.stderr
            assert cp.stderr.count("restored closed, as a connection its peer reset") == 4, cp.stderr
            assert f"-> 127.0.0.1:{port}: restored closed" in cp.stderr, cp.stderr
            if mode == "original":
                peer.sendall(b"hi")
                out, err = p.communicate(b"go\n", timeout=60)
                assert p.returncode == 0, err
                assert out.decode().splitlines() == ["select True", "recv b'x'", "send 1", "blocked recv b'hi'",
                                                     "reset read before b''", "fresh ('0.0.0.0', 0) True",
                                                     "fresh connects True"], out
            else:
                p.wait(timeout=10)
                rc, out, err = zoo.restore(img)
                assert rc == 0, err
                assert out.splitlines() == ["select True", "recv ConnectionResetError", "send BrokenPipeError",
                                            "blocked recv ConnectionResetError", "reset read before b''",
                                            "fresh ('0.0.0.0', 0) True", "fresh connects True"], (out, err)
            peer.close()


def test_a_udp_error_pending_is_left_to_the_original(zoo, thaw_bin):
    """An ICMP error pending on a UDP socket (a datagram sent to a closed
    port) is seen without reading it, which would clear it: the original
    still gets it, the image notes it is left out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    code = ("import socket, sys, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.connect(('127.0.0.1', {closed_port}))\n"
            "s.send(b'anyone?')\n"
            "time.sleep(0.2)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), flush=True)\n")
    p = _start_python(zoo, code)
    img = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img)
    assert cp.returncode == 0 and "has an error pending" in cp.stderr, cp.stderr
    out, _ = p.communicate(b"go\n", timeout=60)
    assert out == b"111\n", out  # ECONNREFUSED, as without the checkpoint
    rc, out, err = zoo.restore(img)
    assert rc == 0 and out == "0\n", (out, err)


OUTSIDE_CLIENT = """
import os, socket, sys
rd, wr, stream_path, dgram_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
stream.connect(stream_path)
dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dgram.connect(dgram_path)
err = os.fdopen(os.dup(2), "w")  # a dup of stderr, as a logging setup may keep
print("READY", flush=True)
sys.stdin.readline()
def attempt(what, op):
    try:
        print(what, repr(op()), flush=True)
    except OSError as e:
        print(what, type(e).__name__, flush=True)
attempt("pipe read", lambda: os.read(rd, 10))
attempt("pipe write", lambda: os.write(wr, b"x"))
attempt("stream recv", lambda: stream.recv(10))
attempt("dgram send", lambda: dgram.send(b"to the named socket"))
err.write("via the dup of stderr\\n")
err.flush()
"""


def test_drop_outside_restores_connections_to_other_processes_as_closed(zoo, thaw_bin, tmp_path):
    """`--drop-outside`: a pipe and a unix stream socket whose other ends
    another process holds come back as if it had closed them (EOF, EPIPE);
    a datagram socket sending to a named socket connects there again; a
    dup of stderr shares the restore's stderr. Without the flag the restore
    asks for --inherit-fd."""
    stream_path, dgram_path = str(tmp_path / "stream.sock"), str(tmp_path / "dgram.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(stream_path)
    listener.listen(4)
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(dgram_path)
    sink.settimeout(30)
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    try:
        p = _start_python(zoo, OUTSIDE_CLIENT, str(to_child_r), str(from_child_w), stream_path, dgram_path,
                          pass_fds=(to_child_r, from_child_w))
        conn, _ = listener.accept()
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img)
        assert cp.returncode == 0, cp.stderr
        rc, out, err = zoo.restore(img)
        assert rc != 0 and "pass --inherit-fd" in err, (out, err)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--drop-outside", "--kill", "--pid", p.pid, "--out", img)
        assert cp.returncode == 0, cp.stderr
        assert cp.stderr.count("thaw: note: checkpoint: fd ") == 4, cp.stderr
        p.wait(timeout=10)
        rc, out, err = zoo.restore(img)
        assert rc == 0, err
        assert out.splitlines() == ["pipe read b''", "pipe write BrokenPipeError", "stream recv b''",
                                    "dgram send 19"], (out, err)
        assert "via the dup of stderr" in err, err
        assert sink.recv(100) == b"to the named socket"
        conn.close()
    finally:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        listener.close()
        sink.close()


def test_children_that_had_exited_come_back_for_their_parent_to_wait(zoo, thaw_bin):
    """Children that exited and were not waited for yet (a Popen never
    waited) are made again at restore with their pid and wait status: the
    parent's wait finds each, as it would have."""
    code = ("import os, signal, subprocess, sys\n"
            "procs = [subprocess.Popen(['true']), subprocess.Popen(['sh', '-c', 'exit 3']),\n"
            "         subprocess.Popen(['sleep', '100'])]\n"
            "procs[2].send_signal(signal.SIGTERM)\n"
            "for p in procs:\n"
            "    os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)\n"  # ended, not reaped
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print([p.wait() for p in procs], flush=True)\n"
            "try:\n"
            "    os.wait()\n"
            "except ChildProcessError:\n"
            "    print('no more children', flush=True)\n")
    expected = "[0, 3, -15]\nno more children\n"
    for kill in (False, True):
        p = _start_python(zoo, code)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, *(["--kill"] if kill else []))
        assert cp.returncode == 0, cp.stderr
        if not kill:
            out, _ = p.communicate(b"go\n", timeout=60)
            assert out.decode() == expected, out
        else:
            p.wait(timeout=10)
        for mode in ([], ["--eager"]):
            rc, out, err = zoo.restore(img, *mode)
            assert rc == 0 and out == expected, (out, err)


def test_a_udp_datagram_being_put_together_is_refused(zoo, thaw_bin):
    """Parts of a datagram sent with MSG_MORE wait in the kernel for the
    last part: a restore would send that alone, cut from its head. Refused,
    and the process's datagram goes out whole."""
    code = ("import socket, sys\n"
            "rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "rx.bind(('127.0.0.1', 0))\n"
            "tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "tx.connect(rx.getsockname())\n"
            "tx.send(b'head-', socket.MSG_MORE)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "tx.send(b'body')\n"
            "print(rx.recv(100), flush=True)\n")
    _refused_and_runs_on(zoo, code, "bytes of a datagram being put together (MSG_MORE or UDP_CORK)",
                         b"b'head-body'\n")


def test_a_dup_of_stderr_shares_the_template_copys_stderr(zoo, thaw_bin, tmp_path):
    """An fd that was a dup of stderr needs no --inherit-fd of its own: a
    restore, and a copy of a live template, give it the copy's stderr."""
    code = ("import os, sys\n"
            "err = os.fdopen(os.dup(2), 'w')\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "err.write('through the dup\\n')\n"
            "err.flush()\n")
    p = _start_python(zoo, code)
    img = zoo.img_path()
    cp = zoo.thaw("checkpoint", "--kill", "--pid", p.pid, "--out", img)
    assert cp.returncode == 0, cp.stderr
    rc, out, err = zoo.restore(img)
    assert rc == 0 and "through the dup" in err, (out, err)
    sock = tmp_path / "template.sock"
    _serve_template(zoo, img, sock)
    c = subprocess.Popen(zoo.thaw_cmd("restore", "--from-template", sock), stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    c.own_group = True
    c.prog = "thaw restore --from-template"
    zoo.procs.append(c)
    rc, out, err = zoo.finish(c)
    assert rc == 0 and "through the dup" in err, (out, err)


def test_a_template_copy_of_a_changed_file_says_to_make_the_template_again(zoo, thaw_bin, tmp_path):
    data = tmp_path / "data.bin"
    data.write_bytes(b"old!" * 1024)
    code = ("import mmap, sys\n"
            f"f = open({str(data)!r}, 'rb')\n"
            "m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n"
            "print('READY', flush=True)\n"
            "sys.stdin.readline()\n"
            "print(m[:4], flush=True)\n")
    p = _start_python(zoo, code)
    img = zoo.img_path()
    assert zoo.thaw("checkpoint", "--kill", "--pid", p.pid, "--out", img).returncode == 0
    sock = tmp_path / "template.sock"
    _serve_template(zoo, img, sock)
    data.write_bytes(b"new!" * 2048)
    cp = zoo.thaw("restore", "--from-template", sock)
    assert cp.returncode != 0, cp.stderr
    assert f"restore from the template at {sock}: " in cp.stderr and "take a new checkpoint and start the " \
        "template again" in cp.stderr, cp.stderr


# ------------------------------------------------------ named files of /dev/shm

def _shm_named_image(zoo, prog="shm_named"):
    """shm_named checkpointed and killed, and its /dev/shm names removed (as
    a fresh container's /dev/shm, or its own end, would leave them)."""
    expected = zoo.run_uninterrupted("shm_named")
    p = zoo.start(prog)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    names = [Path(f"/dev/shm/{n}-{p.pid}") for n in
             ("thaw-zoo-shm-big", "thaw-zoo-shm-small", "sem.thaw-zoo-shm-sem")]
    assert all(n.exists() for n in names), names
    for n in names:
        n.unlink()
    return expected, img, names


def test_named_shm_files_are_made_again_from_the_image(zoo, thaw_bin):
    """A shared memory object mapped shared (1 MiB, mode 0640), one held
    by an fd at an offset, and a named semaphore, all gone from /dev/shm:
    the restore makes them again, under their names, from the image."""
    expected, img, names = _shm_named_image(zoo)
    try:
        rc, out, err = zoo.restore(img)
        _assert_same(expected, rc, out, err, "shm_named restored with its names gone")
        assert "big by name: mode 640, 1052672 bytes" in out
    finally:
        for n in names:
            n.unlink(missing_ok=True)


def test_a_failed_restore_removes_the_shm_files_it_made(zoo, thaw_bin, tmp_path):
    """A restore that made shm_named's /dev/shm files again and then failed
    (its executable changed since) removes them: it leaves nothing behind."""
    exe = tmp_path / "shm_named-copy"
    shutil.copy(zoo.prog_path("shm_named"), exe)
    _, img, names = _shm_named_image(zoo, str(exe))
    try:
        os.utime(exe, (1, 1))
        rc, out, err = zoo.restore(img)
        assert rc != 0 and "changed since checkpoint" in err, _show("restore of a changed program", rc, out, err)
        assert not any(n.exists() for n in names), [n for n in names if n.exists()]
    finally:
        for n in names:
            n.unlink(missing_ok=True)


def _two_restores_at_once(zoo, img, *extra):
    """Two restores of img: the first takes the semaphore and holds it
    while the second starts. Returns each one's (rc, out, err)."""
    rs = [zoo.restore_start(img, *extra) for _ in range(2)]
    firsts = []
    for r in rs:
        r.stdin.write(b"go\n")
        reader = LineReader(r.stdout, "restored shm_named")
        # With what the reader took past the line.
        firsts.append(reader.readline(30, proc=r) + "\n" + reader.buf.decode())
    results = []
    for r, first in zip(rs, firsts):
        rc, out, err = zoo.finish(r, data=b"\n")
        results.append((rc, first + out, err))
    return results


def test_private_shm_gives_each_restore_its_own_semaphore(zoo, thaw_bin):
    """With --private-shm two restores running at once each take their own
    semaphore (the second would find the first's taken) and make their
    objects in a /dev/shm of their own: none appears in the host's. Without
    it they share them by name, as processes of one host do."""
    expected, img, names = _shm_named_image(zoo)
    try:
        for rc, out, err in _two_restores_at_once(zoo, img, "--private-shm"):
            _assert_same(expected, rc, out, err, "shm_named restored with --private-shm beside another")
        assert not any(n.exists() for n in names), "a --private-shm restore made its objects in the host's /dev/shm"
        (rc1, out1, _), (rc2, out2, _) = _two_restores_at_once(zoo, img)
        assert out1.startswith("semaphore: taken\n"), out1
        assert out2.startswith("semaphore: busy"), out2
    finally:
        for n in names:
            n.unlink(missing_ok=True)


def test_a_shm_file_in_a_directory_of_dev_shm_is_made_again_with_its_directory(zoo, thaw_bin):
    """A file of a directory of /dev/shm (owned by nobody, mode 0710), held
    by an fd: a --private-shm restore, whose /dev/shm starts empty, makes
    the directory again with its owner and mode, then the file in it, with
    its own (nobody's, mode 0: a mode too is kept when it is 0)."""
    d = Path(f"/dev/shm/thaw-test-dir-{os.getpid()}")
    try:
        d.mkdir()
        os.chown(d, 65534, 65534)
        d.chmod(0o710)
        code = ("import os, sys\n"
                f"fd = os.open({str(d / 'f')!r}, os.O_CREAT | os.O_RDWR, 0o600)\n"
                "os.write(fd, b'hello')\n"
                f"os.chown({str(d / 'f')!r}, 65534, 65534)\n"
                f"os.chmod({str(d / 'f')!r}, 0)\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "os.lseek(fd, 0, 0)\n"
                f"st, fst = os.stat({str(d)!r}), os.fstat(fd)\n"
                "print(os.read(fd, 16).decode(), st.st_uid, oct(st.st_mode & 0o7777), fst.st_uid,"
                " oct(fst.st_mode & 0o7777), flush=True)\n")
        p = _start_python(zoo, code)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        p.wait(timeout=10)
        rc, out, err = zoo.restore(img, "--private-shm")
        assert rc == 0 and out == "hello 65534 0o710 65534 0o0\n", _show("restore --private-shm", rc, out, err)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_private_mapping_of_a_shm_file_changed_since_is_refused(zoo, thaw_bin):
    """A file of /dev/shm mapped privately: its pages the process did not
    write come from the file, so a restore that finds it changed refuses it
    (as for any mapped file) rather than show the process other content;
    one that finds it gone makes it again as it was."""
    f = Path(f"/dev/shm/thaw-test-private-{os.getpid()}")
    try:
        f.write_bytes(b"A" * 8192)
        code = ("import mmap, os, sys\n"
                f"fd = os.open({str(f)!r}, os.O_RDONLY)\n"
                "m = mmap.mmap(fd, 8192, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)\n"
                "os.close(fd)\n"
                "m[0:1] = b'X'\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n"
                "print(m[0:4].decode(), m[4096:4100].decode(), flush=True)\n")
        p = _start_python(zoo, code)
        img = zoo.img_path()
        zoo.checkpoint(p, img, kill=True)
        p.wait(timeout=10)
        f.write_bytes(b"B" * 8192)
        rc, out, err = zoo.restore(img)
        assert rc != 0 and "file changed since checkpoint" in err, _show("restore over a changed file", rc, out, err)
        f.unlink()
        rc, out, err = zoo.restore(img)
        assert rc == 0 and out == "XAAA AAAA\n", _show("restore with the file gone", rc, out, err)
    finally:
        f.unlink(missing_ok=True)


def test_a_tree_whose_child_fails_to_restore_removes_the_shm_files_the_root_made(zoo, thaw_bin, tmp_path):
    """The root of a tree makes its /dev/shm files again (one in a
    directory); a child's restore then fails (a file it held is gone):
    the failed restore leaves none of them, nor the directory, behind."""
    shm, sub, held = (Path(f"/dev/shm/thaw-test-tree-{os.getpid()}"), Path(f"/dev/shm/thaw-test-treedir-{os.getpid()}"),
                      tmp_path / "held")
    held.write_text("x")
    try:
        sub.mkdir()
        code = ("import mmap, os, sys, time\n"
                f"fd = os.open({str(shm)!r}, os.O_CREAT | os.O_RDWR, 0o600)\n"
                "os.ftruncate(fd, 4096)\n"
                "m = mmap.mmap(fd, 4096)\n"
                f"g = os.open({str(sub / 'g')!r}, os.O_CREAT | os.O_RDWR, 0o600)\n"
                "if os.fork() == 0:\n"
                f"    f = open({str(held)!r})\n"
                "    time.sleep(1000)\n"
                "time.sleep(0.3)\n"
                "print('READY', flush=True)\n"
                "sys.stdin.readline()\n")
        p = _start_python(zoo, code, start_new_session=True)
        img = zoo.img_path()
        cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", img, "--kill")
        assert cp.returncode == 0, cp.stderr
        p.wait(timeout=10)
        shutil.rmtree(sub)
        shm.unlink()
        held.unlink()
        rc, out, err = zoo.restore(img)
        assert rc != 0 and "file is gone" in err, _show("restore of a tree whose child's file is gone", rc, out, err)
        assert not shm.exists() and not sub.exists(), "the failed restore left the files it made"
    finally:
        shm.unlink(missing_ok=True)
        shutil.rmtree(sub, ignore_errors=True)

"""End-to-end tests of live templates at the engine level (`thaw template
DIR --socket S`, `thaw restore --from-template S`; engine/template.h): an
image restored once and held, each restore a copy-on-write copy of it. The
copies must be what a restore from the image gives: the original's answers
continued exactly, several copies alive at once, the image's pid in their
own namespace, /proc/PID/{maps,cmdline,environ,exe} as the original's, their
exit status passed on, files of their own (node's epoll, eventfds and
pipes; a regular file's offset); an image that cannot be a template is
refused with the reason.

Run with Debian's python:  /usr/bin/python3 -m pytest tests/e2e/test_templates.py
"""
import json
import os
import subprocess
import time

import pytest

from runtime_helpers import PYTHON, THAW_BIN, WORKERS, merge_adjacent_anon, node_bin, proc_identity, \
    read_proc, thread_count
# The runtime tests' fixtures: an image of the torch worker, made once per module.
from test_runtimes import (N_BEFORE, N_TOTAL, _chain, _check_answers, _jobs_digest, _make_image,  # noqa: F401
                           _status, runner, thaw_bin_module, torch_image)


@pytest.fixture(scope="module")
def torch_template(runner, torch_image):
    _, sock = runner.start_template(torch_image.dir, "template of the torch worker")
    return sock


def ns_pid(host_pid):
    for line in read_proc(host_pid, "status").splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid line")


def _template_of(runner, orig, what):
    """orig checkpointed and killed, its image held as a template: the
    template's socket."""
    img = runner.path("img")
    runner.checkpoint(orig, img)
    runner.kill_original(orig)
    return runner.start_template(img, f"template of the {what}")[1]


def _two_copies(runner, orig, what):
    """Two copies of orig's template (_template_of)."""
    sock = _template_of(runner, orig, what)
    return runner.restore_from_template(sock, f"{what} copy 1"), runner.restore_from_template(sock, f"{what} copy 2")


def _interleave_and_quit(copies, expected):
    """Each copy answers the rest of the original's requests, in turns, then
    exits cleanly."""
    for i in range(N_BEFORE, N_TOTAL):
        for p in copies:
            got = p.ask(f"req{i}")
            assert got == expected[i], f"{p.what}: answer {i} {got!r} != {expected[i]!r}\n{p.diag()}"
    for p in copies:
        assert p.ask("quit") == "bye"
        rc, rest, err = p.wait_exit()
        assert rc == 0 and rest == "", f"{p.what}: exit status {rc}, left {rest!r}\n{err}"


def test_torch_copies_continue_the_original(runner, torch_image, torch_template):
    for n in range(2):
        p = runner.restore_from_template(torch_template, f"template copy #{n + 1}")
        _check_answers(p, torch_image.expected, p.what)


def test_torch_two_copies_alive_at_once(runner, torch_image, torch_template):
    a = runner.restore_from_template(torch_template, "first concurrent copy")
    b = runner.restore_from_template(torch_template, "second concurrent copy")
    assert a.pid != b.pid
    _interleave_and_quit([a, b], torch_image.expected)


def test_torch_copy_looks_like_the_original(runner, torch_image, torch_template):
    """Its pid in its namespace is the original's, and /proc/PID/cmdline,
    environ, exe and maps are the original's at checkpoint time (maps up to
    adjacent anonymous mappings the kernel merged, as test_runtimes
    allows)."""
    p = runner.restore_from_template(torch_template, "template copy (identity)")
    image = json.loads(runner.thaw("inspect", torch_image.dir, "--json").stdout)
    assert ns_pid(p.pid) == image["ns_pid"] and p.pid != image["pid"], (p.pid, image["pid"], image["ns_pid"])
    got = proc_identity(p.pid)
    for key, want in torch_image.identity.items():
        assert got[key] == want, f"/proc/PID/{key} of the copy differs"
    maps = read_proc(p.pid, "maps")
    if maps != torch_image.maps:
        assert merge_adjacent_anon(maps)[0] == merge_adjacent_anon(torch_image.maps)[0], (
            f"/proc/PID/maps of the copy differs from the original's:\n{maps}")
    _check_answers(p, torch_image.expected, p.what)


def test_a_copys_exit_status_is_passed_on(runner, torch_template):
    p = runner.restore_from_template(torch_template, "template copy killed")
    subprocess.run(["kill", "-9", str(p.pid)], check=True)
    rc, _, err = p.wait_exit()
    assert rc == 128 + 9, f"exit status {rc}\n{err}"


def test_a_server_started_with_its_stdio_closed_serves_copies(runner, torch_image):
    """`thaw template` with fds 0-2 closed (as a daemon may be started): its
    own sockets and pipes then take those numbers, and a copy's namespace
    init, which covers 0-2 with /dev/null, must have moved them first."""
    sock = runner.path("closed-stdio.sock")
    server = subprocess.Popen(["/bin/sh", "-c", 'exec "$0" template "$1" --socket "$2" 0<&- 1>&- 2>&-',
                               str(THAW_BIN), str(torch_image.dir), str(sock)], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sock.exists(), f"thaw template with closed stdio did not serve (exit {server.poll()})"
        for n in range(2):
            p = runner.restore_from_template(sock, f"copy #{n + 1} from a server with closed stdio")
            _check_answers(p, torch_image.expected, p.what)
    finally:
        os.killpg(server.pid, 9)
        server.wait()


def test_a_multithreaded_python_process_comes_back_with_every_thread(runner):
    """Three threads hashing, one blocked in queue.get(), one sleeping in a
    loop: the template holds the main thread only; each copy makes the
    others anew (tids, registers, FPU state, masks). Two copies at once,
    every thread of each runs on and computes right."""
    orig = runner.start([PYTHON, WORKERS / "threads_worker.py"], "threads worker")
    nthreads = thread_count(orig.pid)
    img = runner.path("img")
    runner.checkpoint(orig, img)
    before = _status(orig)
    runner.kill_original(orig)
    _, sock = runner.start_template(img, "template of the threads worker")
    copies = [runner.restore_from_template(sock, f"threads copy {n}") for n in (1, 2)]
    for p in copies:
        assert thread_count(p.pid) == nthreads, f"{p.what}: {thread_count(p.pid)} threads, original {nthreads}"
    for p in copies:
        deadline = time.monotonic() + 20
        while True:
            now = _status(p)
            if all(n > b for n, b in zip(now, before)):
                break
            assert time.monotonic() < deadline, f"{p.what}: no progress: {before} -> {now}\n{p.diag()}"
            time.sleep(0.05)
        p.send("go")
        lines = [p.readline() for _ in range(7)]
        rc, rest, err = p.wait_exit()
        text = "\n".join(lines)
        assert rc == 0 and lines[-1] == "DONE" and lines[-2] == "alive -", f"{p.what}: rc {rc}\n{text}\n{err}"
        for k in range(3):
            name, steps, digest = lines[k].split()
            assert digest == _chain(k, int(steps)), f"{p.what}: work-{k} digest wrong\n{text}"
        assert lines[3] == f"jobs {_jobs_digest()}", f"{p.what}: consumer results wrong\n{text}"


def pipe_inodes(pid):
    links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    return {ln for ln in links if ln.startswith("pipe:")}


def test_node_copies_have_their_own_epoll_eventfds_and_pipes(runner):
    """Node waits in epoll on eventfds and pipes: each copy's namespace init
    makes them anew (as a restore from the image does), so two copies at
    once each continue the original exactly, timers ticking."""
    node = node_bin()
    if node is None:
        pytest.fail("node not found (/usr/bin/node; scripts/install-deps.sh installs it)")
    im = _make_image(runner, [node, WORKERS / "node_worker.js"], "node worker")
    _, sock = runner.start_template(im.dir, "template of the node worker")
    a = runner.restore_from_template(sock, "node copy 1")
    b = runner.restore_from_template(sock, "node copy 2")
    assert pipe_inodes(a.pid) and not pipe_inodes(a.pid) & pipe_inodes(b.pid), \
        (pipe_inodes(a.pid), pipe_inodes(b.pid))
    _interleave_and_quit([a, b], im.expected)


def test_each_copy_reads_an_open_file_from_its_own_offset(runner, tmp_path):
    """A regular file open at checkpoint is opened again for each copy, at
    the offset the original had: copies do not move each other's."""
    data = tmp_path / "data.txt"
    data.write_text("".join(f"{i:04d}\n" for i in range(100)))
    orig = runner.start([PYTHON, "-c",
                         f"import os, sys\nfd = os.open({str(data)!r}, os.O_RDONLY)\n"
                         "for _ in range(3):\n    os.read(fd, 5)\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n    print(os.read(fd, 5).decode().strip(), flush=True)\n"],
                        "file reader")
    a, b = _two_copies(runner, orig, "file reader")
    assert [a.ask("next"), a.ask("next"), b.ask("next"), a.ask("next"), b.ask("next")] == \
        ["0003", "0004", "0003", "0005", "0004"]


def test_memory_a_fork_leaves_out_or_wipes_comes_back_in_each_copy(runner):
    """MADV_DONTFORK (one of them PROT_NONE) and MADV_WIPEONFORK mappings:
    a fork leaves them out or zeroes them, so each copy gets them filled
    from the template, with their advice kept."""
    orig = runner.start([PYTHON, WORKERS / "fork_advised.py"], "fork-advised memory")
    want = orig.ask("sum")
    img = runner.path("img")
    runner.checkpoint(orig, img)
    runner.kill_original(orig)
    _, sock = runner.start_template(img, "template of the fork-advised memory")
    for n in (1, 2):
        p = runner.restore_from_template(sock, f"fork-advised copy {n}")
        assert p.ask("sum") == want and want.endswith("dc wf dc"), (want, p.diag())


def _zoo_copies_say(runner, prog, expected):
    """Two copies of a template of zoo program `prog`, each told to go:
    each prints `expected` (its own checks) and exits cleanly."""
    orig = runner.start([THAW_BIN.parent / "tests" / "zoo" / prog], f"{prog} zoo program")
    img = runner.path("img")
    runner.checkpoint(orig, img)
    runner.kill_original(orig)
    _, sock = runner.start_template(img, f"template of the {prog} program")
    for n in (1, 2):
        p = runner.restore_from_template(sock, f"{prog} copy {n}")
        p.send("go")
        lines = [p.readline() for _ in expected]
        rc, rest, err = p.wait_exit()
        assert rc == 0 and lines == expected, (p.what, rc, lines, rest, err)


def test_copies_are_scheduled_as_the_image_was(runner):
    """The zoo's scheduling program: it leads its session, has an
    oom_score_adj of its own, and its threads their own policy (SCHED_BATCH,
    SCHED_RR with reset-on-fork), nice, CPU affinity and I/O priority. Each
    copy of a template gets them back (they are set from outside, on the
    copy's held threads), and checks them itself."""
    _zoo_copies_say(runner, "scheduling", ["main: scheduling ok", "batch: scheduling ok", "realtime: scheduling ok",
                                           "session ok", "oom_score_adj ok", "DONE"])


def test_copies_keep_the_images_prctl_settings(runner):
    """The zoo's prctl program: non-dumpable, THP off, a child subreaper;
    its threads with their own timer slack, keep-capabilities and
    parent-death signal. A fork clears the death signal and the subreaper
    and copies the creator's slack: each copy gets the image's back."""
    _zoo_copies_say(runner, "prctl_settings", ["threads: prctl ok", "process: prctl ok", "DONE"])


def test_restore_from_a_template_nobody_serves_says_so(runner, tmp_path):
    cp = subprocess.run([str(THAW_BIN), "restore", "--from-template", str(tmp_path / "none.sock")],
                        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert cp.returncode != 0 and "is `thaw template DIR --socket" in cp.stderr, cp.stderr
    cp = subprocess.run([str(THAW_BIN), "restore"], capture_output=True, text=True, timeout=60,
                        stdin=subprocess.DEVNULL)
    assert cp.returncode != 0 and "give an image directory or --from-template SOCKET" in cp.stderr, cp.stderr


def test_each_copy_has_an_inotify_instance_of_its_own(runner, tmp_path):
    """An inotify instance is made anew for each copy with the image's
    watches and numbering: a watch added in one copy takes the next number
    there and not in the other, and each sees events of its own watches."""
    d = tmp_path / "watched"
    d.mkdir()
    for name in ("a", "b", "c"):
        (d / name).write_text(name)
    orig = runner.start([PYTHON, "-c",
                         "import ctypes, os, struct, sys\n"
                         "libc = ctypes.CDLL(None, use_errno=True)\n"
                         "fd = libc.inotify_init1(0)\n"
                         f"d = {str(d)!r}.encode()\n"
                         "assert libc.inotify_add_watch(fd, d, 0x100) == 1\n"
                         "assert libc.inotify_add_watch(fd, d + b'/a', 0x2) == 2\n"
                         "assert libc.inotify_add_watch(fd, d + b'/c', 0x2) == 3\n"
                         "libc.inotify_rm_watch(fd, 2)\n"
                         "os.read(fd, 4096)\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n"
                         "    wd = libc.inotify_add_watch(fd, d + b'/b', 0x4)\n"
                         "    os.chmod(d + b'/b', 0o600 if line.startswith('a') else 0o640)\n"
                         "    ev_wd, mask = struct.unpack('iI', os.read(fd, 4096)[:8])\n"
                         "    print(wd, ev_wd, hex(mask), flush=True)\n"],
                        "inotify watcher")
    a, b = _two_copies(runner, orig, "inotify watcher")
    # The watch on b: number 4 in each copy (after 3; 2 was removed), its
    # event (IN_ATTRIB) in the copy that changed it.
    assert [a.ask("a1"), b.ask("b1"), a.ask("a2")] == ["4 4 0x4", "4 4 0x4", "4 4 0x4"]


def _locks_on(path):
    """(kind, pid) of each lock /proc/locks lists on the file at path."""
    ino = os.stat(path).st_ino
    out = []
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields:  # a waiter
                continue
            dev_ino = fields[5].split(":")
            if len(dev_ino) == 3 and int(dev_ino[2]) == ino:
                out.append((fields[1], int(fields[4])))
    return out


def test_each_copy_takes_the_image_s_file_locks_for_itself(runner, tmp_path):
    """The original held a shared flock and a POSIX read lock on a file. The
    template holds both, as one more reader; each copy holds both of its
    own, as two restores of the image would."""
    locked = tmp_path / "locked"
    locked.write_text("x" * 100)
    orig = runner.start([PYTHON, "-c",
                         "import fcntl, sys\n"
                         f"a = open({str(locked)!r}); b = open({str(locked)!r})\n"
                         "fcntl.flock(a, fcntl.LOCK_SH)\n"
                         "fcntl.lockf(b, fcntl.LOCK_SH, 10, 20)\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n"
                         "    print(line.strip(), flush=True)\n"],
                        "lock holder")
    sock = _template_of(runner, orig, "lock holder")
    assert sorted(kind for kind, _ in _locks_on(locked)) == ["FLOCK", "POSIX"]
    copies = [runner.restore_from_template(sock, f"lock holder copy {n}") for n in (1, 2)]
    assert [c.ask("hello") for c in copies] == ["hello", "hello"]
    held = _locks_on(locked)
    assert sorted(kind for kind, _ in held) == ["FLOCK"] * 3 + ["POSIX"] * 3, held
    assert len({pid for kind, pid in held if kind == "POSIX"}) == 3, held


def test_a_template_keeps_an_sqlite_wal_database_alive_for_its_copies(runner, tmp_path):
    """A copy that closes its SQLite connection (WAL mode) cleanly does not
    take itself for the last one: the template holds the image's read
    locks, so SQLite leaves the -wal and -shm files, which the template and
    every later copy map, where they are."""
    db = tmp_path / "data.db"
    orig = runner.start([PYTHON, "-c",
                         "import sqlite3, sys\n"
                         f"db = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
                         "db.execute('pragma journal_mode=wal')\n"
                         "db.execute('create table t(x)'); db.execute('insert into t values (1)')\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n"
                         "    if line.strip() == 'close':\n"
                         "        db.close(); print('closed', flush=True); continue\n"
                         "    db.execute('insert into t values (?)', (line.strip(),))\n"
                         "    print(db.execute('select count(*) from t').fetchone()[0], flush=True)\n"],
                        "sqlite user")
    sock = _template_of(runner, orig, "sqlite user")
    first = runner.restore_from_template(sock, "sqlite copy 1")
    assert first.ask("a") == "2"
    assert first.ask("close") == "closed"
    assert (tmp_path / "data.db-wal").exists() and (tmp_path / "data.db-shm").exists()
    second = runner.restore_from_template(sock, "sqlite copy 2")
    assert second.ask("b") == "3"


def test_each_copy_has_its_own_copy_of_a_deleted_file(runner, tmp_path):
    """An anonymous temporary file (and a memfd) held open by the original
    is made anew for each copy, with the image's content: what one copy
    writes, the other does not see; the template's stays as it was."""
    orig = runner.start([PYTHON, "-c",
                         "import os, sys, tempfile\n"
                         f"t = tempfile.TemporaryFile(dir={str(tmp_path)!r})\n"
                         "t.write(b'base'); t.flush()\n"
                         "m = os.memfd_create('scratch'); os.write(m, b'mem')\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n"
                         "    t.seek(0, 2); t.write(line.strip().encode()); t.flush(); t.seek(0)\n"
                         "    os.lseek(m, 0, 2); os.write(m, line.strip().encode()); os.lseek(m, 0, 0)\n"
                         "    print(t.read().decode(), os.read(m, 100).decode(), flush=True)\n"],
                        "temp file holder")
    sock = _template_of(runner, orig, "temp file holder")
    a, b = (runner.restore_from_template(sock, f"temp file holder copy {n}") for n in (1, 2))
    assert [a.ask("A"), b.ask("B"), a.ask("a"), b.ask("b")] == \
        ["baseA memA", "baseB memB", "baseAa memAa", "baseBb memBb"]
    c = runner.restore_from_template(sock, "temp file holder copy 3")
    assert c.ask("C") == "baseC memC"


def test_each_copy_has_its_own_named_connection(runner, tmp_path):
    """A connection a unix listener accepted, both ends held, the listener
    itself closed (a template refuses a socket bound to a path): each copy
    gets a pair of its own, its accepted end named after the listener's
    path again, the data queued at checkpoint in each."""
    path = tmp_path / "gone.sock"
    orig = runner.start([PYTHON, "-c",
                         "import os, socket, sys\n"
                         f"s = socket.socket(socket.AF_UNIX)\ns.bind({str(path)!r})\ns.listen(1)\n"
                         f"c = socket.socket(socket.AF_UNIX)\nc.connect({str(path)!r})\n"
                         f"a, _ = s.accept()\ns.close()\nos.unlink({str(path)!r})\n"
                         "c.sendall(b'queued ')\n"
                         "print('READY', flush=True)\n"
                         "for line in sys.stdin:\n"
                         "    c.sendall(line.strip().encode())\n"
                         "    print(a.recv(100).decode(), a.getsockname(), c.getpeername(), flush=True)\n"],
                        "named connection")
    a, b = _two_copies(runner, orig, "named connection")
    assert a.ask("one") == f"queued one {path} {path}"
    assert b.ask("two") == f"queued two {path} {path}"
    assert a.ask("three") == f"three {path} {path}"

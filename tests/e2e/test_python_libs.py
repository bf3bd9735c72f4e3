"""Python programs using libraries that set up state at import or in a
setup phase (process pools, named semaphores, OpenSSL's generator),
checkpointed with --kill and restored: same output as an uninterrupted run.
Helpers from conftest.py (the zoo fixture tracks and kills every process)."""

import os
import select
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def _start(zoo, prog, *args, env=None):
    """Start a Python program (with `env` added to its environment); wait
    for its READY line."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"), **(env or {}))
    p = subprocess.Popen([PYTHON, str(prog), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, bufsize=0, close_fds=True, env=env, cwd=prog.parent)
    zoo.procs.append(p)
    p.prog = prog.name
    buf = b""
    deadline = time.monotonic() + 60
    while b"READY\n" not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"{prog.name} printed no READY: {buf!r}"
        r, _, _ = select.select([p.stdout], [], [], left)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            assert chunk, f"{prog.name} exited before READY: {buf!r} {p.stderr.read()!r}"
            buf += chunk
    p.leftover = buf.partition(b"READY\n")[2]
    return p


def _image(zoo, prog, *args, env=None):
    """prog started (_start), checkpointed and killed: its image."""
    p = _start(zoo, prog, *args, env=env)
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    return img


SPAWN_POOL = '''
import multiprocessing as mp, sys
def sq(x): return x * x
if __name__ == "__main__":
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(2)
    pool.map(sq, range(4))
    lock, ev = ctx.Lock(), ctx.Event()
    print("READY", flush=True)
    sys.stdin.readline()
    print(pool.map(sq, range(6)))
    with lock:
        ev.set()
    print(ev.is_set())
    pool.close(); pool.join()
    print("DONE")
'''


def test_a_spawn_pool_works_after_restore(zoo, thaw_bin, tmp_path):
    """A "spawn" pool's workers open its queues' named semaphores by name,
    which the parent made with sem_open: its maps show each under glibc's
    temporary name, deleted. Restored as a deleted file (a copy of its
    own), the parent no longer shared them with the workers, and the pool
    hung. Also the setup pipe each worker keeps, its writer closed, is the
    tree's own (restored as connected outside, it was refused)."""
    prog = tmp_path / "spawn_pool.py"
    prog.write_text(SPAWN_POOL)
    img = _image(zoo, prog)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "[0, 1, 4, 9, 16, 25]\nTrue\nDONE\n", f"rc={rc}\n{out}\n{err}"


def test_a_spawn_pool_s_image_restores_again_after_a_copy_ended(zoo, thaw_bin, tmp_path):
    """A restored copy that ends removes its pool's named semaphores, as
    the original would have (multiprocessing unlinks them at exit), and
    every later restore of the image failed on a mapped file gone (the
    runtime then recreated the snapshot, failed again, and cold-started
    until the next deploy). The image keeps their content, and a restore
    that finds one gone makes it again."""
    prog = tmp_path / "spawn_pool.py"
    prog.write_text(SPAWN_POOL)
    img = _image(zoo, prog)
    for n in (1, 2):
        rc, out, err = zoo.restore(img, timeout=60)
        assert rc == 0 and out == "[0, 1, 4, 9, 16, 25]\nTrue\nDONE\n", f"restore {n}: rc={rc}\n{out}\n{err}"


OPENSSL_DRAWS = '''
import os, ssl, sys
import thaw._worker as worker
ssl.RAND_bytes(16)
print("READY", flush=True)
seed = int(sys.stdin.readline())
before = ssl.RAND_bytes(8).hex()
worker.reseed(seed)
print(before, ssl.RAND_bytes(8).hex())
'''


def _draws_of_two_restores(zoo, tmp_path, name, source):
    """The words two restores of one image of `source` print, each given
    its own seed (1, 2) as its line."""
    prog = tmp_path / name
    prog.write_text(source)
    img = _image(zoo, prog)
    draws = []
    for seed in (1, 2):
        rc, out, err = zoo.restore(img, data=f"{seed}\n".encode())
        assert rc == 0, f"rc={rc}\n{out}\n{err}"
        draws.append(out.split())
    return draws


def test_the_worker_s_reseed_reaches_openssl(zoo, thaw_bin, tmp_path):
    """OpenSSL's generator reseeds itself when its pid changes (a fork); a
    restored process keeps its pid, so every restore of one image draws
    the same bytes, keys and nonces included. The runtime worker's reseed
    mixes fresh entropy in."""
    draws = _draws_of_two_restores(zoo, tmp_path, "openssl_draws.py", OPENSSL_DRAWS)
    assert draws[0][0] == draws[1][0], "without a reseed both restores draw the same (the cause)"
    assert draws[0][1] != draws[1][1], f"OpenSSL drew the same bytes after the reseed: {draws}"


TEMPFILE_NAMES = '''
import sys, tempfile
import thaw._worker as worker
tempfile.mkstemp()
print("READY", flush=True)
seed = int(sys.stdin.readline())
before = next(tempfile._get_candidate_names())
worker.reseed(seed)
print(before, next(tempfile._get_candidate_names()))
'''


def test_the_worker_s_reseed_reaches_tempfile_names(zoo, thaw_bin, tmp_path):
    """tempfile draws its names from a generator of its own, made again
    when the pid changes; restored copies keep their pid, so each drew
    the same names (mkstemp retries on a clash, but mktemp() and names
    made for other hosts collide). The worker's reseed makes it anew."""
    names = _draws_of_two_restores(zoo, tmp_path, "tempfile_names.py", TEMPFILE_NAMES)
    assert names[0][0] == names[1][0], "without a reseed both restores draw the same (the cause)"
    assert names[0][1] != names[1][1], f"tempfile drew the same names after the reseed: {names}"


SQLITE_WAL = '''
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
assert db.execute("pragma journal_mode=wal").fetchone() == ("wal",)
db.execute("create table t(who text)")
db.execute("insert into t values ('setup')")
print("READY", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "add":
        db.execute("insert into t values (?)", (arg,))
        print("added", flush=True)
    elif cmd == "rows":
        print(",".join(r[0] for r in db.execute("select who from t order by rowid")), flush=True)
    elif cmd == "quit":
        db.close()  # the last connection: SQLite merges the log and deletes -wal and -shm
        print("closed", flush=True)
        break
'''


def _ask(p, line):
    p.stdin.write(f"{line}\n".encode())
    buf = getattr(p, "leftover", b"")
    deadline = time.monotonic() + 30
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([p.stdout], [], [], left)[0], f"{p.prog}: no answer to {line!r}: {buf!r}"
        chunk = os.read(p.stdout.fileno(), 4096)
        assert chunk, f"{p.prog} ended: {buf!r} {p.stderr.read()!r}"
        buf += chunk
    answer, _, p.leftover = buf.partition(b"\n")
    return answer.decode()


def _lock_holders(path):
    """Pids /proc/locks names as holding a lock on the file at path."""
    st = os.stat(path)
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter
            continue
        dev_ino = fields[5].split(":")
        if len(dev_ino) == 3 and int(dev_ino[2]) == st.st_ino:
            holders.add(int(fields[4]))
    return holders


def _sqlite_wal_checkpointed(zoo, tmp_path):
    """SQLITE_WAL started on a database of tmp_path and checkpointed, left
    running: (the original, the image, the database's path)."""
    prog = tmp_path / "sqlite_wal.py"
    prog.write_text(SQLITE_WAL)
    db = tmp_path / "data.db"
    orig = _start(zoo, prog, str(db))
    img = zoo.img_path()
    zoo.checkpoint(orig, img)
    return orig, img, db


def test_an_open_sqlite_wal_database_works_in_each_restored_copy(zoo, thaw_bin, tmp_path):
    """A connection to a database in WAL mode holds POSIX read locks on it
    and its -shm file (which it maps shared) for as long as it is open:
    such a process was refused. Now the original, left running, and two
    restored copies each hold the locks and see each other's writes."""
    orig, img, db = _sqlite_wal_checkpointed(zoo, tmp_path)
    copies = [zoo.restore_start(img) for _ in range(2)]
    for n, c in enumerate(copies):
        c.prog = f"copy {n + 1}"
        assert _ask(c, f"add copy{n + 1}") == "added"
    assert _ask(orig, "add original") == "added"
    for p in [orig, *copies]:
        assert _ask(p, "rows") == "setup,copy1,copy2,original", p.prog
    # Each of the three holds its locks on the -shm file: the original,
    # and the two restored processes (below their `thaw restore`).
    holders = _lock_holders(f"{db}-shm")
    assert orig.pid in holders and len(holders) == 3, holders
    for c in copies:
        assert any(h in holders for h in zoo.descendants(c.pid)), (c.prog, holders)


def test_a_sqlite_wal_database_written_after_the_checkpoint_still_restores(zoo, thaw_bin, tmp_path):
    """The -shm file of a WAL database is mapped shared: its pages are not
    in the image, the process reads the file as it is. A write to the
    database after the checkpoint (by the original, or by a restored copy
    for every later restore) changes it, and restores were refused as of
    a mapped file that changed. Now a copy restored after such a write
    starts and sees it."""
    orig, img, _ = _sqlite_wal_checkpointed(zoo, tmp_path)
    assert _ask(orig, "add original") == "added"
    copy = zoo.restore_start(img)
    copy.prog = "copy"
    assert _ask(copy, "add copy") == "added"
    assert _ask(copy, "rows") == "setup,original,copy"
    later = zoo.restore_start(img)
    later.prog = "later copy"
    assert _ask(later, "rows") == "setup,original,copy"


def test_a_sqlite_wal_database_a_restored_copy_closed_still_restores(zoo, thaw_bin, tmp_path):
    """A restored copy that closes the last connection to the database
    makes SQLite merge the log into it and delete its -wal and -shm files,
    which every later restore was refused for ("mapped file ...-shm is
    gone"); another connection then makes them anew, other files than the
    image's. Restores follow their paths now, as SQLite does: a later copy
    sees the rows, and its writes reach a connection opened by name."""
    import sqlite3
    orig, img, db = _sqlite_wal_checkpointed(zoo, tmp_path)
    orig.kill()  # SIGKILL: its connection is not closed
    orig.wait(timeout=10)
    copy = zoo.restore_start(img)
    copy.prog = "copy"
    assert _ask(copy, "add copy") == "added"
    assert _ask(copy, "quit") == "closed"
    copy.wait(timeout=30)
    assert not os.path.exists(f"{db}-wal") and not os.path.exists(f"{db}-shm")
    later = zoo.restore_start(img)
    later.prog = "later copy"
    assert _ask(later, "rows") == "setup,copy"
    assert _ask(later, "add later") == "added"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert [r[0] for r in con.execute("select who from t order by rowid")] == ["setup", "copy", "later"]
        # The files there now are the later copy's, not the image's.
        third = zoo.restore_start(img)
        third.prog = "third copy"
        assert _ask(third, "add third") == "added"
        assert _ask(third, "rows") == "setup,copy,later,third"
        assert [r[0] for r in con.execute("select who from t order by rowid")] == ["setup", "copy", "later", "third"]
        assert _ask(later, "rows") == "setup,copy,later,third"
    finally:
        con.close()



SQLITE_WAL_TREE = SQLITE_WAL.replace('print("READY", flush=True)', """import os
r, w = os.pipe()
if os.fork() == 0:  # holds the connection's fds and the -shm mapping, uses neither
    os.close(w)
    os.read(r, 1)  # until its parent ends
    os._exit(0)
os.close(r)
print("READY", flush=True)""")


def _sqlite_wal_tree_checkpointed(zoo, tmp_path):
    """SQLITE_WAL_TREE checkpointed and killed, its database's last
    connection closed since (-wal and -shm deleted): (image, database)."""
    import sqlite3
    prog = tmp_path / "sqlite_wal_tree.py"
    prog.write_text(SQLITE_WAL_TREE)
    db = tmp_path / "data.db"
    orig = _start(zoo, prog, str(db))
    img = zoo.img_path()
    zoo.checkpoint(orig, img, kill=True)
    orig.wait(timeout=30)
    last = sqlite3.connect(db, isolation_level=None)
    assert last.execute("select count(*) from t").fetchone() == (1,)
    last.close()
    assert not os.path.exists(f"{db}-wal") and not os.path.exists(f"{db}-shm")
    return img, db


def test_a_sqlite_wal_database_a_tree_shares_restores_beside_files_another_connection_made(zoo, thaw_bin, tmp_path):
    """As below, the -wal and -shm files there at restore being another
    connection's (open, with a row of its own): the tree's pool and the
    child's mapping of the -shm follow the paths to them, and the copy and
    that connection see each other's writes."""
    import sqlite3
    img, db = _sqlite_wal_tree_checkpointed(zoo, tmp_path)
    con = sqlite3.connect(db, isolation_level=None)
    try:
        con.execute("insert into t values ('outside')")
        copy = zoo.restore_start(img)
        copy.prog = "copy"
        assert _ask(copy, "rows") == "setup,outside"
        assert _ask(copy, "add copy") == "added"
        assert [r[0] for r in con.execute("select who from t order by rowid")] == ["setup", "outside", "copy"]
    finally:
        con.close()


def test_a_sqlite_wal_database_a_tree_shares_still_restores_when_its_files_were_made_anew(zoo, thaw_bin, tmp_path):
    """A connection opened before a fork: the database, -wal and -shm fds
    are the tree's pool (opened by the root before it makes its children),
    and the child maps the -shm file too. The root opened its pool before
    it made gone WAL files again: once the last connection had closed the
    database, such a tree was refused ("shared ...-wal: file is gone")."""
    import sqlite3
    img, db = _sqlite_wal_tree_checkpointed(zoo, tmp_path)
    copy = zoo.restore_start(img)
    copy.prog = "copy"
    assert _ask(copy, "rows") == "setup"
    assert _ask(copy, "add copy") == "added"
    con = sqlite3.connect(db, isolation_level=None)
    try:
        assert [r[0] for r in con.execute("select who from t order by rowid")] == ["setup", "copy"]
        assert _ask(copy, "quit") == "closed"
        copy.wait(timeout=30)
        # Files another connection made (con's, kept open): not the image's.
        later = zoo.restore_start(img)
        later.prog = "later copy"
        assert _ask(later, "rows") == "setup,copy"
        assert _ask(later, "add later") == "added"
        assert [r[0] for r in con.execute("select who from t order by rowid")] == ["setup", "copy", "later"]
    finally:
        con.close()


LOGS = '''
import logging, logging.handlers, sys
log = logging.getLogger("app")
log.addHandler(logging.FileHandler(sys.argv[1]))  # opened "a": write-only, appending
log.addHandler(logging.handlers.RotatingFileHandler(sys.argv[2], maxBytes=1000, backupCount=2))
state = open(sys.argv[3], "r+")  # a file it reads and writes: not a log
log.warning("before")
print("READY", flush=True)
for line in sys.stdin:
    log.warning(line.strip())
    print("logged", flush=True)
'''


def test_a_log_rotated_or_truncated_after_the_checkpoint_is_written_where_its_path_leads(zoo, thaw_bin, tmp_path):
    """A file opened only to append to it (a logging handler's) follows
    its path: a log rotated after the checkpoint (renamed away and made
    anew: RotatingFileHandler, logrotate) or truncated (copytruncate) was
    refused as a file replaced or shrunk, so every restore after the first
    rotation by any process sharing it failed. Now the restored process
    writes to the file at the path, from its end. A file it can read is
    still refused when it was replaced."""
    prog = tmp_path / "logs.py"
    prog.write_text(LOGS)
    plain, rotating, state = tmp_path / "plain.log", tmp_path / "rot.log", tmp_path / "state"
    state.write_text("state")
    img = zoo.img_path()
    zoo.checkpoint(_start(zoo, prog, str(plain), str(rotating), str(state)), img, kill=True)
    # The rotating log rotated by another process; the plain one truncated.
    rotating.rename(tmp_path / "rot.log.1")
    rotating.write_text("by another process\n")
    plain.write_text("")
    p = zoo.restore_start(img)
    assert _ask(p, "after") == "logged"
    assert plain.read_text() == "after\n"
    assert rotating.read_text() == "by another process\nafter\n"
    assert (tmp_path / "rot.log.1").read_text() == "before\n"
    p.stdin.close()
    assert p.wait(timeout=30) == 0, p.stderr.read()
    # The file it opened read-write, replaced: refused, named.
    state.rename(tmp_path / "state.old")
    state.write_text("another")
    rc, out, err = zoo.restore(img)
    assert rc != 0 and f"({state}): file was replaced since checkpoint" in err, (rc, out, err)


def test_a_restore_names_the_posix_lock_another_process_holds(zoo, thaw_bin, tmp_path):
    """A POSIX write lock (lockf) the original still holds fails a restore
    with a message naming the lock and its range; the original is left as
    it was."""
    prog = tmp_path / "lockf.py"
    prog.write_text("import fcntl, sys\n"
                    f"f = open({str(tmp_path / 'held')!r}, 'w')\n"
                    "fcntl.lockf(f, fcntl.LOCK_EX, 10, 5)\n"
                    "print('READY', flush=True)\n"
                    "sys.stdin.readline()\n"
                    "print('still mine' if fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 5) is None else 'lost')\n")
    orig = _start(zoo, prog)
    img = zoo.img_path()
    zoo.checkpoint(orig, img)
    rc, out, err = zoo.restore(img)
    assert rc != 0 and "held a POSIX write lock on bytes 5-14 of" in err and "restore once it is released" in err, err
    rc, out, err = zoo.finish(orig)
    assert rc == 0 and out == "still mine\n", (rc, out, err)


RESOURCE_SHARER = '''
import multiprocessing as mp, os, sys, time
from multiprocessing import reduction
def child(conn):
    # The fd the parent sends comes through the parent's resource sharer:
    # a connection to its listener at <tmp>/pymp-*/listener-*.
    fd = conn.recv().detach()
    print(os.read(fd, 100).decode(), flush=True)
if __name__ == "__main__":
    mp.set_start_method("fork")
    r, w = os.pipe()
    os.write(w, b"sent before the checkpoint")
    ours, theirs = mp.Pipe()
    first = mp.Process(target=child, args=(theirs,))
    first.start()
    shared = reduction.DupFd(r)  # starts the listener
    settled = len(os.listdir("/proc/self/fd")) - 1  # its dup of r goes once sent
    ours.send(shared)
    first.join()
    # The connection the listener accepted for it closes a moment later.
    while len(os.listdir("/proc/self/fd")) > settled:
        time.sleep(0.01)
    print("READY", flush=True)
    sys.stdin.readline()
    os.write(w, b"sent after the restore")
    second = mp.Process(target=child, args=(theirs,))
    second.start()
    ours.send(reduction.DupFd(r))
    second.join()
    print("exit", second.exitcode)
'''


@pytest.mark.parametrize("directory", ["kept", "removed"])
def test_a_resource_sharer_listener_sends_fds_after_restore(zoo, thaw_bin, tmp_path, directory):
    """multiprocessing's resource sharer listens on a unix socket bound to a
    path (<tmp>/pymp-*/listener-*) in a process that sent an fd to another:
    torch DataLoader workers do for each batch, so a loader with live
    workers was refused by a socket its user never made. Restored (with the
    directory the killed original left, or after it was removed, as the
    original's multiprocessing does at exit), the listener hands a new child
    the fd the parent sends it."""
    prog = tmp_path / "resource_sharer.py"
    prog.write_text(RESOURCE_SHARER)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _start(zoo, prog, env={"TMPDIR": str(tmp)})
    (pymp,) = tmp.glob("pymp-*")
    assert [f.name for f in pymp.iterdir() if f.name.startswith("listener-")], list(pymp.iterdir())
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)
    p.wait(timeout=10)
    if directory == "removed":
        shutil.rmtree(pymp)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "sent after the restore\nexit 0\n", \
        f"rc={rc}\n{out}\n{err}"


LISTENER = '''
import sys
from multiprocessing.connection import Listener
with Listener(address=sys.argv[1], family="AF_UNIX", authkey=b"secret") as listener:
    print("READY", flush=True)
    sys.stdin.readline()
    print("serving", flush=True)
    with listener.accept() as conn:
        conn.send(("pong", conn.recv()))
    print("served", flush=True)
'''


@pytest.mark.parametrize("mode", ["lazy", "eager"])
def test_a_multiprocessing_listener_on_a_unix_path_answers_after_restore(zoo, thaw_bin, tmp_path, mode):
    """multiprocessing.connection.Listener on a unix path, checkpointed,
    killed and restored: a Client from outside connects to the path,
    authenticates, and gets its answer."""
    from multiprocessing.connection import Client
    prog = tmp_path / "listener.py"
    prog.write_text(LISTENER)
    d = tmp_path / "x"
    d.mkdir(mode=0o700)
    path = d / "sock"
    img = _image(zoo, prog, str(path))
    r = zoo.restore_start(img, *(["--eager"] if mode == "eager" else []))
    r.stdin.write(b"go\n")
    assert r.stdout.readline() == b"serving\n", r.stderr.read()
    with Client(str(path), family="AF_UNIX", authkey=b"secret") as c:
        c.send("ping")
        assert c.recv() == ("pong", "ping")
    rc, out, err = zoo.finish(r, data=b"")
    assert rc == 0 and out == "served\n", (rc, out, err)


TREE_LISTENER = '''
import multiprocessing as mp, sys
from multiprocessing.connection import Listener, Client
def serve(address, note):
    with Listener(address=address, family="AF_UNIX", authkey=b"secret") as listener:
        note.send("listening")
        while True:
            with listener.accept() as conn:
                msg = conn.recv()
                if msg != "stop":
                    conn.send(("pong", msg))
            note.send("idle")  # the connection it accepted is closed
            if msg == "stop":
                return
if __name__ == "__main__":
    mp.set_start_method("fork")
    ours, theirs = mp.Pipe()
    child = mp.Process(target=serve, args=(sys.argv[1], theirs))
    child.start()
    assert ours.recv() == "listening"
    with Client(sys.argv[1], family="AF_UNIX", authkey=b"secret") as c:
        c.send("before")
        assert c.recv() == ("pong", "before")
    assert ours.recv() == "idle"
    print("READY", flush=True)
    sys.stdin.readline()
    with Client(sys.argv[1], family="AF_UNIX", authkey=b"secret") as c:
        c.send("after")
        print(c.recv(), flush=True)
    ours.recv()
    with Client(sys.argv[1], family="AF_UNIX", authkey=b"secret") as c:
        c.send("stop")
    child.join()
    print("exit", child.exitcode)
'''


def test_a_child_listening_on_a_unix_path_answers_its_parent_after_restore(zoo, thaw_bin, tmp_path):
    """A process tree whose child listens on a unix path, as DataLoader
    workers' resource sharers do: the child, made by its restored parent,
    binds the path again (its stale file replaced) and answers the parent."""
    prog = tmp_path / "tree_listener.py"
    prog.write_text(TREE_LISTENER)
    d = tmp_path / "x"
    d.mkdir(mode=0o700)
    p = _start(zoo, prog, str(d / "sock"))
    img = zoo.img_path()
    zoo.checkpoint(p, img, kill=True)  # the whole tree
    p.wait(timeout=10)
    assert (d / "sock").is_socket()  # left by the killed child, stale
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "('pong', 'after')\nexit 0\n", f"rc={rc}\n{out}\n{err}"


PREFORK = '''
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(8)
kid = os.fork()
if kid == 0:  # a pre-fork server's worker: accepts on the listener it inherited
    c, _ = s.accept()
    c.sendall(b"worker got " + c.recv(100))
    os._exit(0)
print("READY", flush=True)
sys.stdin.readline()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sys.argv[1])
c.sendall(b"hello")
print(c.recv(100).decode(), os.waitpid(kid, 0)[1], flush=True)
'''


def test_a_listener_a_parent_shares_with_its_child_on_a_unix_path_comes_back(zoo, thaw_bin, tmp_path):
    """A pre-fork server: the listener on a unix path is one description
    the parent and its worker both hold (restored once, by the tree's root,
    for both); after restore the parent connects, the worker answers."""
    prog = tmp_path / "prefork.py"
    prog.write_text(PREFORK)
    path = tmp_path / "server.sock"
    img = _image(zoo, prog, str(path))
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "worker got hello 0\n", f"rc={rc}\n{out}\n{err}"


MANAGER = '''
import multiprocessing as mp, sys
if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    m = mp.Manager()
    d = m.dict(before=1)
    q = m.Queue()
    q.put("queued before")
    lock = m.Lock()
    print("READY", flush=True)
    sys.stdin.readline()
    d["after"] = 2
    with lock:
        print(sorted(d.items()), q.get(timeout=10), flush=True)
    m.shutdown()
    print("shut down", flush=True)
'''


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_multiprocessing_manager_answers_its_proxies_after_restore(zoo, thaw_bin, tmp_path, start_method):
    """multiprocessing.Manager: a server process listening on a unix path
    (<tmp>/pymp-*/listener-*), with connections it accepted from its parent
    (one per proxy's thread) open. Both ends are in the checkpoint: each
    connection comes back a pair, with the listener's name on its accepted
    end. The proxies work after a restore (the original killed, its pymp
    directory removed at its exit), and the manager shuts down cleanly."""
    prog = tmp_path / "manager.py"
    prog.write_text(MANAGER)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    img = _image(zoo, prog, start_method, env={"TMPDIR": str(tmp)})
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "[('after', 2), ('before', 1)] queued before\nshut down\n", \
        f"rc={rc}\n{out}\n{err}"
    assert not list(tmp.glob("pymp-*")), "the restored manager left its directory"


OUTSIDE_CLIENT = '''
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(1)
print("LISTENING", flush=True)
c, _ = s.accept()
print("READY", flush=True)
sys.stdin.readline()
'''


def test_a_connection_accepted_from_a_client_outside_the_checkpoint_is_refused_by_name(zoo, thaw_bin, tmp_path):
    """A connection whose client is another process, not in the checkpoint:
    refused, naming the path, and the server goes on running."""
    prog = tmp_path / "outside_client.py"
    prog.write_text(OUTSIDE_CLIENT)
    path = tmp_path / "server.sock"
    env = dict(os.environ)
    p = subprocess.Popen([PYTHON, str(prog), str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, close_fds=True, env=env)
    zoo.procs.append(p)
    p.prog = prog.name
    assert p.stdout.readline() == b"LISTENING\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(path))
        assert p.stdout.readline() == b"READY\n"
        cp = zoo.checkpoint(p, zoo.img_path(), expect_ok=False)
        assert cp.returncode != 0
        assert f"unix socket bound to {path} is connected to a process outside the checkpoint" in cp.stderr, cp.stderr
        assert p.poll() is None
        p.stdin.write(b"go\n")
        p.stdin.flush()
    assert p.wait(timeout=10) == 0


ABSTRACT_ACCEPTED = '''
import socket, sys
name = "\\0" + sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(name)
s.listen(1)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(name)
a, _ = s.accept()
c.sendall(b"queued")
print("READY", flush=True)
sys.stdin.readline()
print(a.recv(100).decode(), repr(a.getsockname()), repr(c.getpeername()), flush=True)
x = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
x.connect(name)
y, _ = s.accept()
print(repr(y.getsockname()), flush=True)
'''


def test_a_connection_accepted_on_an_abstract_name_comes_back_without_it(zoo, thaw_bin, tmp_path):
    """The accepted end of a connection on an abstract name cannot take the
    name again (the listener holds it): it comes back unnamed, the
    checkpoint says so, and the data and the listener work."""
    prog = tmp_path / "abstract_accepted.py"
    prog.write_text(ABSTRACT_ACCEPTED)
    name = f"thaw-test-{os.getpid()}-{tmp_path.name}"
    p = _start(zoo, prog, name)
    img = zoo.img_path()
    cp = zoo.checkpoint(p, img, kill=True)
    assert f"a connection on the abstract name @{name} comes back without its name" in cp.stderr + cp.stdout, \
        cp.stderr + cp.stdout
    p.wait(timeout=10)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == f"queued '' ''\nb'\\x00{name}'\n", f"rc={rc}\n{out}\n{err}"


CHILD_OWN_CONNECTION = '''
import os, socket, sys
d = sys.argv[1]
r, w = os.pipe()
r2, w2 = os.pipe()
kid = os.fork()
if kid == 0:  # both ends of a connection of its own listener, opened by its own restore
    os.close(r); os.close(w2)
    s = socket.socket(socket.AF_UNIX); s.bind(d + "/l"); s.listen(1)
    c = socket.socket(socket.AF_UNIX); c.connect(d + "/l"); a, _ = s.accept()
    c.sendall(b"queued")
    os.write(w, b"k")
    os.read(r2, 1)
    print(a.recv(100).decode(), a.getsockname() == d + "/l", c.getpeername() == d + "/l", flush=True)
    os._exit(0)
os.close(w); os.close(r2)
os.read(r, 1)
print("READY", flush=True)
sys.stdin.readline()
os.write(w2, b"g")
print("exit", os.waitpid(kid, 0)[1], flush=True)
'''


def test_a_child_s_connection_to_its_own_listener_comes_back_named(zoo, thaw_bin, tmp_path):
    """A child process holding both ends of a connection its own listener
    accepted (not shared with its parent: its own restore opens them): the
    pair comes back with its names and the data queued."""
    prog = tmp_path / "child_connection.py"
    prog.write_text(CHILD_OWN_CONNECTION)
    d = tmp_path / "d"
    d.mkdir()
    img = _image(zoo, prog, str(d))
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "queued True True\nexit 0\n", f"rc={rc}\n{out}\n{err}"


ACCEPTS_LATER = '''
import os, socket, sys, threading
name = "\\0thaw-accepts-later-" + str(os.getpid())
s = socket.socket(socket.AF_UNIX); s.bind(name); s.listen(1)
c = socket.socket(socket.AF_UNIX); c.connect(name)
c.sendall(b"waiting")
go = threading.Event()
got = []
def accept():
    go.wait()
    got.append(s.accept()[0])
threading.Thread(target=accept, daemon=True).start()
print("READY", flush=True)
sys.stdin.readline()  # "accept"
go.set()
sys.stdin.readline()
print(got[0].recv(100).decode(), flush=True)
'''


def test_checkpoint_wait_takes_a_refused_passing_state_again(zoo, thaw_bin, tmp_path):
    """A connection not accepted yet is a passing state: without --wait the
    checkpoint is refused saying so (the process runs on); with --wait it is
    taken again until the process has accepted it."""
    prog = tmp_path / "accepts_later.py"
    prog.write_text(ACCEPTS_LATER)
    p = _start(zoo, prog)
    cp = zoo.thaw("checkpoint", "--pid", p.pid, "--out", zoo.img_path())
    assert cp.returncode != 0 and "waiting to be accepted" in cp.stderr and "a passing state" in cp.stderr, cp.stderr
    img = zoo.img_path()
    waiting = subprocess.Popen(zoo.thaw_cmd("checkpoint", "--pid", p.pid, "--out", img, "--wait", "30", "--kill"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, close_fds=True)
    # Refused at least once before the process accepts.
    line = waiting.stderr.readline()
    assert "a passing state" in line and "trying again" in line, line
    p.stdin.write(b"accept\n")
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    p.wait(timeout=10)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "waiting\n", f"rc={rc}\n{out}\n{err}"


ASYNCIO_PIDFD = '''
import asyncio, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # child watchers, deprecated in 3.12 (pidfds by default there)

async def main():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.exit(len(sys.stdin.readline()))",
        stdin=asyncio.subprocess.PIPE)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    proc.stdin.write(b"four\\n")
    await proc.stdin.drain()
    print("child exited", await asyncio.wait_for(proc.wait(), 30), flush=True)

watcher = asyncio.PidfdChildWatcher()
asyncio.set_child_watcher(watcher)
loop = asyncio.new_event_loop()
watcher.attach_loop(loop)
loop.run_until_complete(main())
'''


def test_asyncio_s_pidfd_child_watcher_reaps_its_child_after_restore(zoo, thaw_bin, tmp_path):
    """asyncio's PidfdChildWatcher (the default from Python 3.12): the loop
    holds a pidfd of its subprocess in its epoll set. Both come back naming
    the restored child, whose end the loop then sees and reaps (pidfds were
    refused before)."""
    prog = tmp_path / "asyncio_pidfd.py"
    prog.write_text(ASYNCIO_PIDFD)
    img = _image(zoo, prog)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "child exited 5\n", f"rc={rc}\n{out}\n{err}"


TWO_LISTENERS = '''
import os, socket, sys
path, order = sys.argv[1], sys.argv[2]
old, new = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
if order == "new-first":  # the listener made anew gets the lower fd
    old, new = new, old
old.bind(path)
old.listen()
os.unlink(path)  # a server making its listener anew, keeping the old one open
new.bind(path)
new.listen()
print("READY", flush=True)
sys.stdin.readline()
client = socket.socket(socket.AF_UNIX)
client.connect(path)
conn, _ = new.accept()
print("accepted by the new listener;", "old one still named" if old.getsockname() == path else "old one renamed",
      flush=True)
'''


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_a_listener_made_anew_beside_the_old_one_at_its_path_comes_back(zoo, thaw_bin, tmp_path, order):
    """Two unix sockets bound to one path: the old one's file was removed
    and the new one bound there. A restore binds the old one's name first,
    then removes its file again, whatever their fds' order: when the new one
    came first (the lower fd), the old one found its file in the way and
    the restore was refused (Address already in use)."""
    prog = tmp_path / "two_listeners.py"
    prog.write_text(TWO_LISTENERS)
    img = _image(zoo, prog, str(tmp_path / "server.sock"), order)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out == "accepted by the new listener; old one still named\n", f"rc={rc}\n{out}\n{err}"


TWO_LISTENERS_TREE = '''
import os, socket, sys
path, holder = sys.argv[1], sys.argv[2]
old = socket.socket(socket.AF_UNIX)
old.bind(path)
old.listen()
os.unlink(path)  # a server making its listener anew, keeping the old one open
new = socket.socket(socket.AF_UNIX)
new.bind(path)
new.listen()
r, w = os.pipe()
if os.fork() == 0:
    # Holds the new listener with its parent (the tree's pool's); the old
    # one is its parent's alone, or its own alone.
    if holder == "parent":
        old.close()
    os.close(w)
    os.read(r, 1)  # until its parent ends
    os._exit(0)
if holder == "child":
    old.close()
os.close(r)
print("READY", flush=True)
sys.stdin.readline()
client = socket.socket(socket.AF_UNIX)
client.connect(path)
conn, _ = new.accept()
print("accepted by the new listener", flush=True)
'''


@pytest.mark.parametrize("holder", ["parent", "child"])
def test_a_listener_made_anew_in_a_tree_comes_back_beside_the_old_one(zoo, thaw_bin, tmp_path, holder):
    """As above, in a process tree: the new listener shared with a child
    (opened once, by the root, before it makes its children: the tree's
    pool), the old one, whose file was removed, held by one process alone.
    The pool bound the new one's path first, and the old one's bind found
    its file in the way: the restore was refused (Address already in use).
    Such sockets are in the pool now, which opens them first."""
    prog = tmp_path / "two_listeners_tree.py"
    prog.write_text(TWO_LISTENERS_TREE)
    img = _image(zoo, prog, str(tmp_path / "server.sock"), holder)
    rc, out, err = zoo.restore(img, timeout=60)
    assert rc == 0 and out.endswith("accepted by the new listener\n"), f"rc={rc}\n{out}\n{err}"


@pytest.mark.parametrize("files", ["deleted", "another_connections"])
def test_restored_copies_and_an_outside_writer_keep_a_sqlite_wal_database_whole(zoo, thaw_bin, tmp_path, files):
    """Restored copies follow the -wal and -shm paths (made again zeroed
    where gone, or another connection's): three copies and a connection
    opened by name write in turns, one closing and another restored
    meanwhile. Every row is seen by all, and the database passes
    SQLite's integrity check."""
    import sqlite3
    orig, img, db = _sqlite_wal_checkpointed(zoo, tmp_path)
    orig.kill()
    orig.wait(timeout=10)
    outside = None
    if files == "another_connections":
        outside = sqlite3.connect(db, isolation_level=None)
        outside.execute("insert into t values ('o0')")
    else:
        last = sqlite3.connect(db, isolation_level=None)
        last.execute("select count(*) from t").fetchone()
        last.close()
        assert not os.path.exists(f"{db}-wal")
    copies = [zoo.restore_start(img) for _ in range(3)]
    for n, c in enumerate(copies):
        c.prog = f"copy {n}"
    if outside is None:
        outside = sqlite3.connect(db, isolation_level=None)
    expected = [r[0] for r in outside.execute("select who from t order by rowid")]
    try:
        for rnd in range(40):
            for n, c in enumerate(copies):
                assert _ask(c, f"add c{n}-{rnd}") == "added", c.prog
                expected.append(f"c{n}-{rnd}")
            outside.execute("insert into t values (?)", (f"o-{rnd}",))
            expected.append(f"o-{rnd}")
            if rnd == 20:  # one closes; another comes back from the image
                assert _ask(copies[0], "quit") == "closed"
                copies[0].wait(timeout=30)
                copies[0] = zoo.restore_start(img)
                copies[0].prog = "copy 0 again"
            if rnd % 10 == 9:
                outside.execute("pragma wal_checkpoint(truncate)")
        want = ",".join(expected)
        for c in copies:
            assert _ask(c, "rows") == want, c.prog
        assert [r[0] for r in outside.execute("select who from t order by rowid")] == expected
        assert outside.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        outside.close()

"""A class whose @enter(snap=True) opens an SQLite database in the
container's temporary directory (its own /dev/shm, copied into each
restored container) and keeps the connection, as an engine's pool does.
SQLite refuses to write to a database whose path names another inode
than the one it opened ("attempt to write a readonly database"), so each
restored container's copy must have the file's inode number back."""
import os
import sqlite3
import tempfile

import thaw

app = thaw.App("e2e-sqlite-temp")


@app.cls(enable_memory_snapshot=True)
class Store:
    @thaw.enter(snap=True)
    def open(self):
        # Another file made and removed first: its inode number is skipped,
        # so the database's number is not simply the next one after the
        # directory's.
        scratch = tempfile.NamedTemporaryFile(delete=False)
        scratch.close()
        os.remove(scratch.name)
        self.path = os.path.join(tempfile.gettempdir(), "store.db")
        self.db = sqlite3.connect(self.path, check_same_thread=False)
        self.db.execute("create table t (x integer)")
        self.db.execute("insert into t values (1)")
        self.db.commit()
        self.ino = os.stat(self.path).st_ino

    @thaw.method()
    def add(self, x):
        self.db.execute("insert into t values (?)", (x,))
        self.db.commit()
        return {"sum": self.db.execute("select sum(x) from t").fetchone()[0],
                "same_inode": os.stat(self.path).st_ino == self.ino}

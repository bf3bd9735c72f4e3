"""A class whose @enter(snap=True) opens an SQLite database in WAL mode on
a Volume and keeps the connection: the snapshot holds the database, its
-wal and -shm files (the index mapped shared). A container that ends
closes the last connection, and SQLite then deletes -wal and -shm, which
every later restore needs to find again by name."""
import os
import sqlite3

import thaw

E2E_DIR = os.environ["E2E_DIR"]
DATA = os.path.join(E2E_DIR, "mnt", "sqlite")
vol = thaw.Volume.from_name("e2e-sqlite", create_if_missing=True)
app = thaw.App("e2e-sqlite-wal", image=thaw.Image.debian_slim().env({"E2E_DIR": E2E_DIR}))


@app.cls(enable_memory_snapshot=True, volumes={DATA: vol})
class Store:
    @thaw.enter(snap=True)
    def open(self):
        self.db = sqlite3.connect(os.path.join(DATA, "data.db"), isolation_level=None, check_same_thread=False)
        assert self.db.execute("pragma journal_mode=wal").fetchone() == ("wal",)
        self.db.execute("create table if not exists t(who text)")
        self.db.execute("insert into t values ('snapshot')")

    @thaw.method()
    def add(self, who):
        self.db.execute("insert into t values (?)", (who,))
        return [r[0] for r in self.db.execute("select who from t order by rowid")]

    @thaw.exit()
    def close(self):
        self.db.close()  # the last connection: SQLite deletes -wal and -shm

"""`thaw run` options converted by type hints written as strings
(`from __future__ import annotations`), Optional and datetime included."""
from __future__ import annotations

import datetime
from typing import Optional

import thaw as modal

app = modal.App("e2e-entry-args")


@app.function()
def describe(n: int, when: Optional[datetime.datetime] = None, verbose: bool = False):
    return f"{type(n).__name__} {n} {when.isoformat() if when else None} {verbose}"


@app.local_entrypoint()
def main(n: int, when: datetime.datetime | None = None, verbose: bool = False):
    print("describe:", describe.remote(n * 2, when, verbose))

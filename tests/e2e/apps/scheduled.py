"""Functions that run by themselves while `thaw serve` runs."""
import os
import time

import thaw

app = thaw.App("e2e-scheduled")
# Containers get the Image's environment, not the deployer's.
image = thaw.Image.debian_slim().env({"E2E_DIR": os.environ["E2E_DIR"]})


@app.function(enable_memory_snapshot=True, schedule=thaw.Period(seconds=1), image=image)
def tick():
    with open(os.path.join(os.environ["E2E_DIR"], "ticks"), "a") as f:
        f.write(f"{time.time()}\n")


# 03:00 in New York: 07:00 or 08:00 UTC (daylight time or not).
@app.function(schedule=thaw.Cron("0 3 * * mon", timezone="America/New_York"))
def weekly():
    pass

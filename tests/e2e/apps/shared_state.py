"""Dict and Queue shared by the caller and the function containers. The
handles are made at global scope, so the snapshot holds them (and no open
database)."""
import thaw

app = thaw.App("e2e-shared-state")
counts = thaw.Dict.from_name("e2e-counts", create_if_missing=True)
jobs = thaw.Queue.from_name("e2e-jobs", create_if_missing=True)
results = thaw.Queue.from_name("e2e-results", create_if_missing=True)


@app.function(enable_memory_snapshot=True)
def record(word):
    counts[word] = counts.get(word, 0) + 1
    return counts[word]


@app.function(enable_memory_snapshot=True)
def square_jobs(n):
    for _ in range(n):
        x = jobs.get(timeout=60)  # waits for the caller's put
        results.put(x * x)
    return "done"


@app.function(enable_memory_snapshot=True)
def take_when_woken():
    # Looks so rare (10 min apart) that only the caller's put, waking this
    # container's wait across its namespaces, brings the value in time.
    import thaw._queue as q
    q._POLL_MIN_S = q._POLL_MAX_S = q._POLL_MAX_WOKEN_S = 600
    return thaw.Queue.from_name("e2e-wake", create_if_missing=True).get()

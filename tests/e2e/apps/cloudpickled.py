"""Values plain pickle cannot send, as Modal code passes them: a caller's
lambdas, closures and instances of the classes its script defines go to the
function, and functions made here come back (cloudpickle, by value)."""
import thaw

app = thaw.App("e2e-cloudpickled")


@app.function(enable_memory_snapshot=True)
def apply(f, x):
    return f(x)


@app.function(enable_memory_snapshot=True)
def describe(obj):
    # The class exists only in the caller's script: its code came with it.
    return {"text": obj.describe(), "class": type(obj).__name__, "module": type(obj).__module__}


@app.function(enable_memory_snapshot=True)
def echo(obj):
    return obj


@app.function(enable_memory_snapshot=True)
def adder(n):
    def add(x):
        return x + n
    return add


@app.function(enable_memory_snapshot=True)
def powers(n):
    for i in range(n):
        yield lambda x, i=i: x ** i


@app.cls(enable_memory_snapshot=True)
class Runner:
    @thaw.method()
    def run(self, f, *args):
        return f(*args)

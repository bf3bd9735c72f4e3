"""A class with modal.parameter()s (one container per parameter set), and
generators, for handles looked up with from_name()."""
import thaw

app = thaw.App("e2e-params")


@app.cls(enable_memory_snapshot=True)
class Greeter:
    name: str = thaw.parameter()
    punct: str = thaw.parameter(default="!")

    @thaw.enter()
    def prepare(self):
        self.greeting = f"hello {self.name}{self.punct}"

    @thaw.method()
    def greet(self, times=1):
        return " ".join([self.greeting] * times)

    @thaw.method()
    def letters(self):
        yield from self.name


@app.function()
def countdown(n):
    yield from range(n, 0, -1)

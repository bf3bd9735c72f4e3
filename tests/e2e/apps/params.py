"""A class with modal.parameter()s: one container per parameter set."""
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

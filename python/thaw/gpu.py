"""GPU specifications. Pass a string (`gpu="A100"`, `gpu="H100:2"`,
`gpu="A100-80GB"`, `gpu="any"`) or a list of them (fallbacks), as Modal
takes them; these classes are Modal's older spelling (`gpu=modal.gpu.A100()`)
and turn into the same strings.

thaw runs functions on the host's GPUs: a function with gpu= set sees the
host's GPUs after its memory snapshot is restored (not during the snapshot
phase, unless experimental_options={"enable_gpu_snapshot": True}). The type
is recorded in the function's config and snapshot key; it is not a
scheduling constraint, since there is only this host.
"""


class _GPU:
    type = "ANY"

    def __init__(self, *, count=1, size=None, **kwargs):
        self.count = int(count)
        self.size = size

    def __str__(self):
        name = self.type
        if self.size:
            name += f"-{str(self.size).upper()}"
        return name + (f":{self.count}" if self.count != 1 else "")

    def __repr__(self):
        return f"thaw.gpu.{type(self).__name__}({str(self)!r})"


def _make(cls_name, type_name):
    return type(cls_name, (_GPU,), {"type": type_name})


T4 = _make("T4", "T4")
L4 = _make("L4", "L4")
A10G = _make("A10G", "A10G")
A100 = _make("A100", "A100")
L40S = _make("L40S", "L40S")
H100 = _make("H100", "H100")
H200 = _make("H200", "H200")
B200 = _make("B200", "B200")
Any = _make("Any", "ANY")

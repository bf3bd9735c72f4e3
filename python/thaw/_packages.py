"""pip package names → the module they install → the Debian 12 package that
provides it. thaw runs functions with the host's /usr/bin/python3, so a
package an Image names must come from Debian (apt-get install python3-...).

Only names whose module or Debian package differ from the default rule
(module = name with '-' → '_'; Debian package = python3-<name>) or that
Debian 12 does not package need an entry.
"""

import importlib.util
import re

# pip name (normalised: lower case, '_' and '.' → '-') → (module, Debian package or None)
KNOWN = {
    "torch": ("torch", "python3-torch"),
    "torchvision": ("torchvision", "python3-torchvision"),
    "torchaudio": ("torchaudio", "python3-torchaudio"),
    "numpy": ("numpy", "python3-numpy"),
    "scipy": ("scipy", "python3-scipy"),
    "pandas": ("pandas", "python3-pandas"),
    "scikit-learn": ("sklearn", "python3-sklearn"),
    "sklearn": ("sklearn", "python3-sklearn"),
    "scikit-image": ("skimage", "python3-skimage"),
    "pillow": ("PIL", "python3-pil"),
    "opencv-python": ("cv2", "python3-opencv"),
    "opencv-python-headless": ("cv2", "python3-opencv"),
    "opencv-contrib-python": ("cv2", "python3-opencv"),
    "pyyaml": ("yaml", "python3-yaml"),
    "beautifulsoup4": ("bs4", "python3-bs4"),
    "python-dateutil": ("dateutil", "python3-dateutil"),
    "protobuf": ("google.protobuf", "python3-protobuf"),
    "attrs": ("attr", "python3-attr"),
    "pyzmq": ("zmq", "python3-zmq"),
    "grpcio": ("grpc", "python3-grpcio"),
    "matplotlib": ("matplotlib", "python3-matplotlib"),
    "seaborn": ("seaborn", "python3-seaborn"),
    "h5py": ("h5py", "python3-h5py"),
    "sentencepiece": ("sentencepiece", "python3-sentencepiece"),
    "sympy": ("sympy", "python3-sympy"),
    "networkx": ("networkx", "python3-networkx"),
    "requests": ("requests", "python3-requests"),
    "httpx": ("httpx", "python3-httpx"),
    "aiohttp": ("aiohttp", "python3-aiohttp"),
    "fastapi": ("fastapi", "python3-fastapi"),
    "uvicorn": ("uvicorn", "python3-uvicorn"),
    "pydantic": ("pydantic", "python3-pydantic"),
    "flask": ("flask", "python3-flask"),
    "jinja2": ("jinja2", "python3-jinja2"),
    "tqdm": ("tqdm", "python3-tqdm"),
    "rich": ("rich", "python3-rich"),
    "click": ("click", "python3-click"),
    "lxml": ("lxml", "python3-lxml"),
    "psutil": ("psutil", "python3-psutil"),
    "regex": ("regex", "python3-regex"),
    "msgpack": ("msgpack", "python3-msgpack"),
    "cloudpickle": ("cloudpickle", "python3-cloudpickle"),
    "dill": ("dill", "python3-dill"),
    "joblib": ("joblib", "python3-joblib"),
    "numba": ("numba", "python3-numba"),
    "nltk": ("nltk", "python3-nltk"),
    "xgboost": ("xgboost", "python3-xgboost"),
    "statsmodels": ("statsmodels", "python3-statsmodels"),
    "soundfile": ("soundfile", "python3-soundfile"),
    "imageio": ("imageio", "python3-imageio"),
    "boto3": ("boto3", "python3-boto3"),
    "redis": ("redis", "python3-redis"),
    "sqlalchemy": ("sqlalchemy", "python3-sqlalchemy"),
    "packaging": ("packaging", "python3-packaging"),
    "filelock": ("filelock", "python3-filelock"),
    "typing-extensions": ("typing_extensions", "python3-typing-extensions"),
    "ujson": ("ujson", "python3-ujson"),
    "toml": ("toml", "python3-toml"),
    "tomli": ("tomli", "python3-tomli"),
    "websockets": ("websockets", "python3-websockets"),
    "cryptography": ("cryptography", "python3-cryptography"),
    "jsonschema": ("jsonschema", "python3-jsonschema"),
    "ruamel-yaml": ("ruamel.yaml", "python3-ruamel.yaml"),
    "pytest": ("pytest", "python3-pytest"),
    "setuptools": ("setuptools", "python3-setuptools"),
    "six": ("six", "python3-six"),
    "markdown": ("markdown", "python3-markdown"),
    "pygments": ("pygments", "python3-pygments"),
    "tabulate": ("tabulate", "python3-tabulate"),
    "plotly": ("plotly", "python3-plotly"),
    # Not packaged by Debian 12.
    "transformers": ("transformers", None),
    "sentence-transformers": ("sentence_transformers", None),
    "huggingface-hub": ("huggingface_hub", None),
    "tokenizers": ("tokenizers", None),
    "safetensors": ("safetensors", None),
    "accelerate": ("accelerate", None),
    "datasets": ("datasets", None),
    "diffusers": ("diffusers", None),
    "einops": ("einops", None),
    "timm": ("timm", None),
    "vllm": ("vllm", None),
    "sglang": ("sglang", None),
    "xformers": ("xformers", None),
    "onnxruntime": ("onnxruntime", None),
    "onnxruntime-gpu": ("onnxruntime", None),
    "jax": ("jax", None),
    "openai": ("openai", None),
    "tiktoken": ("tiktoken", None),
    "pyarrow": ("pyarrow", None),
    "polars": ("polars", None),
    "spacy": ("spacy", None),
    "librosa": ("librosa", None),
    "lightgbm": ("lightgbm", None),
    "orjson": ("orjson", None),
    "faiss-cpu": ("faiss", None),
    "faiss-gpu": ("faiss", None),
    "llama-cpp-python": ("llama_cpp", None),
    "pytorch-lightning": ("pytorch_lightning", None),
    "lightning": ("lightning", None),
    "modal": ("modal", None),
}

# Top-level module → pip name, for turning an ImportError back into advice.
_MODULE_TO_PIP = {}
for _pip, (_mod, _deb) in KNOWN.items():
    _MODULE_TO_PIP.setdefault(_mod.split(".")[0], _pip)
_MODULE_TO_PIP["google"] = "protobuf"

_SPEC_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


def normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


class Requirement:
    """One pip requirement string, reduced to what thaw can check."""

    def __init__(self, spec):
        self.spec = spec.strip()
        self.name = None        # normalised pip name; None if not a plain name
        self.constraints = []   # [(op, version)]
        m = _SPEC_RE.match(self.spec)
        if m and "://" not in self.spec and not self.spec.startswith(("-", ".", "/")):
            self.name = normalise(m.group(1))
            rest = (m.group(3) or "").strip()
            if rest.startswith("@"):
                rest = ""  # "name @ url": no version to check
            for part in filter(None, (p.strip() for p in rest.split(","))):
                pm = re.match(r"^(===|==|!=|~=|>=|<=|>|<)\s*(\S+)$", part)
                if pm:
                    self.constraints.append((pm.group(1), pm.group(2)))

    @property
    def module(self):
        if self.name in KNOWN:
            return KNOWN[self.name][0]
        return self.name.replace("-", "_")

    @property
    def debian(self):
        if self.name in KNOWN:
            return KNOWN[self.name][1]
        return "python3-" + self.name


def debian_advice(pip_name=None, module=None):
    """A sentence saying how to get a missing package on this host."""
    if pip_name is None and module is not None:
        top = module.split(".")[0]
        pip_name = _MODULE_TO_PIP.get(top, normalise(top))
    req = Requirement(pip_name)
    deb = req.debian
    if deb is None:
        # No closing period, and no word on where functions run: callers
        # say that and end the sentence.
        return (f"Debian 12 does not package '{req.name}': make '{req.module}' importable for "
                f"/usr/bin/python3 some other way, or remove it from the Image")
    known = req.name in KNOWN
    return (f"install the Debian package {deb}: apt-get install -y {deb}"
            + ("" if known else " (if Debian packages it under that name; `apt-cache search "
               f"{req.name}` finds it otherwise)"))


def module_available(module):
    """Whether `import module` would find it (without running it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _version_tuple(v):
    parts = []
    for p in re.split(r"[.+-]", v):
        m = re.match(r"^(\d+)", p)
        if not m:
            break
        parts.append(int(m.group(1)))
    return tuple(parts)


def version_satisfies(installed, op, wanted):
    """A rough check of one constraint; None when it cannot tell."""
    wildcard = wanted.endswith(".*")
    a, b = _version_tuple(installed), _version_tuple(wanted[:-2] if wildcard else wanted)
    if not a or not b:
        return None
    if wildcard and op in ("==", "!="):
        same = a[:len(b)] == b
        return same if op == "==" else not same
    prefix = b[:-1] if op == "~=" else ()
    n = max(len(a), len(b))
    a += (0,) * (n - len(a))
    b += (0,) * (n - len(b))
    if op == "~=":
        return a >= b and a[:len(prefix)] == prefix
    return {"==": a == b, "===": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b,
            ">": a > b, "<": a < b}[op]


def installed_version(req):
    """The version of the distribution named by req, or None."""
    import importlib.metadata as md
    for name in (req.name, req.name.replace("-", "_")):
        try:
            return md.version(name)
        except Exception:  # noqa: BLE001 - PackageNotFoundError and broken metadata alike
            continue
    try:
        mod = __import__(req.module.split(".")[0])
        return getattr(mod, "__version__", None)
    except Exception:  # noqa: BLE001
        return None


_DPKG = None


def _dpkg_status():
    """{package: installed?} and the set of names installed packages provide,
    from /var/lib/dpkg/status (read once); None without dpkg."""
    global _DPKG
    if _DPKG is None:
        try:
            with open("/var/lib/dpkg/status", encoding="utf-8", errors="replace") as f:
                status = f.read()
        except OSError:
            _DPKG = False
            return None
        installed, provided = {}, set()
        for block in status.split("\n\n"):
            fields = {}
            for line in block.splitlines():
                if ":" in line and not line.startswith(" "):
                    k, v = line.split(":", 1)
                    fields[k.strip()] = v.strip()
            name = fields.get("Package")
            if not name:
                continue
            ok = fields.get("Status", "").endswith(" installed")
            installed[name] = installed.get(name, False) or ok
            if ok:
                for prov in fields.get("Provides", "").split(","):
                    prov = prov.strip().split(" ")[0]
                    if prov:
                        provided.add(prov)
        _DPKG = (installed, provided)
    return _DPKG or None


def dpkg_installed(package):
    """Whether Debian's dpkg has `package` installed; None when there is no dpkg."""
    name = package.split("=")[0].split(":")[0].strip()
    status = _dpkg_status()
    if status is None:
        return None
    installed, provided = status
    return bool(installed.get(name)) or name in provided

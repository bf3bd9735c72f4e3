"""`python3 -m thaw._introspect app.py [--app NAME] [--no-check]`: import an
app file and print its description as one JSON object on stdout (nothing
else goes to stdout: anything the app prints while it is imported is sent to
stderr).

The object (docs/runtime-protocol.md, "Introspection output, as the SDK
prints it"):
  thaw_version, python (version), python_version, python_executable,
  app, file (= app_file), app_dir, image,
  functions:  {name: {kind ("function" | "class"), name, qualname, config,
                      config_sha256, image, image_sha256, env, volumes,
                      methods (classes)}}
  entrypoints: [name], local_entrypoints: [{name, parameters}]
  volumes:    {volume name: mount path}, volume_dirs: {volume name: host dir}
  local_modules: [absolute path], local_module_files: [{module, path, relpath, sha256}]
  code_sha256: digest of the app file and its local modules

Volumes with create_if_missing=True are created; a missing one without it,
a secret that cannot be found, or a package an Image names that the host
lacks make it exit with status 1 and the reason on stderr.
"""

import argparse
import json
import os
import sys
import traceback

from . import __version__
from ._loader import code_sha256, load_app_module, local_modules, pick_app
from .exception import Error


def describe(app_file, app_name=None, check=True):
    module = load_app_module(app_file)
    app = pick_app(module, app_name)
    spec = app.spec()
    app_file = os.path.abspath(app_file)
    mods = local_modules(app_file)
    volume_dirs = {}
    for name, vol in app._all_volumes().items():
        volume_dirs[name] = str(vol.ensure())
    for obj in list(app._functions.values()) + list(app._classes.values()):
        if obj._is_serialized():
            obj._write_serialized()  # where its containers will load it from
    problems = []
    if check:
        for obj in list(app._functions.values()) + list(app._classes.values()):
            errors, _ = obj._image.problems()
            problems += [f"{obj._name}: {e}" for e in errors]
    if problems:
        raise Error("thaw: this host lacks packages the app's Images name (functions run with "
                    f"the host's {sys.executable}):\n  - " + "\n  - ".join(problems))
    python_version = ".".join(map(str, sys.version_info[:3]))
    out = {
        "thaw_version": __version__,
        "python": python_version,
        "python_version": python_version,
        "python_executable": sys.executable,
        **spec,
        "file": app_file,
        "app_file": app_file,
        "app_dir": os.path.dirname(app_file),
        "volume_dirs": volume_dirs,
        "local_modules": [m["path"] for m in mods],
        "local_module_files": mods,
        "code_sha256": code_sha256(app_file, mods),
    }
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m thaw._introspect",
                                description="Print a thaw app's description as JSON.")
    p.add_argument("app_file")
    p.add_argument("--app", help="the App's name, when the file defines several")
    p.add_argument("--no-check", action="store_true",
                   help="do not check that the Images' packages are installed")
    args = p.parse_args(argv)

    # Keep stdout for the JSON alone: while the app is imported, fd 1 and
    # sys.stdout both point at stderr.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    saved_sys_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        try:
            out = describe(args.app_file, args.app, check=not args.no_check)
        except Error as e:
            print(str(e), file=sys.stderr)
            return 1
        except BaseException as e:  # noqa: BLE001 - the app's own errors
            if isinstance(e, SystemExit) and not e.code:
                print(f"thaw: importing {args.app_file} called sys.exit()", file=sys.stderr)
            else:
                traceback.print_exc()
            print(f"thaw: cannot introspect {args.app_file}: {type(e).__name__}: {e}",
                  file=sys.stderr)
            return 1
        data = json.dumps(out, indent=2, sort_keys=True).encode() + b"\n"
    finally:
        sys.stdout.flush()
        sys.stdout = saved_sys_stdout
        os.dup2(real_stdout, 1)
        os.close(real_stdout)
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

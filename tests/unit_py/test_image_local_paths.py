"""Image.add_local_file / add_local_dir: what the description tells the
runtime to bind into the containers, and the errors for what cannot be."""

import os
import warnings

import pytest

import thaw as modal
from thaw.exception import InvalidError


def test_local_file_and_dir_are_described_for_the_runtime(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    f = tmp_path / "config.yaml"
    f.write_text("x: 1")
    base = modal.Image.debian_slim()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # honoured: nothing to warn about
        img = base.add_local_file(f, "/root/conf/").add_local_dir(tmp_path / "data", "/srv/data/")
    mounts = img.describe()["local_mounts"]
    assert [{k: m[k] for k in ("kind", "local", "remote")} for m in mounts] == [
        {"kind": "file", "local": str(f), "remote": "/root/conf/config.yaml"},
        {"kind": "dir", "local": str(tmp_path / "data"), "remote": "/srv/data"},
    ]
    # An image without them describes itself as before (unchanged snapshot keys).
    assert "local_mounts" not in base.describe()
    # The contents' names, sizes and times are in the digest (so in the key).
    before = img.describe()["local_mounts"][1]["digest"]
    (tmp_path / "data" / "b.txt").write_text("b")
    assert img.describe()["local_mounts"][1]["digest"] != before
    os.utime(f, ns=(1, 1))
    assert img.describe()["local_mounts"][0]["digest"] != mounts[0]["digest"]


def test_a_local_path_already_at_its_remote_path_needs_nothing(tmp_path):
    f = tmp_path / "same.txt"
    f.write_text("x")
    assert "local_mounts" not in modal.Image.debian_slim().add_local_file(f, str(f)).describe()


@pytest.mark.parametrize("call, words", [
    (lambda d: modal.Image.debian_slim().add_local_file(d / "missing.txt", "/x"), "does not exist"),
    (lambda d: modal.Image.debian_slim().add_local_file(d, "/x"), "is not a file"),
    (lambda d: modal.Image.debian_slim().add_local_dir(d / "f.txt", "/x"), "is not a directory"),
    (lambda d: modal.Image.debian_slim().add_local_dir(d, "data"), "remote_path must be absolute"),
    (lambda d: modal.Image.debian_slim().add_local_dir(d, "/"), "cannot be /"),
])
def test_paths_that_cannot_be_bound_are_refused(tmp_path, call, words):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InvalidError, match=words):
        call(tmp_path)


def test_ignore_is_warned_about_as_not_applied(tmp_path):
    with pytest.warns(UserWarning, match="ignore= is not applied"):
        modal.Image.debian_slim().add_local_dir(tmp_path, "/srv/x", ignore=["*.pyc"])

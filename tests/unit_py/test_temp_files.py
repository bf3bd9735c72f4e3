"""thaw._temp_files: which tempfile objects of the snapshot phase have their
automatic removal switched off — those in the host's filesystem, which the
containers restored from a snapshot share, not those in the container's own
/dev/shm, which each restored container gets a copy of."""
import gc
import os
import shutil
import subprocess
import tempfile

import pytest

from thaw._temp_files import keep_snapshot_temp_files


def _kept_names():
    gc.collect()
    return keep_snapshot_temp_files()


def test_a_directory_in_the_host_s_tmp_is_kept_and_one_in_dev_shm_is_not(tmp_path):
    host = tempfile.TemporaryDirectory(dir=tmp_path)
    own = tempfile.TemporaryDirectory(dir="/dev/shm")
    try:
        kept = _kept_names()
        assert f"{host.name} (TemporaryDirectory)" in kept
        assert not any(own.name in k for k in kept), kept
        host_name, own_name = host.name, own.name
        del host, own
        gc.collect()
        assert os.path.isdir(host_name), "its finalizer still removed it"
        assert not os.path.exists(own_name), "the one in /dev/shm lost its finalizer"
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_named_file_in_the_host_s_tmp_is_kept_open_or_closed(tmp_path):
    f = tempfile.NamedTemporaryFile(dir=tmp_path)
    kept = _kept_names()
    assert f"{f.name} (NamedTemporaryFile)" in kept
    f.close()
    assert os.path.exists(f.name), "closing it still deleted it"


def test_a_host_filesystem_bound_inside_dev_shm_is_the_host_s():
    """A path under /dev/shm on another filesystem (a THAW_HOME in the
    host's /dev/shm bound into the container's own) is shared."""
    mnt = tempfile.mkdtemp(prefix="thaw-unit-mnt-", dir="/dev/shm")
    try:
        if subprocess.run(["mount", "-t", "tmpfs", "tmpfs", mnt], capture_output=True).returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        try:
            d = tempfile.TemporaryDirectory(dir=mnt)
            assert f"{d.name} (TemporaryDirectory)" in _kept_names()
            shutil.rmtree(d.name)
        finally:
            subprocess.run(["umount", mnt], check=True)
    finally:
        os.rmdir(mnt)

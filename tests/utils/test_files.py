"""simplefold.utils.files: atomic writes (permissions like a plain open, nothing left behind on failure)."""

from __future__ import annotations

import math
import os
import stat

import numpy as np
import pytest

from simplefold.utils import files

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_files_respect_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    with open(plain, "w") as fh:
        fh.write("x")
    text, data, js = tmp_path / "a.txt", tmp_path / "b.bin", tmp_path / "sub" / "c.json"
    files.atomic_write_text(text, "hello")
    files.atomic_write_bytes(data, b"\x00\x01")
    files.write_json(js, {"a": 1})
    for path in (text, data, js):
        assert _mode(path) == _mode(plain) == 0o666 & ~mask, oct(_mode(path))
    assert text.read_text() == "hello" and data.read_bytes() == b"\x00\x01"


def test_atomic_rewrite_keeps_an_existing_files_mode(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "summary.json"
    path.write_text("{}")
    path.chmod(0o640)
    files.write_json(path, {"b": 2})
    assert _mode(path) == 0o640 and path.read_text().strip().startswith("{")


def test_atomic_open_failure_leaves_destination_and_no_temporary(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_open(path) as fh:
            fh.write("new, half written")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_safe_has_no_nan_and_no_numpy_scalars():
    assert files.json_safe({"a": [float("nan"), np.float64(1.5), np.int64(3)]}) == {"a": [None, 1.5, 3]}
    assert not math.isnan(files.json_safe(np.float32(0.25)))
    assert files.json_safe((float("inf"), -float("inf"))) == [None, None]

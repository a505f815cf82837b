"""Files: atomic writes, directory publishing, sha256 of files, JSON-safe values, JSONL logs, the cache root.

Every file the package writes goes through :func:`atomic_open` (or :func:`publish_directory` for a
directory): a reader never sees a half-written file, and an interrupted write leaves the previous
content in place. Nothing here imports anything but the standard library and NumPy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import pathlib
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_open",
    "atomic_write_text",
    "atomic_write_bytes",
    "write_json",
    "json_default",
    "json_safe",
    "publish_directory",
    "sha256_file",
    "append_jsonl",
    "read_jsonl",
    "cache_dir",
]

_HASH_CHUNK = 1 << 22


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    # os.umask can only be read by setting it; restore it at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: pathlib.Path) -> int:
    """Permission bits a plain ``open(path, "w")`` would leave: the existing file's, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


#: errno values that mean "the file system is full" (not a problem of one file).
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is an OSError for a full disk or quota."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success fsync it and rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched. The file ends
    up with the permissions a plain ``open`` would give it (the temporary file is created 0600,
    so it is chmod'ed before the rename): an existing file's mode is kept, a new file gets
    ``0o666`` minus the umask. Missing parent directories are created.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def publish_directory(
    out_dir: str | os.PathLike, write: Callable[[pathlib.Path], Any], *, overwrite: bool = False
) -> pathlib.Path:
    """Run ``write(tmp_dir)`` in a fresh sibling temporary directory, then rename it to ``out_dir``.

    An existing ``out_dir`` is replaced only with ``overwrite`` (it is renamed aside first and
    removed after the new one is in place, so ``out_dir`` is never missing or half-written).

    Raises:
      FileExistsError: ``out_dir`` exists and ``overwrite`` is False (checked before and after writing).
    """
    out_dir = pathlib.Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a published directory is readable like any output
    try:
        write(tmp)
        if out_dir.exists():
            if not overwrite:
                raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.rename(out_dir, old)
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# --------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in chunks (multi-GB weights never sit in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_CHUNK):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------
# JSON and JSONL
# --------------------------------------------------------------------------------------


def json_default(x: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy arrays and scalars, paths and dataclasses."""
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, pathlib.Path):
        return str(x)
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and ±inf replaced by None (strict JSON has neither) and NumPy scalars as
    Python numbers, recursively through mappings, lists and tuples (tuples become lists)."""
    if isinstance(obj, Mapping):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NumPy values, paths and dataclasses are converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def append_jsonl(path: str | os.PathLike, entry: Mapping[str, Any]) -> None:
    """Append ``entry`` as one JSON line and fsync it, so a process killed right after still leaves
    the line on disk."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(entry, default=json_default) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)  # one write of one short line: concurrent appenders do not interleave
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every JSON line of ``path`` ([] if the file does not exist); an unreadable line (a torn last
    line of a killed writer) is skipped with a warning."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    entries = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except ValueError:
            logger.warning("%s:%d: ignoring an unreadable line", path, lineno)
    return entries


# --------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------


def cache_dir() -> pathlib.Path:
    """Root of the simplefold cache: ``$SIMPLEFOLD_CACHE``, else ``$XDG_CACHE_HOME/simplefold``,
    else ``~/.cache/simplefold``."""
    env = os.environ.get("SIMPLEFOLD_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg).expanduser() if xdg else pathlib.Path.home() / ".cache"
    return base / "simplefold"


def check_writable_dir(directory: str | os.PathLike) -> pathlib.Path:
    """Create ``directory`` if needed and prove it takes a file (create + remove a probe).

    ``os.access`` is not enough: it says yes to root on a read-only mount or a full disk.

    Raises:
      OSError: with a message naming the directory and the reason.
    """
    d = pathlib.Path(directory).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=d)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OSError(e.errno, f"{d}: cannot write there ({e.strerror or e})") from None
    return d

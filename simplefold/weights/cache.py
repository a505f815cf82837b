"""The weights cache: download or import a released file, convert it once, verify it, resolve it.

Every released file is converted once into the simplefold cache (Orbax weights that load without
PyTorch) and recorded in a JSON file with the source file's sha256 and size, the conversion version
and the sha256/size of every converted file. A converted entry whose files no longer match their
record is reported by :func:`verify` and is never loaded (:func:`resolve` raises).

Cache layout (:func:`simplefold.utils.files.cache_dir`: ``$SIMPLEFOLD_CACHE``, else
``$XDG_CACHE_HOME/simplefold``, else ``~/.cache/simplefold``)::

    downloads/<file>            a downloaded source file (kept only with keep_source=True)
    downloads/<file>.part       an interrupted download, resumed (:func:`simplefold.weights.download.fetch`)
    weights/<name>/             converted weights
    weights/<name>.json         the record
    pins.json                   sha256 and size each entry's source must have (see below)
    locks/<name>.lock           flock'ed while an entry is downloaded or converted

Pinning: most released files have no checksum published, so the registry cannot pin them. The
first download or import of an entry records its source's sha256 and size in ``pins.json``
("first download"); every later download or import of that entry (``--force``, a wiped cache
with the same pins file, another machine sharing the cache) must match, or it is refused. A
user who knows the digest pins it with ``--sha256`` ("user"); the registry's own checksum always
wins. :func:`pin_status` says which entries were never pinned by the registry or the user.

A second process asking for the same entry waits on the lock and then uses the first one's result.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import pathlib
import shutil
import time
from collections.abc import Iterator

from simplefold.utils.files import atomic_open, cache_dir, sha256_file, write_json
from simplefold.weights import esm
from simplefold.weights.download import fetch
from simplefold.weights.registry import (
    ChecksumError,
    NotInstalledError,
    WeightsEntry,
    WeightsError,
    get_entry,
    registry,
)

logger = logging.getLogger(__name__)

#: Version of this manager's record layout; bump to force re-conversion of every entry.
RECORD_VERSION = 1


# --------------------------------------------------------------------------------------
# Cache paths and locking
# --------------------------------------------------------------------------------------


def converted_path(name: str) -> pathlib.Path:
    return cache_dir() / "weights" / get_entry(name).name


def record_path(name: str) -> pathlib.Path:
    return cache_dir() / "weights" / f"{get_entry(name).name}.json"


@contextlib.contextmanager
def file_lock(path: pathlib.Path, what: str) -> Iterator[None]:
    """Exclusive ``fcntl.flock`` on ``path``; logs when it has to wait for another process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            logger.info("waiting for another process working on %s (lock %s)", what, path)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------
# Conversion and records
# --------------------------------------------------------------------------------------


# simplefold.weights.checkpoints imports jax and flax: it is imported only when a SimpleFold entry
# is checked or converted, so that listing or resolving ESM weights stays light.


def _conversion_version(kind: str) -> int:
    if kind == "esm2":
        return esm.ESM_CONVERSION_VERSION
    if kind in ("simplefold", "plddt"):
        from simplefold.weights import checkpoints

        return checkpoints.CONVERSION_VERSION
    return 0


def _convert(entry: WeightsEntry, source: pathlib.Path, out: pathlib.Path, source_sha256: str) -> None:
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if entry.kind == "esm2":
        esm.convert_official_esm2(source, out, source_sha256=source_sha256)
    elif entry.kind in ("simplefold", "plddt"):
        from simplefold.weights import checkpoints

        checkpoints.convert_official(source, entry.arch, out)
    else:  # raw: keep the file itself
        out.mkdir(parents=True)
        shutil.copyfile(source, out / entry.filename)


def _file_table(root: pathlib.Path) -> dict[str, dict]:
    table = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            table[str(p.relative_to(root))] = {"sha256": sha256_file(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return table


# --------------------------------------------------------------------------------------
# Pins: the sha256/size an entry's source file must have
# --------------------------------------------------------------------------------------

PINS_FILE = "pins.json"
PIN_REGISTRY, PIN_USER, PIN_FIRST_USE = "registry", "user", "first download"


def _pins_path() -> pathlib.Path:
    return cache_dir() / PINS_FILE


def _read_pins() -> dict[str, dict]:
    path = _pins_path()
    if not path.is_file():
        return {}
    try:
        pins = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ChecksumError(f"{path}: unreadable pins file ({exc}); fix or delete it") from exc
    return pins if isinstance(pins, dict) else {}


def _normalise_sha256(value: str) -> str:
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"--sha256 {value!r}: expected 64 hexadecimal digits")
    return digest


def expected_source(entry: WeightsEntry, sha256: str | None = None) -> tuple[str | None, int | None, str | None]:
    """(sha256, size, who pinned it) the source file of ``entry`` must match; Nones when unpinned.

    The registry's checksum wins; then a ``sha256`` given now; then the pins file.

    Raises:
      ChecksumError: ``sha256`` contradicts the registry's or an earlier user pin.
    """
    given = _normalise_sha256(sha256) if sha256 is not None else None
    if entry.sha256 is not None:
        if given is not None and given != entry.sha256.lower():
            raise ChecksumError(f"{entry.name}: --sha256 {given} contradicts the registry's {entry.sha256}")
        return entry.sha256.lower(), entry.size, PIN_REGISTRY
    pin = _read_pins().get(entry.name)
    if given is not None:
        if pin and pin.get("pinned_by") == PIN_USER and pin.get("sha256") != given:
            raise ChecksumError(f"{entry.name}: --sha256 {given} contradicts the earlier pin {pin.get('sha256')} "
                                f"({_pins_path()}); remove that entry from the file to re-pin")
        return given, None, PIN_USER  # a user pin replaces a first-download record
    if pin:
        return pin.get("sha256"), pin.get("size"), pin.get("pinned_by", PIN_FIRST_USE)
    return None, None, None


def _write_pin(entry: WeightsEntry, digest: str, size: int, pinned_by: str) -> None:
    if pinned_by == PIN_REGISTRY:
        return
    with file_lock(cache_dir() / "locks" / "pins.lock", "the pins file"):
        pins = _read_pins()
        old = pins.get(entry.name, {})
        if old.get("sha256") == digest and old.get("pinned_by") == pinned_by:
            return
        pins[entry.name] = {"sha256": digest, "size": size, "pinned_by": pinned_by,
                            "pinned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(_pins_path(), dict(sorted(pins.items())))
    if pinned_by == PIN_FIRST_USE:
        logger.info("%s: recorded sha256 %s and size %d at first download (%s); later downloads must match",
                    entry.name, digest, size, _pins_path())


def pin_status() -> dict[str, str]:
    """Installed entry name -> who pinned its source checksum: ``registry``, ``user``, ``first
    download`` (recorded, never independently pinned) or ``never`` (installed before pins existed)."""
    pins = _read_pins()
    out = {}
    for name in installed():
        entry = get_entry(name)
        if entry.sha256 is not None:
            out[name] = PIN_REGISTRY
        else:
            out[name] = pins.get(name, {}).get("pinned_by", "never")
    return out


def _install(entry: WeightsEntry, source: pathlib.Path, origin: dict, sha256: str | None = None) -> pathlib.Path:
    """Check ``source`` against its pin, convert it into the cache and write the record (caller
    holds the entry lock). ``sha256``: the user's expected digest (pinned once it matches)."""
    size = source.stat().st_size
    digest = sha256_file(source)
    want, want_size, pinned_by = expected_source(entry, sha256)
    if want is not None and digest != want:
        raise ChecksumError(f"{source}: sha256 {digest} does not match the {pinned_by} pin {want} for {entry.name}"
                            + ("" if pinned_by == PIN_REGISTRY else f" ({_pins_path()})"))
    if want_size is not None and size != want_size:
        raise ChecksumError(f"{source}: {size} bytes, the {pinned_by} pin expects {want_size} for {entry.name}")
    out = converted_path(entry.name)
    rec = record_path(entry.name)
    rec.unlink(missing_ok=True)  # an entry without a valid record is never used
    logger.info("converting %s (%s)", entry.name, source)
    _convert(entry, source, out, digest)
    record = {
        "record_version": RECORD_VERSION,
        "name": entry.name,
        "kind": entry.kind,
        "arch": entry.arch,
        "conversion_version": _conversion_version(entry.kind),
        "source": {"filename": source.name, "sha256": digest, "size": size, **origin},
        "converted": {"dir": out.name, "files": _file_table(out)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json(rec, record)
    # pinned only once the file converted: a corrupt first file must not lock out the real one
    _write_pin(entry, digest, size, pinned_by or PIN_FIRST_USE)
    return out


def _read_record(entry: WeightsEntry) -> dict | None:
    path = record_path(entry.name)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ChecksumError(f"{path}: unreadable weights record ({exc})") from exc


def _check_entry(entry: WeightsEntry, record: dict, *, full: bool) -> list[str]:
    """Problems of an installed entry. ``full=False`` re-hashes only files whose size or
    modification time differ from the record (a cheap check before every load)."""
    problems = []
    name = entry.name
    if record.get("record_version") != RECORD_VERSION:
        problems.append(f"{name}: record version {record.get('record_version')} != {RECORD_VERSION}; re-import it")
    try:
        current = _conversion_version(entry.kind)
    except ImportError:
        current = None
    if current is not None and record.get("conversion_version") != current:
        problems.append(
            f"{name}: converted with version {record.get('conversion_version')}, current is {current}; "
            f"run 'simplefold weights download {name} --force'"
        )
    src = record.get("source", {})
    if entry.sha256 is not None and src.get("sha256") != entry.sha256.lower():
        problems.append(f"{name}: source sha256 {src.get('sha256')} differs from the registry's {entry.sha256}")
    elif entry.sha256 is None:
        pin = _read_pins().get(name)
        if pin and src.get("sha256") != pin.get("sha256"):
            problems.append(f"{name}: source sha256 {src.get('sha256')} differs from the {pin.get('pinned_by')} "
                            f"pin {pin.get('sha256')} ({_pins_path()})")
    root = converted_path(name)
    files = record.get("converted", {}).get("files", {})
    if not files:
        problems.append(f"{name}: the record lists no converted files")
    for rel, info in files.items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{name}: missing file {p}")
            continue
        st = p.stat()
        if st.st_size != info["size"]:
            problems.append(f"{name}: {p} has {st.st_size} bytes, the record says {info['size']}")
            continue
        if full or st.st_mtime_ns != info.get("mtime_ns"):
            digest = sha256_file(p)
            if digest != info["sha256"]:
                problems.append(f"{name}: checksum mismatch for {p} (sha256 {digest}, record {info['sha256']})")
    return problems


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def installed() -> dict[str, dict]:
    """Name -> record of every entry recorded in the cache."""
    out = {}
    reg = registry()
    for rec in sorted((cache_dir() / "weights").glob("*.json")):
        name = rec.stem
        if name in reg:
            try:
                out[name] = json.loads(rec.read_text())
            except (OSError, json.JSONDecodeError):
                out[name] = {}
    return out


def download(
    name: str,
    *,
    force: bool = False,
    keep_source: bool = False,
    progress: bool = True,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    sha256: str | None = None,
) -> pathlib.Path:
    """Download and convert one registry entry; returns the converted weights directory.

    Concurrent calls for the same entry (threads or processes) serialise on a file lock: the
    second waits and reuses the first one's result. ``force`` re-downloads and re-converts.
    The source must match its pin (module docstring); ``sha256`` pins it (an installed entry
    whose recorded source differs is refused).

    Raises:
      OfflineError, DownloadError, ChecksumError: see :func:`fetch`.
    """
    entry = get_entry(name)
    root = cache_dir()
    with file_lock(root / "locks" / f"{entry.name}.lock", entry.name):
        record = _read_record(entry)
        want, want_size, pinned_by = expected_source(entry, sha256)
        if record is not None and not force and not _check_entry(entry, record, full=False):
            have = record.get("source", {}).get("sha256")
            if want is not None and have != want:
                raise ChecksumError(f"{entry.name}: installed from a source with sha256 {have}, the {pinned_by} "
                                    f"pin is {want}; run 'simplefold weights download {entry.name} --force'")
            if sha256 is not None and have is not None:
                _write_pin(entry, have, int(record["source"].get("size", 0)), PIN_USER)
            logger.info("%s is already installed", entry.name)
            return converted_path(entry.name)
        url = entry.effective_url
        src = root / "downloads" / entry.filename
        if force or not src.is_file():
            src.unlink(missing_ok=True)
            fetch(
                url,
                src,
                sha256=want,
                size=want_size,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                progress=progress,
                entry=entry,
                pinned_by=pinned_by or "registry",
            )
        try:
            out = _install(entry, src, {"url": url}, sha256=sha256)
        finally:
            if not keep_source:
                src.unlink(missing_ok=True)
        return out


def import_file(path: str | os.PathLike, name: str, *, copy_source: bool = False,
                sha256: str | None = None) -> pathlib.Path:
    """Install a file placed by hand (offline clusters); returns the converted weights directory.

    The file's sha256 is checked against its pin (registry, ``sha256`` or the first install;
    module docstring). ``copy_source`` also keeps a copy under ``downloads/``.
    """
    entry = get_entry(name)
    src = pathlib.Path(path).expanduser().absolute()
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    with file_lock(cache_dir() / "locks" / f"{entry.name}.lock", entry.name):
        out = _install(entry, src, {"imported_from": str(src)}, sha256=sha256)
        if copy_source:
            with open(src, "rb") as fin, atomic_open(cache_dir() / "downloads" / entry.filename, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        return out


def verify(name: str | None = None) -> list[str]:
    """Re-hash every converted file of one entry (or of every installed entry) against its record.

    Returns:
      Human-readable problems; empty when everything matches. Naming an entry that is not
      installed is a problem too.
    """
    if name is not None:
        entry = get_entry(name)
        try:
            record = _read_record(entry)
        except ChecksumError as exc:
            return [str(exc)]
        if record is None:
            return [f"{entry.name}: not installed"]
        return _check_entry(entry, record, full=True)
    problems = []
    for n in installed():
        problems += verify(n)
    return problems


def resolve(name: str, *, offline: bool = False, progress: bool = True) -> pathlib.Path:
    """Path of the converted weights of ``name``, downloading and converting them on demand.

    Raises:
      ChecksumError: the installed files no longer match their record (they are not used).
      NotInstalledError: not installed and ``offline=True`` (the message says how to import).
      OfflineError: not installed and the server cannot be reached.
    """
    entry = get_entry(name)
    record = _read_record(entry)
    if record is not None:
        problems = _check_entry(entry, record, full=False)
        if not problems:
            return converted_path(entry.name)
        raise ChecksumError(
            "; ".join(problems) + f". Refusing to use {entry.name}; reinstall it with "
            f"'simplefold weights download {entry.name} --force' (or '{entry.import_command()}')"
        )
    if offline:
        raise NotInstalledError(
            f"{entry.name} is not installed and offline mode is on. Download {entry.effective_url} ,"
            f" then run: {entry.import_command()}"
        )
    return download(entry.name, progress=progress)

"""Weights manager: the registry of released files, download, import, conversion and verification.

Every released file is converted once into the simplefold cache (Orbax weights that load without
PyTorch) and recorded in a JSON file with the source file's sha256 and size, the conversion version
and the sha256/size of every converted file. A converted entry whose files no longer match their
record is reported by :func:`verify` and is never loaded (:func:`resolve` raises).

Cache layout (``cache_dir()``: ``$SIMPLEFOLD_CACHE``, else ``$XDG_CACHE_HOME/simplefold``, else
``~/.cache/simplefold``)::

    downloads/<file>            a downloaded source file (kept only with keep_source=True)
    downloads/<file>.part       an interrupted download, resumed with an HTTP Range request
    weights/<name>/             converted weights
    weights/<name>.json         the record
    locks/<name>.lock           flock'ed while an entry is downloaded or converted

Downloads stream to ``.part`` with a progress bar, resume interrupted transfers (``Range``; a
server that answers ``200`` instead of ``206`` restarts from zero), retry transient errors with
exponential backoff (never a 404), and are moved into place atomically. A second process asking
for the same entry waits on the lock and then uses the first one's result.

Mirrors and tests: ``$SIMPLEFOLD_WEIGHTS_URL`` replaces every base URL (files are then fetched from
``<that URL>/<file name>``); ``$SIMPLEFOLD_WEIGHTS_URL_<NAME>`` (name upper-cased, other characters
-> ``_``) replaces one entry's full URL; ``$SIMPLEFOLD_REGISTRY`` names a JSON file with extra or
replacement entries (``{"entries": [{"name": ..., "kind": ..., "url": ..., ...}]}``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import http.client
import json
import logging
import os
import pathlib
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

from simplefold.utils.files import atomic_open, cache_dir, sha256_file, write_json

logger = logging.getLogger(__name__)

#: Version of this manager's record layout; bump to force re-conversion of every entry.
RECORD_VERSION = 1
SIMPLEFOLD_BASE_URL = "https://ml-site.cdn-apple.com/models/simplefold/"
ESM_BASE_URL = "https://dl.fbaipublicfiles.com/fair-esm/models/"
ESM_REGRESSION_BASE_URL = "https://dl.fbaipublicfiles.com/fair-esm/regression/"
#: Kinds of entries and what conversion they get.
KINDS = ("simplefold", "plddt", "esm2", "raw")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class WeightsError(Exception):
    """Base class of weights-manager errors; the message is meant for the user."""


class UnknownWeightsError(WeightsError):
    """No registry entry has that name."""


class DownloadError(WeightsError):
    """The server answered with a permanent error (e.g. 404) or retries were exhausted."""


class OfflineError(DownloadError):
    """The server cannot be reached at all (no network, DNS failure, connection refused)."""


class ChecksumError(WeightsError):
    """A file's sha256 or size does not match the registry or its record."""


class NotInstalledError(WeightsError):
    """The entry is not in the cache and ``offline=True`` forbids fetching it."""


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WeightsEntry:
    """One released weights file.

    Attributes:
      name: registry name (``simplefold_100M``, ``esm2_t36_3B_UR50D``, ...).
      kind: ``simplefold`` / ``plddt`` (converted by ``simplefold.checkpoints``), ``esm2``
        (converted by ``simplefold.esm``) or ``raw`` (downloaded, not converted).
      url: where the official file lives.
      filename: file name of the source file.
      arch: architecture passed to ``checkpoints.convert_official`` (``simplefold_100M``,
        ``plddt_1.6B``, or an official ``summary`` dict for custom models).
      sha256: known hex digest of the source file, or None when unknown.
      size: known size in bytes, or None.
      description: one line for ``simplefold weights list``.
    """

    name: str
    kind: str
    url: str
    filename: str
    arch: str | dict | None = None
    sha256: str | None = None
    size: int | None = None
    description: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"weights entry {self.name!r}: kind {self.kind!r} not in {KINDS}")

    @property
    def effective_url(self) -> str:
        """The URL after the ``$SIMPLEFOLD_WEIGHTS_URL[_<NAME>]`` overrides."""
        per_entry = os.environ.get("SIMPLEFOLD_WEIGHTS_URL_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper()))
        if per_entry:
            return per_entry
        base = os.environ.get("SIMPLEFOLD_WEIGHTS_URL")
        if base:
            return base.rstrip("/") + "/" + self.filename
        return self.url

    def import_command(self) -> str:
        return f"simplefold weights import {self.filename} --name {self.name}"


SIMPLEFOLD_SIZES = ("100M", "360M", "700M", "1.1B", "1.6B", "3B")
ESM2_RELEASES = ("t6_8M", "t12_35M", "t30_150M", "t33_650M", "t36_3B", "t48_15B")


def _builtin_entries() -> list[WeightsEntry]:
    entries = [
        WeightsEntry(
            name=f"simplefold_{size}",
            kind="simplefold",
            url=f"{SIMPLEFOLD_BASE_URL}simplefold_{size}.ckpt",
            filename=f"simplefold_{size}.ckpt",
            arch=f"simplefold_{size}",
            description=f"SimpleFold {size} folding model (Apple, non-commercial model licence)",
        )
        for size in SIMPLEFOLD_SIZES
    ]
    entries.append(
        WeightsEntry(
            name="plddt_module_1.6B",
            kind="plddt",
            url=f"{SIMPLEFOLD_BASE_URL}plddt_module_1.6B.ckpt",
            filename="plddt_module_1.6B.ckpt",
            arch="plddt_1.6B",
            description="pLDDT head (runs on the SimpleFold 1.6B latent)",
        )
    )
    for rel in ESM2_RELEASES:
        stem = f"esm2_{rel}_UR50D"
        entries.append(
            WeightsEntry(
                name=stem,
                kind="esm2",
                url=f"{ESM_BASE_URL}{stem}.pt",
                filename=f"{stem}.pt",
                description=f"ESM2 {rel.split('_')[1]} protein language model (fair-esm, MIT)",
            )
        )
        entries.append(
            WeightsEntry(
                name=f"{stem}-contact-regression",
                kind="raw",
                url=f"{ESM_REGRESSION_BASE_URL}{stem}-contact-regression.pt",
                filename=f"{stem}-contact-regression.pt",
                description="ESM2 contact-regression head (not used by simplefold)",
            )
        )
    return entries


#: Short names used by SimpleFold configs (``esm_model: esm2_3B``) and the CLI.
ALIASES: dict[str, str] = {f"esm2_{rel.split('_')[1]}": f"esm2_{rel}_UR50D" for rel in ESM2_RELEASES} | {
    "plddt": "plddt_module_1.6B"
}


def registry() -> dict[str, WeightsEntry]:
    """Name -> entry: the built-in releases plus the entries of ``$SIMPLEFOLD_REGISTRY``."""
    entries = {e.name: e for e in _builtin_entries()}
    extra = os.environ.get("SIMPLEFOLD_REGISTRY")
    if extra:
        path = pathlib.Path(extra)
        try:
            data = json.loads(path.read_text())
            items = data["entries"] if isinstance(data, dict) else data
            for item in items:
                entry = WeightsEntry(**item)
                entries[entry.name] = entry
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path} ($SIMPLEFOLD_REGISTRY): not a valid registry file ({exc})") from exc
    return entries


def get_entry(name: str) -> WeightsEntry:
    """The registry entry for ``name`` (aliases such as ``esm2_3B`` accepted)."""
    reg = registry()
    name = ALIASES.get(name, name) if name not in reg else name
    if name not in reg:
        raise UnknownWeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(reg))}")
    return reg[name]


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
# HTTP download
# --------------------------------------------------------------------------------------

_TRANSIENT_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})


def _is_offline(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError)):
        return True
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH)


def _offline_message(url: str, entry: WeightsEntry | None, reason: object) -> str:
    msg = f"cannot reach {url} ({reason})."
    if entry is not None:
        msg += (
            f" On a machine with internet access download {url} , copy the file here and run:"
            f" {entry.import_command()}"
        )
    return msg


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: bool = True,
    entry: WeightsEntry | None = None,
) -> pathlib.Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming and retrying.

    Args:
      url: http(s) URL.
      dest: final path; written atomically (rename of the completed ``.part`` file).
      sha256, size: expected digest / byte count when known; a mismatch deletes the download and
        raises :class:`ChecksumError`.
      retries: consecutive failed attempts without progress before giving up.
      backoff: first retry delay in seconds, doubled after each failure.
      timeout: socket timeout in seconds.
      progress: show a tqdm progress bar on stderr (when it is a terminal).
      entry: the registry entry, to name the import command in offline errors.

    Raises:
      OfflineError: the host cannot be reached (the message names the URL and the import command).
      DownloadError: a permanent HTTP error (404, 403, ...) or too many transient failures.
      ChecksumError: the completed file does not match ``sha256`` / ``size``.
    """
    from tqdm import tqdm

    dest = pathlib.Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    delay = backoff
    while True:
        offset = part.stat().st_size if part.exists() else 0
        headers = {"User-Agent": "simplefold-weights/1", "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        progressed = False
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
                total = _expected_total(resp, offset)
                if offset and resp.status != 206:
                    logger.info("%s ignored the Range request; restarting the download", url)
                    offset = 0
                elif resp.status == 206 and _content_range_start(resp) != offset:
                    logger.warning("%s answered a different range than requested; restarting", url)
                    part.unlink(missing_ok=True)
                    continue
                with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=dest.name,
                    disable=None if progress else True,
                    file=sys.stderr,
                ) as bar:
                    while block := resp.read(_CHUNK):
                        out.write(block)
                        bar.update(len(block))
                        progressed = True
                got = part.stat().st_size
                if total is not None and got != total:
                    raise http.client.IncompleteRead(b"", total - got)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                # the .part file may already be complete (or longer than the file): start over
                # unless its size equals the total the server reports
                total = _content_range_total(exc.headers.get("Content-Range"))
                if total is not None and total == offset:
                    break
                part.unlink(missing_ok=True)
                continue
            if exc.code not in _TRANSIENT_HTTP:
                hint = f" On an offline machine place the file by hand: {entry.import_command()}" if entry else ""
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}.{hint}") from exc
            error: BaseException = exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            if _is_offline(exc) and not progressed and failures == 0 and offset == 0:
                raise OfflineError(_offline_message(url, entry, getattr(exc, "reason", exc))) from exc
            error = exc
        failures = 0 if progressed else failures + 1
        delay = backoff if progressed else delay
        if failures > retries:
            if _is_offline(error):
                raise OfflineError(_offline_message(url, entry, getattr(error, "reason", error))) from error
            raise DownloadError(f"{url}: giving up after {retries} retries ({error})") from error
        logger.warning("download of %s interrupted (%s); retrying in %.1f s", url, error, delay)
        time.sleep(delay)
        delay *= 2

    got_size = part.stat().st_size
    if size is not None and got_size != size:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{url}: downloaded {got_size} bytes, the registry expects {size}")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url}: sha256 {digest} does not match the registry's {sha256}; file discarded")
    os.replace(part, dest)
    return dest


def _expected_total(resp, offset: int) -> int | None:
    if resp.status == 206:
        return _content_range_total(resp.headers.get("Content-Range"))
    length = resp.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _content_range_start(resp) -> int | None:
    m = re.match(r"bytes\s+(\d+)-", resp.headers.get("Content-Range") or "")
    return int(m.group(1)) if m else None


def _content_range_total(value: str | None) -> int | None:
    m = re.search(r"/(\d+)\s*$", value or "")
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------
# Conversion and records
# --------------------------------------------------------------------------------------


def _conversion_version(kind: str) -> int:
    if kind == "esm2":
        from simplefold.esm import ESM_CONVERSION_VERSION

        return ESM_CONVERSION_VERSION
    if kind in ("simplefold", "plddt"):
        from simplefold import checkpoints

        return int(getattr(checkpoints, "CONVERSION_VERSION", 1))
    return 0


def _convert(entry: WeightsEntry, source: pathlib.Path, out: pathlib.Path, source_sha256: str) -> None:
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    if entry.kind == "esm2":
        from simplefold.esm import convert_official_esm2

        convert_official_esm2(source, out, source_sha256=source_sha256)
    elif entry.kind in ("simplefold", "plddt"):
        from simplefold import checkpoints

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


def _install(entry: WeightsEntry, source: pathlib.Path, origin: dict) -> pathlib.Path:
    """Convert ``source`` into the cache and write the record (caller holds the entry lock)."""
    size = source.stat().st_size
    digest = sha256_file(source)
    if entry.sha256 is not None and digest != entry.sha256.lower():
        raise ChecksumError(f"{source}: sha256 {digest} does not match the registry's {entry.sha256} for {entry.name}")
    if entry.size is not None and size != entry.size:
        raise ChecksumError(f"{source}: {size} bytes, the registry expects {entry.size} for {entry.name}")
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
) -> pathlib.Path:
    """Download and convert one registry entry; returns the converted weights directory.

    Concurrent calls for the same entry (threads or processes) serialise on a file lock: the
    second waits and reuses the first one's result. ``force`` re-downloads and re-converts.

    Raises:
      OfflineError, DownloadError, ChecksumError: see :func:`fetch`.
    """
    entry = get_entry(name)
    root = cache_dir()
    with file_lock(root / "locks" / f"{entry.name}.lock", entry.name):
        record = _read_record(entry)
        if record is not None and not force and not _check_entry(entry, record, full=False):
            logger.info("%s is already installed", entry.name)
            return converted_path(entry.name)
        url = entry.effective_url
        src = root / "downloads" / entry.filename
        if force or not src.is_file():
            src.unlink(missing_ok=True)
            fetch(
                url,
                src,
                sha256=entry.sha256,
                size=entry.size,
                retries=retries,
                backoff=backoff,
                timeout=timeout,
                progress=progress,
                entry=entry,
            )
        try:
            out = _install(entry, src, {"url": url})
        finally:
            if not keep_source:
                src.unlink(missing_ok=True)
        return out


def import_file(path: str | os.PathLike, name: str, *, copy_source: bool = False) -> pathlib.Path:
    """Install a file placed by hand (offline clusters); returns the converted weights directory.

    The file's sha256 is checked against the registry when the registry knows it.
    ``copy_source`` also keeps a copy under ``downloads/``.
    """
    entry = get_entry(name)
    src = pathlib.Path(path).expanduser().absolute()
    if not src.is_file():
        raise WeightsError(f"{src}: no such file")
    with file_lock(cache_dir() / "locks" / f"{entry.name}.lock", entry.name):
        out = _install(entry, src, {"imported_from": str(src)})
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

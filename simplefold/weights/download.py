"""HTTP download of one weights file: resumable (``Range``), retried with back-off, checked, atomic.

:func:`fetch` streams to ``<dest>.part`` with a progress bar, resumes an interrupted transfer with
an HTTP ``Range`` request (a server that answers ``200`` instead of ``206`` restarts from zero),
retries transient errors with exponential back-off (never a 404), checks the size and sha256 when
they are known, and renames the completed file into place.
"""

from __future__ import annotations

import errno
import http.client
import logging
import os
import pathlib
import re
import socket
import sys
import time
import urllib.error
import urllib.request

from simplefold.utils.files import sha256_file
from simplefold.weights.registry import ChecksumError, DownloadError, OfflineError, WeightsEntry

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
#: Without a terminal (logs, batch jobs) the bar is off; progress is logged instead at least
#: every this many seconds and every 10 % of the file.
LOG_EVERY_S = 30.0
LOG_EVERY_FRACTION = 0.1


class _ProgressLog:
    """Log lines ``<file>: 1.2 of 5.6 GiB (21 %), 48.0 MiB/s, about 1.6 min left`` for a non-terminal."""

    def __init__(self, name: str, total: int | None, offset: int, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self.start_bytes = self.done = offset
        self.t0 = self.last_t = time.monotonic()
        self.last_fraction = (offset / total) if total else 0.0

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        fraction = self.done / self.total if self.total else 0.0
        if now - self.last_t < LOG_EVERY_S and (not self.total or fraction - self.last_fraction < LOG_EVERY_FRACTION):
            return
        self.last_t, self.last_fraction = now, fraction
        rate = (self.done - self.start_bytes) / max(now - self.t0, 1e-9)
        msg = f"{self.name}: {_gib(self.done)}"
        if self.total:
            msg += f" of {_gib(self.total)} ({100 * fraction:.0f} %)"
            if rate > 0 and self.done < self.total:
                msg += f", {rate / 2**20:.1f} MiB/s, about {(self.total - self.done) / rate / 60:.1f} min left"
        else:
            msg += f", {rate / 2**20:.1f} MiB/s"
        logger.info("%s", msg)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


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
    pinned_by: str = "registry",
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
      progress: show a tqdm progress bar on stderr when it is a terminal, else log progress lines
        (every :data:`LOG_EVERY_FRACTION` of the file or :data:`LOG_EVERY_S` seconds).
      entry: the registry entry, to name the import command in offline errors.

    Raises:
      OfflineError: the host cannot be reached (the message names the URL and the import command).
      DownloadError: a permanent HTTP error (404, 403, ...) or too many transient failures.
      ChecksumError: the completed file does not match ``sha256`` / ``size`` (pinned by
        ``pinned_by``, named in the message).
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
                    log = _ProgressLog(dest.name, total, offset, enabled=progress and bar.disable)
                    while block := resp.read(_CHUNK):
                        out.write(block)
                        bar.update(len(block))
                        log.update(len(block))
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
        raise ChecksumError(f"{url}: downloaded {got_size} bytes, the {pinned_by} pin expects {size}")
    if sha256 is not None:
        digest = sha256_file(part)
        if digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{url}: sha256 {digest} does not match the {pinned_by} pin {sha256}; file discarded")
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

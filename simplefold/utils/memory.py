"""Resident memory of this process: current RSS, peak RSS per phase, 64-byte aligned host buffers.

Linux only for the figures (``/proc/self/status``); elsewhere they are None. The peak (``VmHWM``)
of a process only ever rises, so a per-phase peak needs the high-water mark reset at the phase
start: writing ``5`` to ``/proc/self/clear_refs`` does that (Linux >= 4.0). Where the reset is not
allowed the peak of a phase is the process peak so far, which :class:`PhasePeaks` says
(``exact=False``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import time
from collections.abc import Iterator

import numpy as np

logger = logging.getLogger(__name__)

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
#: Alignment (bytes) at which XLA:CPU adopts a host buffer instead of copying it (``jax.device_put``).
HOST_ALIGNMENT = 64


def _status_kib(field: str) -> int | None:
    try:
        with open(_STATUS, encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss() -> int | None:
    """Resident set size of this process in bytes (``VmRSS``), or None where unknown."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss() -> int | None:
    """Peak resident set size in bytes since start or the last :func:`reset_peak_rss` (``VmHWM``)."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS to the current RSS; False where the kernel does not allow it."""
    try:
        with open(_CLEAR_REFS, "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


@dataclasses.dataclass
class PhasePeaks:
    """Peak RSS (bytes) and duration (s) of each phase of a run, in phase order.

    ``exact`` is False when the high-water mark could not be reset: then each figure is the
    process peak up to the end of that phase (still an upper bound of the phase's own peak).
    """

    peaks: dict[str, int] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    exact: bool = True

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Measure the body as phase ``name`` (freed garbage is collected first, so the start is
        the memory actually held)."""
        gc.collect()
        rss = current_rss()
        if rss is not None:  # what the previous phase left resident (its networks should be gone)
            logger.info("phase %s starts: RSS %.2f GB (process peak so far %.2f GB)", name, rss / 1e9,
                        (peak_rss() or 0) / 1e9)
        self.exact = reset_peak_rss() and self.exact
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - t0
            peak = peak_rss()
            if peak is not None:
                self.peaks[name] = peak
                logger.info("phase %s: peak RSS %.2f GB%s, RSS at its end %.2f GB, %.1f s", name, peak / 1e9,
                            "" if self.exact else " (process peak so far)", (current_rss() or 0) / 1e9,
                            self.seconds[name])

    def as_dict(self) -> dict:
        return {"peak_rss_bytes": dict(self.peaks), "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "exact": self.exact}


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array whose data starts on a :data:`HOST_ALIGNMENT` boundary.

    ``jax.device_put`` on the CPU backend adopts such a buffer without copying it, so a weight
    filled here and handed to JAX exists once (NumPy's own large allocations are 16-byte aligned
    and would be copied).
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + HOST_ALIGNMENT, np.uint8)
    off = (-raw.ctypes.data) % HOST_ALIGNMENT
    return raw[off : off + nbytes].view(dtype).reshape(shape)

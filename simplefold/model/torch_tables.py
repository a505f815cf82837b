"""Constant tables exactly as PyTorch computes them, shipped as package data (NumPy only).

The official model rebuilds small float32 tables on every call (the absolute-PE frequencies
``pi * 2**linspace(...)``, the timestep frequencies ``exp(-ln(P) k / half)``, the RoPE
frequencies ``1 / base**(k/d)``). PyTorch's CPU kernels evaluate ``**`` and ``exp`` with SLEEF's
vectorised functions, which are within 1 ulp but not correctly rounded, so a correctly rounded
NumPy formula differs from them in a few entries — and with phases of ~4.5e4 rad a 1-ulp change
of a frequency moves the encoding by ~0.01 rad. ``tools/official_fixtures.py package-tables``
evaluates the official expressions once with PyTorch for every width in use and stores them in
``simplefold/assets/torch_tables.npz``; :func:`lookup` returns them. Widths that are not in the
file fall back to the NumPy formula in ``simplefold.model.embeddings`` (≤ 1 ulp from torch).

File layout: one float32 array per table (``t0``, ``t1``, …) and ``index``, a JSON list of
``{"name", "params", "array"}`` records, plus ``meta`` (JSON: torch version, CPU capability).
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import Any

import numpy as np

TABLES_PATH = pathlib.Path(__file__).resolve().parent.parent / "assets" / "torch_tables.npz"


def table_id(name: str, params: dict[str, Any]) -> tuple:
    """Canonical identity of a table: its name and its parameters as floats, sorted by name."""
    return (name, tuple(sorted((k, float(v)) for k, v in params.items())))


@functools.lru_cache(maxsize=None)
def _load(path: pathlib.Path = TABLES_PATH) -> tuple[dict[tuple, np.ndarray], dict[str, Any]]:
    if not path.exists():
        return {}, {}
    with np.load(path, allow_pickle=False) as z:
        index = json.loads(str(z["index"]))
        meta = json.loads(str(z["meta"]))
        tables = {}
        for rec in index:
            arr = np.asarray(z[rec["array"]], np.float32)
            arr.setflags(write=False)
            tables[table_id(rec["name"], rec["params"])] = arr
    return tables, meta


def lookup(name: str, **params: Any) -> np.ndarray | None:
    """The PyTorch-computed table ``name`` for ``params`` (read-only float32), or None if not shipped."""
    return _load()[0].get(table_id(name, params))


def meta() -> dict[str, Any]:
    """How the shipped tables were made (torch version, CPU capability, date)."""
    return dict(_load()[1])


def shipped(name: str) -> list[dict[str, float]]:
    """Parameter sets shipped for table ``name`` (for tests and diagnostics)."""
    return [dict(p) for (n, p) in _load()[0] if n == name]


def torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` in float32, bit-exact with torch's CPU kernel.

    The kernel computes ``step = (end - start) / (steps - 1)`` in float32 and then
    ``start + step*i`` for ``i < steps // 2`` and ``end - step*(steps - 1 - i)`` above, each as
    one fused multiply-add. A float32 ``step`` times an index below 2**29 is exact in float64, so
    one float64 add rounded to float32 gives the fused result (checked against torch for every
    ``steps`` up to 1100 on six ranges).
    """
    start32, end32 = np.float32(start), np.float32(end)
    if steps == 1:
        return np.array([start32], dtype=np.float32)
    step = np.float64(np.float32((end32 - start32) / np.float32(steps - 1)))
    i = np.arange(steps, dtype=np.float64)
    low = np.float64(start32) + step * i
    high = np.float64(end32) - step * (steps - 1 - i)
    return np.where(np.arange(steps) < steps // 2, low, high).astype(np.float32)


def torch_logspace_f32(start: float, end: float, steps: int, base: float = 10.0) -> np.ndarray:
    """``torch.logspace(start, end, steps, base)`` in float32, bit-exact with torch's CPU kernel.

    The exponents are formed in float64 from the float32 end points (the same midpoint split as
    ``linspace``) and raised with the C library's double ``pow``; one rounding to float32.
    """
    s, e = float(np.float32(start)), float(np.float32(end))
    if steps == 1:
        return np.array([math.pow(base, s)], dtype=np.float32)
    step = (e - s) / (steps - 1)
    half = steps // 2
    vals = [math.pow(base, s + step * i) if i < half else math.pow(base, e - step * (steps - i - 1)) for i in range(steps)]
    return np.array(vals, dtype=np.float64).astype(np.float32)

"""Bit-reproducible samples: a sample must not depend on its chunk, its bucket, or its devices.

"Same seed → same sample" is meant to the bit: a sample run alone, in a chunk of four, padded to
a larger bucket, or sharded over several devices must give identical coordinates and pLDDT. The
random numbers already depend only on (seed, target, sample index) (``sampler.sample_keys``); the
network treats samples and masked padding slots independently. What is left is float rounding
that depends on array shapes, which a many-step sampler amplifies into visible differences. Two
sources, two remedies:

1. **Kernel choice by shape.** XLA:CPU hands small matrix products to YNNPACK ("YNN fusions"),
   whose kernels round a row differently depending on how many rows the product has (jax 0.10:
   a (M, 128) @ (128, 384) product gives row results that depend on M for 2 ≤ M < 64). With YNN
   fusions off (:data:`CPU_COMPILER_OPTIONS`, applied by :func:`stable_jit`), products go to
   XLA's Eigen path, whose per-row results do not depend on the row count. Also, a constant input
   may be constant-folded differently per shape, so callers pass e.g. t = 1 as an argument.
   Any YNN fusion type (element-wise or reduce alone included) breaks the identity, so all are
   off; the price in sampler speed is in the README (``benchmarks/sample.py`` measures it).
2. **Reductions over padded axes.** ``jnp.sum`` lets the compiler choose the order of the
   additions from the axis length, so the same values followed by padding zeros can sum
   differently in the last bit (seen for atom centring over 256 vs 1024 slots and for attention
   over 56 vs 64 residues). :func:`padding_invariant_sum` fixes the order; attention sums over
   fixed-size key blocks (``simplefold.model.layers.dense_attention``).

Accelerators: the compiler options are CPU-only. On GPUs the GEMM library chooses algorithms per
shape, so there a sample is the same across chunkings and buckets only up to float rounding.
Tests: ``tests/test_reproducible.py`` (the pieces, and the end-to-end check on four models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

# XLA:CPU debug options passed with every compilation made through :func:`stable_jit`.
CPU_COMPILER_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": ""}


class StableJit:
    """A lazily built ``jax.jit(fun, **jit_kwargs)`` with :data:`CPU_COMPILER_OPTIONS` on CPU.

    The jitted function is built on first use for the default backend at that time (building it
    at import would initialise the backend when ``simplefold`` is imported). Supports calling and
    ``.lower(...)`` like the function ``jax.jit`` returns.
    """

    def __init__(self, fun: Callable[..., Any], *, reproducible: bool = True, **jit_kwargs: Any):
        self._fun = fun
        self._reproducible = reproducible
        self._jit_kwargs = jit_kwargs
        self._by_backend: dict[str, Any] = {}
        self.__wrapped__ = fun
        self.__doc__ = fun.__doc__

    def _jitted(self):
        backend = jax.default_backend()
        jitted = self._by_backend.get(backend)
        if jitted is None:
            options = dict(CPU_COMPILER_OPTIONS) if backend == "cpu" and self._reproducible else None
            jitted = jax.jit(self._fun, compiler_options=options, **self._jit_kwargs)
            self._by_backend[backend] = jitted
        return jitted

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._jitted()(*args, **kwargs)

    def lower(self, *args: Any, **kwargs: Any) -> Any:
        return self._jitted().lower(*args, **kwargs)


def stable_jit(fun: Callable[..., Any] | None = None, **jit_kwargs: Any) -> Any:
    """Decorator form of :class:`StableJit`: ``@stable_jit(static_argnames=...)`` or ``@stable_jit``."""
    if fun is None:
        return lambda f: StableJit(f, **jit_kwargs)
    return StableJit(fun, **jit_kwargs)


def precision_jit(fun: Callable[..., Any], precision: str, **jit_kwargs: Any) -> StableJit:
    """:func:`stable_jit` for float32 networks; plain ``jax.jit`` options for mixed bfloat16.

    XLA:CPU runs bf16 products on the CPU's bf16 dot units only inside YNN fusions — with them
    off it converts both operands to float32 first, so bf16 would be no faster than float32.
    Mixed precision therefore gives up the bit-identity across chunks and buckets (samples agree
    to bf16 rounding), which float32 keeps.
    """
    return StableJit(fun, reproducible=precision == "float32", **jit_kwargs)


def padding_invariant_sum(x: jax.Array, axis: int) -> jax.Array:
    """Sum over ``axis`` whose rounding does not depend on zeros appended to that axis.

    ``jnp.sum`` lets the compiler choose the order of the additions from the axis length. Here
    the axis is padded with zeros to a power of two P and halved log2(P) times
    (``x[:P/2] + x[P/2:]``) with elementwise adds only: element i is always paired with i + P/2,
    so values followed by zeros give bit-identical sums for every P ≥ their count. Costs P − 1
    additions, as any sum.

    Args:
      x: any array; axis: the axis to sum (kept with size 1).
    Returns:
      ``x`` summed over ``axis`` with ``keepdims=True``.
    """
    axis = axis % x.ndim
    n = x.shape[axis]
    p = 1 << max(n - 1, 0).bit_length()
    if p != n:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, p - n)
        x = jnp.pad(x, pad)
    while p > 1:
        p //= 2
        x = jax.lax.slice_in_dim(x, 0, p, axis=axis) + jax.lax.slice_in_dim(x, p, 2 * p, axis=axis)
    return x

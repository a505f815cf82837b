"""Positional / time encodings of SimpleFold and their constant tables (official
``src/simplefold/model/torch/pos_embed.py`` of apple/ml-simplefold).

The constant tables are numpy float32 arrays computed on the host in the same float32 operation
order as the official torch code (its ``linspace`` as ``start + step*i``, float32 products and
divisions); transcendental functions are evaluated in float64 and rounded once. Phases reach
|position| x frequency ~ 1e4-1e5, so a one-ulp difference in a frequency is visible; see
``tests/model/test_model.py`` for the comparison against the official tables.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np

_F32 = np.float32


def torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """float32 ``linspace`` as ``start + step*i`` with ``step = (end-start)/(steps-1)`` in float32."""
    start32, end32 = _F32(start), _F32(end)
    if steps == 1:
        return np.array([start32], dtype=_F32)
    step = _F32((end32 - start32) / _F32(steps - 1))
    return (start32 + step * np.arange(steps, dtype=_F32)).astype(_F32)


def _pow_f32(base: float, x: np.ndarray) -> np.ndarray:
    return np.power(np.float64(base), x.astype(np.float64)).astype(_F32)


@functools.lru_cache(maxsize=None)
def fourier_freq_bands(num_freqs: int = 128, min_freq_log2: float = 0.0, max_freq_log2: float = 12.0) -> np.ndarray:
    """``2 ** linspace(min, max, num_freqs)`` (float32). The official value is also a checkpoint buffer."""
    out = _pow_f32(2.0, torch_linspace_f32(min_freq_log2, max_freq_log2, num_freqs))
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def timestep_freqs(half: int = 128, max_period: float = 10000.0) -> np.ndarray:
    """``exp(-ln(max_period) * k / half)`` for k = 0..half-1 (float32 argument, as torch forms it)."""
    arg = (_F32(-math.log(max_period)) * np.arange(half, dtype=_F32)) / _F32(half)
    out = np.exp(arg.astype(np.float64)).astype(_F32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def abs_pe_omega(embed_dim: int, max_wavelength: float = 224.0) -> np.ndarray:
    """``pi * 2 ** linspace(0, log2(max_wavelength) - 1, embed_dim // 2)`` (float32), shape (D/2,)."""
    lin = torch_linspace_f32(0.0, math.log(max_wavelength, 2) - 1, embed_dim // 2)
    out = (_pow_f32(2.0, lin) * _F32(math.pi)).astype(_F32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=None)
def rope_freqs(head_dim: int, in_dim: int = 4, base: float = 100.0) -> np.ndarray:
    """Per-axis axial-RoPE frequencies ``1 / base ** (k / head_dim)``, k = 0, 2*in_dim, ...; shape (hd // (2*in_dim),)."""
    interval = 2 * in_dim
    k = np.arange(0, head_dim, interval, dtype=_F32)[: head_dim // interval]
    out = (_F32(1.0) / _pow_f32(base, k / _F32(head_dim))).astype(_F32)
    out.setflags(write=False)
    return out


def fourier_encode(pos: jnp.ndarray, freq_bands: jnp.ndarray) -> jnp.ndarray:
    """Fourier features ``[pos, sin(p_d f_k), cos(p_d f_k)]``, coordinate-major.

    Args:
      pos: (..., 3) float32.
      freq_bands: (F,) float32.
    Returns:
      (..., 3 + 6F) float32.
    """
    ang = pos[..., :, None] * freq_bands  # (..., 3, F)
    flat = ang.reshape(*ang.shape[:-2], -1)
    return jnp.concatenate([pos, jnp.sin(flat), jnp.cos(flat)], axis=-1)


def abs_pos_encode(pos: jnp.ndarray, omega: jnp.ndarray) -> jnp.ndarray:
    """Absolute sinusoidal encoding ``[sin(p w), cos(p w), p]`` of a scalar position.

    Args:
      pos: (...,) float32 (the token index of each atom).
      omega: (D/2,) float32.
    Returns:
      (..., D + 1) float32.
    """
    ang = pos[..., None] * omega
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang), pos[..., None]], axis=-1)


def timestep_encode(t: jnp.ndarray, freqs: jnp.ndarray) -> jnp.ndarray:
    """``[cos(t f), sin(t f)]`` (cosine first); t: (B,) in [0, 1] -> (B, 2F)."""
    ang = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(ang), jnp.sin(ang)], axis=-1)


def rope_cos_sin(pos: jnp.ndarray, freqs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Axial RoPE rotation tables.

    Args:
      pos: (B, L, A) float32 raw positions, one column per axis.
      freqs: (K,) per-axis frequencies (the same vector for every axis).
    Returns:
      cos, sin: (B, L, A*K) float32; pair j uses axis j // K and frequency j % K.
    """
    ang = (pos[..., :, None] * freqs).reshape(*pos.shape[:-1], -1)
    return jnp.cos(ang), jnp.sin(ang)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotate interleaved channel pairs (2j, 2j+1) of every head by angle j (in float32).

    Args:
      x: (B, L, H, hd).
      cos, sin: (B or 1, L, hd/2).
    Returns:
      (B, L, H, hd), dtype of x.
    """
    xf = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)
    re, im = xf[..., 0], xf[..., 1]
    c, s = cos[:, :, None, :], sin[:, :, None, :]
    out = jnp.stack([re * c - im * s, re * s + im * c], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)

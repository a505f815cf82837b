"""Flow-matching maths of SimpleFold: linear path, training-time sampling, rigid alignment.

Conventions (shared by the whole package):

* coordinates ``x`` have shape ``(B, N, 3)`` in **model units** (Å/16, see :data:`simplefold.constants.COORD_SCALE`)
  unless a docstring says otherwise; masks have shape ``(B, N)`` (any numeric/bool dtype,
  1 = real/resolved atom);
* ``t`` has shape ``(B,)``; **t = 0 is pure noise, t = 1 is data** (``LinearPath`` of the
  official code: x_t = t·x1 + (1−t)·x0).

Everything here is a pure ``jax.numpy`` function (jit/vmap/grad friendly) except
:func:`log_time_grid`, which is a host-side NumPy constant so that it matches the official
float32 grid bit for bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from simplefold import reproducible
from simplefold.model.torch_tables import torch_linspace_f32, torch_logspace_f32
from simplefold.constants import T_START

# Training-time t distribution: t = 0.98·sigmoid(u) + 0.02·v, u ~ N(0.8, 1.7²), v ~ U(0, 1).
_T_LOGIT_MEAN = 0.8
_T_LOGIT_STD = 1.7
_T_LOGIT_WEIGHT = 0.98
_T_UNIFORM_WEIGHT = 0.02


def broadcast_time(t: jax.Array, x: jax.Array) -> jax.Array:
    """Right-pad ``t`` with singleton axes so it broadcasts against ``x``."""
    t = jnp.asarray(t, dtype=x.dtype)
    return t.reshape(t.shape + (1,) * (x.ndim - t.ndim))


def interpolate(x0: jax.Array, x1: jax.Array, t: jax.Array) -> jax.Array:
    """Point on the linear path, x_t = t·x1 + (1−t)·x0.

    Args:
      x0: noise, ``(B, N, 3)`` model units.
      x1: data, ``(B, N, 3)`` model units.
      t: ``(B,)`` (or a scalar) in [0, 1]; 0 = noise, 1 = data.

    Returns:
      ``(B, N, 3)`` noised coordinates.
    """
    tb = broadcast_time(t, x0)
    return tb * x1 + (1.0 - tb) * x0


def target_velocity(x0: jax.Array, x1: jax.Array) -> jax.Array:
    """Velocity of the linear path, u = dx_t/dt = x1 − x0 (independent of t). Shapes ``(B, N, 3)``."""
    return x1 - x0


def score_from_velocity(v: jax.Array, x_t: jax.Array, t: jax.Array) -> jax.Array:
    """Score ∇log p_t(x_t) implied by a velocity prediction on the linear path.

    s = (t·v − x_t) / var with var = (1−t)² + t·(1−t) (the official general-path expression,
    algebraically equal to 1−t; kept in that form to follow the reference's float32 rounding).
    Undefined at t = 1 (var = 0); the sampler never evaluates it there.

    Args:
      v: predicted velocity ``(B, N, 3)``.
      x_t: current state ``(B, N, 3)`` (model units).
      t: ``(B,)`` or scalar, t < 1.

    Returns:
      score ``(B, N, 3)``.
    """
    tb = broadcast_time(t, x_t)
    sigma = 1.0 - tb
    var = sigma * sigma + tb * sigma
    return (tb * v - x_t) / var


def sample_time(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Training-time t: 0.98·sigmoid(u) + 0.02·v, u ~ N(0.8, 1.7²), v ~ U(0, 1), independent per element.

    This is a weighted *sum* of two random variables (as in the official code), not a mixture;
    its median is ≈ 0.68 and it is biased towards the data end (t → 1).

    Args:
      key: PRNG key.
      shape: output shape, e.g. ``(B,)``.

    Returns:
      float32 array of ``shape`` with values in (0, 1).
    """
    k_logit, k_unif = jax.random.split(key)
    u = jax.random.normal(k_logit, shape, jnp.float32) * _T_LOGIT_STD + _T_LOGIT_MEAN
    v = jax.random.uniform(k_unif, shape, jnp.float32)
    return _T_LOGIT_WEIGHT * jax.nn.sigmoid(u) + _T_UNIFORM_WEIGHT * v


def noised_sample(key: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw the training inputs for data ``x1`` ``(B, N, 3)``: one t and one noise per sample.

    Returns:
      ``(t, x0, x_t)``: t ``(B,)`` from :func:`sample_time`, noise x0 ~ N(0, I) ``(B, N, 3)`` and
      x_t = :func:`interpolate` (x0, x1, t), float32 model units.
    """
    k_t, k_noise = jax.random.split(key)
    x1 = jnp.asarray(x1, jnp.float32)
    t = sample_time(k_t, (x1.shape[0],))
    x0 = jax.random.normal(k_noise, x1.shape, jnp.float32)
    return t, x0, interpolate(x0, x1, t)


def log_time_grid(num_steps: int, t_start: float = T_START) -> np.ndarray:
    """The official log-spaced sampling grid t_0 = t_start … t_num_steps = 1 (float32, host NumPy).

    t_i = (1 − 10^(−2i/n)) / 0.99, computed as the official ``EMSampler`` does (its
    ``log_timesteps`` branch): ``1 − logspace(-2, 0, n+1)`` flipped, shifted to start at 0,
    divided by its maximum, then clamped to [t_start, 1], with torch's ``logspace`` reproduced
    exactly; bit-identical to the official grid for every n tested (``tests/model/test_official_widths.py``).

    Args:
      num_steps: number of sampler steps n (≥ 1).
      t_start: lower clamp (the first grid value).

    Returns:
      ``(num_steps + 1,)`` float32 array, increasing, ending at exactly 1.0.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    f32 = np.float32
    t = (f32(1.0) - torch_logspace_f32(-2.0, 0.0, num_steps + 1))[::-1]
    t = t - t.min()
    t = t / t.max()
    return np.clip(t, f32(t_start), f32(1.0)).astype(f32)


def linear_time_grid(num_steps: int, t_start: float = T_START) -> np.ndarray:
    """Uniform grid ``torch.linspace(t_start, 1, num_steps + 1)`` (float32, bit-exact), used when log_timesteps is off."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return torch_linspace_f32(t_start, 1.0, num_steps + 1)


def masked_mean(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of ``x`` ``(B, N, 3)`` over atoms with ``mask`` ``(B, N)`` set; returns ``(B, 1, 3)``.

    The sum is :func:`simplefold.reproducible.padding_invariant_sum`, so atom slots padded after
    the real atoms do not change the result by a single bit. An all-zero mask gives 0, not NaN.
    """
    m = mask.astype(x.dtype)[..., None]
    # the count is a sum of 0/1 values, exact in any order
    return reproducible.padding_invariant_sum(x * m, axis=-2) / jnp.maximum(jnp.sum(m, axis=-2, keepdims=True), 1e-12)


def center(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Translate ``x`` ``(B, N, 3)`` so that the mean over atoms with ``mask`` ``(B, N)`` is 0.

    All atoms (masked ones included) are shifted by the same vector.
    """
    return x - masked_mean(x, mask)


def weighted_rigid_align(
    x_true: jax.Array, x_pred: jax.Array, weights: jax.Array, mask: jax.Array
) -> jax.Array:
    """Optimally superpose the ground truth onto the prediction (weighted Kabsch, Boltz-style).

    Finds the proper rotation R (det +1, reflection removed with the usual sign correction) that
    minimises Σ w_n ‖R(x_true_n − c_true) − (x_pred_n − c_pred)‖² over atoms with ``mask``, and
    returns R(x_true − c_true) + c_pred for *all* atoms. Gradients are stopped (the alignment is
    a fixed target, as in the reference) and the maths runs in float32.

    Args:
      x_true: ``(B, N, 3)`` ground-truth coordinates (any units).
      x_pred: ``(B, N, 3)`` predicted coordinates (same units).
      weights: ``(B, N)`` per-atom weights.
      mask: ``(B, N)`` atoms that take part in the fit.

    Returns:
      ``(B, N, 3)`` aligned ground truth, float32.
    """
    x_true = jax.lax.stop_gradient(x_true).astype(jnp.float32)
    x_pred = jax.lax.stop_gradient(x_pred).astype(jnp.float32)
    w = (jax.lax.stop_gradient(mask).astype(jnp.float32) * jax.lax.stop_gradient(weights).astype(jnp.float32))
    true_c = x_true - masked_mean(x_true, w)
    pred_centroid = masked_mean(x_pred, w)
    pred_c = x_pred - pred_centroid
    cov = jnp.einsum("bni,bnj->bij", w[..., None] * pred_c, true_c, precision=jax.lax.Precision.HIGHEST)
    u, _, vh = jnp.linalg.svd(cov)
    det = jnp.linalg.det(jnp.einsum("bij,bjk->bik", u, vh, precision=jax.lax.Precision.HIGHEST))
    flip = jnp.stack([jnp.ones_like(det), jnp.ones_like(det), det], axis=-1)
    rot = jnp.einsum("bij,bj,bjk->bik", u, flip, vh, precision=jax.lax.Precision.HIGHEST)
    aligned = jnp.einsum("bni,bji->bnj", true_c, rot, precision=jax.lax.Precision.HIGHEST) + pred_centroid
    return jax.lax.stop_gradient(aligned)


def quaternion_to_matrix(q: jax.Array) -> jax.Array:
    """Rotation matrices ``(..., 3, 3)`` from (not necessarily unit) quaternions ``(..., 4)``, real part first."""
    r, i, j, k = jnp.moveaxis(q, -1, 0)
    two_s = 2.0 / jnp.sum(q * q, axis=-1)
    m = jnp.stack(
        [
            1 - two_s * (j * j + k * k), two_s * (i * j - k * r), two_s * (i * k + j * r),
            two_s * (i * j + k * r), 1 - two_s * (i * i + k * k), two_s * (j * k - i * r),
            two_s * (i * k - j * r), two_s * (j * k + i * r), 1 - two_s * (i * i + j * j),
        ],
        axis=-1,
    )
    return m.reshape(q.shape[:-1] + (3, 3))


def random_rotation(key: jax.Array, shape: tuple[int, ...] = ()) -> jax.Array:
    """Uniformly distributed rotations in SO(3) (Haar measure), ``shape + (3, 3)`` float32.

    A normalised 4-D standard normal is a uniform unit quaternion, and quaternion → matrix is a
    2:1 cover of SO(3), so the matrices are uniform.
    """
    q = jax.random.normal(key, shape + (4,), jnp.float32)
    return quaternion_to_matrix(q)


def center_random_augmentation(
    key: jax.Array, x: jax.Array, mask: jax.Array, s_trans: float = 1.0
) -> jax.Array:
    """Centre each sample on its masked mean, rotate it randomly and shift it by N(0, s_trans²) per axis.

    Args:
      key: PRNG key (one rotation and one translation per sample are drawn from it).
      x: ``(B, N, 3)`` coordinates.
      mask: ``(B, N)`` atoms defining the centre (``atom_pad_mask`` in training).
      s_trans: translation standard deviation, in the units of ``x`` (1.0 model unit = 16 Å in
        the official processor).

    Returns:
      ``(B, N, 3)`` augmented coordinates (row vectors times R, as ``x @ R``).
    """
    k_rot, k_trans = jax.random.split(key)
    b = x.shape[0]
    rot = random_rotation(k_rot, (b,)).astype(x.dtype)
    x = center(x, mask)
    x = jnp.einsum("bnd,bds->bns", x, rot, precision=jax.lax.Precision.HIGHEST)
    return x + s_trans * jax.random.normal(k_trans, (b, 1, 3), x.dtype)

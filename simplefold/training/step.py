"""The jitted training step: multiplicity copies, augmentation, flow-matching loss, AdamW, EMA.

``train_step(state, batch) -> (state, metrics)`` is pure. All randomness of step ``s`` comes from
``fold_in(state["rng"], s)``, drawn with the *global* batch shape, so the result does not depend on
how the batch is sharded over devices or on where a run was resumed.

Per protein p of the batch and copy r of ``multiplicity`` (official ``ProteinDataProcessor`` and
``flow_matching_train_step``, ``src/simplefold/processor/protein_processor.py`` and ``model/simplefold.py``):
x1 = centre + random rotation + N(0, 1) shift (model units) of the ground truth, t from
:func:`flow.sample_time`, x0 ~ N(0, I), x_t = t·x1 + (1−t)·x0; the network sees one feature set per
protein (vmapped over proteins, broadcast over copies). Optional, not official: noise-level
(:func:`noise_scales`) and blur (:func:`blur_noise`) augmentations of x0, each on its own key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from simplefold.constants import COORD_SCALE
from simplefold.sampling import flow
from simplefold.training import losses
from simplefold.training.config import LossSection, OptimSection
from simplefold.training.state import TrainState, learning_rate_schedule

# Batch entries that are targets, not network inputs.
_TARGET_KEYS = ("coords", "atom_resolved_mask")


def loss_config(loss: LossSection) -> losses.LossConfig:
    return losses.LossConfig(
        use_rigid_align=loss.rigid_align,
        smooth_lddt_weight=loss.smooth_lddt_weight,
        lddt_cutoff=loss.lddt_cutoff,
        lddt_weight_schedule=loss.lddt_time_schedule,
        rg_weight=loss.rg_weight,
        clash_weight=loss.clash_weight,
        bond_weight=loss.bond_weight,
    )


TIME_SAMPLINGS = ("official", "uniform")


def sample_train_time(key: jax.Array, shape: tuple[int, ...], method: str) -> jax.Array:
    """Training t of ``shape``: ``official`` (:func:`flow.sample_time`) or ``uniform`` U(0, 1)."""
    if method == "official":
        return flow.sample_time(key, shape)
    if method == "uniform":
        return jax.random.uniform(key, shape, jnp.float32)
    raise ValueError(f"loss.time_sampling must be one of {', '.join(TIME_SAMPLINGS)}, got {method!r}")


def noise_scales(key: jax.Array, n: int, fraction: float, minimum: float) -> jax.Array:
    """Per-copy noise scale κ ``(n,)``: 1, or with probability ``fraction`` log-uniform in [minimum, 1]."""
    if fraction <= 0.0:
        return jnp.ones((n,), jnp.float32)
    k_pick, k_scale = jax.random.split(key)
    low = jnp.log(jnp.float32(minimum))
    kappa = jnp.exp(jax.random.uniform(k_scale, (n,), jnp.float32, low, 0.0))
    return jnp.where(jax.random.uniform(k_pick, (n,)) < fraction, kappa, 1.0)


#: Width of the blur augmentation's Gaussian neighbourhood (``loss.blur_fraction``), Å.
BLUR_SIGMA = 3.0
#: The blur shift is tapered linearly to 0 over this last part of the path (t from 1 − BLUR_TAPER to 1).
BLUR_TAPER = 0.1


def blur_offset(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Shift of every atom to the Gaussian-weighted mean of the resolved atoms around it.

    Args:
      x: ``(B, N, 3)`` coordinates, model units (Å/16).
      mask: ``(B, N)`` atoms that count as neighbours (resolved atoms).

    Returns:
      ``(B, N, 3)`` offsets m_i − x_i, m_i = Σ_j w_ij x_j / Σ_j w_ij, w_ij = mask_j·exp(−d_ij²/(2σ²)),
      σ = :data:`BLUR_SIGMA` Å; 0 for masked atoms.
    """
    sigma = BLUR_SIGMA / COORD_SCALE
    d2 = jnp.sum(jnp.square(x[:, :, None, :] - x[:, None, :, :]), axis=-1)
    w = jnp.exp(-d2 / (2.0 * sigma**2)) * mask[:, None, :]
    mean = jnp.einsum("bij,bjc->bic", w, x) / jnp.maximum(jnp.sum(w, axis=-1, keepdims=True), 1e-6)
    return (mean - x) * mask[..., None]


def blur_noise(key: jax.Array, x1: jax.Array, mask: jax.Array, t: jax.Array, fraction: float,
               maximum: float) -> jax.Array:
    """Noise term that blurs the data point in x_t (the blur augmentation, ``loss.blur_fraction``).

    Returns ``e`` ``(B, N, 3)`` such that ``interpolate(x0 + e, x1, t)`` = t·(x1 + a·δ) + (1−t)·x0 with
    δ = :func:`blur_offset` and a = λ·min(1, (1−t)/BLUR_TAPER), λ ~ U(0, maximum) on a ``fraction``
    of the copies (else 0). Since the target is x1 − (x0 + e), the velocity still lands on x1;
    |e| ≤ λ·|δ|/BLUR_TAPER stays bounded as t → 1.
    """
    k_pick, k_lam = jax.random.split(key)
    n = x1.shape[0]
    lam = jnp.where(jax.random.uniform(k_pick, (n,)) < fraction,
                    jax.random.uniform(k_lam, (n,), jnp.float32, 0.0, maximum), 0.0)
    # t·a/(1−t) = t·λ/max(1−t, BLUR_TAPER): finite at t = 1
    coef = t * lam / jnp.maximum(1.0 - t, BLUR_TAPER)
    return coef[:, None, None] * jax.lax.stop_gradient(blur_offset(x1, mask))


def _protein_loss(params, model_state, feats, key, *, graphdef, multiplicity, cfg, augment, time_sampling,
                  noise_scale=(0.0, 1.0), blur=(0.0, 0.0)):
    """Loss of one protein (unbatched feats) with ``multiplicity`` copies; returns (loss, aux)."""
    model = nnx.merge(graphdef, params, model_state)
    k_aug, k_t, k_noise = jax.random.split(key, 3)
    x = jnp.broadcast_to(feats["coords"][None], (multiplicity,) + feats["coords"].shape)
    pad = jnp.broadcast_to(feats["atom_pad_mask"][None], x.shape[:2])
    resolved = jnp.broadcast_to(feats["atom_resolved_mask"][None], x.shape[:2])
    if augment:
        x1 = flow.center_random_augmentation(k_aug, x, pad, s_trans=1.0)
    else:
        x1 = flow.center(x, pad)
    t = sample_train_time(k_t, (multiplicity,), time_sampling)
    x0 = jax.random.normal(k_noise, x1.shape, jnp.float32)
    if noise_scale[0] > 0.0:
        # own key: runs without the augmentation keep their exact random streams
        kappa = noise_scales(jax.random.fold_in(k_noise, 1), multiplicity, *noise_scale)
        x0 = x0 * kappa[:, None, None]
    if blur[0] > 0.0:
        x0 = x0 + blur_noise(jax.random.fold_in(k_noise, 2), x1, resolved.astype(jnp.float32), t, *blur)
    x_t = flow.interpolate(x0, x1, t)
    net_feats = {k: v[None] for k, v in feats.items() if k not in _TARGET_KEYS}
    v = model(x_t, t, net_feats)["predict_velocity"].astype(jnp.float32)
    loss, aux = losses.flow_matching_loss(v, x_t, x0, x1, t, resolved, pad, cfg)
    return loss, {k: jnp.mean(aux[k]) for k in ("mse", "smooth_lddt_loss", "lddt", "rg_loss", "clash_loss", "bond_loss") if k in aux}


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    optim: OptimSection,
    loss: LossSection,
    multiplicity: int,
    *,
    augment: bool = True,
):
    """Build the (un-jitted) pure step function ``(state, batch) -> (state, metrics)``.

    ``batch`` holds the loader's padded arrays with a leading protein axis P; metrics are scalars:
    ``loss``, ``mse``, ``smooth_lddt_loss``, ``lddt`` (smooth, mean over copies), ``grad_norm``
    (before clipping), ``lr``.
    """
    cfg = loss_config(loss)
    if not (0.0 <= loss.noise_scale_fraction <= 1.0 and 0.0 < loss.noise_scale_min <= 1.0):
        raise ValueError(
            "loss.noise_scale_fraction must be in [0, 1] and loss.noise_scale_min in (0, 1], got "
            f"{loss.noise_scale_fraction} and {loss.noise_scale_min}"
        )
    if not (0.0 <= loss.blur_fraction <= 1.0 and 0.0 <= loss.blur_max <= 1.0):
        raise ValueError(
            "loss.blur_fraction and loss.blur_max must be in [0, 1], got "
            f"{loss.blur_fraction} and {loss.blur_max}"
        )
    if loss.time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"loss.time_sampling must be one of {', '.join(TIME_SAMPLINGS)}, got {loss.time_sampling!r}")
    schedule = learning_rate_schedule(optim)

    def loss_fn(params, model_state, batch, key):
        n_prot = batch["coords"].shape[0]
        keys = jax.random.split(key, n_prot)
        per = jax.vmap(
            functools.partial(
                _protein_loss, graphdef=graphdef, multiplicity=multiplicity, cfg=cfg, augment=augment,
                time_sampling=loss.time_sampling,
                noise_scale=(loss.noise_scale_fraction, loss.noise_scale_min),
                blur=(loss.blur_fraction, loss.blur_max),
            ),
            in_axes=(None, None, 0, 0),
        )(params, model_state, batch, keys)
        losses_p, aux = per
        return jnp.mean(losses_p), jax.tree.map(jnp.mean, aux)

    def train_step(state: TrainState, batch: Mapping[str, Any]) -> tuple[TrainState, dict[str, jax.Array]]:
        key = jax.random.fold_in(state["rng"], state["step"])
        (loss_value, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state["params"], state["model_state"], batch, key
        )
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        decay = jnp.float32(optim.ema_decay)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, state["ema_params"], params)
        lr = schedule(state["step"])
        new_state = dict(state, step=state["step"] + 1, params=params, ema_params=ema, opt_state=opt_state)
        metrics = {"loss": loss_value, "grad_norm": grad_norm, "lr": jnp.asarray(lr, jnp.float32), **aux}
        return new_state, metrics

    return train_step

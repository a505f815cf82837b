"""Training state (params, EMA, optimizer, step, PRNG) as one pytree, and the optimizer recipe.

The state is a plain dict pytree so Orbax saves and restores it without custom handlers:

* ``params`` / ``ema_params``: ``nnx.State`` of the model's ``nnx.Param`` variables (float32);
* ``model_state``: the model's other variables (buffers such as Fourier bands; not trained);
* ``opt_state``: optax state of :func:`make_optimizer`;
* ``step``: int32 scalar, number of optimizer updates done;
* ``rng``: uint32 (2,) base key; step ``s`` uses ``fold_in(rng, s)`` so resuming needs nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from simplefold.training.config import ModelSection, OptimSection

logger = logging.getLogger(__name__)

TrainState = dict[str, Any]


def learning_rate_schedule(optim: OptimSection) -> optax.Schedule:
    """Official ``LinearWarmup``: ``min_lr`` -> ``lr`` linearly over ``warmup_steps``, then constant;
    with ``decay_steps`` > 0, then a cosine decay to ``min_lr`` over ``decay_steps`` steps."""
    if optim.decay_steps < 0:
        raise ValueError(f"optim.decay_steps must be >= 0, got {optim.decay_steps}")
    warmup = max(optim.warmup_steps, 0)
    rise = optax.linear_schedule(optim.min_lr, optim.lr, warmup) if warmup else optax.constant_schedule(optim.lr)
    if optim.decay_steps == 0:
        return rise
    fall = optax.cosine_decay_schedule(optim.lr, optim.decay_steps, alpha=optim.min_lr / optim.lr)
    return optax.join_schedules([rise, fall], [warmup]) if warmup else fall


def make_optimizer(optim: OptimSection) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW with the warm-up schedule (torch ``AdamW`` defaults otherwise)."""
    return optax.chain(
        optax.clip_by_global_norm(optim.grad_clip_norm),
        optax.adamw(
            learning_rate_schedule(optim), b1=optim.b1, b2=optim.b2, eps=optim.eps, weight_decay=optim.weight_decay
        ),
    )


def model_config(model: ModelSection, compute_dtype: str):
    """The ``FoldingConfig`` of a run: preset + overrides + compute dtype."""
    from simplefold.model import FoldingConfig

    ctor = getattr(FoldingConfig, model.preset, None)
    if ctor is None or not callable(ctor) or model.preset.startswith("_") or model.preset in ("from_dict", "from_official"):
        names = sorted(n for n in dir(FoldingConfig) if n == "tiny" or n.startswith("simplefold_"))
        raise ValueError(f"unknown model preset {model.preset!r}; choose one of {', '.join(names)}")
    return ctor(**{**dict(model.overrides), "dtype": compute_dtype})


def resolve_compute_dtype(setting: str) -> str:
    """``auto`` -> float32 on CPU, bfloat16 on GPU/TPU."""
    if setting == "auto":
        return "float32" if jax.default_backend() == "cpu" else "bfloat16"
    if setting not in ("float32", "bfloat16"):
        raise ValueError(f"compute_dtype must be auto, float32 or bfloat16, got {setting!r}")
    return setting


def build_model(cfg, seed: int):
    """A freshly initialised ``FoldingDiT``."""
    from simplefold.model import FoldingDiT

    return FoldingDiT(cfg, rngs=nnx.Rngs(seed))


def split_model(model) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, params, other variables)."""
    return nnx.split(model, nnx.Param, ...)


def init_state(params: nnx.State, model_state: nnx.State, tx: optax.GradientTransformation, seed: int) -> TrainState:
    """Fresh training state around given parameters (EMA starts at the parameters)."""
    return {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "ema_params": jax.tree.map(jnp.copy, params),
        "model_state": model_state,
        "opt_state": tx.init(params),
        "rng": jax.random.PRNGKey(seed),
    }


def state_initializer(
    model_cfg, tx: optax.GradientTransformation, *, init_seed: int = 0, seed: int = 0
) -> tuple[nnx.GraphDef, Callable[[], TrainState]]:
    """(graphdef, init_fn) of a run: the model's graph (built abstractly, no weights allocated)
    and a pure function returning a fresh train state, to ``jax.eval_shape`` (shardings, restore
    targets) or ``jax.jit`` with ``out_shardings``.

    ``init_seed`` initialises the weights, ``seed`` is the state's base PRNG key.
    """

    def init_fn() -> TrainState:
        _, params, rest = split_model(build_model(model_cfg, init_seed))
        return init_state(params, rest, tx, seed)

    graphdef, _, _ = split_model(nnx.eval_shape(lambda: build_model(model_cfg, 0)))
    return graphdef, init_fn


def count_params(params: nnx.State) -> int:
    return int(sum(x.size for x in jax.tree.leaves(params)))

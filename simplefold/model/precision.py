"""Numeric precision of the networks: faithful float32, or mixed bfloat16.

``"float32"`` (default) reproduces the official float32 numerics. ``"bfloat16"`` is the mixed
mode: matrix-product and attention *inputs* in bfloat16 with float32 accumulation and results
(``preferred_element_type``), while LayerNorm / RMSNorm statistics, softmax, RoPE, the residual
stream, the time/length conditioning, the sampler state and every output stay float32. It is a
construction-time setting of the modules (``FoldingConfig.dtype`` / ``PLDDTConfig.dtype``).

For inference the matmul kernels are also *stored* in bfloat16 (:func:`cast_for_inference`),
which halves the weights' memory; training keeps float32 master weights and casts per step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

PRECISIONS = ("float32", "bfloat16")
DEFAULT_PRECISION = "float32"


def check_precision(precision: str | None) -> str:
    """``precision`` validated (None -> the default)."""
    p = DEFAULT_PRECISION if precision is None else str(precision)
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return p


def with_precision(config: Any, precision: str | None) -> Any:
    """A model config (``FoldingConfig`` / ``PLDDTConfig``) with its compute dtype set to ``precision``."""
    return dataclasses.replace(config, dtype=check_precision(precision))


def cast_for_inference(module: Any) -> Any:
    """Store the matmul kernels of ``module`` (an ``nnx.Module``) in its compute dtype, in place.

    Only ``kernel`` parameters of linear layers are cast (they dominate the weights and are cast
    to the compute dtype before every product anyway); norms, biases and embeddings stay float32.
    The block stacks are unstacked (``BlockStack.unstack``: fast bf16 products on XLA:CPU), so the
    result is for inference only (``save_converted`` refuses it). A float32 module is returned
    unchanged.
    """
    import jax.numpy as jnp
    from flax import nnx

    from simplefold.model.layers import BlockStack

    dtype = jnp.dtype(module.config.dtype)
    if dtype == jnp.float32:
        return module
    state = nnx.state(module, nnx.Param)
    for path, var in nnx.to_flat_state(state):
        if path and path[-1] == "kernel" and var.get_value().dtype != dtype:
            var.set_value(var.get_value().astype(dtype))
    nnx.update(module, state)
    del state  # held here, the stacked arrays would outlive their unstacking (2x the weights)
    for sub in [m for _, m in nnx.iter_modules(module) if isinstance(m, BlockStack)]:
        sub.unstack()
    return module


def inference_storage(abstract_state: Any, config: Any) -> Any:
    """An abstract ``nnx.State`` (``ShapeDtypeStruct`` leaves) with the matmul kernels in the
    storage dtype :func:`cast_for_inference` would give them, in place.

    Restoring a checkpoint into it converts each array as it is read, so a bfloat16 model never
    holds a float32 copy of its weights.
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float32:
        return abstract_state
    for path, var in nnx.to_flat_state(abstract_state):
        value = var.get_value()
        if path and path[-1] == "kernel" and isinstance(value, jax.ShapeDtypeStruct):
            var.set_value(jax.ShapeDtypeStruct(value.shape, dtype, sharding=value.sharding))
    return abstract_state

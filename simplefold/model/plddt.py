"""pLDDT head (official ``ConfidenceModule``, ``src/simplefold/model/torch/confidence_module.py``) in Flax NNX.

``head(latent, feats) -> {"plddt_logits": (B, M, bins), "plddt": (B, M) in [0, 1]}`` where
``latent`` is the residue-trunk output of the folding model (the official CLI uses the 1.6B model
at t = 1 on the final structure) and ``feats`` supplies ``residue_index``, ``entity_id``,
``asym_id``, ``sym_id`` (batch B or 1) and optionally ``token_pad_mask`` (masked keys).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simplefold.model import embeddings as emb
from simplefold.model import torch_tables
from simplefold.model.config import PLDDTConfig
from simplefold.model.folding import TOKEN_POSITION_KEYS
from simplefold.reproducible import precision_jit
from simplefold.model.layers import AttnContext, BlockStack, TransformerBlock, dense, layer_norm


def plddt_bin_centers(num_bins: int) -> np.ndarray:
    """Bin centres (b + 0.5) / num_bins in float32, shape (num_bins,).

    The official ``compute_aggregated_metric`` builds them with ``torch.arange(0.5 w, 1, w)``,
    whose vectorised CPU kernel rounds some entries differently from the exact centre (11 of 50
    by one ulp); the shipped torch table is used where there is one.
    """
    shipped = torch_tables.lookup("plddt_bin_centres", num_bins=num_bins, end=1.0)
    if shipped is not None:
        return np.array(shipped)
    return ((np.arange(num_bins, dtype=np.float64) + 0.5) / num_bins).astype(np.float32)


class PLDDTHead(nnx.Module):
    """Four pre-LN transformer blocks (axial RoPE on token positions) and a 50-bin classifier."""

    def __init__(self, config: PLDDTConfig, *, rngs: nnx.Rngs):
        self.config = config
        D, dt = config.hidden_size, jnp.dtype(config.dtype)

        def block(r):
            return TransformerBlock(D, config.num_heads, config.mlp_hidden, dtype=dt, rngs=r)

        self.transformer_blocks = BlockStack(block, config.depth, rngs=rngs)
        self.to_plddt_logits_0 = dense(D, D, dtype=dt, rngs=rngs)
        self.to_plddt_logits_1 = layer_norm(D, affine=True, rngs=rngs)
        self.to_plddt_logits_3 = dense(D, config.num_bins, dtype=dt, rngs=rngs)

    def __call__(self, latent, feats: Mapping[str, Any]) -> dict[str, jnp.ndarray]:
        """Per-residue confidence.

        Args:
          latent: (B, M, D) folding-trunk output.
          feats: token position features (batch B or 1), optional ``token_pad_mask``.
        Returns:
          "plddt_logits" (B, M, bins) float32 and "plddt" (B, M) float32 in [0, 1].
        """
        cfg = self.config
        x = jnp.asarray(latent, jnp.float32)
        pos = jnp.stack([jnp.asarray(feats[k]).astype(jnp.float32) for k in TOKEN_POSITION_KEYS], axis=-1)
        cos, sin = emb.rope_cos_sin(pos, jnp.asarray(emb.rope_freqs(cfg.head_dim, cfg.rope_in_dim, cfg.rope_base)))
        mask = jnp.asarray(feats["token_pad_mask"]) > 0 if "token_pad_mask" in feats else None
        x = self.transformer_blocks(x, None, AttnContext(cos, sin, key_mask=mask))
        h = self.to_plddt_logits_1(self.to_plddt_logits_0(x).astype(jnp.float32))
        logits = self.to_plddt_logits_3(jax.nn.silu(h)).astype(jnp.float32)
        probs = jax.nn.softmax(logits, axis=-1)
        plddt = jnp.sum(probs * jnp.asarray(plddt_bin_centers(cfg.num_bins)), axis=-1)
        return {"plddt_logits": logits, "plddt": plddt}


class PLDDTModel:
    """A ``PLDDTHead`` with a jit-compiled forward: ``head(latent, feats)`` (numpy or jax inputs).

    Attributes:
      module, config: the head and its ``PLDDTConfig``.
      apply: pure jitted ``apply(state, latent, token_feats) -> dict``; ``state``: the module state.
    """

    def __init__(self, module: PLDDTHead):
        self.module = module
        self.config = module.config
        self.graphdef, self.state = nnx.split(module)
        graphdef = self.graphdef

        def _apply(state, latent, feats):
            return nnx.merge(graphdef, state)(latent, feats)

        self.apply = precision_jit(_apply, module.config.dtype)

    def __call__(self, latent, feats: Mapping[str, Any]) -> dict[str, jax.Array]:
        keys = TOKEN_POSITION_KEYS + (("token_pad_mask",) if "token_pad_mask" in feats else ())
        f = {k: jnp.asarray(np.asarray(feats[k]).astype(np.float32)) if not isinstance(feats[k], jax.Array)
             else feats[k].astype(jnp.float32) for k in keys}
        return self.apply(self.state, jnp.asarray(latent, jnp.float32), f)

"""Building blocks of SimpleFold in Flax NNX: norms, SwiGLU, attention, DiT blocks (official
``src/simplefold/model/torch/layers.py`` and ``blocks.py`` of apple/ml-simplefold).

Attention takes an *attention context* ``AttnContext`` that says how keys are visible:

* ``dense``: full attention over L tokens with an optional key mask (trunk, pLDDT head);
* ``local``: SimpleFold's local atom windows, computed blocked: queries in blocks of
  ``n_queries`` attend to a window of ``n_keys`` gathered keys, O(N * n_keys) memory.

Stacks of identical blocks (``BlockStack``) hold parameters with a leading depth axis and run
with ``nnx.scan``, so compile time does not grow with depth.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from simplefold.model.config import ATTENTION_KEY_BLOCK
from simplefold.model.embeddings import apply_rope
from simplefold.reproducible import padding_invariant_sum

NEG_INF = -1e10  # the official local-attention bias value

_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()


def dense(din: int, dout: int, *, bias: bool = True, dtype=jnp.float32, rngs: nnx.Rngs, kernel_init=None) -> nnx.Linear:
    """``nnx.Linear`` (kernel = the torch weight transposed) computing in ``dtype``, float32 out.

    Inputs, kernel and bias are cast to ``dtype``; the product accumulates and returns float32
    (``preferred_element_type``): bf16 inputs with a float32 result run on the CPU's and GPU's
    bf16 dot units, while a bf16 result takes a slow path on XLA:CPU. Params are float32 unless
    cast for storage (``simplefold.model.precision``).
    """
    kw = {} if kernel_init is None else {"kernel_init": kernel_init}
    return nnx.Linear(
        din, dout, use_bias=bias, dtype=dtype, param_dtype=jnp.float32, preferred_element_type=jnp.float32, rngs=rngs, **kw
    )


def layer_norm(dim: int, *, affine: bool, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """torch-equivalent LayerNorm: eps 1e-5 with affine, 1e-6 without; two-pass variance, float32."""
    return nnx.LayerNorm(
        dim, epsilon=1e-5 if affine else 1e-6, use_bias=affine, use_scale=affine,
        use_fast_variance=False, dtype=jnp.float32, param_dtype=jnp.float32, rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """``scale * x / (||x||_2 / sqrt(d) + 1e-8)`` over the last axis (eps added to the RMS)."""

    def __init__(self, dim: int):
        self.dim = dim
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        xf = x.astype(jnp.float32)
        ss = jnp.sum(xf * xf, axis=-1, keepdims=True)
        # double-where: sqrt'(0) is infinite and all-zero rows occur at bucket-padded tokens
        rms = jnp.where(ss > 0, jnp.sqrt(jnp.where(ss > 0, ss, 1.0)), 0.0) * jnp.float32(self.dim ** -0.5)
        return (self.scale[...] * (xf / (rms + jnp.float32(1e-8)))).astype(x.dtype)


class SwiGLU(nnx.Module):
    """``w2(silu(w1 x) * w3 x)``; w1, w3 without bias, w2 with bias."""

    def __init__(self, dim: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        self.w1 = dense(dim, hidden, bias=False, dtype=dtype, rngs=rngs, kernel_init=_xavier)
        self.w3 = dense(dim, hidden, bias=False, dtype=dtype, rngs=rngs, kernel_init=_xavier)
        self.w2 = dense(hidden, dim, bias=True, dtype=dtype, rngs=rngs, kernel_init=_xavier)

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return self.w2(jax.nn.silu(self.w1(x)) * self.w3(x))


@dataclasses.dataclass(frozen=True)
class AttnContext:
    """How attention keys are visible, plus the RoPE tables for this sequence.

    Attributes:
      cos, sin: (B or 1, L, hd/2) RoPE tables.
      key_mask: dense mode: (B or 1, L) bool, True = key visible; None = all visible.
      window_bias: local mode: (B or 1, nb, n_keys) float32 additive bias per query block.
      n_queries, n_keys: local window sizes; 0 selects dense attention.
    """

    cos: jnp.ndarray
    sin: jnp.ndarray
    key_mask: jnp.ndarray | None = None
    window_bias: jnp.ndarray | None = None
    n_queries: int = 0
    n_keys: int = 0


jax.tree_util.register_dataclass(
    AttnContext, data_fields=["cos", "sin", "key_mask", "window_bias"], meta_fields=["n_queries", "n_keys"]
)


def local_window_bias(
    n_atoms: int, n_queries: int, n_keys: int, key_mask: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Additive bias of the blocked local attention.

    Query block b (queries [nq*b, nq*(b+1))) sees window keys at positions
    p = nq*b - (n_keys - nq)/2 + i, i < n_keys. The official model allows exactly the keys with
    0 <= p < n_atoms (its windows [max(0, nq*b - 48), nq*b + 80) clipped to N for 32/128);
    everything else gets -1e10. ``key_mask`` (B, N) additionally hides masked keys.

    Returns:
      (B or 1, nb, n_keys) float32 with nb = ceil(n_atoms / nq).
    """
    nb = -(-n_atoms // n_queries)
    half = (n_keys - n_queries) // 2
    p = n_queries * jnp.arange(nb)[:, None] - half + jnp.arange(n_keys)[None, :]  # (nb, K)
    ok = ((p >= 0) & (p < n_atoms))[None]
    if key_mask is not None:
        km = jnp.pad(key_mask.astype(bool), ((0, 0), (half, nb * n_queries - n_atoms + n_keys - n_queries - half)))
        ok = ok & _windows(km[..., None], nb, n_queries, n_keys)[..., 0]
    return jnp.where(ok, 0.0, NEG_INF).astype(jnp.float32)


def _windows(xp: jnp.ndarray, nb: int, n_queries: int, n_keys: int) -> jnp.ndarray:
    """Gather key windows from a front-padded sequence: (B, L', ...) -> (B, nb, n_keys, ...).

    Window b is ``xp[:, nq*b : nq*b + n_keys]``; built from static slices when n_keys is a
    multiple of nq (cheap copies), else with one gather.
    """
    if n_keys % n_queries == 0:
        parts = [
            xp[:, n_queries * j : n_queries * j + nb * n_queries].reshape(xp.shape[0], nb, n_queries, *xp.shape[2:])
            for j in range(n_keys // n_queries)
        ]
        return jnp.concatenate(parts, axis=2)
    idx = n_queries * jnp.arange(nb)[:, None] + jnp.arange(n_keys)[None, :]
    return xp[:, idx]


def local_attention(q, k, v, bias, n_queries: int, n_keys: int) -> jnp.ndarray:
    """Blocked local attention (no N x N tensor).

    Args:
      q, k, v: (B, N, H, hd).
      bias: (B or 1, nb, n_keys) from ``local_window_bias``.
    Returns:
      (B, N, H, hd) float32.
    """
    B, N, H, hd = q.shape
    nb = bias.shape[1]
    npad = nb * n_queries - N
    half = (n_keys - n_queries) // 2
    tail = npad + n_keys - n_queries - half
    # Head-major layout before windowing: the products then have their batch axes (b, h, n)
    # leading and need no transposed copy of the 4x larger key/value windows (bit-identical,
    # ~25 % faster at 1088 atoms on XLA:CPU).
    def head_major(x, before, after):
        return jnp.pad(x, ((0, 0), (before, after), (0, 0), (0, 0))).transpose(0, 2, 1, 3)  # (B, H, P, hd)

    def windows(x):
        xh = head_major(x, half, tail)
        return _windows(xh.reshape(B * H, *xh.shape[2:]), nb, n_queries, n_keys).reshape(B, H, nb, n_keys, hd)

    qh = head_major(q, 0, npad).reshape(B, H, nb, n_queries, hd)
    logits = jnp.einsum("bhnqd,bhnkd->bhnqk", qh, windows(k), preferred_element_type=jnp.float32)
    logits = logits * jnp.float32(hd ** -0.5) + bias[:, None, :, None, :]
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    out = jnp.einsum("bhnqk,bhnkd->bhnqd", probs, windows(v), preferred_element_type=jnp.float32)
    return out.reshape(B, H, nb * n_queries, hd)[:, :, :N].transpose(0, 2, 1, 3)


def dense_attention(q, k, v, key_mask=None) -> jnp.ndarray:
    """Full softmax attention (scale hd^-1/2); keys where ``key_mask`` is False are not seen.

    The result for the real tokens does not change by a single bit when masked keys are appended
    (bucket padding): the softmax denominator is a ``padding_invariant_sum`` and the value
    product runs over fixed blocks of ``ATTENTION_KEY_BLOCK`` keys whose partial results are
    summed the same way (one product over all keys rounds differently for 56 and 64 keys).
    Same maths as ``jax.nn.dot_product_attention``; the partial results take L/ATTENTION_KEY_BLOCK
    times the output's memory, transiently.

    Args:
      q, k, v: (B, L, H, hd).
      key_mask: (B or 1, L) bool, or None (all keys visible).
    Returns:
      (B, L, H, hd) float32.
    """
    B, L, H, hd = q.shape
    nb = -(-L // ATTENTION_KEY_BLOCK)
    pad = nb * ATTENTION_KEY_BLOCK - L
    visible = jnp.ones((1, L), bool) if key_mask is None else key_mask.astype(bool)
    if pad:
        k = jnp.pad(k, ((0, 0), (0, pad), (0, 0), (0, 0)))
        v = jnp.pad(v, ((0, 0), (0, pad), (0, 0), (0, 0)))
        visible = jnp.pad(visible, ((0, 0), (0, pad)))
    visible = visible[:, None, None, :]  # (B or 1, 1, 1, P)
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * jnp.float32(hd ** -0.5)
    logits = jnp.where(visible, logits, jnp.finfo(jnp.float32).min)
    e = jnp.where(visible, jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True)), 0.0)
    probs = (e / padding_invariant_sum(e, axis=-1)).astype(v.dtype)  # (B, H, L, P)
    partial = jnp.einsum(
        "bhqnk,bnkhd->nbqhd",
        probs.reshape(B, H, L, nb, ATTENTION_KEY_BLOCK),
        v.reshape(B, nb, ATTENTION_KEY_BLOCK, H, hd),
        preferred_element_type=jnp.float32,
    )
    return padding_invariant_sum(partial, axis=0)[0]


class Attention(nnx.Module):
    """Official ``EfficientSelfAttentionLayer``: fused qkv (no bias), RoPE, then per-head q/k RMSNorm."""

    def __init__(self, width: int, num_heads: int, *, dtype, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.head_dim = width // num_heads
        self.compute_dtype = jnp.dtype(dtype)
        self.qkv = dense(width, 3 * width, bias=False, dtype=dtype, rngs=rngs, kernel_init=_xavier)
        self.proj = dense(width, width, bias=True, dtype=dtype, rngs=rngs, kernel_init=_xavier)
        self.q_norm = RMSNorm(self.head_dim)
        self.k_norm = RMSNorm(self.head_dim)

    def __call__(self, x: jnp.ndarray, ctx: AttnContext) -> jnp.ndarray:
        B, L, W = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, self.head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        # RoPE and the q/k norms in float32; the two attention products in the compute dtype
        cd = self.compute_dtype
        q = self.q_norm(apply_rope(q, ctx.cos, ctx.sin)).astype(cd)
        k = self.k_norm(apply_rope(k, ctx.cos, ctx.sin)).astype(cd)
        v = v.astype(cd)
        if ctx.n_queries:
            out = local_attention(q, k, v, ctx.window_bias, ctx.n_queries, ctx.n_keys)
        else:
            out = dense_attention(q, k, v, ctx.key_mask)
        return self.proj(out.reshape(B, L, W))


def modulate(x: jnp.ndarray, shift: jnp.ndarray, scale: jnp.ndarray) -> jnp.ndarray:
    """adaLN modulation ``x * (1 + scale) + shift`` with per-sample (B, W) shift/scale."""
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nnx.Module):
    """adaLN-Zero DiT block (attention + SwiGLU), conditioned on c of the block width."""

    def __init__(self, width: int, num_heads: int, mlp_hidden: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = layer_norm(width, affine=False, rngs=rngs)
        self.attn = Attention(width, num_heads, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(width, affine=False, rngs=rngs)
        self.mlp = SwiGLU(width, mlp_hidden, dtype=dtype, rngs=rngs)
        # adaLN-Zero: the modulation starts at zero so each block starts as the identity
        self.adaLN_modulation = dense(width, 6 * width, dtype=dtype, rngs=rngs, kernel_init=_zeros)

    def __call__(self, x: jnp.ndarray, c: jnp.ndarray, ctx: AttnContext) -> jnp.ndarray:
        mod = self.adaLN_modulation(jax.nn.silu(c)).astype(jnp.float32)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), ctx)
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class TransformerBlock(nnx.Module):
    """Pre-LN transformer block without conditioning (pLDDT head)."""

    def __init__(self, width: int, num_heads: int, mlp_hidden: int, *, dtype, rngs: nnx.Rngs):
        self.norm1 = layer_norm(width, affine=False, rngs=rngs)
        self.attn = Attention(width, num_heads, dtype=dtype, rngs=rngs)
        self.norm2 = layer_norm(width, affine=False, rngs=rngs)
        self.mlp = SwiGLU(width, mlp_hidden, dtype=dtype, rngs=rngs)

    def __call__(self, x: jnp.ndarray, c: jnp.ndarray | None, ctx: AttnContext) -> jnp.ndarray:
        x = x + self.attn(self.norm1(x), ctx)
        return x + self.mlp(self.norm2(x))


class BlockStack(nnx.Module):
    """``depth`` identical blocks with stacked parameters (leading axis = block index), run by ``nnx.scan``."""

    def __init__(self, make_block: Callable[[nnx.Rngs], nnx.Module], depth: int, *, rngs: nnx.Rngs):
        self.depth = depth

        @nnx.split_rngs(splits=depth)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def create(r: nnx.Rngs):
            return make_block(r)

        self.blocks = create(rngs)

    def unstack(self) -> None:
        """Hold one parameter set per block (``self.layers``) instead of the stacked ``self.blocks``, in place.

        For bfloat16 inference only: XLA:CPU runs a bf16 product fast only when its weight is a
        whole buffer; a weight sliced out of the stack inside the block scan takes a slow path
        (100M trunk at L = 128: 123 ms scanned vs 71 ms float32). The blocks then run as an
        unrolled loop. The stacked layout (checkpoints, training) is the one ``__init__`` builds.
        """
        if not hasattr(self, "blocks"):
            return
        graphdef, state = nnx.split(self.blocks)
        del self.blocks  # from here the stacked arrays are held by ``flat`` only
        flat = list(nnx.to_flat_state(state))
        del state
        per_layer: list[list] = [[] for _ in range(self.depth)]
        for j, (path, var) in enumerate(flat):
            stacked = var.get_value()
            parts = [stacked[i] for i in range(self.depth)]
            jax.block_until_ready(parts)
            for i in range(self.depth):
                per_layer[i].append((path, var.replace(parts[i])))
            # the stacked array is dropped as soon as its slices exist: the transient is one
            # parameter's stack, not a second copy of the whole stack (3.2 GB for the 1.6B in bf16)
            flat[j] = None
            del stacked, parts, var
        self.layers = nnx.List([nnx.merge(graphdef, nnx.from_flat_state(items)) for items in per_layer])

    def __call__(self, x: jnp.ndarray, c: jnp.ndarray | None, ctx: AttnContext) -> jnp.ndarray:
        # the residual stream stays float32 whatever the compute dtype
        h = x.astype(jnp.float32)
        if not hasattr(self, "blocks"):  # unstacked (bf16 inference, see unstack)
            for block in self.layers:
                h = block(h, c, ctx)
            return h

        @nnx.scan(in_axes=(nnx.Carry, 0, None, None), out_axes=nnx.Carry)
        def step(h, block, c, ctx):
            return block(h, c, ctx)

        return step(h, self.blocks, c, ctx)


class FinalLayer(nnx.Module):
    """adaLN final layer: ``linear(modulate(norm(x), shift, scale))`` with (shift, scale) from c (width c_dim)."""

    def __init__(self, width: int, out_channels: int, c_dim: int, *, dtype, rngs: nnx.Rngs):
        self.norm_final = layer_norm(width, affine=False, rngs=rngs)
        self.adaLN_modulation = dense(c_dim, 2 * width, dtype=dtype, rngs=rngs, kernel_init=_zeros)
        self.linear = dense(width, out_channels, dtype=dtype, rngs=rngs, kernel_init=_zeros)

    def __call__(self, x: jnp.ndarray, c: jnp.ndarray) -> jnp.ndarray:
        shift, scale = jnp.split(self.adaLN_modulation(jax.nn.silu(c)).astype(jnp.float32), 2, axis=-1)
        return self.linear(modulate(self.norm_final(x), shift, scale)).astype(jnp.float32)


class LinearNorm(nnx.Module):
    """``LayerNorm(Linear(x))`` (affine LayerNorm, eps 1e-5); optional SiLU after."""

    def __init__(self, din: int, dout: int, *, bias: bool = True, silu: bool = False, dtype, rngs: nnx.Rngs):
        self.linear = dense(din, dout, bias=bias, dtype=dtype, rngs=rngs)
        self.norm = layer_norm(dout, affine=True, rngs=rngs)
        self.silu = silu

    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = self.norm(self.linear(x).astype(jnp.float32))
        return jax.nn.silu(y) if self.silu else y

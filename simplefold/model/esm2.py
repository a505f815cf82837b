"""ESM2 protein language model (fair-esm ``esm.model.esm2.ESM2``) in Flax NNX, inference only.

The network reproduces fair-esm's forward pass exactly (float32):

* embedding with ``embed_scale = 1``; token-dropout rescaling: rows of ``<mask>`` tokens are zeroed
  and the whole embedding is multiplied by ``(1 - 0.15*0.8) / (1 - observed mask ratio)``, the
  ratio counted over non-padding tokens; padding rows are then zeroed;
* ``num_layers`` pre-LayerNorm transformer blocks: ``x + out_proj(attn(LN(x)))`` then
  ``x + fc2(gelu_erf(fc1(LN(x))))``; attention scales ``q`` by ``head_dim**-0.5`` *before* the
  rotary embedding (fair-esm ``RotaryEmbedding``: ``rotate_half`` convention, the two halves of
  each head, not interleaved pairs); padding keys are masked with ``-inf``;
* ``emb_layer_norm_after`` on the last block's output.

Representations: index 0 is the rescaled embedding, index ``k`` (1 <= k < num_layers) the raw
output of block ``k``, and index ``num_layers`` the output of the last block *after*
``emb_layer_norm_after`` (fair-esm overwrites that entry). The LM head and the contact head are
not part of this port (SimpleFold uses neither).

Layers are stored stacked (leading axis = layer) and run with ``nnx.scan``, so a 36-layer model
compiles one block, not 36.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simplefold.model import torch_tables
from simplefold.residues import ESM_ALPHABET, ESM_MASK, ESM_PAD

#: fair-esm's training mask ratio (15% of tokens chosen, 80% of those replaced by <mask>).
_MASK_RATIO_TRAIN = 0.15 * 0.8
#: LayerNorm epsilon of every ESM2 LayerNorm (torch default).
_LN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class ESM2Config:
    """Sizes of one ESM2 network.

    Attributes:
      num_layers: transformer blocks (the model returns ``num_layers + 1`` representations).
      embed_dim: model width.
      attention_heads: heads per block; ``embed_dim`` must be a multiple.
      ffn_dim: hidden width of the feed-forward block (``4 * embed_dim`` in every release).
      alphabet_size: token vocabulary (33 for the ESM-1b alphabet).
      token_dropout: apply fair-esm's token-dropout rescaling of the embedding.
    """

    num_layers: int
    embed_dim: int
    attention_heads: int
    ffn_dim: int = 0  # 0 -> 4 * embed_dim
    alphabet_size: int = len(ESM_ALPHABET)
    token_dropout: bool = True

    def __post_init__(self):
        if self.ffn_dim == 0:
            object.__setattr__(self, "ffn_dim", 4 * self.embed_dim)
        if self.embed_dim % self.attention_heads or (self.embed_dim // self.attention_heads) % 2:
            raise ValueError(
                f"embed_dim {self.embed_dim} must split into {self.attention_heads} heads of even size"
            )

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.attention_heads

    @property
    def num_representations(self) -> int:
        return self.num_layers + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Released fair-esm ESM2 models (``esm2_t{layers}_{params}_UR50D``).
ESM2_CONFIGS: dict[str, ESM2Config] = {
    "esm2_t6_8M_UR50D": ESM2Config(num_layers=6, embed_dim=320, attention_heads=20),
    "esm2_t12_35M_UR50D": ESM2Config(num_layers=12, embed_dim=480, attention_heads=20),
    "esm2_t30_150M_UR50D": ESM2Config(num_layers=30, embed_dim=640, attention_heads=20),
    "esm2_t33_650M_UR50D": ESM2Config(num_layers=33, embed_dim=1280, attention_heads=20),
    "esm2_t36_3B_UR50D": ESM2Config(num_layers=36, embed_dim=2560, attention_heads=40),
    "esm2_t48_15B_UR50D": ESM2Config(num_layers=48, embed_dim=5120, attention_heads=40),
}


class RotaryInvFreq(nnx.Variable):
    """The rotary ``inv_freq`` buffer (not trained; loaded from the checkpoint when present)."""


def rotary_inv_freq(head_dim: int) -> np.ndarray:
    """fair-esm's ``1 / 10000**(arange(0, head_dim, 2) / head_dim)`` in float32, shape (head_dim/2,).

    As torch computes it (:mod:`simplefold.model.torch_tables`) where shipped; otherwise
    correctly rounded (within one ulp). Checkpoints carry this buffer, which takes precedence.
    """
    shipped = torch_tables.lookup("esm_rotary_inv_freq", head_dim=head_dim)
    if shipped is not None:
        return np.array(shipped)
    exponent = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
    return (np.float32(1.0) / (np.float32(10000.0) ** exponent)).astype(np.float32)


def _rotate_half(x: jax.Array) -> jax.Array:
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


class ESM2Layer(nnx.Module):
    """One pre-LayerNorm ESM2 transformer block with rotary self-attention."""

    def __init__(self, config: ESM2Config, *, precision: jax.lax.Precision, rngs: nnx.Rngs):
        d, f = config.embed_dim, config.ffn_dim
        self.num_heads = config.attention_heads
        self.head_dim = config.head_dim
        self.precision = precision

        def linear(n_in, n_out):
            # float32 compute whatever the kernel's storage dtype (see build_esm2)
            return nnx.Linear(n_in, n_out, dtype=jnp.float32, precision=precision, rngs=rngs)

        def norm():
            return nnx.LayerNorm(d, epsilon=_LN_EPS, use_fast_variance=False, rngs=rngs)

        self.self_attn_layer_norm = norm()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (linear(d, d) for _ in range(4))
        self.inv_freq = RotaryInvFreq(jnp.asarray(rotary_inv_freq(self.head_dim)))
        self.final_layer_norm = norm()
        self.fc1 = linear(d, f)
        self.fc2 = linear(f, d)

    def _attention(self, x: jax.Array, key_padding: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        heads = lambda y: y.reshape(b, t, self.num_heads, self.head_dim)  # noqa: E731
        # fair-esm scales q before the rotary embedding; the rounding differs if reordered.
        q = heads(self.q_proj(x) * jnp.float32(self.head_dim**-0.5))
        k = heads(self.k_proj(x))
        v = heads(self.v_proj(x))
        pos = jnp.arange(t, dtype=jnp.float32)
        freqs = pos[:, None] * self.inv_freq[...][None, :]  # (T, head_dim/2)
        emb = jnp.concatenate([freqs, freqs], axis=-1)[None, :, None, :]  # (1, T, 1, head_dim)
        cos, sin = jnp.cos(emb), jnp.sin(emb)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=self.precision)
        logits = jnp.where(key_padding[:, None, None, :], -jnp.inf, logits)
        probs = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v, precision=self.precision)
        return self.out_proj(out.reshape(b, t, self.num_heads * self.head_dim))

    def __call__(self, x: jax.Array, key_padding: jax.Array) -> jax.Array:
        """x (B, T, D) float32, key_padding (B, T) bool (True = padding) -> (B, T, D)."""
        x = x + self._attention(self.self_attn_layer_norm(x), key_padding)
        h = nnx.gelu(self.fc1(self.final_layer_norm(x)), approximate=False)
        return x + self.fc2(h)


class ESM2(nnx.Module):
    """fair-esm ESM2 encoder returning every layer's representation.

    Call with ESM token ids (B, T) int (``<cls>`` first, ``<eos>`` after the last residue,
    ``<pad>`` = 1 after that); returns (B, T, num_layers + 1, embed_dim) float32.
    """

    def __init__(
        self,
        config: ESM2Config,
        *,
        precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
        rngs: nnx.Rngs,
    ):
        self.config = config
        self.embed_tokens = nnx.Embed(config.alphabet_size, config.embed_dim, rngs=rngs)

        @nnx.split_rngs(splits=config.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_layers(rngs: nnx.Rngs) -> ESM2Layer:
            return ESM2Layer(config, precision=precision, rngs=rngs)

        self.layers = make_layers(rngs)
        self.emb_layer_norm_after = nnx.LayerNorm(
            config.embed_dim, epsilon=_LN_EPS, use_fast_variance=False, rngs=rngs
        )

    def embed(self, tokens: jax.Array) -> jax.Array:
        """Token embedding after token-dropout rescaling and padding zeroing, (B, T, D)."""
        x = self.embed_tokens(tokens)
        padding = tokens == ESM_PAD
        if self.config.token_dropout:
            is_mask = tokens == ESM_MASK
            x = jnp.where(is_mask[..., None], 0.0, x)
            src_lengths = jnp.sum(~padding, axis=-1)
            observed = jnp.sum(is_mask, axis=-1).astype(x.dtype) / src_lengths.astype(x.dtype)
            x = x * jnp.float32(1 - _MASK_RATIO_TRAIN) / (1 - observed)[:, None, None]
        return x * (1 - padding[..., None].astype(x.dtype))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens, dtype=jnp.int32)
        padding = tokens == ESM_PAD
        x0 = self.embed(tokens)

        @nnx.scan(in_axes=(nnx.Carry, 0, None), out_axes=(nnx.Carry, 0))
        def run_layers(x, layer: ESM2Layer, key_padding):
            x = layer(x, key_padding)
            return x, x

        x_last, hidden = run_layers(x0, self.layers, padding)  # hidden (L, B, T, D)
        last = self.emb_layer_norm_after(x_last)
        reps = jnp.concatenate([x0[None], hidden[:-1], last[None]], axis=0)
        return jnp.moveaxis(reps, 0, 2)


# --------------------------------------------------------------------------------------
# fair-esm state dict -> NNX parameter tree
# --------------------------------------------------------------------------------------

#: Prefixes of the released ``.pt`` layout; the torch-hub layout has none.
_KEY_PREFIXES = ("encoder.sentence_encoder.", "encoder.")
#: Entries of a fair-esm checkpoint that this port does not use.
_IGNORED_KEY = re.compile(r"^(lm_head\.|contact_head\.)")
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)$")

#: fair-esm per-layer name -> (path in the stacked NNX layer tree, transpose?)
_LAYER_PARAMS: dict[str, tuple[tuple[str, ...], bool]] = {
    "self_attn.q_proj.weight": (("q_proj", "kernel"), True),
    "self_attn.q_proj.bias": (("q_proj", "bias"), False),
    "self_attn.k_proj.weight": (("k_proj", "kernel"), True),
    "self_attn.k_proj.bias": (("k_proj", "bias"), False),
    "self_attn.v_proj.weight": (("v_proj", "kernel"), True),
    "self_attn.v_proj.bias": (("v_proj", "bias"), False),
    "self_attn.out_proj.weight": (("out_proj", "kernel"), True),
    "self_attn.out_proj.bias": (("out_proj", "bias"), False),
    "self_attn.rot_emb.inv_freq": (("inv_freq",), False),
    "self_attn_layer_norm.weight": (("self_attn_layer_norm", "scale"), False),
    "self_attn_layer_norm.bias": (("self_attn_layer_norm", "bias"), False),
    "fc1.weight": (("fc1", "kernel"), True),
    "fc1.bias": (("fc1", "bias"), False),
    "fc2.weight": (("fc2", "kernel"), True),
    "fc2.bias": (("fc2", "bias"), False),
    "final_layer_norm.weight": (("final_layer_norm", "scale"), False),
    "final_layer_norm.bias": (("final_layer_norm", "bias"), False),
}
#: fair-esm top-level name -> path in the NNX tree
_TOP_PARAMS: dict[str, tuple[str, ...]] = {
    "embed_tokens.weight": ("embed_tokens", "embedding"),
    "emb_layer_norm_after.weight": ("emb_layer_norm_after", "scale"),
    "emb_layer_norm_after.bias": ("emb_layer_norm_after", "bias"),
}


class ESM2LayoutError(ValueError):
    """A state dict does not have the fair-esm ESM2 layout."""


def strip_key_prefix(key: str) -> str:
    """Map a released-layout key (``encoder.sentence_encoder.layers.0...``) to the hub layout."""
    for prefix in _KEY_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def config_from_shapes(
    shapes: Mapping[str, tuple[int, ...]], *, attention_heads: int | None = None, token_dropout: bool = True
) -> ESM2Config:
    """Infer the ESM2 sizes from the tensor shapes of a (prefixed or hub-layout) state dict.

    The head count is read from the rotary ``inv_freq`` buffer (``head_dim / 2`` entries); when a
    file lacks it, ``attention_heads`` or the released config with the same depth and width is used.
    """
    shapes = {strip_key_prefix(k): tuple(v) for k, v in shapes.items()}
    if "embed_tokens.weight" not in shapes:
        raise ESM2LayoutError("no 'embed_tokens.weight' entry: not an ESM2 state dict")
    vocab, dim = shapes["embed_tokens.weight"]
    layer_ids = {int(m.group(1)) for k in shapes if (m := _LAYER_KEY.match(k))}
    num_layers = len(layer_ids)
    if num_layers == 0 or layer_ids != set(range(num_layers)):
        raise ESM2LayoutError(f"layer indices are not 0..N-1: {sorted(layer_ids)}")
    ffn = shapes.get("layers.0.fc1.weight", (4 * dim, dim))[0]
    inv_freq = shapes.get("layers.0.self_attn.rot_emb.inv_freq")
    if inv_freq is not None:
        heads = dim // (2 * inv_freq[0])
    elif attention_heads is not None:
        heads = attention_heads
    else:
        known = [c for c in ESM2_CONFIGS.values() if (c.num_layers, c.embed_dim) == (num_layers, dim)]
        if not known:
            raise ESM2LayoutError("cannot infer the number of attention heads (no rotary inv_freq buffer)")
        heads = known[0].attention_heads
    return ESM2Config(
        num_layers=num_layers,
        embed_dim=dim,
        attention_heads=heads,
        ffn_dim=ffn,
        alphabet_size=vocab,
        token_dropout=token_dropout,
    )


def param_shapes(config: ESM2Config) -> dict:
    """Nested dict of ``jax.ShapeDtypeStruct`` (float32) for the NNX state of :class:`ESM2`."""
    abstract = nnx.eval_shape(lambda: ESM2(config, rngs=nnx.Rngs(0)))
    return nnx.to_pure_dict(nnx.state(abstract))


def _map_key(name: str, source: str) -> tuple[int | None, tuple[str, ...], bool] | None:
    """fair-esm key -> (layer index or None, path in the (per-layer) NNX tree, transpose?);
    None for entries this port ignores (LM head, contact head)."""
    key = strip_key_prefix(name)
    if _IGNORED_KEY.match(key):
        return None
    if key in _TOP_PARAMS:
        return None, _TOP_PARAMS[key], False
    if (m := _LAYER_KEY.match(key)) and m.group(2) in _LAYER_PARAMS:
        sub, transpose = _LAYER_PARAMS[m.group(2)]
        return int(m.group(1)), sub, transpose
    raise ESM2LayoutError(f"{source}: unexpected entry {name!r} for an ESM2 network")


def _leaf_paths(tree: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for k, v in tree.items():
        out += _leaf_paths(v, (*prefix, k)) if isinstance(v, dict) else [(*prefix, k)]
    return out


def _get(tree: dict, path: tuple[str, ...]):
    for part in path:
        tree = tree[part]
    return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def iter_param_groups(items, config: ESM2Config, *, dtype=None, source: str = "state dict"):
    """Stream fair-esm tensors into per-layer parameter groups.

    Args:
      items: iterable of ``(name, array)`` pairs (released or hub key layout), consumed one at a time.
      config: the sizes (see :func:`config_from_shapes`).
      dtype: storage dtype of the yielded arrays; default: each tensor's own dtype (the released
        ESM2 files are float16, which converts to float32 exactly at load time). The rotary
        ``inv_freq`` buffer is always float32.
      source: name used in error messages (the file path).

    Yields:
      ``("layer_007", subtree)`` as soon as every tensor of that block has been read (subtree
      keyed like one element of ``ESM2.layers``, without the layer axis), then ``("top", subtree)``
      with the embedding and the final LayerNorm. Memory: the groups not yet complete.

    Raises:
      ESM2LayoutError: a tensor is missing, unexpected, or has the wrong shape.
    """
    shapes = param_shapes(config)
    layer_paths = _leaf_paths(shapes["layers"])
    optional = {("inv_freq",)}  # recomputed from the formula when a file lacks it
    top: dict = {}
    pending: dict[int, dict] = {}
    done: set[int] = set()
    for name, value in items:
        mapped = _map_key(name, source)
        if mapped is None:
            continue
        layer, path, transpose = mapped
        value = np.asarray(value)
        if layer is None:
            want = _get(shapes, path).shape
        else:
            if not 0 <= layer < config.num_layers or layer in done:
                raise ESM2LayoutError(f"{source}: unexpected or repeated entry {name!r}")
            want = _get(shapes["layers"], path).shape[1:]
        got = value.T.shape if transpose else value.shape
        if got != tuple(want):
            raise ESM2LayoutError(f"{source}: {name!r} has shape {value.shape}, expected {tuple(want)}")
        target_dtype = np.float32 if path == ("inv_freq",) else (dtype or value.dtype)
        arr = np.ascontiguousarray(value.T if transpose else value, dtype=target_dtype)
        del value
        if layer is None:
            _set(top, path, arr)
            continue
        group = pending.setdefault(layer, {})
        _set(group, path, arr)
        if all(_has(group, p) for p in layer_paths if p not in optional):
            if not _has(group, ("inv_freq",)):
                group["inv_freq"] = rotary_inv_freq(config.head_dim)
            done.add(layer)
            yield f"layer_{layer:03d}", pending.pop(layer)
    missing = [".".join(p) for p in _leaf_paths(shapes) if p[0] != "layers" and not _has(top, p)]
    for layer in range(config.num_layers):
        if layer not in done:
            group = pending.get(layer, {})
            missing += [f"layers.{layer}." + ".".join(p) for p in layer_paths if p not in optional and not _has(group, p)]
    if missing:
        raise ESM2LayoutError(
            f"{source}: missing ESM2 entries: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")
        )
    yield "top", top


def _has(tree: dict, path: tuple[str, ...]) -> bool:
    try:
        _get(tree, path)
    except KeyError:
        return False
    return True


def stack_param_groups(groups, config: ESM2Config) -> dict:
    """Assemble ``(group name, subtree)`` pairs (from :func:`iter_param_groups`) into the stacked
    parameter tree of :class:`ESM2` (nested dict of numpy, layers on a leading axis)."""
    tree: dict = {}
    for group, sub in groups:
        if group == "top":
            for path in _leaf_paths(sub):
                _set(tree, path, _get(sub, path))
            continue
        layer = int(group.removeprefix("layer_"))
        for path in _leaf_paths(sub):
            leaf = _get(sub, path)
            full = ("layers", *path)
            if not _has(tree, full):
                # aligned: build_esm2 hands the stacked buffer to JAX without a second copy
                from simplefold.utils.memory import aligned_empty

                _set(tree, full, aligned_empty((config.num_layers, *leaf.shape), leaf.dtype))
            _get(tree, full)[layer] = leaf
    return tree


def fill_params_from_state_dict(items, config: ESM2Config, *, dtype=None, source: str = "state dict") -> dict:
    """Stream fair-esm tensors into the stacked NNX parameter tree (nested dict of numpy) that
    :func:`build_esm2` loads; arguments as :func:`iter_param_groups`."""
    return stack_param_groups(iter_param_groups(items, config, dtype=dtype, source=source), config)


#: storage dtypes kept as they are for linear kernels (every other parameter is stored float32)
_LOW_PRECISION_STORAGE = (np.dtype(np.float16), np.dtype(jnp.bfloat16))


def build_esm2(config: ESM2Config, params: dict, *, precision=jax.lax.Precision.HIGHEST) -> ESM2:
    """Instantiate :class:`ESM2` and load ``params`` (a nested dict of arrays) without running
    the random initialisers.

    Linear kernels stored in float16 or bfloat16 (the released ESM2 files are float16) stay in
    that dtype and are converted to float32 inside each product: the conversion is exact, so the
    outputs are bit-identical to float32 weights while the weights take half the memory (ESM2-3B:
    5.7 GB instead of 11.4 GB). Everything else is float32.
    """
    model = nnx.eval_shape(lambda: ESM2(config, precision=precision, rngs=nnx.Rngs(0)))
    state = nnx.state(model)

    def store(path, a):
        a = np.asarray(a) if not isinstance(a, jax.Array) else a
        keep = getattr(path[-1], "key", None) == "kernel" and np.dtype(a.dtype) in _LOW_PRECISION_STORAGE
        want = a.dtype if keep else np.dtype(np.float32)
        if isinstance(a, np.ndarray) and a.dtype == want:
            # device_put adopts a 64-byte aligned host buffer on CPU (no copy: the stacked weights
            # exist once while loading); jnp.asarray would always copy
            return jax.device_put(np.ascontiguousarray(a))
        return jnp.asarray(a, dtype=want)

    nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(store, params))
    nnx.update(model, state)
    return model

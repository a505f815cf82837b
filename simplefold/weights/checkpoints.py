"""Official SimpleFold checkpoints -> Flax NNX models, and Orbax save/load of converted models.

The official ``.ckpt`` files are plain ``torch.save(state_dict)`` zips (``src/simplefold/inference.py``). They are read
with the torch-free :mod:`simplefold.weights.torch_reader` and converted through ONE declarative name map
(``folding_key_map`` / ``plddt_key_map``): official key -> (Flax parameter path, block index for
stacked blocks, transform). Conversion checks that every checkpoint key is consumed exactly once
and that shapes match; anything else raises :class:`CheckpointError` naming the key.

Public API::

    load_official_model(ckpt_path, arch) -> FoldingModel     # arch: "simplefold_100M" ... or summary dict
    load_official_plddt(ckpt_path, arch) -> PLDDTModel       # arch: "plddt_1.6B" or summary dict
    convert_official(ckpt_path, arch, out_dir) -> out_dir   # official .ckpt -> Orbax + config.json
    save_converted(model, directory) / load_converted(directory)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simplefold.model import embeddings as emb
from simplefold.model.config import (
    OFFICIAL_PLDDT_SIZES,
    OFFICIAL_SIZES,
    FoldingConfig,
    PLDDTConfig,
    config_from_dict,
)
from simplefold.model.folding import FoldingDiT, FoldingModel
from simplefold.model.plddt import PLDDTHead, PLDDTModel
from simplefold.model.precision import cast_for_inference, inference_storage, with_precision
from simplefold.weights.torch_reader import CheckpointError, UnsafeCheckpointError, open_state_dict

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "KeyRule",
    "folding_key_map",
    "plddt_key_map",
    "folding_config",
    "plddt_config",
    "load_official_model",
    "load_official_plddt",
    "convert_official",
    "save_converted",
    "load_converted",
]

#: Version of the converted layout written by :func:`convert_official` (recorded by the weights
#: cache; bump it to make every cached conversion stale).
CONVERSION_VERSION = 1

# transforms
COPY = "copy"  # same layout
LINEAR = "linear"  # torch (out, in) weight -> flax (in, out) kernel
FREQ_BANDS = "freq_bands"  # buffer: checked against the recomputed table, then copied


@dataclasses.dataclass(frozen=True)
class KeyRule:
    """Where one official state-dict entry goes: Flax path (dot-separated), block index, transform."""

    flax_path: str
    index: int | None
    transform: str


def _linear(torch_prefix: str, flax_prefix: str, bias: bool = True) -> dict[str, tuple[str, str]]:
    out = {f"{torch_prefix}.weight": (f"{flax_prefix}.kernel", LINEAR)}
    if bias:
        out[f"{torch_prefix}.bias"] = (f"{flax_prefix}.bias", COPY)
    return out


def _layer_norm(torch_prefix: str, flax_prefix: str) -> dict[str, tuple[str, str]]:
    return {f"{torch_prefix}.weight": (f"{flax_prefix}.scale", COPY), f"{torch_prefix}.bias": (f"{flax_prefix}.bias", COPY)}


def _linear_norm(torch_prefix: str, flax_prefix: str, bias: bool = True) -> dict[str, tuple[str, str]]:
    return _linear(f"{torch_prefix}.0", f"{flax_prefix}.linear", bias) | _layer_norm(f"{torch_prefix}.1", f"{flax_prefix}.norm")


# per-block keys (relative to "<stack>.blocks.<i>.") -> (relative flax path, transform)
_ATTN_MLP = {
    **_linear("attn.qkv", "attn.qkv", bias=False),
    **_linear("attn.proj", "attn.proj"),
    "attn.q_norm.scale": ("attn.q_norm.scale", COPY),
    "attn.k_norm.scale": ("attn.k_norm.scale", COPY),
    **_linear("mlp.w1", "mlp.w1", bias=False),
    **_linear("mlp.w2", "mlp.w2"),
    **_linear("mlp.w3", "mlp.w3", bias=False),
}
_DIT_BLOCK = {**_ATTN_MLP, **_linear("adaLN_modulation.1", "adaLN_modulation")}

# non-block keys of FoldingDiT
_FOLDING_TOP = {
    "esm_s_combine": ("esm_s_combine", COPY),
    "pos_embedder.freq_bands": ("freq_bands", FREQ_BANDS),
    **_linear("time_embedder.mlp.0", "time_embedder_0"),
    **_linear("time_embedder.mlp.2", "time_embedder_2"),
    **_linear_norm("length_embedder", "length_embedder", bias=False),
    **_linear_norm("atom_feat_proj", "atom_feat_proj"),
    **_linear("atom_pos_proj", "atom_pos_proj", bias=False),
    **_linear("atom_in_proj", "atom_in_proj", bias=False),
    "esm_s_proj.null_token": ("esm_null_token", COPY),
    **_linear_norm("esm_s_proj.proj", "esm_s_proj"),
    **_linear("esm_cat_proj", "esm_cat_proj"),
    **_linear_norm("context2atom_proj", "context2atom_proj"),
    **_linear_norm("atom2latent_proj", "atom2latent_proj"),
    **_linear_norm("atom_enc_cond_proj", "atom_enc_cond_proj"),
    **_linear_norm("atom_dec_cond_proj", "atom_dec_cond_proj"),
    **_linear("latent2atom_proj.0", "latent2atom_proj_0"),
    **_layer_norm("latent2atom_proj.2", "latent2atom_proj_2"),
    **_linear("latent2atom_proj.3", "latent2atom_proj_3"),
    **_linear("final_layer.linear", "final_layer.linear"),
    **_linear("final_layer.adaLN_modulation.1", "final_layer.adaLN_modulation"),
}
_PLDDT_TOP = {
    **_linear("to_plddt_logits.0", "to_plddt_logits_0"),
    **_layer_norm("to_plddt_logits.1", "to_plddt_logits_1"),
    **_linear("to_plddt_logits.3", "to_plddt_logits_3"),
}


def _stack(stack: str, depth: int, block: dict[str, tuple[str, str]]) -> dict[str, KeyRule]:
    return {
        f"{stack}.blocks.{i}.{k}": KeyRule(f"{stack}.blocks.{p}", i, tr)
        for i in range(depth)
        for k, (p, tr) in block.items()
    }


def folding_key_map(config: FoldingConfig) -> dict[str, KeyRule]:
    """Official ``FoldingDiT`` state-dict key -> ``KeyRule`` for an ESM-conditioned config."""
    if config.condition != "esm":
        raise ValueError("official checkpoints are ESM-conditioned; config.condition must be 'esm'")
    out = {k: KeyRule(p, None, tr) for k, (p, tr) in _FOLDING_TOP.items()}
    out |= _stack("trunk", config.depth, _DIT_BLOCK)
    out |= _stack("atom_encoder_transformer", config.atom_encoder_depth, _DIT_BLOCK)
    out |= _stack("atom_decoder_transformer", config.atom_decoder_depth, _DIT_BLOCK)
    return out


def plddt_key_map(config: PLDDTConfig) -> dict[str, KeyRule]:
    """Official ``ConfidenceModule`` state-dict key -> ``KeyRule``."""
    out = {k: KeyRule(p, None, tr) for k, (p, tr) in _PLDDT_TOP.items()}
    return out | _stack("transformer_blocks", config.depth, _ATTN_MLP)


# ----------------------------------------------------------------------------- configs
def _config(arch, cls, sizes: Mapping[str, Any], what: str):
    if isinstance(arch, cls):
        return arch
    if isinstance(arch, str):
        if arch not in sizes:
            raise ValueError(f"unknown {what} {arch!r}; expected one of {sorted(sizes)}")
        return sizes[arch]()
    return cls.from_official(dict(arch))


def folding_config(arch: str | Mapping[str, Any] | FoldingConfig) -> FoldingConfig:
    """Size name ("simplefold_100M" ... "simplefold_3B"), official ``summary`` dict, or a config."""
    return _config(arch, FoldingConfig, OFFICIAL_SIZES, "SimpleFold size")


def plddt_config(arch: str | Mapping[str, Any] | PLDDTConfig) -> PLDDTConfig:
    """"plddt_1.6B", an official pLDDT ``summary`` dict, or a config."""
    return _config(arch, PLDDTConfig, OFFICIAL_PLDDT_SIZES, "pLDDT head")


# ----------------------------------------------------------------------------- conversion
def _flat_abstract(module_fn) -> tuple[nnx.GraphDef, nnx.State, dict[str, jax.ShapeDtypeStruct]]:
    abstract = nnx.eval_shape(module_fn)
    graphdef, state = nnx.split(abstract)
    flat = {".".join(map(str, path)): v.get_value() for path, v in nnx.to_flat_state(state)}
    return graphdef, state, flat


def _check_freq_bands(path: str, key: str, value: np.ndarray, expected: np.ndarray) -> None:
    # the buffer is stored exactly as the official code built it; allow a few ulps of libm difference
    if value.shape != expected.shape or not np.allclose(value, expected, rtol=1e-5, atol=0):
        raise CheckpointError(f"{path}: {key} does not match 2**linspace(min, max, n) of the config")


def _convert(path, key_map: dict[str, KeyRule], flat_shapes: dict[str, jax.ShapeDtypeStruct], expected_bands=None):
    """Read the checkpoint at ``path`` and return flat Flax path -> jax array."""
    path = os.fspath(path)
    covered = {r.flax_path for r in key_map.values()}
    if covered != set(flat_shapes):  # the name map itself must cover the module one-to-one
        raise AssertionError(f"name map / module mismatch: {sorted(covered ^ set(flat_shapes))}")
    out: dict[str, Any] = {}
    pending: dict[str, tuple[np.ndarray, set[int]]] = {}
    with open_state_dict(path) as sd:
        shapes = sd.shapes()
        missing = [k for k in key_map if k not in shapes]
        extra = [k for k in shapes if k not in key_map]
        if missing:
            raise CheckpointError(f"{path}: missing key {missing[0]!r} ({len(missing)} missing in total)")
        if extra:
            raise CheckpointError(f"{path}: unexpected key {extra[0]!r} ({len(extra)} unexpected in total)")
        for key in shapes:  # each key read and consumed exactly once
            rule = key_map[key]
            target = flat_shapes[rule.flax_path]
            want = tuple(target.shape[1:] if rule.index is not None else target.shape)
            got = shapes[key]
            if rule.transform == LINEAR:
                got = tuple(reversed(got))
            if tuple(got) != want:
                raise CheckpointError(f"{path}: {key} has shape {shapes[key]}, expected {want} after '{rule.transform}'")
            arr = sd[key]
            if arr.dtype != np.float32:
                arr = arr.astype(np.float32)
            if rule.transform == LINEAR:
                arr = np.ascontiguousarray(arr.T)
            elif rule.transform == FREQ_BANDS:
                _check_freq_bands(path, key, arr, expected_bands)
            if rule.index is None:
                out[rule.flax_path] = jnp.asarray(arr)
                continue
            buf, seen = pending.setdefault(rule.flax_path, (np.empty(target.shape, np.float32), set()))
            buf[rule.index] = arr
            seen.add(rule.index)
            if len(seen) == target.shape[0]:
                out[rule.flax_path] = jnp.asarray(buf)
                del pending[rule.flax_path]
    if pending:  # cannot happen when the key sets match; kept as a guard
        raise CheckpointError(f"{path}: incomplete stacked parameters {sorted(pending)}")
    return out


def _merge(graphdef, state, flat_values: dict[str, Any]):
    for p, var in nnx.to_flat_state(state):
        var.set_value(flat_values[".".join(map(str, p))])
    return nnx.merge(graphdef, state)


def _precise(cfg, precision):
    return cfg if precision is None else with_precision(cfg, precision)


def load_official_module(ckpt_path, arch, precision: str | None = None) -> FoldingDiT:
    """Official folding ``.ckpt`` -> ``FoldingDiT`` (eager module; see :func:`load_official_model`)."""
    cfg = _precise(folding_config(arch), precision)
    graphdef, state, flat = _flat_abstract(lambda: FoldingDiT(cfg, rngs=nnx.Rngs(0)))
    bands = emb.fourier_freq_bands(cfg.fourier_num_freqs, cfg.fourier_min_freq_log2, cfg.fourier_max_freq_log2)
    values = _convert(ckpt_path, folding_key_map(cfg), flat, bands)
    return cast_for_inference(_merge(graphdef, state, values))


def load_official_plddt_module(ckpt_path, arch, precision: str | None = None) -> PLDDTHead:
    """Official pLDDT ``.ckpt`` -> ``PLDDTHead``."""
    cfg = _precise(plddt_config(arch), precision)
    graphdef, state, flat = _flat_abstract(lambda: PLDDTHead(cfg, rngs=nnx.Rngs(0)))
    return cast_for_inference(_merge(graphdef, state, _convert(ckpt_path, plddt_key_map(cfg), flat)))


def load_official_model(ckpt_path, arch, precision: str | None = None) -> FoldingModel:
    """Load an official SimpleFold folding checkpoint without torch.

    Args:
      ckpt_path: ``simplefold_<size>.ckpt`` (plain torch state dict).
      arch: "simplefold_100M" | "simplefold_360M" | "simplefold_700M" | "simplefold_1.1B" |
        "simplefold_1.6B" | "simplefold_3B", or a dict with the keys of an official-model json
        ``summary``, or a ``FoldingConfig``.
      precision: "float32" (faithful; the default for names and summaries) or "bfloat16" (mixed:
        bf16 matmul inputs and stored kernels, float32 accumulation, norms, softmax and outputs;
        see ``simplefold.model.precision``). None keeps a given ``FoldingConfig``'s dtype.
    Returns:
      ``FoldingModel``: ``model(noised_pos, t, feats) -> {"predict_velocity", "latent"}`` (jitted).
    Raises:
      CheckpointError: unreadable file, missing/unexpected key or shape mismatch (names the key).
    """
    return FoldingModel(load_official_module(ckpt_path, arch, precision))


def load_official_plddt(ckpt_path, arch="plddt_1.6B", precision: str | None = None) -> PLDDTModel:
    """Load the official pLDDT head (``plddt_module_1.6B.ckpt``); ``head(latent, feats)`` (jitted)."""
    return PLDDTModel(load_official_plddt_module(ckpt_path, arch, precision))


# ----------------------------------------------------------------------------- Orbax
_CONFIG_FILE = "config.json"
#: Orbax restore concurrency (GB of arrays read at once; Orbax's own default is 96).
RESTORE_CONCURRENT_GB = 1
#: Arrays of at least this many stored bytes are restored one per Orbax call, largest first.
RESTORE_ALONE_BYTES = int(0.25e9)
_STATE_DIR = "state"


def restore_groups(stored_bytes: Sequence[int]) -> list[list[int]]:
    """Order in which :func:`load_converted` restores arrays: indices, one Orbax call per group.

    Every array of at least :data:`RESTORE_ALONE_BYTES` gets its own call, largest first; the
    rest share one last call (at most :data:`RESTORE_CONCURRENT_GB` in flight). A restored array
    briefly needs its read buffer besides itself; restoring the largest while little else is
    resident keeps the load peak near the weights' own size (1.6B trunk in bf16: 7.1 GB in one
    call, for 3.2 GB of weights).
    """
    order = sorted(range(len(stored_bytes)), key=lambda i: (-stored_bytes[i], i))
    alone = [[i] for i in order if stored_bytes[i] >= RESTORE_ALONE_BYTES]
    rest = [i for i in order if stored_bytes[i] < RESTORE_ALONE_BYTES]
    return alone + ([rest] if rest else [])


def _restore_state(path: pathlib.Path, abstract_state):
    """Restore an ``nnx.State`` of ``ShapeDtypeStruct`` leaves (with shardings) group by group
    (:func:`restore_groups`); leaves outside the current group are Orbax placeholders."""
    import orbax.checkpoint as ocp

    flat = list(nnx.to_flat_state(abstract_state))
    values = [var.get_value() for _, var in flat]
    # converted checkpoints hold float32 (a bf16 target is converted while read)
    stored = [4 * int(np.prod(v.shape)) if isinstance(v, jax.ShapeDtypeStruct) else 0 for v in values]
    restored: dict[int, Any] = {}
    largest = max(stored, default=0)
    concurrent_gb = max(RESTORE_CONCURRENT_GB, largest * 1.001 / 1e9)  # an array is never split
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(restore_concurrent_gb=concurrent_gb)) as ckptr:
        for group in restore_groups(stored):
            members = set(group)
            for i, (_, var) in enumerate(flat):
                var.set_value(values[i] if i in members else ocp.PLACEHOLDER)
            args = jax.tree.map(
                lambda v: v if v is ocp.PLACEHOLDER else ocp.ArrayRestoreArgs(
                    sharding=v.sharding, global_shape=v.shape, dtype=v.dtype),
                abstract_state, is_leaf=lambda v: v is ocp.PLACEHOLDER)
            out = ckptr.restore(path, args=ocp.args.PyTreeRestore(item=abstract_state, restore_args=args))
            out_flat = list(nnx.to_flat_state(out))
            for i in group:
                restored[i] = out_flat[i][1].get_value()
            del out, out_flat
    # new Variables: the caller's abstract state keeps its ShapeDtypeStructs (holding the arrays
    # there would keep every restored array alive as long as the abstract state)
    out = [(path, var.replace(restored.pop(i) if i in restored else values[i])) for i, (path, var) in enumerate(flat)]
    for i, (_, var) in enumerate(flat):
        var.set_value(values[i])
    return nnx.from_flat_state(out)


def save_converted(model, directory) -> pathlib.Path:
    """Save a folding model / pLDDT head (module or jitted wrapper) as Orbax state + ``config.json``."""
    import orbax.checkpoint as ocp

    module = getattr(model, "module", model)
    if not isinstance(module, (FoldingDiT, PLDDTHead)):
        raise TypeError(f"expected a FoldingDiT or PLDDTHead (or their wrappers), got {type(model).__name__}")
    if jnp.dtype(module.config.dtype) != jnp.float32:
        # a bf16 inference module has bf16 kernels and unstacked blocks (precision.cast_for_inference)
        raise TypeError("save the float32 model: a bfloat16 model is prepared for inference only")
    directory = pathlib.Path(directory).expanduser().resolve()
    directory.mkdir(parents=True, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(directory / _STATE_DIR, nnx.state(module), force=True)
    ckptr.wait_until_finished()
    (directory / _CONFIG_FILE).write_text(json.dumps(module.config.to_dict(), indent=2) + "\n")
    return directory


def load_converted(directory, precision: str | None = None) -> FoldingModel | PLDDTModel:
    """Load a model written by ``save_converted`` / ``convert_official`` (no torch file needed).

    ``precision`` ("float32" / "bfloat16", see :func:`load_official_model`) overrides the compute
    dtype saved in ``config.json``; None keeps it.
    """
    directory = pathlib.Path(directory).expanduser().resolve()
    cfg_path = directory / _CONFIG_FILE
    try:
        cfg = config_from_dict(json.loads(cfg_path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read model config ({e})") from e
    cfg = _precise(cfg, precision)
    cls, wrapper = (FoldingDiT, FoldingModel) if isinstance(cfg, FoldingConfig) else (PLDDTHead, PLDDTModel)
    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0))))
    # kernels are converted to their storage dtype as they are read (no float32 copy at bf16)
    abstract_state = inference_storage(abstract_state, cfg)
    # restored straight into device arrays (NumPy leaves would be copied to the device at every
    # jitted call while the module kept the NumPy copy), the largest first (restore_groups)
    on_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    for _, var in nnx.to_flat_state(abstract_state):
        value = var.get_value()
        if isinstance(value, jax.ShapeDtypeStruct):
            var.set_value(jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=on_device))
    try:
        state = _restore_state(directory / _STATE_DIR, abstract_state)
    except Exception as e:  # orbax raises assorted types for a missing/corrupt directory
        raise CheckpointError(f"{directory / _STATE_DIR}: cannot restore model state ({e})") from e
    module = nnx.merge(graphdef, state)
    del state  # the module is the arrays' only holder: bf16's unstacking frees each stack as it goes
    return wrapper(cast_for_inference(module))


def convert_official(ckpt_path, arch, out_dir) -> pathlib.Path:
    """Convert an official folding or pLDDT checkpoint to Orbax + ``config.json`` in ``out_dir``.

    ``arch`` names either kind ("simplefold_*" or "plddt_1.6B") or is a summary dict / config.
    """
    is_plddt = isinstance(arch, PLDDTConfig) or (isinstance(arch, str) and arch in OFFICIAL_PLDDT_SIZES) or (
        isinstance(arch, Mapping) and "num_plddt_bins" in arch
    )
    module = load_official_plddt_module(ckpt_path, arch) if is_plddt else load_official_module(ckpt_path, arch)
    return save_converted(module, out_dir)

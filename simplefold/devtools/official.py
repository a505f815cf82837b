"""Build and run the official PyTorch SimpleFold next to the port (fixtures, benchmarks, parity).

The official code is never copied here: it is imported at run time from an extracted
apple/ml-simplefold tree, whose ``src/simplefold`` folder (the official package root, holding
``model/``, ``utils/``, ``boltz_data_pipeline/`` and ``configs/``) must be importable — on
``PYTHONPATH`` or passed as ``src`` to :func:`import_official`. torch, hydra-core and omegaconf
are imported inside the functions only, so importing this module needs none of them.

Functions:

* :func:`import_official` — import the official modules (placeholders for the few optional
  imports the network and sampler never use);
* :func:`official_model` — an official ``FoldingDiT`` from ``foldingdit_100M.yaml``, sizes
  optionally overridden, plus its ``summary`` dict (what ``FoldingConfig.from_official`` reads);
* :func:`load_random_weights` — the deterministic weights of :mod:`simplefold.model.random_init`;
* :func:`official_state_dict_shapes` — the official state-dict layout of a ``FoldingConfig``,
  derived from the port's checkpoint name map (jax only, no torch): lets a random-weight
  checkpoint be written without torch (:mod:`simplefold.devtools.torch_writer`).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import types
from typing import Any

#: official YAML (relative to ``<package root>/configs/model/architecture``) the models start from
BASE_YAML = "foldingdit_100M.yaml"

# official modules replaced by placeholders by the last import_official call (reported by benchmarks)
_STUBBED: list[str] = []


def package_root(src: str | os.PathLike) -> pathlib.Path:
    """The official package root for ``src``: an extracted tree (holding ``src/simplefold``) or that folder itself."""
    p = pathlib.Path(src).expanduser().resolve()
    for cand in (p, p / "src" / "simplefold", p / "simplefold"):
        if (cand / "model" / "torch" / "architecture.py").is_file():
            return cand
    raise FileNotFoundError(f"{p}: not an apple/ml-simplefold tree (no src/simplefold/model/torch/architecture.py)")


def official_commit(src: str | os.PathLike) -> str | None:
    """The commit recorded in a ``COMMIT`` file at the tree root or package root, if any."""
    root = package_root(src)
    for cand in (root / "COMMIT", root.parent / "COMMIT", root.parent.parent / "COMMIT"):
        if cand.is_file():
            return cand.read_text().strip() or None
    return None


def stubbed_modules() -> list[str]:
    """Official-side modules that :func:`import_official` replaced by placeholders."""
    return list(_STUBBED)


def _placeholder(name: str, attrs: tuple[str, ...], why: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def refuse(*_a, **_k):
        raise RuntimeError(f"{name} is a placeholder ({why})")

    for a in attrs:
        setattr(mod, a, refuse)
    return mod


def import_official(src: str | os.PathLike | None = None, *, threads: int | None = None, stub_writers: bool = False):
    """Import the official torch modules and return ``torch``.

    Args:
      src: the official tree or package root, put first on ``sys.path``; None: it must already be
        importable (``PYTHONPATH``).
      threads: ``torch.set_num_threads`` (None leaves torch's default).
      stub_writers: when the structure writers' dependencies (ihm, modelcif, rdkit) are missing,
        replace ``boltz_data_pipeline.write.mmcif`` / ``.pdb`` by placeholders that refuse to run.
        The official sampler module imports them (through ``utils.boltz_utils``) but never calls
        them; its arithmetic is unchanged.

    ``model/torch/blocks.py`` imports timm's ``Mlp``, which is built only with
    ``use_swiglu=False`` (no official config): without timm a placeholder that refuses to be
    built stands in.

    Raises:
      ImportError: the official modules cannot be imported (message says why).
    """
    if src is not None:
        root = str(package_root(src))
        if root not in sys.path:
            sys.path.insert(0, root)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    _STUBBED.clear()
    try:
        import timm.models.vision_transformer  # noqa: F401
    except Exception:  # noqa: BLE001
        class _NoMlp(torch.nn.Module):
            def __init__(self, *a, **k):
                raise RuntimeError("timm Mlp is needed for use_swiglu=False")

        mods = {n: types.ModuleType(n) for n in ("timm", "timm.models", "timm.models.vision_transformer")}
        mods["timm.models.vision_transformer"].Mlp = _NoMlp
        sys.modules.update(mods)
        _STUBBED.append("timm.models.vision_transformer.Mlp")
    if stub_writers:
        try:
            import ihm  # noqa: F401
            import modelcif  # noqa: F401
            import rdkit.Chem  # noqa: F401
        except ImportError as e:
            why = f"structure writer not importable here: {e}"
            for name, attrs in (("boltz_data_pipeline.write.mmcif", ("to_mmcif",)),
                                ("boltz_data_pipeline.write.pdb", ("to_pdb",))):
                sys.modules[name] = _placeholder(name, attrs, why)
                _STUBBED.append(name)
    try:
        from model.torch import blocks, confidence_module, layers, pos_embed  # noqa: F401
    except ImportError as e:
        raise ImportError(f"cannot import the official modules ({e}); put <official tree>/src/simplefold on PYTHONPATH") from e
    return torch


@contextlib.contextmanager
def patched(obj: Any, name: str, value: Any):
    """Temporarily set ``obj.name = value``."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def official_package_root() -> pathlib.Path:
    """Package root of the imported official modules (after :func:`import_official`)."""
    import model.torch  # noqa: F401

    return pathlib.Path(sys.modules["model.torch"].__file__).resolve().parents[2]


def official_model(sizes: dict | None = None, *, esm_model: str | None = None):
    """An official ``FoldingDiT`` (eval mode) built by hydra from ``foldingdit_100M.yaml``.

    Args:
      sizes: None keeps the YAML (SimpleFold-100M); else a dict with ``hidden_size``,
        ``num_heads``, ``depth`` (trunk), ``atom_hidden``, ``atom_heads``, ``atom_depth``
        (encoder and decoder each) that replace the YAML's sizes everywhere they occur.
      esm_model: replaces the YAML's ``esm_model`` (e.g. ``"esm2_8M"``: 7 layers of 320 channels,
        for small fixtures); None keeps ``esm2_3B``.
    Returns:
      ``(model, summary, hydra_config_dict)``; ``summary`` has the keys of an official-model json
      (``simplefold.model.config.FoldingConfig.from_official`` reads it).
    """
    import hydra
    import omegaconf
    from utils.esm_utils import esm_model_dict

    cfg = omegaconf.OmegaConf.load(official_package_root() / "configs" / "model" / "architecture" / BASE_YAML)
    if esm_model is not None:
        cfg.esm_model = esm_model
    if sizes is not None:
        d, h, da, ha = sizes["hidden_size"], sizes["num_heads"], sizes["atom_hidden"], sizes["atom_heads"]
        cfg.hidden_size, cfg.num_heads, cfg.atom_num_heads = d, h, ha
        cfg.time_embedder.hidden_size = d
        cfg.aminoacid_pos_embedder.embed_dim = d
        cfg.atom_hidden_size_enc = cfg.atom_hidden_size_dec = da
        for stack, width, heads, depth in (
            (cfg.trunk, d, h, sizes["depth"]),
            (cfg.atom_encoder_transformer, da, ha, sizes["atom_depth"]),
            (cfg.atom_decoder_transformer, da, ha, sizes["atom_depth"]),
        ):
            stack.depth = depth
            stack.block.hidden_size = width
            stack.block.self_attention_layer.hidden_size = width
            stack.block.self_attention_layer.num_heads = heads
            stack.block.self_attention_layer.pos_embedder.embed_dim = width
            stack.block.self_attention_layer.pos_embedder.num_heads = heads
    model = hydra.utils.instantiate(cfg).eval()
    d, h, da, ha = cfg.hidden_size, cfg.num_heads, cfg.atom_hidden_size_enc, cfg.atom_num_heads
    esm = esm_model_dict[cfg.esm_model]
    summary = {
        "hidden_size": d, "num_heads": h, "head_dim": d // h, "trunk_depth": cfg.trunk.depth,
        "atom_hidden_size_enc": da, "atom_hidden_size_dec": cfg.atom_hidden_size_dec, "atom_num_heads": ha,
        "atom_head_dim": da // ha,
        "atom_encoder_depth": cfg.atom_encoder_transformer.depth, "atom_decoder_depth": cfg.atom_decoder_transformer.depth,
        "atom_n_queries": cfg.atom_n_queries_enc, "atom_n_keys": cfg.atom_n_keys_enc, "esm_model": cfg.esm_model,
        "esm_s_dim": esm["esm_s_dim"], "esm_num_layers": esm["esm_num_layers"],
        "mlp_ratio": cfg.trunk.block.mlp_ratio, "use_swiglu": cfg.trunk.block.use_swiglu,
        "rope_base": cfg.trunk.block.self_attention_layer.pos_embedder.base,
        "rope_in_dim": cfg.trunk.block.self_attention_layer.pos_embedder.in_dim,
        "fourier_num_freqs": cfg.pos_embedder.num_freqs, "fourier_max_freq_log2": cfg.pos_embedder.max_freq_log2,
        "use_length_condition": cfg.use_length_condition, "esm_dropout_prob": cfg.esm_dropout_prob,
        "output_channels": cfg.output_channels,
    }
    return model, summary, omegaconf.OmegaConf.to_container(cfg)


def load_random_weights(model, seed: int) -> tuple[str, dict[str, list[int]]]:
    """Load :func:`simplefold.model.random_init.random_state_dict` weights into an official model.

    Returns ``(sha256 digest of the weights, {key: shape})``.
    """
    import torch

    from simplefold.model.random_init import random_state_dict, state_dict_digest

    sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    weights = random_state_dict(shapes, seed=seed, freq_bands=sd["pos_embedder.freq_bands"].numpy())
    model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
    return state_dict_digest(weights), {k: list(s) for k, s in shapes.items()}


def official_state_dict_shapes(config) -> dict[str, tuple[int, ...]]:
    """Official ``FoldingDiT.state_dict()`` key -> shape for a ``FoldingConfig`` (no torch).

    Read off the port's checkpoint name map (``simplefold.weights.checkpoints.folding_key_map``) and the
    abstract shapes of the port's module: a linear layer's (in, out) kernel is the official
    (out, in) weight, a stacked block parameter's leading block axis is dropped. Keys come in the
    name map's order. ``freq_bands`` is the constant buffer ``pos_embedder.freq_bands``.
    """
    from flax import nnx

    from simplefold.weights.checkpoints import LINEAR, folding_key_map
    from simplefold.model.folding import FoldingDiT

    abstract = nnx.eval_shape(lambda: FoldingDiT(config, rngs=nnx.Rngs(0)))
    flat = {".".join(map(str, p)): v.get_value().shape for p, v in nnx.to_flat_state(nnx.state(abstract))}
    out = {}
    for key, rule in folding_key_map(config).items():
        shape = tuple(flat[rule.flax_path])
        if rule.index is not None:
            shape = shape[1:]
        if rule.transform == LINEAR:
            shape = tuple(reversed(shape))
        out[key] = shape
    return out

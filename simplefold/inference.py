"""Sequences to structures: the ``simplefold.fold`` API and the orchestration behind ``simplefold predict``.

Quick start::

    import simplefold
    results = simplefold.fold(["MKTAYIAKQR...", ("gb1", "MTYKLILNG...")], model="demo", num_samples=5)
    best = results[0].best.structure            # Structure, pLDDT x 100 in b_factors
    simplefold.write_structure("gb1.cif", results[1].structures)   # 5-model ensemble

How a run is organised (every step is deterministic):

1. **Targets.** :func:`as_targets` accepts strings, ``(name, sequence)`` pairs, FASTA records or
   :class:`Target`; names are made file-system safe and unique. A sequence with ``:`` (several
   chains), an empty sequence, or one too long for the memory budget is a :class:`TargetError`
   (the CLI records it and goes on with the other targets). Unknown letters become UNK.
2. **Length buckets.** Each target is featurised once (batch 1) and padded to a residue bucket
   (:func:`simplefold.features.bucket_size`) and an atom bucket
   (:func:`simplefold.features.atom_bucket_size`); bucket padding is masked inside the network, so
   one compiled sampler serves every protein of a bucket. Targets are processed bucket by bucket
   (shortest first), results are returned in input order.
3. **Samples and chunks.** The ``S`` samples of a target share its batch-1 features (the sampler
   vmaps the network over samples; features are never copied S times). Samples run in chunks of
   ``chunk`` samples, the largest that fits the memory budget (:func:`estimate_memory`) and
   ``batch_size``; the last chunk is padded with repeats so all chunks reuse one compilation.
4. **Randomness.** Sample ``k`` of target ``name`` draws all its noise from
   ``sampler.sample_keys(seed, name, ...)[k]``, i.e. from (seed, name, k) only, and the draws of an
   atom slot do not depend on the padding after it. A sample is therefore the same whether it runs
   alone, in a chunk of 4, or in another bucket (up to float rounding of differently shaped
   matmuls; see ``tests/test_inference.py``).
5. **Devices.** With more than one local device, a 1-D mesh ``("samples",)`` over all of them
   shards the sample axis (``NamedSharding``); features and weights are replicated. Chunks are
   rounded up to a multiple of the device count.
6. **pLDDT.** The folding model's trunk latent at t = 1 on the final *un-centred* sampler output
   (model units) goes through the pLDDT head (spec §2). With the released weights this is the
   official pair: the SimpleFold-1.6B network (whatever model sampled the structure) and
   ``plddt_module_1.6B``. A converted/bundled model directory may carry its own head in
   ``<dir>/plddt/`` (the demo model does), which then reads that model's own latent. pLDDT (0–100)
   is stored per residue and copied to every atom's B-factor.

:func:`predict_to_directory` is the file-writing loop of ``simplefold predict`` (output layout,
resume, manifests: see :mod:`simplefold.outputs`); :func:`plan` gives per-target memory and time
estimates without loading weights (``--dry-run``).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.resources
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simplefold import features as F
from simplefold import outputs

logger = logging.getLogger(__name__)

#: Model used when none is given (the official CLI's default).
DEFAULT_MODEL = "simplefold_100M"
DEMO_MODEL = "demo"
DEFAULT_SEED = 42  # the official CLI's default
DEFAULT_NUM_SAMPLES = 1
#: Registry names of the official pLDDT pair and of the ESM2 model the official configs use.
PLDDT_LATENT_WEIGHTS = "simplefold_1.6B"
PLDDT_HEAD_WEIGHTS = "plddt_module_1.6B"
ESM_WEIGHTS = "esm2_3B"
#: Sub-directory of a converted model directory that holds its own pLDDT head.
PLDDT_SUBDIR = "plddt"
#: Fraction of a device's reported memory used as the default budget (XLA needs headroom).
_DEVICE_MEMORY_FRACTION = 0.85
#: Default budget on CPU: this fraction of physical RAM.
_HOST_MEMORY_FRACTION = 0.5
#: Safety factor on the activation estimate (XLA temporaries, fusion buffers, fragmentation).
_ACTIVATION_SAFETY = 2.0


class ModelNotFoundError(ValueError):
    """``model=`` names nothing that can be loaded (message says what was tried)."""


class TargetError(ValueError):
    """A target cannot be folded (empty, several chains, too long for the budget); names the target."""


# ======================================================================================
# Targets
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class Target:
    """One protein to fold.

    Attributes:
      name: file-system safe, unique within a run (used for output names and PRNG keys).
      sequence: one-letter sequence (upper case, whitespace removed).
      description: FASTA header text after the name, if any.
      source: where it came from (``file:line``) for error messages, if known.
    """

    name: str
    sequence: str
    description: str = ""
    source: str | None = None
    error: str | None = None  # an input problem found while reading (bad FASTA record)


def _target_fields(item: Any, index: int) -> tuple[str, str, str, str | None, str | None]:
    if isinstance(item, Target):
        return item.name, item.sequence, item.description, item.source, item.error
    if isinstance(item, str):
        return f"seq_{index}", item, "", None, None
    if isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(x, str) for x in item):
        return item[0], item[1], "", None, None
    if hasattr(item, "sequence") and hasattr(item, "name"):  # a simplefold.fasta.FastaRecord
        path, line = getattr(item, "path", None), getattr(item, "line", None)
        source = f"{path}:{line}" if path is not None and line is not None else (str(path) if path else None)
        chains = tuple(getattr(item, "chains", ()) or ())
        # FastaRecord.sequence drops ':'; keep the chain break so check_target can refuse it
        sequence = ":".join(chains) if len(chains) > 1 else str(item.sequence)
        return str(item.name), sequence, str(getattr(item, "description", "") or ""), source, None
    raise TypeError(
        f"sequence #{index}: expected a string, a (name, sequence) pair, a FastaRecord or a Target, "
        f"got {type(item).__name__}"
    )


def as_targets(sequences: Any) -> list[Target]:
    """Normalise ``fold``'s ``sequences`` argument to a list of :class:`Target` with unique safe names.

    A single string or pair is one target. Sequences are upper-cased with whitespace removed; they
    are *not* validated here (see :func:`check_target`) so that one bad record cannot stop a run.
    """
    if isinstance(sequences, (str, Target)) or (
        isinstance(sequences, tuple) and len(sequences) == 2 and all(isinstance(x, str) for x in sequences)
    ):
        sequences = [sequences]
    items = [_target_fields(item, i) for i, item in enumerate(sequences)]
    names = outputs.unique_names(name for name, *_ in items)
    return [
        Target(name=n, sequence="".join(seq.split()).upper(), description=desc, source=src, error=err)
        for n, (_, seq, desc, src, err) in zip(names, items)
    ]


def read_targets(inp: str | os.PathLike) -> list[Target]:
    """Targets of a FASTA file, a folder of FASTA files (recursive) or a bare sequence, leniently.

    Parsing is :mod:`simplefold.fasta`'s; but where the strict reader refuses a whole file because
    of one bad record (no residues, bad letters, a duplicate name, ...), every other record of the
    file is kept and the bad one becomes a :class:`Target` with ``error`` set (the strict
    reader's message, with the line in the file), so a run can fold the good ones and report
    the bad one. File-level problems (unreadable, binary, no records) still raise ``FastaError``.
    """
    from simplefold import fasta

    text = os.fspath(inp)
    path = Path(text)
    if not path.exists():
        return as_targets(fasta.read_sequences(inp))
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in fasta.FASTA_SUFFIXES
    )
    if not files:
        return as_targets(fasta.read_sequences(inp))  # raises the reader's "no FASTA files" error
    items: list[Any] = []
    seen: dict[str, str] = {}
    for f in files:
        for item in _lenient_file(f):
            name = item.name
            if name.lower() in seen and item.error is None:
                item = Target(name, "", item.description, item.source,
                              f"{item.source}: record '{name}': duplicate record name (also at {seen[name.lower()]})")
            seen.setdefault(name.lower(), item.source or str(f))
            items.append(item)
    return as_targets(items)


def _lenient_file(path: Path) -> list[Target]:
    from simplefold import fasta

    try:
        return [Target(*_target_fields(r, 0)[:4]) for r in fasta.parse_fasta(path)]
    except fasta.FastaError as exc:
        if exc.record == "(none)":
            raise  # file-level problem: nothing sensible to keep
    lines = path.read_bytes().decode("utf-8-sig", errors="replace").splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip().startswith(">")]
    out = []
    for j, start in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(lines)
        block = "\n".join(lines[start:end]) + "\n"
        try:
            (rec,) = fasta.parse_fasta(block, source_name=str(path))
            fields = _target_fields(rec, 0)
            out.append(Target(fields[0], fields[1], fields[2], f"{path}:{start + 1}"))
        except fasta.FastaError as exc:
            name = exc.record if exc.record != "(none)" else f"{path.stem}_line{start + 1}"
            reason = f"{path}:{start + exc.line}: record '{name}': {exc.reason}"
            out.append(Target(name, "", lines[start].strip()[1:], f"{path}:{start + 1}", reason))
    return out


def check_target(target: Target) -> None:
    """Raise :class:`TargetError` for a target the model cannot fold (empty, or several chains)."""
    where = f" ({target.source})" if target.source else ""
    if target.error:
        raise TargetError(target.error)
    if not target.sequence:
        raise TargetError(f"{target.name}{where}: empty sequence")
    if ":" in target.sequence:
        raise TargetError(
            f"{target.name}{where}: several chains (':') are not supported; SimpleFold folds single chains "
            "(it was trained on monomers)"
        )


# ======================================================================================
# Options
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class FoldOptions:
    """Settings of a fold run (sampler settings default to :class:`simplefold.sampler.SamplerConfig`).

    Attributes:
      num_samples: structures per target (S).
      seed: base seed; sample k of target t uses a key derived from (seed, t.name, k).
      num_steps, tau: sampler steps and noise scale; None = the SamplerConfig default.
      plddt: compute pLDDT (needs a pLDDT head, see the module docstring).
      batch_size: at most this many samples per network call (over all devices); None = as many
        as the memory budget allows.
      max_memory_gb: memory budget per device in GB (1e9 bytes); None = 85 % of the accelerator's
        memory, or half of the host RAM on CPU.
      token_buckets: residue-count buckets (see :func:`simplefold.features.bucket_size`).
    """

    num_samples: int = DEFAULT_NUM_SAMPLES
    seed: int = DEFAULT_SEED
    num_steps: int | None = None
    tau: float | None = None
    plddt: bool = True
    batch_size: int | None = None
    max_memory_gb: float | None = None
    token_buckets: tuple[int, ...] = F.TOKEN_BUCKETS

    def __post_init__(self):
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {self.num_samples}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_memory_gb is not None and self.max_memory_gb <= 0:
            raise ValueError(f"max_memory_gb must be > 0, got {self.max_memory_gb}")
        self.sampler_config()  # validates num_steps / tau

    def sampler_config(self):
        """The :class:`simplefold.sampler.SamplerConfig` of this run."""
        from simplefold.sampler import SamplerConfig

        over = {k: v for k, v in (("num_steps", self.num_steps), ("tau", self.tau)) if v is not None}
        return SamplerConfig(**over)


# ======================================================================================
# Models
# ======================================================================================


@dataclasses.dataclass
class FoldingModel:
    """A loaded model, ready for :func:`fold`.

    Attributes:
      network: the folding network, ``network(noised_pos (B,N,3), t (B,), feats) ->
        {"predict_velocity": (B,N,3), "latent": (B,M,D)}`` (an ``nnx.Module`` or any callable).
      config: its ``FoldingConfig`` (None for an arbitrary callable: then ``condition`` is taken
        as ``"embedding"`` and memory estimates are unavailable).
      name: shown in summaries (e.g. ``simplefold_100M``, ``demo``).
      source: where the weights came from (path), if known.
      plddt_head: ``head(latent, feats) -> {"plddt": (B,M) in [0,1], ...}`` or None.
      plddt_latent: network whose ``"latent"`` the head reads (None: ``network`` itself).
      plddt_name: description of the pLDDT pair for summaries.
      esm: an ``ESM2Encoder`` when ``config.condition == "esm"`` (loaded on first use if None).
      esm_cache: ESM feature cache passed to :func:`simplefold.esm.esm_features` (True = default).
      offline: never download weights (ESM loaded on demand).
    """

    network: Any
    config: Any = None
    name: str = "custom"
    source: str | None = None
    plddt_head: Any = None
    plddt_latent: Any = None
    plddt_name: str | None = None
    esm: Any = None
    esm_cache: Any = True
    offline: bool = False

    @property
    def condition(self) -> str:
        return getattr(self.config, "condition", "embedding")

    def describe(self) -> dict[str, Any]:
        """JSON-able description for summary.json."""
        cfg = self.config
        return {
            "name": self.name,
            "source": self.source,
            "config": cfg.to_dict() if hasattr(cfg, "to_dict") else None,
            "plddt": self.plddt_name if self.plddt_head is not None else None,
            "esm": getattr(self.esm, "identity", None) if self.condition == "esm" else None,
        }

    def ensure_esm(self):
        """The ESM encoder of an ESM-conditioned model, loading the released ESM2-3B on first use."""
        if self.esm is None:
            from simplefold import esm, weights

            path = weights.resolve(ESM_WEIGHTS, offline=self.offline)
            self.esm = esm.load_converted_esm2(path)
        return self.esm


def demo_model_path() -> Path:
    """Package-data directory of the bundled demo model; :class:`ModelNotFoundError` if not bundled."""
    path = Path(str(importlib.resources.files("simplefold") / "assets" / "demo"))
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(
            f"the demo model is not bundled in this build of simplefold (expected package data at {path}); "
            "use a released model name (e.g. simplefold_100M) or a path to converted weights"
        )
    return path


def _read_config_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{path}: not a converted model directory (config.json unreadable: {exc})") from None


def _folding_config_from_json(data: Mapping[str, Any], where: Path):
    from simplefold.model.config import FoldingConfig, config_from_dict

    # accept the bare config dict or one nested under "config"/"folding"
    for key in ("config", "folding", "model"):
        if isinstance(data.get(key), Mapping):
            data = data[key]
            break
    try:
        cfg = config_from_dict(dict(data)) if "kind" in data else FoldingConfig.from_dict(dict(data))
    except (TypeError, ValueError) as exc:
        raise ModelNotFoundError(f"{where}/config.json: not a folding model config ({exc})") from None
    if not isinstance(cfg, FoldingConfig):
        raise ModelNotFoundError(f"{where}: holds a {type(cfg).__name__}, not a folding model")
    return cfg


def _released_names() -> set[str]:
    from simplefold.model.config import OFFICIAL_SIZES

    return set(OFFICIAL_SIZES)


def model_config(spec: Any):
    """The ``FoldingConfig`` of a model spec without loading weights (for ``--dry-run``).

    ``spec`` as in :func:`load_model`; a released name gives its official config, a directory its
    ``config.json``.
    """
    if isinstance(spec, FoldingModel):
        return spec.config
    if not isinstance(spec, (str, os.PathLike)):
        return getattr(spec, "config", None)
    if str(spec) == DEMO_MODEL:
        path = demo_model_path()
        return _folding_config_from_json(_read_config_json(path), path)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folding_config_from_json(_read_config_json(path), path)
    from simplefold.model.config import OFFICIAL_SIZES

    if str(spec) in OFFICIAL_SIZES:
        return OFFICIAL_SIZES[str(spec)]()
    raise ModelNotFoundError(_unknown_model_message(spec))


def _unknown_model_message(spec: Any) -> str:
    return (
        f"unknown model {str(spec)!r}: not 'demo', not a directory of converted weights, and not a released "
        f"name ({', '.join(sorted(_released_names()))})"
    )


def _load_dir(path: Path):
    """(network, config) from a converted weights directory (``checkpoints.load_converted``)."""
    from simplefold import checkpoints

    loaded = checkpoints.load_converted(path)
    return loaded, getattr(loaded, "config", None)


def _official_plddt(network: Any, config: Any, *, offline: bool) -> tuple[Any, Any, str]:
    """(latent network, head, description) of the official pLDDT pair, reusing ``network`` if it is the 1.6B."""
    from simplefold import weights

    head, _ = _load_dir(weights.resolve(PLDDT_HEAD_WEIGHTS, offline=offline))
    if getattr(config, "name", None) == PLDDT_LATENT_WEIGHTS:
        latent = network
    else:
        latent, _ = _load_dir(weights.resolve(PLDDT_LATENT_WEIGHTS, offline=offline))
    return latent, head, f"{PLDDT_LATENT_WEIGHTS} latent + {PLDDT_HEAD_WEIGHTS}"


def load_model(spec: Any = DEFAULT_MODEL, *, plddt: bool = True, offline: bool = False, esm: Any = None) -> FoldingModel:
    """Load a model for :func:`fold`.

    Args:
      spec: ``"demo"`` (bundled package data), a released name (``simplefold_100M`` ... ``3B``,
        downloaded and converted on demand by :mod:`simplefold.weights`), a directory of converted
        weights (``config.json`` + Orbax, optionally with ``plddt/`` holding its own head), an
        already-built network (``nnx.Module`` or callable, e.g. a small random model in tests), or
        a :class:`FoldingModel` (returned as is).
      plddt: also load the pLDDT pair: the directory's own ``plddt/`` head if present, else the
        official 1.6B latent network + head for official architectures. If none is available a
        warning is logged and pLDDT is skipped.
      offline: never download (``weights.resolve(..., offline=True)``).
      esm: an ``ESM2Encoder`` for ESM-conditioned models (default: released ESM2-3B, loaded lazily).

    Raises:
      ModelNotFoundError: ``spec`` names nothing loadable.
    """
    if isinstance(spec, FoldingModel):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        return FoldingModel(network=spec, config=getattr(spec, "config", None), name=type(spec).__name__, esm=esm,
                            offline=offline)
    name = str(spec)
    if name == DEMO_MODEL:
        path = demo_model_path()
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            if name not in _released_names():
                raise ModelNotFoundError(_unknown_model_message(spec))
            from simplefold import weights

            path = weights.resolve(name, offline=offline)
    network, config = _load_dir(path)
    model = FoldingModel(network=network, config=config, name=name if not Path(name).is_dir() else
                         getattr(config, "name", path.name), source=str(path), esm=esm, offline=offline)
    if plddt:
        own = path / PLDDT_SUBDIR
        if (own / "config.json").is_file():
            model.plddt_head, _ = _load_dir(own)
            model.plddt_latent = None
            model.plddt_name = f"own head ({own})"
        elif getattr(config, "name", None) in _released_names():
            model.plddt_latent, model.plddt_head, model.plddt_name = _official_plddt(network, config, offline=offline)
        else:
            logger.warning("%s has no pLDDT head (no %s/ sub-directory); pLDDT will not be computed", path, PLDDT_SUBDIR)
    return model


# ======================================================================================
# Memory and time estimates
# ======================================================================================


def _block_params(width: int, mlp_hidden: int, adaln: bool = True) -> int:
    attn = 3 * width * width + width * width + width + 2 * 64  # qkv, proj(+bias), q/k norm scales
    mlp = 3 * width * mlp_hidden + width
    return attn + mlp + ((6 * width * width + 6 * width) if adaln else 0)


def count_parameters(cfg) -> int:
    """Parameter count of a ``FoldingConfig`` (analytic; within 0.1 % of the official counts)."""
    d, da = cfg.hidden_size, cfg.atom_hidden_size
    trunk = cfg.depth * _block_params(d, cfg.trunk_mlp_hidden)
    atom = (cfg.atom_encoder_depth + cfg.atom_decoder_depth) * _block_params(da, cfg.atom_mlp_hidden)
    other = (
        cfg.time_embed_dim * d + d + d * d + d  # time embedder
        + d + 2 * d  # length embedder
        + cfg.atom_feat_dim * d + d + 2 * d  # atom_feat_proj
        + cfg.fourier_dim * d + 2 * d * d  # atom_pos_proj, atom_in_proj
        + cfg.esm_dim * (d + 1) + d + 2 * d + cfg.esm_num_layers  # esm projection (+null token)
        + 2 * d * d + d  # esm_cat_proj
        + 4 * (d * da + da + 2 * max(d, da))  # context2atom, atom2latent, enc/dec cond
        + d * d + d + 2 * d + d * da + da  # latent2atom
        + 2 * da * d + 2 * da + 3 * da + 3  # final layer
    )
    return int(trunk + atom + other)


def _plddt_head_params(width: int = 1536, depth: int = 4, bins: int = 50) -> int:
    from simplefold.model.config import swiglu_hidden

    return depth * _block_params(width, swiglu_hidden(width, 4.0), adaln=False) + width * width + 3 * width + width * bins + bins


def _feature_bytes(num_tokens: int, num_atoms: int, esm_layers: int, esm_dim: int) -> int:
    sizes = {"N": num_atoms, "M": num_tokens, "E": esm_layers, "C": esm_dim}
    total = 0
    for name, spec in F.FEATURE_SCHEMA.items():
        if name in F.OPTIONAL_FEATURES and name != "esm_s":
            continue
        if name == "esm_s" and not esm_layers:
            continue
        n = 1
        for s in spec.shape:
            n *= sizes.get(s, s) if isinstance(s, str) else s
        # int64 features become int32 on the device (x64 off); count the host copy too
        total += n * np.dtype(spec.dtype).itemsize * 2
    return total


def _activation_bytes_per_sample(cfg, num_tokens: int, num_atoms: int) -> int:
    """Peak live activations of one network call for one sample (float32, no gradients)."""
    d, da = cfg.hidden_size, cfg.atom_hidden_size
    m, n = num_tokens, num_atoms
    trunk = m * (10 * d + 3 * cfg.trunk_mlp_hidden) + cfg.num_heads * m * m * 2  # + attention logits
    atom = n * (10 * da + 3 * cfg.atom_mlp_hidden + cfg.atom_num_heads * cfg.n_keys * 2)
    atom_in = n * (cfg.atom_feat_dim + 2 * cfg.fourier_dim + 4 * d)
    return int(4 * (trunk + atom + atom_in + n * m))  # + float copy of atom_to_token


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes needed to fold one target with ``batch`` samples per call (per device)."""

    params: int
    features: int
    per_sample: int
    batch: int

    @property
    def total(self) -> int:
        return self.params + self.features + self.batch * self.per_sample

    def max_batch(self, budget: int) -> int:
        """Largest batch fitting ``budget`` bytes (0 if not even one sample fits)."""
        free = budget - self.params - self.features
        return max(0, int(free // self.per_sample)) if self.per_sample else 1 << 30


def estimate_memory(
    cfg, num_tokens: int, num_atoms: int, batch: int = 1, *, plddt: bool = False, plddt_latent_cfg=None
) -> MemoryEstimate:
    """Estimated device memory of sampling (and pLDDT) for one target.

    Args:
      cfg: the ``FoldingConfig``.
      num_tokens, num_atoms: padded sizes (bucket M and N).
      batch: samples per call.
      plddt: include the pLDDT head (and the 1.6B latent network when ``plddt_latent_cfg`` is given
        and different from ``cfg``).

    The estimate counts float32 weights, the batch-1 features, the ESM weights of an
    ESM-conditioned model (ESM2-3B: 2.8 B parameters), and per sample twice the live activations
    of one network call; it errs on the high side.
    """
    params = count_parameters(cfg)
    esm_layers, esm_dim = (cfg.esm_num_layers, cfg.esm_dim) if cfg.condition == "esm" else (0, 0)
    if cfg.condition == "esm":
        params += 2_838_000_000 if cfg.esm_dim == 2560 else 0
    per_sample = _ACTIVATION_SAFETY * _activation_bytes_per_sample(cfg, num_tokens, num_atoms)
    if plddt:
        params += _plddt_head_params()
        if plddt_latent_cfg is not None and plddt_latent_cfg != cfg:
            params += count_parameters(plddt_latent_cfg)
            per_sample = max(per_sample, _ACTIVATION_SAFETY * _activation_bytes_per_sample(plddt_latent_cfg, num_tokens, num_atoms))
    per_sample += 4 * num_atoms * 3 * 6  # sampler state, noise, velocity
    return MemoryEstimate(
        params=4 * params,
        features=_feature_bytes(num_tokens, num_atoms, esm_layers, esm_dim),
        per_sample=int(per_sample),
        batch=batch,
    )


def forward_flops(cfg, num_tokens: int, num_atoms: int) -> float:
    """Approximate FLOPs of one network call for one sample (matmuls and attention only)."""
    d, da, m, n = cfg.hidden_size, cfg.atom_hidden_size, num_tokens, num_atoms
    trunk = cfg.depth * (2 * m * (4 * d * d + 3 * d * cfg.trunk_mlp_hidden) + 4 * m * m * d)
    atom = (cfg.atom_encoder_depth + cfg.atom_decoder_depth) * (
        2 * n * (4 * da * da + 3 * da * cfg.atom_mlp_hidden) + 4 * n * cfg.n_keys * da
    )
    proj = 2 * n * d * (cfg.atom_feat_dim + cfg.fourier_dim + 2 * d + d + 2 * da) + 2 * m * d * (cfg.esm_dim + 2 * d)
    return float(trunk + atom + proj + 4 * n * m * d)


#: Rough sustained float32 throughput (FLOP/s) by device kind, for time estimates only.
_THROUGHPUT = (
    ("h200", 120e12), ("h100", 100e12), ("a100", 50e12), ("l40", 40e12), ("a6000", 25e12), ("v100", 12e12),
    ("a10", 15e12), ("t4", 4e12), ("tpu", 80e12), ("gpu", 20e12), ("cpu", 0.15e12),
)


def device_throughput(kind: str) -> float:
    """Guess of sustained FLOP/s for a ``jax.Device.device_kind`` / platform string."""
    k = kind.lower()
    for key, value in _THROUGHPUT:
        if key in k:
            return value
    return _THROUGHPUT[-1][1]


def default_memory_budget(devices: Sequence[Any] | None = None) -> int:
    """Default per-device budget in bytes (85 % of accelerator memory; half the RAM on CPU)."""
    import jax

    dev = (devices or jax.local_devices())[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - not all backends implement it
        stats = None
    if dev.platform != "cpu" and stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"] * _DEVICE_MEMORY_FRACTION)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 16 * 10**9
    return int(ram * _HOST_MEMORY_FRACTION)


@dataclasses.dataclass(frozen=True)
class TargetPlan:
    """How one target will run (also the ``--dry-run`` table row)."""

    name: str
    length: int
    num_atoms: int
    bucket_tokens: int
    bucket_atoms: int
    num_samples: int
    chunk: int  # samples per call over all devices (0: does not fit)
    memory_bytes: int  # estimate per device for one chunk
    seconds: float  # estimated sampling (+ pLDDT) time
    error: str | None = None

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_samples / self.chunk) if self.chunk else 0


def _sizes(target: Target) -> tuple[int, int]:
    """(residues, official atom slots) of a single-chain target without building features."""
    from simplefold import residues

    templates = residues.residue_templates()
    atoms = sum(templates.get(r, templates["UNK"]).num_atoms for r in F.sequence_to_res_names(target.sequence))
    return len(target.sequence), -(-atoms // F.ATOM_WINDOW) * F.ATOM_WINDOW


def plan_target(
    target: Target,
    cfg,
    options: FoldOptions,
    *,
    num_devices: int = 1,
    budget: int | None = None,
    device_kind: str = "cpu",
    plddt_latent_cfg=None,
) -> TargetPlan:
    """Bucket, chunk size and estimates for one target (no weights needed).

    ``chunk`` is the number of samples per call over all devices: the per-device batch allowed by
    the memory budget (and ``options.batch_size``), times ``num_devices``, at most
    ``num_samples`` rounded up to a multiple of ``num_devices``.
    """
    try:
        check_target(target)
    except TargetError as exc:
        return TargetPlan(target.name, len(target.sequence), 0, 0, 0, options.num_samples, 0, 0, 0.0, str(exc))
    m, n = _sizes(target)
    mb = F.bucket_size(m, options.token_buckets)
    nb = F.atom_bucket_size(n, mb)
    samples = options.num_samples
    if cfg is None:  # an opaque callable: no estimate, one chunk
        chunk = min(samples, options.batch_size or samples)
        chunk = -(-chunk // num_devices) * num_devices
        return TargetPlan(target.name, m, n, mb, nb, samples, chunk, 0, float("nan"))
    plddt = options.plddt
    est = estimate_memory(cfg, mb, nb, 1, plddt=plddt, plddt_latent_cfg=plddt_latent_cfg)
    per_dev = est.max_batch(budget) if budget is not None else samples
    if options.batch_size is not None:
        per_dev = min(per_dev, -(-options.batch_size // num_devices))
    per_dev = min(per_dev, -(-samples // num_devices))
    chunk = per_dev * num_devices
    flops = forward_flops(cfg, mb, nb) * options.sampler_config().num_steps * samples
    if plddt:
        flops += forward_flops(plddt_latent_cfg or cfg, mb, nb) * samples
    seconds = flops / (device_throughput(device_kind) * num_devices)
    mem = dataclasses.replace(est, batch=max(per_dev, 1)).total
    error = None
    if chunk == 0:
        error = (
            f"{target.name}: {m} residues need about {est.total / 1e9:.1f} GB for one sample, above the memory "
            f"budget of {budget / 1e9:.1f} GB per device (raise --max-memory-gb or use a larger device)"
        )
    return TargetPlan(target.name, m, n, mb, nb, samples, chunk, mem, seconds, error)


def plan(
    sequences: Any,
    model: Any = DEFAULT_MODEL,
    options: FoldOptions | None = None,
    *,
    devices: Sequence[Any] | None = None,
) -> list[TargetPlan]:
    """Per-target plans (bucket, chunking, memory, time) without loading any weights.

    ``model`` as in :func:`load_model`; only its configuration is read.
    """
    import jax

    options = options or FoldOptions()
    devices = list(devices or jax.local_devices())
    cfg = model_config(model)
    budget = int(options.max_memory_gb * 1e9) if options.max_memory_gb else default_memory_budget(devices)
    latent_cfg = _plddt_latent_config(model, cfg) if options.plddt else None
    kind = getattr(devices[0], "device_kind", devices[0].platform) if devices[0].platform != "cpu" else "cpu"
    return [
        plan_target(t, cfg, options, num_devices=len(devices), budget=budget, device_kind=kind,
                    plddt_latent_cfg=latent_cfg)
        for t in as_targets(sequences)
    ]


def _plddt_latent_config(model: Any, cfg):
    """Config of the network whose latent feeds the pLDDT head (the 1.6B for released models)."""
    if isinstance(model, FoldingModel):
        latent = model.plddt_latent
        return getattr(latent, "config", None) if latent is not None else cfg
    if cfg is not None and cfg.name in _released_names():
        from simplefold.model.config import OFFICIAL_SIZES

        return OFFICIAL_SIZES[PLDDT_LATENT_WEIGHTS]()
    return cfg


def format_plan(plans: Sequence[TargetPlan]) -> str:
    """The ``--dry-run`` table (plain text, one row per target and a total)."""
    head = f"{'target':<24} {'len':>5} {'atoms':>6} {'bucket':>11} {'samples':>7} {'chunk':>5} {'calls':>5} {'mem GB':>7} {'time':>9}  note"
    rows = [head, "-" * len(head)]
    total_t = 0.0
    for p in plans:
        t = "-" if not math.isfinite(p.seconds) else _fmt_seconds(p.seconds)
        if math.isfinite(p.seconds) and not p.error:
            total_t += p.seconds
        bucket = f"{p.bucket_tokens}/{p.bucket_atoms}" if p.bucket_tokens else "-"
        note = "FAILS: " + p.error.split(": ", 1)[-1] if p.error else ""
        rows.append(
            f"{p.name[:24]:<24} {p.length:>5} {p.num_atoms:>6} {bucket:>11} {p.num_samples:>7} {p.chunk:>5} "
            f"{p.num_chunks:>5} {p.memory_bytes / 1e9:>7.2f} {t:>9}  {note}"
        )
    n_bad = sum(1 for p in plans if p.error)
    rows.append("-" * len(head))
    rows.append(f"{len(plans)} targets, {n_bad} would fail; estimated total time {_fmt_seconds(total_t)} "
                "(rough: excludes compilation and ESM)")
    return "\n".join(rows)


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


# ======================================================================================
# Results
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class Sample:
    """One predicted structure.

    Attributes:
      index: sample number k (0-based; the PRNG key depends on it).
      structure: the prediction (Å, centred on its atoms; pLDDT x 100 per atom in ``b_factors``,
        0 when pLDDT is off).
      plddt: ``(M,)`` per-residue pLDDT in [0, 100], or None.
      rank: 1 = highest mean pLDDT among the target's samples (ties: lower index); None without pLDDT.
    """

    index: int
    structure: Any
    plddt: np.ndarray | None = None
    rank: int | None = None

    @property
    def mean_plddt(self) -> float | None:
        return None if self.plddt is None else float(np.mean(self.plddt))


@dataclasses.dataclass(frozen=True)
class FoldResult:
    """All samples of one target, in sample order, plus run information.

    Attributes:
      target: the :class:`Target`.
      samples: one :class:`Sample` per sample index.
      plan: the :class:`TargetPlan` used (bucket, chunk size).
      timings: seconds per phase (``features``, ``esm``, ``sampling``, ``plddt``, ``total``).
    """

    target: Target
    samples: tuple[Sample, ...]
    plan: TargetPlan
    timings: dict[str, float]

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def structures(self) -> list[Any]:
        return [s.structure for s in self.samples]

    def ensemble_structures(self) -> list[Any]:
        """The samples as models of one ensemble file.

        A multi-model file shares its per-atom annotations between models, so every model carries
        the per-residue pLDDT *averaged over the samples* as B-factor (each sample's own pLDDT is
        in its sample file and in summary.json).
        """
        if any(s.plddt is None for s in self.samples):
            return self.structures
        mean = np.mean([s.plddt for s in self.samples], axis=0)
        return [s.structure.with_coords(s.structure.coords, b_factors=mean) for s in self.samples]

    @property
    def best(self) -> Sample:
        """The rank-1 sample (sample 0 without pLDDT)."""
        ranked = [s for s in self.samples if s.rank == 1]
        return ranked[0] if ranked else self.samples[0]


# ======================================================================================
# The folding engine
# ======================================================================================


@dataclasses.dataclass(frozen=True)
class _PureFn:
    """A jit-friendly pLDDT function: weights are traced arguments, the graph is static."""

    latent_graph: Any
    head_graph: Any
    latent_obj: Any = None  # a non-nnx callable (closed over)
    head_obj: Any = None

    def __call__(self, params, y, feats):
        import jax.numpy as jnp
        from flax import nnx

        latent_net = nnx.merge(self.latent_graph, params[0]) if self.latent_graph is not None else self.latent_obj
        head = nnx.merge(self.head_graph, params[1]) if self.head_graph is not None else self.head_obj

        # batch-1 features broadcast over the S samples inside both networks
        latent = latent_net(y, jnp.ones((y.shape[0],), jnp.float32), feats)["latent"]
        return head(latent, feats)["plddt"]


def _module_of(obj: Any) -> Any:
    """The ``nnx.Module`` of a network or of a jitted wrapper (``.module``), else None."""
    from flax import nnx

    module = obj if isinstance(obj, nnx.Module) else getattr(obj, "module", None)
    return module if isinstance(module, nnx.Module) else None


def _split(obj: Any) -> tuple[Any, Any, Any]:
    """(graphdef, state, None) for an nnx.Module (or wrapper), else (None, None, obj)."""
    from flax import nnx

    module = _module_of(obj)
    if module is not None:
        graph, state = nnx.split(module)
        return graph, state, None
    return None, None, obj


_PLDDT_JIT = None


def _plddt_apply(fn: _PureFn, params, y, feats):
    """Jitted pLDDT of sampler outputs ``y`` (S, N, 3); one module-level cache for all Folders."""
    global _PLDDT_JIT
    if _PLDDT_JIT is None:
        import jax

        _PLDDT_JIT = jax.jit(lambda f, p, yy, ff: f(p, yy, ff), static_argnums=0)
    return _PLDDT_JIT(fn, params, y, feats)


class Folder:
    """Folds targets one at a time with a loaded model; the engine behind :func:`fold` and the CLI.

    Compiled functions are cached per (bucket, chunk) shape by JAX, so a Folder reused over many
    targets compiles once per bucket.
    """

    def __init__(self, model: FoldingModel, options: FoldOptions, *, devices: Sequence[Any] | None = None):
        import jax

        from simplefold import sampler

        self.model = model
        self.options = options
        self.sampler_config = options.sampler_config()
        self.devices = list(devices or jax.local_devices())
        self.mesh = None
        if len(self.devices) > 1:
            self.mesh = jax.sharding.Mesh(np.array(self.devices), ("samples",))
        self.budget = int(options.max_memory_gb * 1e9) if options.max_memory_gb else default_memory_budget(self.devices)
        self.device_kind = self.devices[0].device_kind if self.devices[0].platform != "cpu" else "cpu"
        vm = sampler.as_velocity_model(model.network)
        from simplefold.model.folding import FoldingDiT

        self._network_features = isinstance(_module_of(model.network), FoldingDiT) and (
            not options.plddt or model.plddt_latent is None or isinstance(_module_of(model.plddt_latent), FoldingDiT)
        )
        self._velocity = dataclasses.replace(vm, params=self._replicate(vm.params))
        self.plddt_enabled = options.plddt and model.plddt_head is not None
        if options.plddt and model.plddt_head is None:
            logger.warning("model %s has no pLDDT head: pLDDT is not computed (B-factors are 0)", model.name)
        self._plddt_fn = None
        if self.plddt_enabled:
            lg, ls, lo = _split(model.plddt_latent if model.plddt_latent is not None else model.network)
            hg, hs, ho = _split(model.plddt_head)
            self._plddt_fn = _PureFn(lg, hg, lo, ho)
            self._plddt_params = self._replicate((ls, hs))
        self._latent_cfg = _plddt_latent_config(model, model.config) if self.plddt_enabled else None

    # -- placement ------------------------------------------------------------------
    def _replicate(self, tree):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        if self.mesh is None or tree is None:
            return tree
        return jax.device_put(tree, NamedSharding(self.mesh, PartitionSpec()))

    def _shard_samples(self, x):
        import jax
        from jax.sharding import NamedSharding, PartitionSpec

        if self.mesh is None:
            return x
        return jax.device_put(x, NamedSharding(self.mesh, PartitionSpec("samples")))

    # -- planning -------------------------------------------------------------------
    def plan(self, target: Target) -> TargetPlan:
        return plan_target(
            target, self.model.config, dataclasses.replace(self.options, plddt=self.plddt_enabled),
            num_devices=len(self.devices), budget=self.budget, device_kind=self.device_kind,
            plddt_latent_cfg=self._latent_cfg,
        )

    def esm_features(self, targets: Sequence[Target]) -> dict[str, np.ndarray]:
        """ESM ``esm_s`` per target name (empty for embedding-conditioned models)."""
        if self.model.condition != "esm" or not targets:
            return {}
        from simplefold import esm

        encoder = self.model.ensure_esm()
        feats = esm.esm_features(encoder, [t.sequence for t in targets], cache=self.model.esm_cache)
        return {t.name: f for t, f in zip(targets, feats)}

    # -- folding --------------------------------------------------------------------
    def fold_target(self, target: Target, *, esm_s: np.ndarray | None = None, progress: Any = None) -> FoldResult:
        """Fold one target (all its samples).

        Args:
          target: the target (see :func:`check_target`).
          esm_s: precomputed ``(M, E, C)`` ESM features for ESM-conditioned models (computed here
            when None).
          progress: optional tqdm-like bar advanced by the number of samples of each chunk.

        Raises:
          TargetError: the target cannot be folded (the message names it).
        """
        import jax
        import jax.numpy as jnp

        from simplefold import sampler
        from simplefold.structure import structure_from_sequence

        timings: dict[str, float] = {}
        t_start = time.perf_counter()
        check_target(target)
        plan_ = self.plan(target)
        if plan_.error:
            raise TargetError(plan_.error)

        t0 = time.perf_counter()
        if self.model.condition == "esm" and esm_s is None:
            esm_s = self.esm_features([target])[target.name]
        timings["esm"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        feats = F.featurize_sequence(target.sequence, esm_s=esm_s)
        n_real = int(feats["atom_pad_mask"].sum())
        padded = F.pad_to_bucket(feats, plan_.bucket_tokens, plan_.bucket_atoms)
        batched = {k: np.ascontiguousarray(v) for k, v in F.add_batch_axis(padded, 1).items()}
        if self._network_features:
            # only what the network reads; the (N, M) one-hots never reach the device
            from simplefold.model.folding import host_features

            batched = host_features(batched, self.model.condition)
        feats_dev = self._replicate({k: jnp.asarray(v) for k, v in batched.items()})
        timings["features"] = time.perf_counter() - t0

        s, chunk = plan_.num_samples, plan_.chunk
        keys = sampler.sample_keys(self.options.seed, target.name, s)
        coords_out: list[np.ndarray] = []
        plddt_out: list[np.ndarray] = []
        t_sample = t_plddt = 0.0
        for lo in range(0, s, chunk):
            kc = keys[lo : lo + chunk]
            n_here = kc.shape[0]
            if n_here < chunk:  # pad with repeats: one compiled shape per bucket
                kc = jnp.concatenate([kc, jnp.broadcast_to(kc[-1:], (chunk - n_here,))])
            kc = self._shard_samples(kc)
            t0 = time.perf_counter()
            y = sampler.sample(self._velocity, feats_dev, key=kc, config=self.sampler_config)
            y = jax.block_until_ready(y)
            t_sample += time.perf_counter() - t0
            if self.plddt_enabled:
                t0 = time.perf_counter()
                p = _plddt_apply(self._plddt_fn, self._plddt_params, y, feats_dev)
                plddt_out.append(np.asarray(p)[:n_here, : plan_.length] * 100.0)
                t_plddt += time.perf_counter() - t0
            xyz = sampler.postprocess(y, feats_dev["atom_pad_mask"])
            coords_out.append(np.asarray(xyz)[:n_here, :n_real])
            if progress is not None:
                progress.update(n_here)
        timings["sampling"] = t_sample
        if self.plddt_enabled:
            timings["plddt"] = t_plddt

        coords = np.concatenate(coords_out)
        plddts = np.concatenate(plddt_out).astype(np.float32) if plddt_out else None
        ranks = _ranks(plddts) if plddts is not None else [None] * s
        samples = []
        for k in range(s):
            b = plddts[k] if plddts is not None else np.zeros(plan_.length, np.float32)
            st = structure_from_sequence(target.sequence, coords[k], name=f"{target.name}_sample_{k}", b_factors=b)
            samples.append(Sample(index=k, structure=st, plddt=None if plddts is None else plddts[k], rank=ranks[k]))
        timings["total"] = time.perf_counter() - t_start
        return FoldResult(target=target, samples=tuple(samples), plan=plan_, timings=timings)

    def fold_iter(self, targets: Sequence[Target], *, progress: bool = False) -> Iterator[FoldResult | TargetError]:
        """Fold targets bucket by bucket; yields a FoldResult or the TargetError of each target
        (in processing order, which is by bucket then input order)."""
        order = sorted(range(len(targets)), key=lambda i: (_bucket_key(targets[i], self.options), i))
        bar = _tqdm(total=len(targets) * self.options.num_samples, desc="samples", unit="sample", disable=not progress)
        try:
            for i in order:
                try:
                    yield self.fold_target(targets[i], progress=bar)
                except TargetError as exc:
                    bar.update(self.options.num_samples)
                    yield exc
        finally:
            bar.close()


def _bucket_key(target: Target, options: FoldOptions) -> int:
    return F.bucket_size(max(len(target.sequence), 1), options.token_buckets)


def _ranks(plddts: np.ndarray) -> list[int]:
    """Rank 1 = highest mean pLDDT; ties broken by sample index."""
    means = plddts.mean(axis=1)
    order = sorted(range(len(means)), key=lambda k: (-means[k], k))
    ranks = [0] * len(means)
    for r, k in enumerate(order, 1):
        ranks[k] = r
    return ranks


def _tqdm(**kwargs):
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


def fold(
    sequences: Any,
    model: Any = DEFAULT_MODEL,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = DEFAULT_SEED,
    num_steps: int | None = None,
    tau: float | None = None,
    plddt: bool = True,
    batch_size: int | None = None,
    max_memory_gb: float | None = None,
    offline: bool = False,
    progress: bool = False,
    devices: Sequence[Any] | None = None,
) -> list[FoldResult]:
    """Fold protein sequences; returns one :class:`FoldResult` per sequence, in input order.

    Args:
      sequences: a sequence string, a ``(name, sequence)`` pair, a ``FastaRecord``, a
        :class:`Target`, or a list of these. Bare strings are named ``seq_0``, ``seq_1``, ...
      model: ``"demo"``, a released name (``simplefold_100M`` ... ``simplefold_3B``), a directory of
        converted weights, an already-loaded network (``nnx.Module``/callable) or a
        :class:`FoldingModel` (see :func:`load_model`).
      num_samples: structures per sequence.
      seed: sample k of target ``name`` depends only on (seed, name, k).
      num_steps, tau: sampler settings (default: :class:`simplefold.sampler.SamplerConfig`).
      plddt: compute pLDDT (stored x 100 per residue and in the B-factors).
      batch_size: at most this many samples per network call; None = what memory allows.
      max_memory_gb: per-device memory budget (GB) used to size chunks.
      offline: never download weights.
      progress: show a tqdm progress bar.
      devices: devices to use (default: all local devices; samples are sharded over them).

    Returns:
      list of :class:`FoldResult`; ``result.structures`` are :class:`simplefold.structure.Structure`
      objects that :func:`simplefold.structure.write_structure` writes.

    Raises:
      TargetError: a sequence cannot be folded (empty, several chains, too long for the budget).
      ModelNotFoundError: ``model`` cannot be resolved.
    """
    options = FoldOptions(num_samples=num_samples, seed=seed, num_steps=num_steps, tau=tau, plddt=plddt,
                          batch_size=batch_size, max_memory_gb=max_memory_gb)
    targets = as_targets(sequences)
    for t in targets:
        check_target(t)
    loaded = load_model(model, plddt=plddt, offline=offline)
    folder = Folder(loaded, options, devices=devices)
    by_name: dict[str, FoldResult] = {}
    for res in folder.fold_iter(targets, progress=progress):
        if isinstance(res, TargetError):
            raise res
        by_name[res.name] = res
    return [by_name[t.name] for t in targets]


# ======================================================================================
# predict: results to files
# ======================================================================================


def run_fingerprint(model: FoldingModel, options: FoldOptions, fmt: str, plddt: bool) -> dict[str, Any]:
    """Settings that must match for an existing output to count as complete (resume)."""
    sc = options.sampler_config()
    return {
        "model": model.name,
        "seed": options.seed,
        "num_samples": options.num_samples,
        "sampler": dataclasses.asdict(sc),
        "format": fmt,
        "plddt": plddt,
    }


def _summary_matches(paths: outputs.TargetPaths, target: Target, fingerprint: Mapping[str, Any]) -> bool:
    if not outputs.is_complete(paths):
        return False
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if summary.get("sequence") != target.sequence or summary.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        logger.warning("%s: existing output in %s was made with other settings; folding again", target.name, paths.dir)
        return False
    return True


def write_result(
    result: FoldResult,
    root: str | os.PathLike,
    *,
    fmt: str,
    model: FoldingModel,
    options: FoldOptions,
    fingerprint: Mapping[str, Any],
    plot: bool = True,
) -> outputs.TargetPaths:
    """Write one target's files (samples, ensemble, pLDDT plot, then summary.json last)."""
    from simplefold import plots
    from simplefold.structure import write_structure

    t0 = time.perf_counter()
    paths = outputs.TargetPaths(Path(root), result.name, fmt)
    paths.dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {"samples": []}
    for s in result.samples:
        write_structure(paths.sample(s.index), s.structure, format=fmt)
        files["samples"].append(paths.sample(s.index).name)
    if len(result.samples) > 1:
        write_structure(paths.ensemble, result.ensemble_structures(), format=fmt)
        files["ensemble"] = paths.ensemble.name
    have_plddt = all(s.plddt is not None for s in result.samples)
    if plot and have_plddt:
        plots.plot_plddt([s.plddt for s in result.samples], paths.plddt_png, title=result.name)
        files["plddt_png"] = paths.plddt_png.name
    timings = dict(result.timings)
    timings["write"] = time.perf_counter() - t0
    import jax

    summary = {
        "summary_version": outputs.SUMMARY_VERSION,
        "target": result.name,
        "description": result.target.description,
        "source": result.target.source,
        "sequence": result.target.sequence,
        "length": len(result.target.sequence),
        "num_atoms": int(result.samples[0].structure.num_atoms),
        "model": model.describe(),
        "seed": options.seed,
        "num_samples": options.num_samples,
        "sampler": dataclasses.asdict(options.sampler_config()),
        "plddt": have_plddt,
        "format": fmt,
        "samples": [
            {
                "index": s.index,
                "file": paths.sample(s.index).name,
                "mean_plddt": s.mean_plddt,
                "rank": s.rank,
                "plddt": None if s.plddt is None else [round(float(v), 2) for v in s.plddt],
            }
            for s in result.samples
        ],
        "ranking": [s.index for s in sorted(result.samples, key=lambda s: s.rank or 0)] if have_plddt else None,
        "batching": {
            "bucket_tokens": result.plan.bucket_tokens,
            "bucket_atoms": result.plan.bucket_atoms,
            "chunk": result.plan.chunk,
            "devices": [str(d) for d in jax.local_devices()][:64],
            "estimated_memory_gb": result.plan.memory_bytes / 1e9,
        },
        "timings": timings,
        "files": files,
        "fingerprint": dict(fingerprint),
        "versions": {"simplefold": _version(), "jax": jax.__version__, "python": platform.python_version()},
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    outputs.write_json(paths.summary, summary)  # last: marks the target complete
    return paths


def _version() -> str:
    from simplefold import __version__

    return __version__


@dataclasses.dataclass(frozen=True)
class PredictReport:
    """What :func:`predict_to_directory` did: target name -> status (``ok``/``skipped``/``failed``)."""

    status: dict[str, str]
    reasons: dict[str, str]
    manifest: Path

    @property
    def failed(self) -> list[str]:
        return [t for t, s in self.status.items() if s == outputs.STATUS_FAILED]


def predict_to_directory(
    targets: Sequence[Target],
    out: str | os.PathLike,
    model: FoldingModel | Any,
    options: FoldOptions,
    *,
    fmt: str = "pdb",
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    devices: Sequence[Any] | None = None,
    offline: bool = False,
    on_result: Callable[[str, str], None] | None = None,
) -> PredictReport:
    """Fold ``targets`` into ``out`` (layout in :mod:`simplefold.outputs`); the body of ``simplefold predict``.

    Targets already complete with the same settings are skipped; each finished, skipped or failed
    target appends a line to the (shard's) manifest immediately. A failing target (bad record,
    too long for the budget, or an unexpected error while folding it) is recorded with its reason
    and the run goes on.

    Args:
      targets: from :func:`as_targets` (names must be unique).
      out: output directory.
      model: a :class:`FoldingModel` or anything :func:`load_model` accepts (loaded only if some
        target needs folding).
      options: run settings.
      fmt: ``pdb`` or ``cif``.
      shard: ``(I, N)`` to fold only shard I of N (:func:`simplefold.outputs.shard_indices`).
      progress: tqdm bars (targets and samples).
      on_result: called with (target name, status) after each target (tests, logging).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mine = [targets[i] for i in outputs.shard_indices([t.name for t in targets], shard)]
    manifest = outputs.manifest_path(out, shard)
    status: dict[str, str] = {}
    reasons: dict[str, str] = {}

    def record(target: Target, st: str, reason: str | None = None, **extra) -> None:
        status[target.name] = st
        entry = {"target": target.name, "status": st, "length": len(target.sequence), "output": target.name}
        if reason:
            reasons[target.name] = reason
            entry["reason"] = reason
        if shard is not None:
            entry["shard"] = f"{shard[0]}/{shard[1]}"
        entry.update(extra)
        outputs.append_manifest(manifest, entry)
        if on_result is not None:
            on_result(target.name, st)

    # Weights are loaded only when something needs folding, so a finished run resumes instantly.
    loaded: FoldingModel | None = model if isinstance(model, FoldingModel) else None
    name_for_fp = loaded.name if loaded is not None else _spec_name(model)
    plddt_fp = options.plddt
    fingerprint = {**run_fingerprint(FoldingModel(None, name=name_for_fp), options, fmt, plddt_fp)}

    todo: list[Target] = []
    for t in mine:
        paths = outputs.TargetPaths(out, t.name, fmt)
        if _summary_matches(paths, t, fingerprint):
            record(t, outputs.STATUS_SKIPPED)
            continue
        try:
            check_target(t)
        except TargetError as exc:
            record(t, outputs.STATUS_FAILED, str(exc))
            continue
        todo.append(t)
    if not todo:
        return PredictReport(status, reasons, manifest)

    if loaded is None:
        loaded = load_model(model, plddt=options.plddt, offline=offline)
    folder = Folder(loaded, options, devices=devices)
    targets_bar = _tqdm(total=len(todo), desc="targets", unit="target", disable=not progress, position=0)
    try:
        order = sorted(todo, key=lambda t: (_bucket_key(t, options), todo.index(t)))
        for t in order:
            targets_bar.set_postfix_str(t.name[:20])
            t0 = time.perf_counter()
            try:
                sample_bar = _tqdm(total=options.num_samples, desc=t.name[:20], unit="sample", leave=False,
                                   disable=not progress, position=1)
                try:
                    result = folder.fold_target(t, progress=sample_bar)
                finally:
                    sample_bar.close()
                write_result(result, out, fmt=fmt, model=loaded, options=options, fingerprint=fingerprint)
            except TargetError as exc:
                record(t, outputs.STATUS_FAILED, str(exc))
            except Exception as exc:  # noqa: BLE001 - one target's failure must not stop the run
                logger.exception("%s: folding failed", t.name)
                record(t, outputs.STATUS_FAILED, f"{type(exc).__name__}: {exc}")
            else:
                means = [s.mean_plddt for s in result.samples]
                record(t, outputs.STATUS_OK, seconds=round(time.perf_counter() - t0, 3),
                       num_samples=len(result.samples),
                       mean_plddt=[None if m is None else round(m, 2) for m in means])
            targets_bar.update(1)
    finally:
        targets_bar.close()
    return PredictReport(status, reasons, manifest)


def _spec_name(spec: Any) -> str:
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec).expanduser()
        if p.is_dir() and str(spec) != DEMO_MODEL:
            cfg = model_config(p)
            return getattr(cfg, "name", p.name) if cfg is not None else p.name
        return str(spec)
    return type(spec).__name__


def merge_report(out: str | os.PathLike, targets: Sequence[Target] | None = None) -> outputs.RunReport:
    """Merge every manifest of ``out`` (all shards) into ``out/manifest.jsonl`` and report the run."""
    expected = [t.name for t in targets] if targets is not None else None
    return outputs.merge_manifests(out, expected)

"""Training configuration: frozen dataclasses, JSON files and ``key=value`` overrides.

A run is fully described by one :class:`TrainConfig`. Files in ``train/`` are JSON documents with
the same nesting as the dataclasses (sections ``model``, ``data``, ``optim``, ``loss``, ``loop``,
``checkpoint``, ``mesh``, ``validation``); every field that a file omits keeps the default defined
here (the only place defaults live). Command-line overrides use dotted paths:
``optim.lr=3e-4 loop.max_steps=100 data.data_dir=/data/prepared``; values are parsed as JSON when
possible (numbers, booleans, null, lists) and taken as strings otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from simplefold.constants import LDDT_INCLUSION_RADIUS, TAU


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which network to train.

    ``preset`` names a ``FoldingConfig`` constructor (``tiny``, ``simplefold_100M`` …); ``overrides``
    replaces fields of that config (e.g. ``{"condition": "embedding"}``). ``init_from`` starts from
    converted weights (a path written by ``checkpoints.save_converted``, or a released model name
    understood by ``checkpoints.load_official_model``); ``None`` trains from scratch.
    """

    preset: str = "tiny"
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    init_from: str | None = None
    init_seed: int = 0


@dataclasses.dataclass(frozen=True)
class DataSection:
    """Prepared dataset (``simplefold prepare-data``) and the per-example pipeline.

    Crop budgets are the official ones (256 tokens / 2304 atoms); the crop neighbourhood size is
    drawn from ``range(min_neighborhood, max_neighborhood + 1, 2)`` (0 = spatial, 40 ≈ contiguous).
    ``multiplicity`` copies of every protein are made in the train step, each with its own
    rotation, t and noise. ``batch_per_device`` proteins are read per device and step.
    """

    data_dir: str = "out/prepared"
    train_split: str = "train"
    val_split: str = "dev"
    max_tokens: int = 256
    max_atoms: int = 2304
    min_neighborhood: int = 0
    max_neighborhood: int = 40
    min_length: int = 1
    max_length: int | None = None
    multiplicity: int = 16
    batch_per_device: int = 1
    shuffle_seed: int = 0
    #: Pad every batch to the crop budget (one compiled step) instead of length buckets.
    pad_to_max: bool = False
    read_threads: int = 2
    prefetch: int = 4
    #: Translation (Å) of the loader's rotation augmentation (official featurizer: N(0, 1 Å)).
    augment_translation_angstrom: float = 1.0
    #: Random rotation + translation of the ground truth (loader and train step), as the official
    #: recipe does. ``false`` only for debugging/over-fitting runs (the structure keeps its frame).
    augment: bool = True
    #: ESM2 weights for ``condition="esm"`` models: a fair-esm ``.pt`` file, a converted directory, or
    #: a released name (``simplefold weights``). ``esm_s`` is computed on each *cropped* sequence.
    esm_model: str | None = None
    #: Keep computed ``esm_s`` in the on-disk embedding cache (one entry per distinct crop sequence;
    #: an ESM2-3B entry of 256 residues is ~100 MB, so only for small data sets / small ESMs).
    esm_cache: bool = False


@dataclasses.dataclass(frozen=True)
class OptimSection:
    """AdamW + linear warm-up from ``min_lr`` to ``lr`` over ``warmup_steps``, then constant (official).

    ``decay_steps`` > 0 (not official) adds a cosine decay from ``lr`` to ``min_lr`` over that many
    steps after the warm-up, then ``min_lr``: for short runs that must end on a settled model.
    """

    lr: float = 1e-4
    min_lr: float = 1e-6
    warmup_steps: int = 5000
    decay_steps: int = 0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip_norm: float = 2.0
    ema_decay: float = 0.999


@dataclasses.dataclass(frozen=True)
class LossSection:
    """Flow-matching loss weights (official ``src/simplefold/model/simplefold.py``).

    ``lddt_time_schedule`` is the fine-tuning weighting.
    """

    smooth_lddt_weight: float = 1.0
    lddt_cutoff: float = LDDT_INCLUSION_RADIUS
    lddt_time_schedule: bool = False
    rigid_align: bool = True
    #: Distribution of the training time t: "official" (0.98·sigmoid(N(0.8, 1.7²)) + 0.02·U(0, 1),
    #: biased to the data end) or "uniform" (U(0, 1)).
    time_sampling: str = "official"
    #: Noise-level augmentation (not part of the official recipe; 0 = off). This fraction of the
    #: multiplicity copies draws its noise as x0 ~ N(0, κ²·I) with log κ ~ U(log noise_scale_min, 0),
    #: so x_t = t·x1 + (1−t)·κ·x0 and the target is x1 − κ·x0 (= (x1 − x_t)/(1−t), the velocity that
    #: still lands on x1). The official sampler with τ < 1 removes noise faster than the linear path
    #: (its state carries ≈ √τ of the path's noise), so a model trained only at κ = 1 sees states it
    #: never saw and, when unsure, explains part of the signal as noise: samples shrink. Copies with
    #: κ < 1 teach it to read the noise level off the state instead.
    noise_scale_fraction: float = 0.0
    noise_scale_min: float = 0.1
    #: Weight of the size term (Rg(x̂1)/Rg(x1) − 1)² on the one-step estimate (not official; 0 = off):
    #: keeps the estimate, which the τ < 1 sampler follows, at the size of a real protein.
    rg_weight: float = 0.0
    #: Weight of a steric term on x̂1 (not official; 0 = off): Σ relu(2.5 Å − d) over atom pairs that are
    #: > 3 Å apart in the truth, per atom. smooth lDDT ignores pairs > 15 Å apart in the truth.
    clash_weight: float = 0.0
    #: Weight of a local-geometry term on x̂1 (not official; 0 = off): mean squared error (Å²) of the
    #: distances of atom pairs closer than 2.6 Å in the truth — covalent bonds and bond angles
    #: (1–3 pairs), each copy weighted by 1/(1 + σ²), σ = 16·(1 − t) Å. The MSE and smooth lDDT
    #: hardly see a 0.1 Å bond error; this term does.
    bond_weight: float = 0.0
    #: Blur augmentation (not official; 0 = off). This fraction of the copies sees its data point
    #: blurred in x_t: every atom moved a fraction λ ~ U(0, blur_max) towards the Gaussian-weighted
    #: mean (σ = 3 Å, ``training.step.BLUR_SIGMA``) of its resolved neighbours, the shift tapered to
    #: 0 over the last 10 % of the path; the target still lands on x1. The τ < 1 sampler's state
    #: inherits the blurred one-step estimates of mid-trajectory (short bonds, too compact) and a
    #: network that never saw such states near t = 1 passes them through; these copies teach it to
    #: undo them.
    blur_fraction: float = 0.0
    blur_max: float = 0.5


@dataclasses.dataclass(frozen=True)
class LoopSection:
    """Run length, logging, precision and randomness."""

    output_dir: str = "runs/default"
    max_steps: int = 1000
    log_every: int = 10
    seed: int = 0
    #: "auto" = float32 on CPU, bfloat16 compute on accelerators; or "float32" / "bfloat16".
    compute_dtype: str = "auto"
    progress_bar: bool = True
    tensorboard: bool = True
    #: Stop (with a checkpoint) after this many seconds of training; None = no limit.
    time_limit_s: float | None = None


@dataclasses.dataclass(frozen=True)
class CheckpointSection:
    """Orbax checkpoints: every ``every_steps`` steps (asynchronous), at the end and on SIGTERM."""

    every_steps: int = 1000
    keep_last: int = 3
    keep_best: int = 1
    #: Validation metric used to rank checkpoints for ``keep_best`` (higher is better).
    best_metric: str = "val/lddt"
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class ValidationSection:
    """Periodic sampling of ``num_proteins`` dev chains with the EMA weights; 0 disables validation.

    ``num_steps`` must keep the official sampler stable (≥ 230 on its log grid, see
    ``SamplerConfig.noise_gains``): with fewer the samples explode and the metrics are meaningless,
    so training refuses to start.
    """

    every_steps: int = 1000
    num_proteins: int = 8
    num_steps: int = 250
    tau: float = TAU
    max_tokens: int = 256
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class MeshSection:
    """Device mesh ("data", "fsdp"). ``data = -1`` uses all devices not taken by ``fsdp``.

    Parameters (and their optimizer/EMA copies) with at least ``min_shard_elements`` elements are
    sharded over ``fsdp`` along their largest divisible axis; smaller ones are replicated.
    ``distributed`` calls ``jax.distributed.initialize()`` ("auto": when the environment names a
    coordinator, e.g. ``JAX_COORDINATOR_ADDRESS`` or SLURM / TPU pod variables).
    """

    data: int = -1
    fsdp: int = 1
    min_shard_elements: int = 2**18
    distributed: str = "auto"
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    cpu_collectives: str | None = None


class SectionedConfig:
    """JSON form of a config dataclass whose fields are section dataclasses (TrainConfig, the
    pLDDT training config); the inverse is :func:`sections_from_dict`."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable nested dict."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=dict))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig(SectionedConfig):
    """A complete training run."""

    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    loss: LossSection = dataclasses.field(default_factory=LossSection)
    loop: LoopSection = dataclasses.field(default_factory=LoopSection)
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)
    validation: ValidationSection = dataclasses.field(default_factory=ValidationSection)
    mesh: MeshSection = dataclasses.field(default_factory=MeshSection)

    def replace(self, **sections: Any) -> TrainConfig:
        return dataclasses.replace(self, **sections)


class ConfigError(ValueError):
    """A configuration file or override the user wrote is invalid (message names it)."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert a JSON value against a dataclass field annotation (str form, PEP 563)."""
    ann = annotation if not isinstance(annotation, str) else eval(annotation, _EVAL_NS)  # noqa: S307
    origin = typing.get_origin(ann)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if ann is Any:
        return value
    if ann is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if ann is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if ann is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if ann is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin in (Mapping, dict) or ann is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        return dict(value)
    if origin in (Sequence, list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
    return value


_EVAL_NS = {"Any": Any, "Mapping": Mapping, "Sequence": Sequence}


def _section_from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields))}")
    kwargs = {name: _coerce(value, fields[name].type, f"{where}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def sections_from_dict(cls: type, data: Mapping[str, Any], where: str = "config") -> Any:
    """Build a config dataclass whose fields are section dataclasses (``TrainConfig``, the pLDDT
    training config) from nested dicts; missing keys keep their defaults, ``description`` is ignored.

    Raises:
      ConfigError: unknown section or key, or a value of the wrong type (the message names it).
    """
    sections = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(sections) - {"description"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; valid: {', '.join(sorted(sections))}")
    kwargs = {}
    for name, field in sections.items():
        if name in data:
            if not isinstance(data[name], Mapping):
                raise ConfigError(f"{where}: section {name!r} must be an object")
            section_cls = field.default_factory  # type: ignore[misc]
            kwargs[name] = _section_from_dict(section_cls, data[name], f"{where}:{name}")
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any], where: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig` from a nested dict; missing keys keep their defaults."""
    return sections_from_dict(TrainConfig, data, where)


def read_config_json(path: str | pathlib.Path, _seen: tuple[pathlib.Path, ...] = ()) -> dict[str, Any]:
    """The JSON object of a config file; :class:`ConfigError` naming the file (and line) otherwise.

    A file may name another as its ``"base"`` (a path relative to the file): the file is then that
    base with this file's values merged in, section by section (the base's ``description`` is not
    inherited). A preset is thus written as the settings it changes.
    """
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: config file not found") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: \"base\" must be the path of another config file")
    base_path = (path.parent / base).resolve()
    if base_path in _seen:
        raise ConfigError(f"{path}: base files form a cycle ({' -> '.join(map(str, (*_seen, base_path)))})")
    merged = read_config_json(base_path, (*_seen, path.resolve()))
    merged.pop("description", None)
    return merge_config_dicts(merged, data)


def merge_config_dicts(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied: nested objects are merged key by key, other values replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_config_dicts(out[key], value)
        else:
            out[key] = value
    return out


def parse_value(text: str) -> Any:
    """Override value: JSON (numbers, true, null, lists) if it parses, else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """Apply ``section.key=value`` (or ``model.overrides.KEY=value``) strings to ``config``."""
    data = config.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        if len(keys) < 2:
            raise ConfigError(f"override {item!r}: expected section.key=value (e.g. optim.lr=3e-4)")
        node = data
        for k in keys[:-1]:
            if k not in node or not isinstance(node[k], dict):
                if node is data.get("model", {}).get("overrides"):
                    node[k] = {}
                else:
                    raise ConfigError(f"override {item!r}: unknown key {k!r}")
            node = node[k]
        node[keys[-1]] = parse_value(text)
    return config_from_dict(data, where="overrides")


def load_config(path: str | pathlib.Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a JSON config file and apply overrides. Raises :class:`ConfigError` naming the file."""
    return apply_overrides(config_from_dict(read_config_json(path), where=str(path)), overrides)

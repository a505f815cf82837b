"""Models for folding: resolve a model spec, load its weights and pLDDT pair (:class:`LoadedModel`).

A model spec is ``"demo"`` (bundled package data), a released name (``simplefold_100M`` ...
``simplefold_3B``, fetched by :mod:`simplefold.weights.cache`), a directory of converted weights, an
already-built network, or a :class:`LoadedModel`. :func:`model_config` reads only the
configuration (for ``--dry-run`` estimates); :func:`load_model` loads the weights.

pLDDT: the folding model's trunk latent at t = 1 on the final *un-centred* sampler output (model
units) goes through the pLDDT head, as the official ``predict_step`` does
(``src/simplefold/model/simplefold.py`` of apple/ml-simplefold). With the released weights this is
the official pair: the SimpleFold-1.6B network (whatever model sampled the structure) and
``plddt_module_1.6B``. A converted/bundled model directory may carry its own head in
``<dir>/plddt/`` (the demo model does), which then reads that model's own latent.

:class:`LoadedModel` (a network plus its pLDDT pair and ESM encoder) is not
:class:`simplefold.model.folding.FoldingModel` (the jitted network wrapper it may hold as
``network``).
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Model used when none is given (the official CLI's default).
DEFAULT_MODEL = "simplefold_100M"
DEMO_MODEL = "demo"
#: Registry names of the official pLDDT pair and of the ESM2 model the official configs use.
PLDDT_LATENT_WEIGHTS = "simplefold_1.6B"
PLDDT_HEAD_WEIGHTS = "plddt_module_1.6B"
ESM_WEIGHTS = "esm2_3B"
#: Sub-directory of a converted model directory that holds its own pLDDT head.
PLDDT_SUBDIR = "plddt"


class ModelNotFoundError(ValueError):
    """``model=`` names nothing that can be loaded (message says what was tried)."""


@dataclasses.dataclass
class LoadedModel:
    """A loaded model, ready for :func:`simplefold.predict.fold`.

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
            from simplefold.weights import cache, esm

            self.esm = esm.load_converted_esm2(cache.resolve(ESM_WEIGHTS, offline=self.offline))
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
    if isinstance(spec, LoadedModel):
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


def _load_dir(path: Path, precision: str | None = None):
    """(network, config) from a converted weights directory (``checkpoints.load_converted``)."""
    from simplefold.weights import checkpoints

    loaded = checkpoints.load_converted(path, precision)
    return loaded, getattr(loaded, "config", None)


def _official_plddt(network: Any, config: Any, *, offline: bool, precision: str | None = None) -> tuple[Any, Any, str]:
    """(latent network, head, description) of the official pLDDT pair, reusing ``network`` if it is the 1.6B."""
    from simplefold.weights import cache

    head, _ = _load_dir(cache.resolve(PLDDT_HEAD_WEIGHTS, offline=offline), precision)
    if getattr(config, "name", None) == PLDDT_LATENT_WEIGHTS:
        latent = network
    else:
        latent, _ = _load_dir(cache.resolve(PLDDT_LATENT_WEIGHTS, offline=offline), precision)
    return latent, head, f"{PLDDT_LATENT_WEIGHTS} latent + {PLDDT_HEAD_WEIGHTS}"


def load_model(
    spec: Any = DEFAULT_MODEL, *, plddt: bool = True, offline: bool = False, esm: Any = None, precision: str | None = None
) -> LoadedModel:
    """Load a model for :func:`simplefold.predict.fold`.

    Args:
      spec: ``"demo"`` (bundled package data), a released name (``simplefold_100M`` ... ``3B``,
        downloaded and converted on demand by :mod:`simplefold.weights.cache`), a directory of converted
        weights (``config.json`` + Orbax, optionally with ``plddt/`` holding its own head), an
        already-built network (``nnx.Module`` or callable, e.g. a small random model in tests), or
        a :class:`LoadedModel` (returned as is).
      plddt: also load the pLDDT pair: the directory's own ``plddt/`` head if present, else the
        official 1.6B latent network + head for official architectures. If none is available a
        warning is logged and pLDDT is skipped.
      offline: never download (``cache.resolve(..., offline=True)``).
      esm: an ``ESM2Encoder`` for ESM-conditioned models (default: released ESM2-3B, loaded lazily).
      precision: "float32" / "bfloat16" for weights loaded from disk (see
        :mod:`simplefold.model.precision`); None keeps each saved config's dtype. An already-built
        network is used as it is.

    Raises:
      ModelNotFoundError: ``spec`` names nothing loadable.
    """
    if isinstance(spec, LoadedModel):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        return LoadedModel(network=spec, config=getattr(spec, "config", None), name=type(spec).__name__, esm=esm,
                            offline=offline)
    name = str(spec)
    if name == DEMO_MODEL:
        path = demo_model_path()
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            if name not in _released_names():
                raise ModelNotFoundError(_unknown_model_message(spec))
            from simplefold.weights import cache

            path = cache.resolve(name, offline=offline)
    network, config = _load_dir(path, precision)
    model = LoadedModel(network=network, config=config, name=name if not Path(name).is_dir() else
                         getattr(config, "name", path.name), source=str(path), esm=esm, offline=offline)
    if plddt:
        pair = load_plddt_pair(path, config, network=network, offline=offline, precision=precision)
        if pair is None:
            logger.warning("%s has no pLDDT head (no %s/ sub-directory); pLDDT will not be computed",
                           path, PLDDT_SUBDIR)
        else:
            model.plddt_latent, model.plddt_head, model.plddt_name = pair
    return model


def resolve_model_path(spec: str | os.PathLike, *, offline: bool = False) -> Path:
    """The converted-weights directory of a model spec (``"demo"``, a released name, a directory)."""
    name = str(spec)
    if name == DEMO_MODEL:
        return demo_model_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name not in _released_names():
        raise ModelNotFoundError(_unknown_model_message(spec))
    from simplefold.weights import cache

    return cache.resolve(name, offline=offline)


def plddt_needs_network(path: Path, config: Any) -> bool:
    """True when the pLDDT pair of the model in ``path`` reads the folding network's own latent
    (a directory's own ``plddt/`` head, or the released 1.6B, which is its own latent network)."""
    return (path / PLDDT_SUBDIR / "config.json").is_file() or getattr(config, "name", None) == PLDDT_LATENT_WEIGHTS


def load_plddt_pair(
    path: Path, config: Any, *, network: Any = None, offline: bool = False, precision: str | None = None
) -> tuple[Any, Any, str] | None:
    """(latent network or None = the folding network itself, head, description) of the model in
    ``path`` (its own ``plddt/`` head, else the official pair for released architectures), or None
    when it has none. ``network`` is the loaded folding network, reused as the 1.6B latent when it
    is the 1.6B (loaded from ``path`` when needed and not given)."""
    own = path / PLDDT_SUBDIR
    if (own / "config.json").is_file():
        head, _ = _load_dir(own, precision)
        return None, head, f"own head ({own})"
    if getattr(config, "name", None) in _released_names():
        if network is None and getattr(config, "name", None) == PLDDT_LATENT_WEIGHTS:
            network, _ = _load_dir(path, precision)
        latent, head, name = _official_plddt(network, config, offline=offline, precision=precision)
        return latent, head, name
    return None


def plddt_latent_config(model: Any, cfg):
    """Config of the network whose latent feeds the pLDDT head (the 1.6B for released models).

    ``model`` is a spec as in :func:`load_model`, ``cfg`` its :func:`model_config`.
    """
    if isinstance(model, LoadedModel):
        latent = model.plddt_latent
        return getattr(latent, "config", None) if latent is not None else cfg
    if cfg is not None and cfg.name in _released_names():
        from simplefold.model.config import OFFICIAL_SIZES

        return OFFICIAL_SIZES[PLDDT_LATENT_WEIGHTS]()
    return cfg


def plddt_head_config(model: Any, cfg):
    """Config of the pLDDT head :func:`load_model` would give ``model``, without loading weights.

    A converted directory's own ``plddt/`` head, else the official head for released
    architectures; None when no head is known. ``model`` is a spec as in :func:`load_model`, ``cfg``
    its :func:`model_config`.
    """
    if isinstance(model, LoadedModel):
        return getattr(model.plddt_head, "config", None)
    if isinstance(model, (str, os.PathLike)):
        path = demo_model_path() if str(model) == DEMO_MODEL else Path(model).expanduser()
        own = path / PLDDT_SUBDIR / "config.json"
        if own.is_file():
            from simplefold.model.config import config_from_dict

            try:
                return config_from_dict(json.loads(own.read_text(encoding="utf-8")))
            except (OSError, ValueError, TypeError) as exc:
                raise ModelNotFoundError(f"{own}: not a pLDDT head config ({exc})") from None
    if cfg is not None and cfg.name in _released_names():
        from simplefold.model.config import OFFICIAL_PLDDT_SIZES
        from simplefold.weights.registry import get_entry

        return OFFICIAL_PLDDT_SIZES[get_entry(PLDDT_HEAD_WEIGHTS).arch]()
    return None


def model_spec_name(spec: Any) -> str:
    """The name a spec's model will have (:attr:`LoadedModel.name`), without loading weights."""
    if isinstance(spec, (str, os.PathLike)):
        p = Path(spec).expanduser()
        if p.is_dir() and str(spec) != DEMO_MODEL:
            cfg = model_config(p)
            return getattr(cfg, "name", p.name) if cfg is not None else p.name
        return str(spec)
    return type(spec).__name__

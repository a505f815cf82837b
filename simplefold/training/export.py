"""Export a training run's checkpoint as a converted model directory (what ``predict --model DIR`` loads).

``export_run(run_dir, out_dir)`` restores one checkpoint of a run written by
:func:`simplefold.training.loop.train` and writes, with :func:`simplefold.weights.checkpoints.save_converted`::

    OUT/config.json          the FoldingConfig of the run (compute dtype reset to float32)
    OUT/state/               Orbax state of the FoldingDiT (EMA weights by default)
    OUT/train_config.json    the run's TrainConfig, plus which checkpoint/weights were exported

The run directory is only read: checkpoints are opened with a read-only ``CheckpointManager`` (no
temp-directory clean-up), so a training process that is still writing to it is not disturbed.
The output is written to a temporary sibling directory and renamed into place at the end, so an
interrupted export never leaves a half-written model at ``out_dir``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
from typing import Any

from simplefold.utils.files import publish_directory

logger = logging.getLogger(__name__)

#: Provenance file written next to the converted model.
TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINTS_DIR = "checkpoints"


class ExportError(ValueError):
    """The run cannot be exported (no checkpoint, unknown step, existing output); names the path."""


def _open_manager(ckpt_dir: pathlib.Path):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(read_only=True, create=False, cleanup_tmp_directories=False)
    return ocp.CheckpointManager(ckpt_dir, options=options)


def _select_step(manager, ckpt_dir: pathlib.Path, step: int | str | None, best_metric: str | None) -> int:
    steps = sorted(manager.all_steps())
    if not steps:
        raise ExportError(f"{ckpt_dir}: no finished checkpoint")
    if step is None or step == "latest":
        return steps[-1]
    if step == "best":
        if not best_metric:
            raise ExportError(f"{ckpt_dir}: the run has no checkpoint.best_metric; pass a step number")
        scored = []
        for s in steps:
            m = manager.metrics(s)
            if m and best_metric in m:
                scored.append((float(m[best_metric]), s))
        if not scored:
            raise ExportError(f"{ckpt_dir}: no checkpoint carries the metric {best_metric!r}; pass a step number")
        return max(scored)[1]  # higher is better (validation lDDT); ties -> later step
    try:
        wanted = int(step)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"step must be an integer, 'latest' or 'best', got {step!r}") from exc
    if wanted not in steps:
        raise ExportError(f"{ckpt_dir}: no checkpoint of step {wanted} (available: {', '.join(map(str, steps))})")
    return wanted


def run_model_config(config) -> Any:
    """The ``FoldingConfig`` a run trained (float32), without building the model.

    For a fine-tuning run (``model.init_from``) the architecture is that of the initial weights:
    the ``config.json`` of a converted directory, the preset for an official ``.ckpt``, or the
    released model's converted directory (resolved offline).
    """
    from simplefold.training import state as state_lib

    preset_cfg = state_lib.model_config(config.model, "float32")
    init_from = config.model.init_from
    if not init_from:
        return preset_cfg
    from simplefold.weights import checkpoints
    from simplefold.model.config import config_from_dict

    path = pathlib.Path(init_from).expanduser()
    if path.is_file():
        cfg = checkpoints.folding_config(preset_cfg.name if preset_cfg.name != "custom" else preset_cfg)
    else:
        if not path.is_dir():
            from simplefold.weights import cache

            path = pathlib.Path(cache.resolve(init_from, offline=True))
        cfg = config_from_dict(json.loads((path / "config.json").read_text()))
    return dataclasses.replace(cfg, dtype="float32")


def _abstract_state(model_cfg, config):
    """ShapeDtypeStruct tree of the run's train state on this host's first device."""
    import jax
    from flax import nnx

    from simplefold.training import state as state_lib

    tx = state_lib.make_optimizer(config.optim)

    def init_fn():
        model = state_lib.build_model(model_cfg, 0)
        _, params, rest = state_lib.split_model(model)
        return state_lib.init_state(params, rest, tx, 0)

    graphdef, _, _ = state_lib.split_model(nnx.eval_shape(lambda: state_lib.build_model(model_cfg, 0)))
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), jax.eval_shape(init_fn))
    return graphdef, abstract


def restore_run_model(run_dir: str | os.PathLike, *, step: int | str | None = None, use_ema: bool = True):
    """Restore a run's model from one checkpoint.

    Args:
      run_dir: the run's ``loop.output_dir``.
      step: checkpoint step; None / "latest" = newest; "best" = highest ``checkpoint.best_metric``.
      use_ema: EMA weights (what validation and releases use) instead of the raw parameters.

    Returns:
      ``(module, info)``: the ``FoldingDiT`` (float32) and a dict with ``step``, ``weights`` and
      ``train_config`` (the run config stored in the checkpoint).

    Raises:
      ExportError: not a run directory, no checkpoint, or unknown step (names the path).
    """
    import orbax.checkpoint as ocp
    from flax import nnx

    from simplefold.training.config import config_from_dict

    run_dir = pathlib.Path(run_dir).expanduser().absolute()
    ckpt_dir = run_dir / CHECKPOINTS_DIR
    if not ckpt_dir.is_dir():
        raise ExportError(f"{run_dir}: not a training run (no {CHECKPOINTS_DIR}/ directory)")
    manager = _open_manager(ckpt_dir)
    try:
        run_cfg_path = run_dir / "config.json"
        best_metric = None
        if run_cfg_path.is_file():
            best_metric = json.loads(run_cfg_path.read_text()).get("checkpoint", {}).get("best_metric")
        chosen = _select_step(manager, ckpt_dir, step, best_metric)
        saved_cfg = manager.restore(chosen, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        config = config_from_dict(dict(saved_cfg), where=f"{ckpt_dir / str(chosen)}/config")
        model_cfg = run_model_config(config)
        graphdef, abstract = _abstract_state(model_cfg, config)
        restored = manager.restore(chosen, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
    finally:
        manager.close()
    params = restored["ema_params" if use_ema else "params"]
    module = nnx.merge(graphdef, params, restored["model_state"])
    info = {"step": int(chosen), "weights": "ema" if use_ema else "params", "train_config": config.to_dict()}
    return module, info


def export_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    step: int | str | None = None,
    use_ema: bool = True,
    overwrite: bool = False,
) -> pathlib.Path:
    """Write one checkpoint of a training run as a converted model directory.

    Args:
      run_dir: the run's output directory (``checkpoints/<step>/``, ``config.json``).
      out_dir: the converted model directory to create (loadable by ``checkpoints.load_converted``
        and ``simplefold predict --model OUT``).
      step: None / "latest" (newest), "best" (highest validation metric) or a step number.
      use_ema: export the EMA weights (default) or the raw parameters.
      overwrite: replace an existing ``out_dir`` (otherwise it is an error).

    Returns:
      The absolute ``out_dir``.

    Raises:
      ExportError: see :func:`restore_run_model`, or ``out_dir`` exists without ``overwrite``.
    """
    from simplefold.weights import checkpoints

    out = pathlib.Path(out_dir).expanduser().absolute()
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    module, info = restore_run_model(run_dir, step=step, use_ema=use_ema)
    provenance = {
        "run_dir": str(pathlib.Path(run_dir).expanduser().absolute()),
        "step": info["step"],
        "weights": info["weights"],
        "train_config": info["train_config"],
    }

    def write(tmp: pathlib.Path) -> None:
        checkpoints.save_converted(module, tmp)
        (tmp / TRAIN_CONFIG_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")

    try:
        publish_directory(out, write, overwrite=overwrite)
    except FileExistsError as exc:  # created by someone else while we wrote
        raise ExportError(str(exc)) from None
    logger.info("exported step %d (%s weights) of %s to %s", info["step"], info["weights"], run_dir, out)
    return out

"""Orbax checkpoints of a training run: state, loader position and run config, every K steps.

Each step directory ``<run>/checkpoints/<step>/`` holds the items

* ``state``: the train-state pytree (params, EMA, optimizer, step, PRNG key, model buffers);
* ``loader``: the grain iterator state (JSON);
* ``config``: the run's :class:`TrainConfig` as JSON (so every checkpoint is self-describing);

plus Orbax's metrics (validation results) used to keep the best checkpoint. Saving is
asynchronous (training continues while files are written); :meth:`RunCheckpointer.close` waits.
The ``keep_last`` most recent checkpoints and the ``keep_best`` best by ``best_metric`` are kept.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from simplefold.training.config import CheckpointSection

logger = logging.getLogger(__name__)


class RunCheckpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` for the three items of a run."""

    def __init__(self, directory: str | pathlib.Path, cfg: CheckpointSection):
        self.directory = pathlib.Path(directory).absolute()
        self.cfg = cfg
        policies: list[Any] = [cm.LatestN(n=max(1, cfg.keep_last))]
        if cfg.keep_best > 0:
            metric = cfg.best_metric
            policies.append(
                cm.BestN(
                    get_metric_fn=lambda m: m[metric],
                    reverse=False,
                    n=cfg.keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            create=True,
            enable_async_checkpointing=cfg.async_save,
            preservation_policy=cm.AnyPreservationPolicy(policies),
            cleanup_tmp_directories=True,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        loader_state: Mapping[str, Any],
        config: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Start saving (asynchronously); returns False when a checkpoint of this step exists."""
        if step in self.manager.all_steps():
            return False
        metrics = None if metrics is None or self.cfg.best_metric not in metrics else dict(metrics)
        saved = self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                loader=ocp.args.JsonSave(dict(loader_state)),
                config=ocp.args.JsonSave(dict(config)),
            ),
            metrics=metrics,
            force=True,
        )
        logger.info("checkpoint of step %d %s", step, "started" if saved else "skipped")
        return bool(saved)

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """(state, loader_state, config) of ``step``; arrays get the shardings of ``abstract_state``."""
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                loader=ocp.args.JsonRestore(),
                config=ocp.args.JsonRestore(),
            ),
        )
        return restored["state"], dict(restored["loader"]), dict(restored["config"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(state: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` tree (with shardings) matching ``state``, the restore target."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)

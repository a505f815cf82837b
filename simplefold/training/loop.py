"""``train(config)``: the training driver (init or resume, loop, logging, validation, checkpoints).

Run directory ``loop.output_dir``::

    config.json              the resolved run config
    metrics.jsonl            one line per logged step (loss terms, grad norm, lr, throughput) and
                             per validation (``val/*``); on resume, lines after the restored step
                             are dropped so the file always describes one consistent run
    tensorboard/             event files (tensorboardX)
    checkpoints/<step>/      Orbax checkpoints (see :mod:`simplefold.training.checkpointing`)
    loss_curve.png           written at the end

Exact resumption: restarting with the same command restores params, EMA, optimizer state, step,
PRNG key and loader position from the newest checkpoint; every later step then sees the same
batch and the same random draws as an uninterrupted run (on CPU the losses are bit-identical).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from simplefold.training.config import TrainConfig
from simplefold.utils.files import append_jsonl, read_jsonl

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """Summary of a ``train`` call."""

    output_dir: pathlib.Path
    start_step: int
    final_step: int
    stopped_early: str | None  # "sigterm" | "time_limit" | None
    last_metrics: Mapping[str, float]
    last_validation: Mapping[str, float]


class _MetricsLog:
    """Append-only JSONL + TensorBoard writer (process 0 only)."""

    def __init__(self, out: pathlib.Path, enabled: bool, tensorboard: bool):
        self.enabled = enabled
        self.path = out / METRICS_FILE
        self.tb = None
        if enabled and tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(out / "tensorboard"))
            except ImportError:
                logger.warning("tensorboardX is not installed; TensorBoard logging disabled")

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after ``step`` (from a run killed after its last checkpoint)."""
        if not (self.enabled and self.path.exists()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("step", 0) <= step:
                kept.append(line)
        self.path.write_text("".join(k + "\n" for k in kept))

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.path, record)
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k if "/" in k else f"train/{k}", v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(output_dir: str | pathlib.Path) -> list[dict[str, Any]]:
    """Records of a run's ``metrics.jsonl``."""
    return read_jsonl(pathlib.Path(output_dir) / METRICS_FILE)


def plot_loss_curve(output_dir: str | pathlib.Path) -> pathlib.Path | None:
    """Write ``loss_curve.png`` (training loss terms and validation metrics vs step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(output_dir)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val/lddt" in r]
    if not train:
        return None
    fig, axes = plt.subplots(1, 2 if val else 1, figsize=(11 if val else 6, 4), squeeze=False)
    ax = axes[0, 0]
    steps = [r["step"] for r in train]
    for key in ("loss", "mse", "smooth_lddt_loss"):
        if key in train[0]:
            ax.plot(steps, [r[key] for r in train], label=key)
    ax.set_xlabel("step")
    ax.set_yscale("log")
    ax.set_title("training loss")
    ax.legend()
    if val:
        ax = axes[0, 1]
        vsteps = [r["step"] for r in val]
        for key in ("val/lddt", "val/tm_score"):
            ax.plot(vsteps, [r[key] for r in val], marker="o", label=key)
        ax.set_xlabel("step")
        ax.set_ylim(0, 1)
        ax.set_title("validation (EMA weights)")
        ax.legend()
    fig.tight_layout()
    path = pathlib.Path(output_dir) / "loss_curve.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _load_init_module(init_from: str, preset_cfg):
    """Module with the weights to fine-tune from: converted dir, official .ckpt, or released name."""
    from simplefold.weights import checkpoints

    path = pathlib.Path(init_from).expanduser()
    if path.is_dir():
        return checkpoints.load_converted(path).module
    if path.is_file():
        return checkpoints.load_official_module(path, preset_cfg.name if preset_cfg.name != "custom" else preset_cfg)
    from simplefold.weights import cache

    return checkpoints.load_converted(cache.resolve(init_from)).module


#: Sub-directory of the run with the validation samples (``step_<step>/<id>_sample_0.pdb``) and the
#: experimental chains they are scored against (``references/<id>.pdb``): ``simplefold evaluate
#: RUN/validation/step_<step> RUN/validation/references`` reproduces the logged ``val/*`` numbers.
VALIDATION_DIR = "validation"


def validation_step_dir(output_dir: str | pathlib.Path, step: int) -> pathlib.Path:
    """Where the validation samples of ``step`` are written."""
    return pathlib.Path(output_dir) / VALIDATION_DIR / f"step_{step}"


def write_validation_references(output_dir: str | pathlib.Path, examples) -> pathlib.Path:
    """Write each validation chain to ``<output_dir>/validation/references/<id>.pdb``; returns the folder."""
    from simplefold.io.structure import write_structure

    ref_dir = pathlib.Path(output_dir) / VALIDATION_DIR / "references"
    ref_dir.mkdir(parents=True, exist_ok=True)
    for ex in examples:
        path = ref_dir / f"{ex.record.id}.pdb"
        if not path.exists():
            write_structure(path, ex.reference())
    return ref_dir


def check_validation_sampler(cfg: TrainConfig) -> None:
    """Refuse validation settings on which the official sampler is numerically unstable.

    With the official log-spaced grid and fewer than 230 steps the first Euler–Maruyama step
    multiplies the initial noise (×36 for 10 steps), so validation samples explode and the
    metrics (CA-RMSD of hundreds of Å, lDDT 0) say nothing about the model.
    """
    from simplefold.sampling import sampler

    if cfg.validation.every_steps <= 0 or cfg.validation.num_proteins <= 0:
        return
    sc = sampler.SamplerConfig(num_steps=cfg.validation.num_steps, tau=cfg.validation.tau)
    msg = sc.stability_warning()
    if msg:
        raise ValueError(f"validation.num_steps={cfg.validation.num_steps}: {msg}; set validation.num_steps "
                         f">= {sampler.min_stable_steps(sc)}")


def _validate(graphdef, ema_params, model_state, examples, cfg: TrainConfig, step: int,
              out_dir: pathlib.Path | None = None) -> dict[str, float]:
    """Sample each validation chain with the EMA weights and score it as ``simplefold evaluate`` does.

    Every sample becomes a structure with all template atoms (as ``simplefold predict`` writes it),
    is scored against the experimental chain with :func:`simplefold.evaluation.metrics.evaluate_pair` (TM-score,
    GDT-TS, all-atom lDDT, CA-RMSD in Å) and, when ``out_dir`` is given, written to
    :func:`validation_step_dir`. Also logged: median backbone geometry of the samples (N–CA, CA–CA,
    Å), their radius of gyration relative to the native and clashes per atom
    (:mod:`simplefold.evaluation.geometry`). A sample that fails the structure check (non-finite or beyond
    ±9999 Å) is not written, scores 0 in lDDT/TM/GDT and is left out of the distance means; it
    is counted in ``val/failed``.
    """
    import jax
    from flax import nnx

    from simplefold.evaluation import geometry, metrics
    from simplefold.io.structure import write_structure
    from simplefold.sampling import sampler

    model = nnx.merge(graphdef, ema_params, model_state)
    keys = ("tm_score", "gdt_ts", "lddt", "rmsd_ca", "n_ca", "ca_ca", "rg_ratio", "clashes_per_atom")
    scores: dict[str, list[float]] = {k: [] for k in keys}
    failed = 0
    step_dir = validation_step_dir(out_dir, step) if out_dir is not None else None
    if step_dir is not None:
        step_dir.mkdir(parents=True, exist_ok=True)
    key = jax.random.PRNGKey(cfg.validation.seed)
    for i, ex in enumerate(examples):
        y = sampler.sample(
            model, ex.feats, num_steps=cfg.validation.num_steps, tau=cfg.validation.tau, key=jax.random.fold_in(key, i)
        )
        coords = np.asarray(sampler.postprocess(y, ex.feats["atom_pad_mask"]))[0, : ex.num_atoms]
        pred = ex.prediction(coords)
        ref = ex.reference()
        errors, _ = geometry.check_prediction(pred)
        if errors:
            failed += 1
            logger.warning("step %d validation %s: %s", step, ex.record.id, "; ".join(errors))
            for k in ("tm_score", "gdt_ts", "lddt"):
                scores[k].append(0.0)
            continue
        if step_dir is not None:
            write_structure(step_dir / f"{ex.record.id}_sample_0.pdb", pred)
        e = metrics.evaluate_pair(pred, ref)
        g = geometry.structure_geometry(pred)
        g_ref = geometry.structure_geometry(ref, clashes=False)
        for k in ("tm_score", "gdt_ts", "lddt", "rmsd_ca"):
            scores[k].append(float(e[k]))
        scores["n_ca"].append(g["n_ca"])
        scores["ca_ca"].append(g["ca_ca"])
        scores["rg_ratio"].append(g["rg"] / g_ref["rg"])
        scores["clashes_per_atom"].append(g["clashes_per_atom"])
    out = {f"val/{k}": float(np.mean(v)) for k, v in scores.items() if v}
    for k in ("n_ca", "ca_ca", "rg_ratio"):  # medians: robust to a few wild samples
        if scores[k]:
            out[f"val/{k}"] = float(np.median(scores[k]))
    out["val/failed"] = float(failed)
    return out


def train(
    config: TrainConfig,
    *,
    on_step: Callable[[int, Mapping[str, float]], None] | None = None,
) -> TrainResult:
    """Train (or resume) the run described by ``config``; see the module docstring.

    Args:
      config: the run.
      on_step: optional callback ``(step, metrics)`` after every logged step (tests, notebooks).

    Raises:
      ValueError / FileNotFoundError: bad config or data (messages name the offending item).
    """
    from simplefold.training import sharding

    check_validation_sampler(config)
    sharding.maybe_initialize_distributed(config.mesh)

    import jax

    from simplefold.training import checkpointing, loader, state as state_lib, step as step_lib

    out = pathlib.Path(config.loop.output_dir).absolute()
    is_main = jax.process_index() == 0
    out.mkdir(parents=True, exist_ok=True)
    if is_main:
        (out / "config.json").write_text(config.to_json() + "\n")

    mesh = sharding.make_mesh(config.mesh)
    compute_dtype = state_lib.resolve_compute_dtype(config.loop.compute_dtype)
    model_cfg = state_lib.model_config(config.model, compute_dtype)
    init_module = None
    if config.model.init_from:
        init_module = _load_init_module(config.model.init_from, model_cfg)
        model_cfg = dataclasses.replace(init_module.config, dtype=compute_dtype)
        logger.info("fine-tuning from %s (%s)", config.model.init_from, model_cfg.name)
    loader.check_condition(model_cfg.condition, config.data)
    tx = state_lib.make_optimizer(config.optim)
    graphdef, init_fn = state_lib.state_initializer(
        model_cfg, tx, init_seed=config.model.init_seed, seed=config.loop.seed
    )
    abstract = jax.eval_shape(init_fn)
    shardings = sharding.state_shardings(abstract, mesh, config.mesh.min_shard_elements)
    with jax.set_mesh(mesh):
        state = jax.jit(init_fn, out_shardings=shardings)()
    if init_module is not None:
        _, params, rest = state_lib.split_model(init_module)
        params = jax.device_put(params, shardings["params"])
        state = dict(
            state,
            params=params,
            ema_params=jax.device_put(jax.tree.map(np.asarray, params), shardings["ema_params"]),
            model_state=jax.device_put(rest, shardings["model_state"]),
            opt_state=jax.jit(tx.init, out_shardings=shardings["opt_state"])(params),
        )
        del init_module
    n_params = state_lib.count_params(state["params"])
    logger.info(
        "model %s: %.2fM parameters, compute %s, mesh %s, %.0f%% of the state sharded",
        model_cfg.name, n_params / 1e6, compute_dtype, dict(mesh.shape), 100 * sharding.fraction_sharded(state),
    )

    local_batch = sharding.local_batch_size(config.data.batch_per_device, mesh)
    data_iter = loader.make_train_iterator(
        config.data,
        condition=model_cfg.condition,
        batch_per_host=local_batch,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
    )

    ckpt = checkpointing.RunCheckpointer(out / "checkpoints", config.checkpoint)
    log = _MetricsLog(out, is_main, config.loop.tensorboard)
    start_step = 0
    latest = ckpt.latest_step()
    if latest is not None:
        state, loader_state, saved_cfg = ckpt.restore(latest, checkpointing.abstract_like(state, shardings))
        data_iter.set_state(loader_state)
        start_step = int(jax.device_get(state["step"]))
        if saved_cfg != json.loads(config.to_json()):
            logger.warning("resuming %s with a config that differs from the checkpoint's", out)
        logger.info("resumed from checkpoint of step %d", start_step)
    log.truncate_after(start_step)

    val_examples = []
    # every process builds the same examples: sampling with sharded weights is a collective program
    if config.validation.every_steps > 0 and config.validation.num_proteins > 0:
        val_examples = loader.validation_examples(
            config.data.data_dir, config.data.val_split,
            num_proteins=config.validation.num_proteins, max_tokens=config.validation.max_tokens,
            seed=config.validation.seed, condition=model_cfg.condition,
            esm_model=config.data.esm_model, esm_cache=config.data.esm_cache,
        )
        if not val_examples:
            logger.warning("no %r records for validation; validation disabled", config.data.val_split)
        elif is_main:
            write_validation_references(out, val_examples)

    train_step = jax.jit(
        step_lib.make_train_step(
            graphdef, tx, config.optim, config.loss, config.data.multiplicity, augment=config.data.augment
        ),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )

    stop_reason: list[str] = []
    previous_handler = None
    try:
        previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop_reason.append("sigterm"))
    except ValueError:  # not the main thread (e.g. notebook worker): no SIGTERM handling
        pass

    def save(step: int, val_metrics: Mapping[str, float] | None = None) -> None:
        ckpt.save(step, state, data_iter.get_state(), config.to_dict(), metrics=val_metrics)

    from tqdm import tqdm

    from simplefold.training.eta import TrainingETA, format_seconds

    # tqdm's own "remaining" would count compilation after a resume as step time: the ETA shown
    # is TrainingETA's (simplefold.training.eta)
    bar = tqdm(
        total=config.loop.max_steps, initial=start_step, desc="train", unit="step",
        disable=not (config.loop.progress_bar and is_main), dynamic_ncols=True,
        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]",
    )
    eta = TrainingETA(start_step, config.loop.max_steps,
                      config.validation.every_steps if val_examples else None)
    postfix: dict[str, str] = {"eta": "?"}
    last_metrics: dict[str, float] = {}
    last_val: dict[str, float] = {}
    t_start = time.time()
    t_log, residues_since, steps_since = time.time(), 0.0, 0
    step = start_step
    try:
        while step < config.loop.max_steps:
            t_step = time.perf_counter()
            host_batch = next(data_iter)
            residues_since += float(np.sum(host_batch["token_pad_mask"])) * jax.process_count()
            with jax.set_mesh(mesh):
                state, metrics = train_step(state, sharding.global_batch(host_batch, mesh))
            step += 1
            steps_since += 1
            eta.step_done(step, time.perf_counter() - t_step)
            postfix["eta"] = format_seconds(eta.seconds_left())
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if step % config.loop.log_every == 0 or step == config.loop.max_steps:
                values = {k: float(v) for k, v in jax.device_get(metrics).items()}
                if not all(np.isfinite(v) for v in values.values()):
                    raise FloatingPointError(f"non-finite training metrics at step {step}: {values}")
                dt = max(time.time() - t_log, 1e-9)
                record = {"step": step, **values, "steps_per_s": steps_since / dt, "residues_per_s": residues_since / dt}
                log.write(record)
                postfix.update(loss=f"{values['loss']:.4f}", lddt=f"{values.get('lddt', float('nan')):.3f}")
                last_metrics = record
                if on_step is not None:
                    on_step(step, record)
                t_log, residues_since, steps_since = time.time(), 0.0, 0
            val_now = bool(val_examples) and (step % config.validation.every_steps == 0)
            if val_now:
                t_val = time.perf_counter()
                with jax.set_mesh(mesh):
                    last_val = _validate(graphdef, state["ema_params"], state["model_state"], val_examples, config, step,
                                         out if is_main else None)
                eta.pause_done(time.perf_counter() - t_val)
                log.write({"step": step, **last_val})
                logger.info("step %d validation: %s", step, {k: round(v, 4) for k, v in last_val.items()})
            if step % config.checkpoint.every_steps == 0:
                save(step, last_val if val_now else None)
            if config.loop.time_limit_s is not None and time.time() - t_start > config.loop.time_limit_s:
                stop_reason.append("time_limit")
            if stop_reason:
                logger.warning("stopping at step %d (%s); saving a checkpoint", step, stop_reason[0])
                break
        save(step)
    finally:
        bar.close()
        ckpt.close()
        log.close()
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    if is_main:
        plot_loss_curve(out)
    return TrainResult(out, start_step, step, stop_reason[0] if stop_reason else None, last_metrics, last_val)

"""The folding engine (:class:`Folder`) and its results (:class:`FoldResult`, :class:`Sample`).

A :class:`Folder` folds one target at a time with a :class:`simplefold.predict.loading.LoadedModel`
(every step is deterministic):

* **Features.** Each target is featurised once (batch 1) and padded to its residue and atom
  buckets (:mod:`simplefold.predict.planning`); bucket padding is masked inside the network, so one
  compiled sampler serves every protein of a bucket.
* **Samples and chunks.** The ``S`` samples of a target share its batch-1 features (the sampler
  vmaps the network over samples; features are never copied S times). Samples run in chunks of
  ``plan.chunk`` samples; the last chunk is padded with repeats so all chunks reuse one
  compilation.
* **Randomness.** Sample ``k`` of target ``name`` draws all its noise from
  ``sampler.sample_keys(seed, name, ...)[k]``, i.e. from (seed, name, k) only, and the draws of an
  atom slot do not depend on the padding after it. A sample is therefore the same whether it runs
  alone, in a chunk of 4, or in another bucket, to the bit on CPU (:mod:`simplefold.reproducible`).
* **Devices.** With more than one local device, a 1-D mesh ``("samples",)`` over all of them
  shards the sample axis (``NamedSharding``); features and weights are replicated.
* **pLDDT.** The sampler output goes through the model's pLDDT pair
  (:mod:`simplefold.predict.loading`); pLDDT (0-100) is stored per residue and copied to every
  atom's B-factor.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from simplefold import features as F
from simplefold.evaluation import geometry
from simplefold.predict.loading import LoadedModel, plddt_head_config, plddt_latent_config
from simplefold.predict.options import FoldOptions
from simplefold.predict.planning import TargetPlan, bucket_key, default_memory_budget, plan_target
from simplefold.predict.targets import Target, TargetError, check_target

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Sample:
    """One predicted structure.

    Attributes:
      index: sample number k (0-based; the PRNG key depends on it).
      structure: the prediction (Å, centred on its atoms; pLDDT x 100 per atom in ``b_factors``,
        0 when pLDDT is off).
      plddt: ``(M,)`` per-residue pLDDT in [0, 100], or None.
      rank: 1 = highest mean pLDDT among the target's samples (ties: lower index); None without pLDDT.
      errors: problems that make the structure unwritable (non-finite or absurd coordinates), from
        :func:`simplefold.evaluation.geometry.check_prediction`; ``simplefold predict`` fails the target.
      warnings: implausible local chemistry or a collapsed sample (the file is written and flagged).
    """

    index: int
    structure: Any
    plddt: np.ndarray | None = None
    rank: int | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def mean_plddt(self) -> float | None:
        return None if self.plddt is None else float(np.mean(self.plddt))


@dataclasses.dataclass(frozen=True)
class FoldResult:
    """All samples of one target, in sample order, plus run information.

    Attributes:
      target: the :class:`simplefold.predict.targets.Target`.
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



@dataclasses.dataclass(frozen=True)
class _PureFn:
    """A jit-friendly pLDDT function: weights are traced arguments, the graph is static."""

    latent_graph: Any
    head_graph: Any
    latent_obj: Any = None  # a non-nnx callable (closed over)
    head_obj: Any = None

    def __call__(self, params, y, t, feats):
        from flax import nnx

        latent_net = nnx.merge(self.latent_graph, params[0]) if self.latent_graph is not None else self.latent_obj
        head = nnx.merge(self.head_graph, params[1]) if self.head_graph is not None else self.head_obj

        # batch-1 features broadcast over the S samples inside both networks
        return head(latent_net(y, t, feats)["latent"], feats)["plddt"]


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


_PLDDT_JIT: dict[str, Any] = {}


def _plddt_apply(fn: _PureFn, params, y, feats, precision: str = "float32"):
    """Jitted pLDDT of sampler outputs ``y`` (S, N, 3); one module-level cache per precision for all Folders."""
    import jax.numpy as jnp

    if precision not in _PLDDT_JIT:
        from simplefold.reproducible import precision_jit

        _PLDDT_JIT[precision] = precision_jit(lambda f, p, yy, tt, ff: f(p, yy, tt, ff), precision, static_argnums=0)
    # t = 1 enters as an argument, not a constant: XLA constant-folds a constant time embedding
    # differently for one sample than for several, and a sample's pLDDT would depend on its chunk
    t = jnp.ones((y.shape[0],), jnp.float32)
    return _PLDDT_JIT[precision](fn, params, y, t, feats)


class _Placement:
    """Devices of a run: a 1-D ``("samples",)`` mesh over several devices, nothing for one."""

    def __init__(self, devices: Sequence[Any] | None):
        import jax

        self.devices = list(devices or jax.local_devices())
        self.mesh = None
        if len(self.devices) > 1:
            self.mesh = jax.sharding.Mesh(np.array(self.devices), ("samples",))

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


class Folder(_Placement):
    """Folds targets one at a time with a loaded model; the engine of :func:`simplefold.predict.fold` and the CLI.

    Compiled functions are cached per (bucket, chunk) shape by JAX, so a Folder reused over many
    targets compiles once per bucket.
    """

    def __init__(self, model: LoadedModel, options: FoldOptions, *, devices: Sequence[Any] | None = None):
        from simplefold.sampling import sampler

        super().__init__(devices)
        self.model = model
        self.options = options
        self.sampler_config = options.sampler_config()
        self.sampler_warning = self.sampler_config.stability_warning()
        if self.sampler_warning:
            logger.warning("%s", self.sampler_warning)
        self.budget = int(options.max_memory_gb * 1e9) if options.max_memory_gb else default_memory_budget(self.devices)
        self.device_kind = self.devices[0].device_kind if self.devices[0].platform != "cpu" else "cpu"
        # a Folder without a network (pLDDT phase of a phased run) only scores saved samples
        vm = sampler.as_velocity_model(model.network) if model.network is not None else None
        from simplefold.model.folding import FoldingDiT

        self._network_features = isinstance(_module_of(model.network), FoldingDiT) and (
            not options.plddt or model.plddt_latent is None or isinstance(_module_of(model.plddt_latent), FoldingDiT)
        )
        self._velocity = dataclasses.replace(vm, params=self._replicate(vm.params)) if vm is not None else None
        self.plddt_enabled = options.plddt and model.plddt_head is not None
        if options.plddt and model.plddt_head is None:
            logger.warning("model %s has no pLDDT head: pLDDT is not computed (B-factors are 0)", model.name)
        self._plddt_fn = self._plddt_params = None
        if self.plddt_enabled:
            self.attach_plddt(model.plddt_latent, model.plddt_head, model.plddt_name)
        self._latent_cfg = plddt_latent_config(model, model.config) if self.plddt_enabled else None
        self._head_cfg = plddt_head_config(model, model.config) if self.plddt_enabled else None

    # -- planning -------------------------------------------------------------------
    def plan(self, target: Target) -> TargetPlan:
        return plan_target(
            target, self.model.config, dataclasses.replace(self.options, plddt=self.plddt_enabled),
            num_devices=len(self.devices), budget=self.budget, device_kind=self.device_kind,
            plddt_latent_cfg=self._latent_cfg, plddt_head_cfg=self._head_cfg,
        )

    def esm_features(self, targets: Sequence[Target]) -> dict[str, np.ndarray]:
        """ESM ``esm_s`` per target name (empty for embedding-conditioned models)."""
        if self.model.condition != "esm" or not targets:
            return {}
        from simplefold import esm

        encoder = self.model.ensure_esm()
        feats = esm.esm_features(encoder, [t.sequence for t in targets], cache=self.model.esm_cache)
        return {t.name: f for t, f in zip(targets, feats)}

    # -- phases ---------------------------------------------------------------------
    def attach_plddt(self, latent: Any, head: Any, name: str | None = None) -> None:
        """Give a Folder built without its pLDDT pair (sampling phase) the latent network and head
        (pLDDT phase of a phased run); ``latent`` None means the folding network itself."""
        self.model.plddt_latent, self.model.plddt_head, self.model.plddt_name = latent, head, name
        self.plddt_enabled = self.options.plddt and head is not None
        if not self.plddt_enabled:
            self._plddt_fn = None
            return
        lg, ls, lo = _split(latent if latent is not None else self.model.network)
        hg, hs, ho = _split(head)
        self._plddt_fn = _PureFn(lg, hg, lo, ho)
        self._plddt_params = self._replicate((ls, hs))

    def release_sampling(self) -> None:
        """Drop the folding network (after the sampling phase; the pLDDT phase does not need it unless
        it reads the network's own latent). The caller frees the buffers (:func:`release_arrays`)."""
        self._velocity = None
        self.model.network = None

    def release_plddt(self) -> None:
        """Drop the pLDDT pair (end of the pLDDT phase)."""
        self._plddt_fn = self._plddt_params = None
        self.model.plddt_latent = self.model.plddt_head = None

    def _device_features(self, target: Target, plan_: TargetPlan, esm_s: np.ndarray | None):
        import jax.numpy as jnp

        feats = F.featurize_sequence(target.sequence, esm_s=esm_s)
        n_real = int(feats["atom_pad_mask"].sum())
        padded = F.pad_to_bucket(feats, plan_.bucket_tokens, plan_.bucket_atoms)
        batched = {k: np.ascontiguousarray(v) for k, v in F.add_batch_axis(padded, 1).items()}
        if self._network_features:
            # only what the network reads; the (N, M) one-hots never reach the device
            from simplefold.model.folding import host_features

            batched = host_features(batched, self.model.condition)
        return self._replicate({k: jnp.asarray(v) for k, v in batched.items()}), n_real

    def sample_target(self, target: Target, *, esm_s: np.ndarray | None = None, progress: Any = None,
                      plddt: bool = False, step_progress: Any = None) -> "SampledTarget":
        """Sampling phase of one target: the raw (un-centred, model units) sampler outputs of all its samples.

        With ``plddt`` (and a pLDDT pair attached) the pLDDT of each chunk is computed right away
        (every model resident at once, the non-phased path); otherwise :meth:`score` adds it later.
        ``progress`` (tqdm-like) is advanced by the samples of each chunk; ``step_progress`` by
        sampler steps while a chunk runs (:meth:`steps_to_run` per target in all).

        Raises:
          TargetError: the target cannot be folded (the message names it).
        """
        import jax
        import jax.numpy as jnp

        from simplefold.sampling import sampler

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
        feats_dev, n_real = self._device_features(target, plan_, esm_s)
        timings["features"] = time.perf_counter() - t0

        s, chunk = plan_.num_samples, plan_.chunk
        keys = sampler.sample_keys(self.options.seed, target.name, s)
        raw_out: list[np.ndarray] = []
        plddt_out: list[np.ndarray] = []
        t_sample = t_plddt = 0.0
        for lo in range(0, s, chunk):
            kc = keys[lo : lo + chunk]
            n_here = kc.shape[0]
            if n_here < chunk:  # pad with repeats: one compiled shape per bucket
                kc = jnp.concatenate([kc, jnp.broadcast_to(kc[-1:], (chunk - n_here,))])
            kc = self._shard_samples(kc)
            t0 = time.perf_counter()
            on_step = None
            if step_progress is not None:
                last = [0]

                def on_step(done: int, total: int, last=last) -> None:
                    step_progress.update(done - last[0])
                    last[0] = done

            y = sampler.sample(self._velocity, feats_dev, key=kc, config=self.sampler_config, on_step=on_step)
            y = jax.block_until_ready(y)
            t_sample += time.perf_counter() - t0
            if plddt and self.plddt_enabled:
                t0 = time.perf_counter()
                p = _plddt_apply(self._plddt_fn, self._plddt_params, y, feats_dev, self.options.precision)
                plddt_out.append(np.asarray(p)[:n_here, : plan_.length] * 100.0)
                t_plddt += time.perf_counter() - t0
            raw_out.append(np.asarray(y)[:n_here])
            if progress is not None:
                progress.update(n_here)
        timings["sampling"] = t_sample
        if plddt_out:
            timings["plddt"] = t_plddt
        timings["total"] = time.perf_counter() - t_start
        return SampledTarget(target, plan_, np.concatenate(raw_out), n_real, np.asarray(feats_dev["atom_pad_mask"]),
                             esm_s, timings,
                             np.concatenate(plddt_out).astype(np.float32) if plddt_out else None)

    def steps_to_run(self, target: Target) -> int:
        """Sampler steps :meth:`sample_target` runs for ``target`` (chunks x steps; 0 if it cannot run)."""
        try:
            plan_ = self.plan(target)
        except Exception:  # noqa: BLE001 - a bad target fails in sample_target with its message
            return 0
        if plan_.error:
            return 0
        return -(-plan_.num_samples // plan_.chunk) * self.sampler_config.num_steps

    def score(self, sampled: "SampledTarget") -> FoldResult:
        """pLDDT phase of one target (when a pLDDT pair is attached) and its :class:`FoldResult`."""
        import jax.numpy as jnp

        from simplefold.io.structure import structure_from_sequence
        from simplefold.sampling import sampler

        target, plan_ = sampled.target, sampled.plan
        timings = dict(sampled.timings)
        t_start = time.perf_counter()
        plddts = sampled.plddt
        s, chunk = plan_.num_samples, plan_.chunk
        feats_dev = None
        if plddts is None and self.plddt_enabled:
            feats_dev, _ = self._device_features(target, plan_, sampled.esm_s)
            out = []
            for lo in range(0, s, chunk):
                y = sampled.raw[lo : lo + chunk]
                n_here = y.shape[0]
                if n_here < chunk:  # pad with repeats: the sampling phase's compiled shape
                    y = np.concatenate([y, np.broadcast_to(y[-1:], (chunk - n_here, *y.shape[1:]))])
                p = _plddt_apply(self._plddt_fn, self._plddt_params, self._shard_samples(jnp.asarray(y)), feats_dev,
                                 self.options.precision)
                out.append(np.asarray(p)[:n_here, : plan_.length] * 100.0)
            plddts = np.concatenate(out).astype(np.float32)
            timings["plddt"] = time.perf_counter() - t_start
        mask = jnp.asarray(sampled.atom_mask)
        coords_out = []
        for lo in range(0, s, chunk):  # per chunk, in the sampling phase's shape (bit-identical centring)
            y = sampled.raw[lo : lo + chunk]
            n_here = y.shape[0]
            if n_here < chunk:
                y = np.concatenate([y, np.broadcast_to(y[-1:], (chunk - n_here, *y.shape[1:]))])
            coords_out.append(np.asarray(sampler.postprocess(jnp.asarray(y), mask))[:n_here, : sampled.n_real])
        coords = np.concatenate(coords_out)
        ranks = _ranks(plddts) if plddts is not None else [None] * s
        samples = []
        for k in range(s):
            b = plddts[k] if plddts is not None else np.zeros(plan_.length, np.float32)
            st = structure_from_sequence(target.sequence, coords[k], name=f"{target.name}_sample_{k}", b_factors=b)
            errors, warnings = geometry.check_prediction(st)
            for msg in errors + warnings:
                logger.warning("%s sample %d: %s", target.name, k, msg)
            samples.append(Sample(index=k, structure=st, plddt=None if plddts is None else plddts[k], rank=ranks[k],
                                  errors=tuple(errors), warnings=tuple(warnings)))
        timings["total"] = timings.get("total", 0.0) + time.perf_counter() - t_start
        return FoldResult(target=target, samples=tuple(samples), plan=plan_, timings=timings)

    # -- folding --------------------------------------------------------------------
    def fold_target(self, target: Target, *, esm_s: np.ndarray | None = None, progress: Any = None,
                    step_progress: Any = None) -> FoldResult:
        """Fold one target (all its samples) with every network resident.

        Args:
          target: the target (see :func:`simplefold.predict.targets.check_target`).
          esm_s: precomputed ``(M, E, C)`` ESM features for ESM-conditioned models (computed here
            when None).
          progress: optional tqdm-like bar advanced by the number of samples of each chunk.
          step_progress: optional tqdm-like bar advanced by sampler steps (see :meth:`sample_target`).

        Raises:
          TargetError: the target cannot be folded (the message names it).
        """
        return self.score(self.sample_target(target, esm_s=esm_s, progress=progress, plddt=True,
                                             step_progress=step_progress))

    def fold_iter(self, targets: Sequence[Target], *, progress: bool = False) -> Iterator[FoldResult | TargetError]:
        """Fold targets bucket by bucket; yields a FoldResult or the TargetError of each target
        (in processing order, which is by bucket then input order)."""
        order = sorted(range(len(targets)), key=lambda i: (bucket_key(targets[i], self.options), i))
        steps = [self.steps_to_run(targets[i]) for i in order] if progress else [0] * len(order)
        bar = progress_bar(total=sum(steps), desc="sampling", unit="step", disable=not progress)
        try:
            for i, n in zip(order, steps):
                start = bar.n
                bar.set_postfix_str(targets[i].name, refresh=False)
                try:
                    yield self.fold_target(targets[i], step_progress=bar if progress else None)
                except TargetError as exc:
                    yield exc
                finally:
                    bar.update(start + n - bar.n)
        finally:
            bar.close()


@dataclasses.dataclass(frozen=True)
class SampledTarget:
    """One target after the sampling phase (host arrays only).

    Attributes:
      raw: ``(S, N_bucket, 3)`` sampler outputs, un-centred, model units (what pLDDT reads).
      n_real: real atom slots (the rest of the bucket is padding).
      atom_mask: ``(1, N_bucket)`` the bucket's atom padding mask.
      esm_s: ``(M, E, C)`` ESM features it was sampled with (None for embedding models); the pLDDT
        latent network reads them too.
      plddt: ``(S, M)`` pLDDT when computed in the same pass, else None.
    """

    target: Target
    plan: TargetPlan
    raw: np.ndarray
    n_real: int
    atom_mask: np.ndarray
    esm_s: np.ndarray | None
    timings: dict[str, float]
    plddt: np.ndarray | None = None


def release_arrays(*trees: Any) -> None:
    """Delete the JAX buffers of ``trees`` (nnx modules, wrappers with ``.module``, pytrees) now,
    rather than whenever the last Python reference goes; the trees are unusable afterwards."""
    import jax
    from flax import nnx

    for tree in trees:
        if tree is None:
            continue
        module = _module_of(tree)
        leaves = jax.tree.leaves(nnx.state(module) if module is not None else tree)
        for leaf in leaves:
            if isinstance(leaf, jax.Array) and not leaf.is_deleted():
                leaf.delete()


def _ranks(plddts: np.ndarray) -> list[int]:
    """Rank 1 = highest mean pLDDT; ties broken by sample index."""
    means = plddts.mean(axis=1)
    order = sorted(range(len(means)), key=lambda k: (-means[k], k))
    ranks = [0] * len(means)
    for r, k in enumerate(order, 1):
        ranks[k] = r
    return ranks


def progress_bar(**kwargs):
    """A ``tqdm.auto`` progress bar (``disable=True`` for none)."""
    from tqdm.auto import tqdm

    return tqdm(**kwargs)


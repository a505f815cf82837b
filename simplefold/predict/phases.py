"""The phased run of ``simplefold predict``: ESM embeddings, then sampling, then pLDDT, one model resident at a time.

A run's peak memory is that of its largest phase, not the sum of every network:

1. **esm** – ESM2 embeddings of every target to fold, into the on-disk embedding cache
   (:class:`simplefold.esm.EmbeddingCache`, keyed by the ESM weights' identity and the sequence's
   sha256; ``OUT/.simplefold/esm`` when the model's cache is off); then ESM2 is released.
2. **sampling** – the folding network samples every target; each target's raw sampler outputs
   are saved to ``OUT/.simplefold/samples/<target>.npz`` (atomically, with the run fingerprint);
   then the network is released (unless the pLDDT pair reads its own latent: the released 1.6B, a
   directory's own ``plddt/`` head). Without pLDDT the targets' files are written here.
3. **plddt** – the pLDDT latent network and head are loaded and score the saved samples; each
   target's files are written and its samples file deleted.

Resume: a killed run loses at most the phase in progress: cached embeddings are not computed
again, saved samples whose fingerprint matches are not sampled again, complete targets are
skipped (:mod:`simplefold.predict.run`). Peak RSS per phase is logged and written to
``OUT/.simplefold/memory.json`` (:class:`simplefold.utils.memory.PhasePeaks`).

With an already-loaded :class:`~simplefold.predict.loading.LoadedModel` nothing can be reloaded, so
its networks stay resident; the phases and their files are the same.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simplefold.predict.engine import Folder, FoldResult, SampledTarget, progress_bar, release_arrays
from simplefold.predict.loading import (
    ESM_WEIGHTS,
    LoadedModel,
    load_model,
    load_plddt_pair,
    model_config,
    model_spec_name,
    plddt_head_config,
    plddt_needs_network,
    resolve_model_path,
)
from simplefold.predict.options import FoldOptions
from simplefold.predict.planning import TargetPlan, bucket_key
from simplefold.predict.targets import Target, TargetError
from simplefold.utils.files import atomic_open, is_disk_full, write_json
from simplefold.utils.memory import PhasePeaks

logger = logging.getLogger(__name__)

PHASES = ("esm", "sampling", "plddt")
#: Work directory of a phased run inside OUT (hidden: not part of the output layout).
WORK_DIR = ".simplefold"
MEMORY_FILE = "memory.json"


def samples_path(out: Path, name: str) -> Path:
    return Path(out) / WORK_DIR / "samples" / f"{name}.npz"


def _save_samples(path: Path, sampled: SampledTarget, fingerprint: Mapping[str, Any]) -> None:
    meta = {"fingerprint": json.loads(json.dumps(dict(fingerprint))), "sequence": sampled.target.sequence,
            "plan": dataclasses.asdict(sampled.plan), "n_real": sampled.n_real, "timings": sampled.timings}
    with atomic_open(path, "wb") as f:
        np.savez(f, raw=sampled.raw, atom_mask=sampled.atom_mask, meta=np.array(json.dumps(meta)))


def _load_samples(path: Path, target: Target, fingerprint: Mapping[str, Any]) -> SampledTarget | None:
    """The saved sampling output of ``target``, or None when absent, unreadable or of other settings."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            raw, mask = z["raw"], z["atom_mask"]
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("ignoring unreadable samples file %s (%s)", path, exc)
        return None
    if meta.get("sequence") != target.sequence or meta.get("fingerprint") != json.loads(json.dumps(dict(fingerprint))):
        return None
    return SampledTarget(target, TargetPlan(**meta["plan"]), raw, int(meta["n_real"]), mask, None,
                         dict(meta["timings"]))


class _Embeddings:
    """ESM ``esm_s`` of the run's targets: the disk cache (or memory) and, in phase 1 only, the encoder."""

    def __init__(self, model: Any, loaded: LoadedModel | None, cfg: Any, out: Path, offline: bool):
        from simplefold import esm

        self.needed = getattr(cfg, "condition", "embedding") == "esm"
        self.loaded, self.spec, self.offline = loaded, model, offline
        cache = loaded.esm_cache if loaded is not None else True
        if cache is True:
            cache = esm.EmbeddingCache.default()
        elif cache in (False, None):
            cache = esm.EmbeddingCache(out / WORK_DIR / "esm")
        elif not isinstance(cache, esm.EmbeddingCache):
            cache = esm.EmbeddingCache(cache)
        self.cache = cache
        self._identity: str | None = None
        self._shape: tuple[int, int] | None = None

    def _encoder(self):
        if self.loaded is not None:
            return self.loaded.ensure_esm()
        return LoadedModel(None, offline=self.offline).ensure_esm()

    def _key(self) -> tuple[str, tuple[int, int]]:
        """(weights identity, (representations, dim)) without loading ESM when possible."""
        if self._identity is None:
            enc = self.loaded.esm if self.loaded is not None else None
            if enc is not None:
                self._identity, cfg = enc.identity, enc.config
            else:
                from simplefold.model.esm2 import ESM2Config
                from simplefold.weights import cache as weights_cache

                meta = json.loads((weights_cache.resolve(ESM_WEIGHTS, offline=self.offline) / "config.json").read_text())
                self._identity, cfg = meta["source_sha256"], ESM2Config(**meta["config"])
            self._shape = (cfg.num_representations, cfg.embed_dim)
        return self._identity, self._shape

    def get(self, target: Target) -> np.ndarray | None:
        if not self.needed:
            return None
        from simplefold import esm

        identity, (n_rep, dim) = self._key()
        m = int(esm.encode_sequence(target.sequence.upper())[1].sum())
        return self.cache.get(identity, target.sequence.upper(), (m, n_rep, dim))

    def compute(self, targets: Sequence[Target]) -> None:
        """Phase 1: embeddings of the targets missing from the cache; the encoder is released after."""
        if not self.needed:
            return
        missing = [t for t in targets if self.get(t) is None]
        if not missing:
            logger.info("ESM embeddings: all %d targets in the cache %s", len(targets), self.cache.root)
            return
        from simplefold import esm

        encoder = self._encoder()
        self._identity = encoder.identity
        esm.esm_features(encoder, [t.sequence for t in missing], cache=self.cache)
        if self.loaded is None:  # loaded here: release it before the folding network comes in
            release_arrays(encoder._state)
        del encoder


def run_phases(
    todo: Sequence[Target],
    out: Path,
    model: Any,
    options: FoldOptions,
    *,
    fingerprint: Mapping[str, Any],
    on_done: Callable[[FoldResult, LoadedModel, float], None],
    on_failed: Callable[[Target, str], None],
    devices: Sequence[Any] | None = None,
    offline: bool = False,
    progress: bool = False,
) -> PhasePeaks:
    """Fold ``todo`` in three phases (module docstring); every target ends in ``on_done`` or ``on_failed``.

    Args:
      todo: targets to fold (already checked, not complete).
      out: the output directory.
      model: a :class:`LoadedModel` or a spec :func:`simplefold.predict.loading.load_model` accepts.
      fingerprint: the run fingerprint (saved samples of other settings are sampled again).
      on_done: called with (result, loaded model, seconds) when a target is finished (writes its files).
      on_failed: called with (target, reason) when a target fails.

    Returns:
      the peak RSS and duration of each phase that ran.
    """
    out = Path(out)
    peaks = PhasePeaks()
    given = model if isinstance(model, LoadedModel) else None
    cfg = given.config if given is not None else model_config(model)
    path = None if given is not None else resolve_model_path(model, offline=offline)
    if given is not None:
        want_plddt = options.plddt and given.plddt_head is not None
    else:
        want_plddt = options.plddt and plddt_head_config(model, cfg) is not None
    order = sorted(todo, key=lambda t: bucket_key(t, options))  # stable: input order within a bucket
    embeddings = _Embeddings(model, given, cfg, out, offline)
    started = {t.name: time.perf_counter() for t in order}

    with peaks.phase("esm"):
        embeddings.compute(order)

    # -- sampling ------------------------------------------------------------------------
    sampled: dict[str, SampledTarget] = {}
    pending = []
    for t in order:
        saved = _load_samples(samples_path(out, t.name), t, fingerprint) if want_plddt else None
        if saved is not None:
            sampled[t.name] = saved
        else:
            pending.append(t)
    folder = None
    loaded = given
    if pending:
        with peaks.phase("sampling"):
            if loaded is None:
                loaded = load_model(model, plddt=False, offline=offline, precision=options.precision)
            folder = Folder(loaded, dataclasses.replace(options, plddt=False), devices=devices)
            # the bar counts sampler steps of every pending target, so a long sample moves and the
            # ETA covers the whole phase
            steps = {t.name: folder.steps_to_run(t) for t in pending} if progress else {}
            bar = progress_bar(total=sum(steps.values()), desc="sampling", unit="step", disable=not progress)
            try:
                for i, t in enumerate(pending):
                    bar.set_postfix_str(f"{t.name} ({i + 1}/{len(pending)})", refresh=False)
                    start_n = bar.n
                    try:
                        s = folder.sample_target(t, esm_s=embeddings.get(t), step_progress=bar if progress else None)
                        if want_plddt:
                            _save_samples(samples_path(out, t.name), s, fingerprint)
                            sampled[t.name] = s
                        else:
                            on_done(folder.score(s), loaded, time.perf_counter() - started[t.name])
                    except TargetError as exc:
                        on_failed(t, str(exc))
                    except Exception as exc:  # noqa: BLE001 - one target's failure must not stop the run
                        if is_disk_full(exc):  # ... but a full disk stops it: every later target would fail
                            raise
                        logger.exception("%s: sampling failed", t.name)
                        on_failed(t, f"{type(exc).__name__}: {exc}")
                    bar.update(start_n + steps.get(t.name, 0) - bar.n)  # a failed target's steps count as done
            finally:
                bar.close()
    if not want_plddt:
        _write_memory(out, peaks)
        return peaks

    # -- pLDDT -------------------------------------------------------------------------
    with peaks.phase("plddt"):
        network = loaded.network if loaded is not None else None
        if given is None:
            keep = plddt_needs_network(path, cfg)
            if not keep and network is not None:
                if folder is not None:
                    folder.release_sampling()
                release_arrays(network)
                network = None
                # the sampler's compiled programs and their constants go too (the persistent
                # compilation cache keeps them for the next run)
                import jax

                jax.clear_caches()
                gc.collect()
            latent, head, name = load_plddt_pair(path, cfg, network=network, offline=offline,
                                                 precision=options.precision)
            if latent is None and network is None:  # own latent: the folding network again
                network = load_model(model, plddt=False, offline=offline, precision=options.precision).network
            from simplefold.model.precision import with_precision

            # the folding network's config as load_model gives it (precision applied), for summary.json
            run_cfg = getattr(network, "config", None) or (with_precision(cfg, options.precision) if cfg is not None else None)
            loaded = LoadedModel(network=network, config=run_cfg, name=model_spec_name(model), source=str(path), offline=offline,
                                 plddt_latent=latent, plddt_head=head, plddt_name=name)
        scorer = Folder(loaded, options, devices=devices)
        for t in order:
            s = sampled.get(t.name)
            if s is None:
                continue  # failed in the sampling phase
            try:
                s = dataclasses.replace(s, esm_s=embeddings.get(t))
                on_done(scorer.score(s), loaded, time.perf_counter() - started[t.name])
            except Exception as exc:  # noqa: BLE001
                if is_disk_full(exc):
                    raise
                logger.exception("%s: pLDDT failed", t.name)
                on_failed(t, f"{type(exc).__name__}: {exc}")
            else:
                samples_path(out, t.name).unlink(missing_ok=True)
    _write_memory(out, peaks)
    return peaks


def _write_memory(out: Path, peaks: PhasePeaks) -> None:
    write_json(out / WORK_DIR / MEMORY_FILE, peaks.as_dict())
    if peaks.peaks:
        logger.info("peak RSS per phase: %s", ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in peaks.peaks.items()))

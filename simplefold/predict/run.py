"""``simplefold predict``'s run: fold targets into an output directory, resumable and shardable.

:func:`predict_to_directory` is the file-writing loop of ``simplefold predict``: it skips targets
already complete with the same settings (:func:`run_fingerprint`), folds the others bucket by
bucket, writes each target's files (:func:`write_result`; layout, atomic writes and manifests are
:mod:`simplefold.predict.outputs`'s) and records every target in the (shard's) manifest as soon as it is
done. :func:`merge_report` merges the manifests of all shards.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import json
import logging
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simplefold.predict import confidences, outputs
from simplefold.predict.engine import FoldResult
from simplefold.predict.loading import LoadedModel, model_spec_name
from simplefold.predict.options import FoldOptions
from simplefold.predict.targets import OutputSpaceError, Target, TargetError, check_target, unknown_residues
from simplefold.utils.files import append_jsonl, atomic_write_text, is_disk_full, publish_directory, write_json

logger = logging.getLogger(__name__)


def run_fingerprint(model: LoadedModel, options: FoldOptions, fmt: str, plddt: bool) -> dict[str, Any]:
    """Settings that must match for an existing output to count as complete (resume)."""
    sc = options.sampler_config()
    return {
        "model": model.name,
        "seed": options.seed,
        "num_samples": options.num_samples,
        "sampler": dataclasses.asdict(sc),
        "precision": options.precision,
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
    model: LoadedModel,
    options: FoldOptions,
    fingerprint: Mapping[str, Any],
    plot: bool = True,
) -> outputs.TargetPaths:
    """Write one target's files (samples, ensemble, pLDDT plot and confidences, then summary.json last)."""
    from simplefold import plots
    from simplefold.io.structure import write_structure

    t0 = time.perf_counter()
    failed = [f"sample {s.index}: {'; '.join(s.errors)}" for s in result.samples if s.errors]
    if failed:  # checked before anything is written: no partial output of a diverged target
        raise TargetError(f"{result.name}: prediction failed the structure check ({' | '.join(failed)})")
    paths = outputs.TargetPaths(Path(root), result.name, fmt)
    unknown = unknown_residues(result.target.sequence)
    if unknown:  # the official featurizer reads these as UNK: say so, per target
        logger.warning("%s: %d residues read as UNK: %s", result.name, len(unknown), " ".join(unknown[:20])
                       + (" ..." if len(unknown) > 20 else ""))

    def write_into(into: Path) -> None:
        files: dict[str, Any] = {"samples": []}
        for s in result.samples:
            write_structure(into / paths.sample(s.index).name, s.structure, format=fmt)
            files["samples"].append(paths.sample(s.index).name)
        if len(result.samples) > 1:
            write_structure(into / paths.ensemble.name, result.ensemble_structures(), format=fmt)
            files["ensemble"] = paths.ensemble.name
        have_plddt = all(s.plddt is not None for s in result.samples)
        if plot and have_plddt:
            plots.plot_plddt([s.plddt for s in result.samples], into / paths.plddt_png.name, title=result.name)
            files["plddt_png"] = paths.plddt_png.name
        if have_plddt:
            doc = confidences.confidences_document(result, files["samples"])
            # compact: thousands of per-atom values, one per line, would dwarf the structure files
            atomic_write_text(into / paths.confidences.name, json.dumps(doc, separators=(",", ":")) + "\n")
            atomic_write_text(into / paths.ranking.name, confidences.ranking_csv(doc, options.seed))
            files["confidences"], files["ranking"] = paths.confidences.name, paths.ranking.name
        timings = dict(result.timings)
        timings["write"] = time.perf_counter() - t0
        import jax

        summary = {
            "summary_version": outputs.SUMMARY_VERSION,
            "target": result.name,
            "description": result.target.description,
            "source": result.target.source,
            "sequence": result.target.sequence,
            "unknown_residues": unknown,  # letters read as UNK, e.g. "X12"
            "length": len(result.target.sequence),
            "num_atoms": int(result.samples[0].structure.num_atoms),
            "model": model.describe(),
            "seed": options.seed,
            "num_samples": options.num_samples,
            "sampler": dataclasses.asdict(options.sampler_config()),
            "precision": options.precision,
            "sampler_warning": options.sampler_config().stability_warning(),
            "plddt": have_plddt,
            "format": fmt,
            "samples": [
                {
                    "index": s.index,
                    "file": paths.sample(s.index).name,
                    "mean_plddt": s.mean_plddt,
                    "rank": s.rank,
                    "plddt": None if s.plddt is None else [round(float(v), 2) for v in s.plddt],
                    "warnings": list(s.warnings),
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
        write_json(into / paths.summary.name, summary)  # last: marks the target complete

    # the target's files are written into a fresh sibling directory that then replaces the old one
    # as a whole: a re-run with fewer samples leaves no stale sample/ensemble files beside the new
    publish_directory(paths.dir, write_into, overwrite=True)
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
    model: LoadedModel | Any,
    options: FoldOptions,
    *,
    fmt: str = outputs.DEFAULT_FORMAT,
    shard: tuple[int, int] | None = None,
    progress: bool = False,
    devices: Sequence[Any] | None = None,
    offline: bool = False,
    on_result: Callable[[str, str], None] | None = None,
) -> PredictReport:
    """Fold ``targets`` into ``out`` (layout in :mod:`simplefold.predict.outputs`); the body of ``simplefold predict``.

    Targets already complete with the same settings are skipped; each finished, skipped or failed
    target appends a line to the (shard's) manifest immediately. A failing target (bad record,
    too long for the budget, or an unexpected error while folding it) is recorded with its reason
    and the run goes on.

    Args:
      targets: from :func:`simplefold.predict.targets.as_targets` (names must be unique).
      out: output directory.
      model: a :class:`simplefold.predict.loading.LoadedModel` or anything
        :func:`simplefold.predict.loading.load_model` accepts (loaded only if some target needs folding).
      options: run settings.
      fmt: ``pdb`` or ``cif``.
      shard: ``(I, N)`` to fold only shard I of N (:func:`simplefold.predict.outputs.shard_indices`).
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
        entry = {"time": time.time(), "target": target.name, "status": st, "length": len(target.sequence),
                 "output": target.name}
        if reason:
            reasons[target.name] = reason
            entry["reason"] = reason
        if shard is not None:
            entry["shard"] = f"{shard[0]}/{shard[1]}"
        entry.update(extra)
        append_jsonl(manifest, entry)
        if on_result is not None:
            on_result(target.name, st)

    # Weights are loaded only when something needs folding, so a finished run resumes instantly.
    loaded: LoadedModel | None = model if isinstance(model, LoadedModel) else None
    name_for_fp = loaded.name if loaded is not None else model_spec_name(model)
    plddt_fp = options.plddt
    fingerprint = {**run_fingerprint(LoadedModel(None, name=name_for_fp), options, fmt, plddt_fp)}

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

    # phased: ESM embeddings, sampling, pLDDT, one model resident at a time (simplefold.predict.phases)
    from simplefold.predict import phases

    sampler_warning = options.sampler_config().stability_warning()

    writing: list[str] = []

    def done(result: FoldResult, used: LoadedModel, seconds: float) -> None:
        writing[:] = [result.name]
        try:
            write_result(result, out, fmt=fmt, model=used, options=options, fingerprint=fingerprint)
            writing.clear()
        except TargetError as exc:  # e.g. the structure check before writing
            logger.error("%s", exc)
            record(result.target, outputs.STATUS_FAILED, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - one target's failure must not stop the run
            if is_disk_full(exc):  # ... but a full disk stops it (predict_to_directory says so once)
                raise
            logger.exception("%s: writing failed", result.name)
            record(result.target, outputs.STATUS_FAILED, f"{type(exc).__name__}: {exc}")
            return
        means = [s.mean_plddt for s in result.samples]
        extra = {}
        warnings = [f"sample {s.index}: {w}" for s in result.samples for w in s.warnings]
        if sampler_warning:
            warnings.insert(0, sampler_warning)
        if warnings:
            extra["warnings"] = warnings
        record(result.target, outputs.STATUS_OK, seconds=round(seconds, 3), num_samples=len(result.samples),
               mean_plddt=[None if m is None else round(m, 2) for m in means], **extra)

    try:
        phases.run_phases(todo, out, loaded if loaded is not None else model, options, fingerprint=fingerprint,
                          on_done=done, on_failed=lambda t, reason: record(t, outputs.STATUS_FAILED, reason),
                          devices=devices, offline=offline, progress=progress)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        where = getattr(exc, "filename", None) or (out / writing[0] if writing else manifest)
        n_done = sum(1 for s in status.values() if s == outputs.STATUS_OK)
        raise OutputSpaceError(
            errno.ENOSPC,
            f"no space left on the device while writing {where}: stopped after {n_done} new target(s); "
            f"nothing of the target being written was kept. Free space and run the same command again: "
            f"finished targets are skipped and the run resumes") from exc
    return PredictReport(status, reasons, manifest)


def merge_report(out: str | os.PathLike, targets: Sequence[Target] | None = None) -> outputs.RunReport:
    """Merge every manifest of ``out`` (all shards) into ``out/manifest.jsonl`` and report the run."""
    expected = [t.name for t in targets] if targets is not None else None
    return outputs.merge_manifests(out, expected)

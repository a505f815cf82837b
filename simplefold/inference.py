"""Sequences to structures: the ``simplefold.fold`` API, and the public names of the inference side.

Quick start::

    import simplefold
    results = simplefold.fold(["MKTAYIAKQR...", ("gb1", "MTYKLILNG...")], model="demo", num_samples=5)
    best = results[0].best.structure            # Structure, pLDDT x 100 in b_factors
    simplefold.write_structure("gb1.cif", results[1].structures)   # 5-model ensemble

How a run is organised (every step is deterministic), and where each part lives:

1. **Targets** (:mod:`simplefold.targets`). :func:`as_targets` accepts strings,
   ``(name, sequence)`` pairs, FASTA records or :class:`Target`; names are made file-system safe
   and unique. A sequence with ``:`` (several chains), an empty sequence, or one too long for the
   memory budget is a :class:`TargetError` (the CLI records it and goes on with the other
   targets). Unknown letters become UNK.
2. **Model** (:mod:`simplefold.model_loading`). :func:`load_model` turns ``"demo"``, a released
   name, a directory of converted weights or a network into a :class:`LoadedModel` with its pLDDT
   pair.
3. **Plan** (:mod:`simplefold.planning`). Each target is padded to a residue and an atom bucket;
   its samples run in chunks sized by the memory budget (:func:`estimate_memory`) and
   ``batch_size``. :func:`plan` gives these per-target plans and time estimates without loading
   weights (``--dry-run``).
4. **Folding** (:mod:`simplefold.folder`). A :class:`Folder` folds targets bucket by bucket
   (shortest first); sample ``k`` of target ``name`` depends only on (seed, name, k), whatever its
   chunk or bucket; samples are sharded over all local devices; pLDDT (0-100) is stored per
   residue and copied to every atom's B-factor. :func:`fold` returns results in input order.
5. **Files** (:mod:`simplefold.predict_run`). :func:`predict_to_directory` is the file-writing
   loop of ``simplefold predict`` (output layout, resume, manifests: see :mod:`simplefold.outputs`).

Every name listed in ``__all__`` is importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simplefold.fold_options import DEFAULT_NUM_SAMPLES, DEFAULT_SEED, FoldOptions
from simplefold.folder import Folder, FoldResult, Sample
from simplefold.model_loading import (
    DEFAULT_MODEL,
    DEMO_MODEL,
    ESM_WEIGHTS,
    PLDDT_HEAD_WEIGHTS,
    PLDDT_LATENT_WEIGHTS,
    PLDDT_SUBDIR,
    LoadedModel,
    ModelNotFoundError,
    demo_model_path,
    load_model,
    model_config,
)
from simplefold.planning import (
    MemoryEstimate,
    TargetPlan,
    count_parameters,
    default_memory_budget,
    device_throughput,
    estimate_memory,
    format_plan,
    forward_flops,
    plan,
    plan_target,
)
from simplefold.predict_run import PredictReport, merge_report, predict_to_directory, run_fingerprint, write_result
from simplefold.targets import Target, TargetError, as_targets, check_target, read_targets

__all__ = [
    "DEFAULT_MODEL", "DEFAULT_NUM_SAMPLES", "DEFAULT_SEED", "DEMO_MODEL", "ESM_WEIGHTS", "PLDDT_HEAD_WEIGHTS",
    "PLDDT_LATENT_WEIGHTS", "PLDDT_SUBDIR",
    "FoldOptions", "Folder", "FoldResult", "Sample", "LoadedModel", "ModelNotFoundError", "demo_model_path",
    "load_model", "model_config", "MemoryEstimate", "TargetPlan", "count_parameters", "default_memory_budget",
    "device_throughput", "estimate_memory", "format_plan", "forward_flops", "plan", "plan_target",
    "PredictReport", "merge_report", "predict_to_directory", "run_fingerprint", "write_result",
    "Target", "TargetError", "as_targets", "check_target", "read_targets", "fold",
]


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
        :class:`LoadedModel` (see :func:`load_model`).
      num_samples: structures per sequence.
      seed: sample k of target ``name`` depends only on (seed, name, k).
      num_steps, tau: sampler settings (default: :class:`simplefold.sampling.sampler.SamplerConfig`).
      plddt: compute pLDDT (stored x 100 per residue and in the B-factors).
      batch_size: at most this many samples per network call; None = what memory allows.
      max_memory_gb: per-device memory budget (GB) used to size chunks.
      offline: never download weights.
      progress: show a tqdm progress bar.
      devices: devices to use (default: all local devices; samples are sharded over them).

    Returns:
      list of :class:`FoldResult`; ``result.structures`` are :class:`simplefold.io.structure.Structure`
      objects that :func:`simplefold.io.structure.write_structure` writes.

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


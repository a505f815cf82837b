"""Prediction: sequences to structures with pLDDT; :func:`fold` is the entry point.

Quick start::

    import simplefold
    results = simplefold.fold(["MKTAYIAKQR...", ("gb1", "MTYKLILNG...")], model="demo", num_samples=5)
    best = results[0].best.structure            # Structure, pLDDT x 100 in b_factors
    simplefold.write_structure("gb1.cif", results[1].structures)   # 5-model ensemble

A run, step by step (every step is deterministic), and the module of each step:

1. :mod:`~simplefold.predict.options` – :class:`~simplefold.predict.options.FoldOptions`, the
   settings of a run and their defaults.
2. :mod:`~simplefold.predict.targets` – strings, ``(name, sequence)`` pairs, FASTA records become
   :class:`~simplefold.predict.targets.Target` objects with file-system safe unique names; what
   cannot be folded (several chains, empty) is a ``TargetError``.
3. :mod:`~simplefold.predict.loading` – ``"demo"``, a released name, a directory of converted
   weights or a network becomes a ``LoadedModel`` with its pLDDT pair.
4. :mod:`~simplefold.predict.planning` – each target's residue and atom bucket, the chunk of
   samples that fits the memory budget, memory and time estimates (``--dry-run``), from the
   configs alone.
5. :mod:`~simplefold.predict.engine` – the ``Folder``: features, sampler chunks sharded over the
   local devices, pLDDT; sample k of target t depends only on (seed, t, k).
6. :mod:`~simplefold.predict.run` and :mod:`~simplefold.predict.outputs` – the file-writing loop of
   ``simplefold predict`` (resume, shards, manifests) and the output layout.
7. :mod:`~simplefold.predict.phases` – how ``simplefold predict`` folds: ESM embeddings of every
   target to the disk cache, then sampling, then pLDDT, one model resident at a time (peak memory =
   the largest phase; resumable at every phase boundary). :func:`fold` keeps every network of the
   model it is given resident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simplefold.predict.engine import FoldResult, Folder
from simplefold.predict.loading import DEFAULT_MODEL, load_model
from simplefold.predict.options import DEFAULT_NUM_SAMPLES, DEFAULT_SEED, FoldOptions
from simplefold.predict.targets import TargetError, as_targets, check_target

__all__ = ["fold"]


def fold(
    sequences: Any,
    model: Any = DEFAULT_MODEL,
    *,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    seed: int = DEFAULT_SEED,
    num_steps: int | None = None,
    tau: float | None = None,
    plddt: bool = FoldOptions.plddt,
    batch_size: int | None = None,
    max_memory_gb: float | None = None,
    offline: bool = False,
    progress: bool = False,
    devices: Sequence[Any] | None = None,
    precision: str = FoldOptions.precision,
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
      precision: "float32" (default, the official numerics) or "bfloat16" (mixed: bf16 matmul
        inputs and stored kernels, float32 accumulation and state; see :mod:`simplefold.model.precision`).
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
                          batch_size=batch_size, max_memory_gb=max_memory_gb, precision=precision)
    targets = as_targets(sequences)
    for t in targets:
        check_target(t)
    loaded = load_model(model, plddt=plddt, offline=offline, precision=options.precision)
    folder = Folder(loaded, options, devices=devices)
    by_name: dict[str, FoldResult] = {}
    for res in folder.fold_iter(targets, progress=progress):
        if isinstance(res, TargetError):
            raise res
        by_name[res.name] = res
    return [by_name[t.name] for t in targets]


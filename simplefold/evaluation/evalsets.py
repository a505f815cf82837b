"""Benchmark sets from a prepared dataset: one FASTA of targets plus one reference file per chain.

``simplefold evaluate`` matches predictions to references by target name, and scores TM-score
against *all* chains of a reference file; source entries often hold several chains, so a fair
benchmark needs one single-chain reference per target. :func:`export_eval_set` writes exactly
that for one split of a ``simplefold prepare-data`` output::

    OUT/targets.fasta            one record per chain (record id = target name)
    OUT/references/<id>.pdb      the experimental chain (resolved heavy atoms as in the source file)

so that ``simplefold predict OUT/targets.fasta -o PRED`` followed by
``simplefold evaluate PRED OUT/references`` reproduces a benchmark table.
"""

from __future__ import annotations

import dataclasses
import logging
import pathlib

from simplefold.io.dataset import load_records
from simplefold.io.structure import StructureError, read_structure, write_structure
from simplefold.utils.files import atomic_write_text

logger = logging.getLogger(__name__)


def export_eval_set(
    prepared_dir: str | pathlib.Path,
    split: str | None,
    out_dir: str | pathlib.Path,
    *,
    max_targets: int | None = None,
    min_length: int = 1,
    max_length: int | None = None,
) -> tuple[int, list[str]]:
    """Write ``targets.fasta`` and ``references/<id>.pdb`` for the records of ``split``.

    Args:
      prepared_dir: output folder of ``simplefold prepare-data``.
      split: split name of the records to export (e.g. ``"dev"``); None for all records.
      out_dir: destination; existing reference files are kept (re-running resumes).
      max_targets: export at most this many records (in record order).
      min_length / max_length: residue-count filter.

    Returns:
      (number of targets written, list of "<id>: reason" for records whose source could not be read).
    """
    out = pathlib.Path(out_dir)
    refs = out / "references"
    refs.mkdir(parents=True, exist_ok=True)
    records = load_records(prepared_dir, split, min_length=min_length, max_length=max_length)
    if max_targets is not None:
        records = records[:max_targets]
    problems: list[str] = []
    fasta_lines: list[str] = []
    for rec in records:
        ref_path = refs / f"{rec.id}.pdb"
        if not ref_path.exists():
            try:
                structure = read_structure(rec.file, chains=[rec.chain])
            except StructureError as exc:
                problems.append(f"{rec.id}: {exc}")
                continue
            write_structure(ref_path, dataclasses.replace(structure, name=rec.id))
        fasta_lines.append(f">{rec.id} {pathlib.Path(rec.file).name} chain {rec.chain}\n{rec.sequence}\n")
    atomic_write_text(out / "targets.fasta", "".join(fasta_lines))
    logger.info("%s: %d targets of split %r (%d unreadable)", out, len(fasta_lines), split, len(problems))
    return len(fasta_lines), problems

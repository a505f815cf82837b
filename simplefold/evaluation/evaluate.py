"""Score predicted structures against references: :func:`evaluate` (``simplefold evaluate PRED REF``).

PRED and REF are structure files or directories (searched recursively for ``.pdb``, ``.ent``,
``.cif``, ``.mmcif``, ``.bcif``, each optionally ``.gz``). Files are matched by target name, the file
name without those extensions (``T1026.pdb.gz`` -> ``T1026``); a prediction named
``<target>_sample_<k>`` (the layout ``simplefold predict`` writes: ``OUT/<target>/<target>_sample_<k>.pdb``)
is matched to the reference ``<target>``. Two files are always compared with each other.

Every sample is scored (:func:`simplefold.evaluation.metrics.evaluate_pair`). A target's metrics
are the mean over its samples; ``best`` holds the best sample value per metric (highest score,
lowest RMSD). :meth:`EvaluationReport.to_dict` (the ``--json`` file) is::

    {"targets": [{"name", "reference", "n_samples", <metrics>, "best": {<metrics>},
                  "samples": [{"name", "file", <metrics>, "plddt"}]}],
     "summary": {"n_targets", <metric>: mean over targets, "best": {<metric>: mean over targets},
                 "median": {<metric>: median over targets}[, "plddt_lddt_pearson", "n_samples_with_plddt"]},
     "errors": [{"name", "file", "error"}]}

Unmatched or unreadable files are reported as problems; the others are still scored.
:func:`format_table` is the text table of ``simplefold evaluate`` and :func:`write_plots` its
``--plots``.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simplefold.evaluation import alignment, metrics
from simplefold.io.structure import STRUCTURE_SUFFIXES, read_structure, structure_stem
from simplefold.utils.files import json_safe

logger = logging.getLogger(__name__)

_SAMPLE_NAME = re.compile(r"^(?P<target>.+)_sample_(?P<index>\d+)$")


class EvaluationError(ValueError):
    """PRED or REF does not exist, or is a directory without structure files (names the path)."""


# --------------------------------------------------------------------------------------
# File discovery and matching
# --------------------------------------------------------------------------------------


def target_name(path: str | os.PathLike) -> str:
    """File name without structure/compression extensions (``T1026.pdb.gz`` -> ``T1026``)."""
    return structure_stem(path) or pathlib.Path(path).name


def _structure_files(path: pathlib.Path, what: str) -> list[pathlib.Path]:
    if not path.exists():
        raise EvaluationError(f"{what} path does not exist: {path}")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and structure_stem(p) is not None)
    if not files:
        suffixes = ", ".join(STRUCTURE_SUFFIXES)
        raise EvaluationError(f"{what} directory {path} contains no structure files ({suffixes}[.gz])")
    return files


@dataclass
class TargetFiles:
    """One reference and the prediction files matched to it (``(sample name, path)``, in sample order)."""

    name: str
    reference: pathlib.Path
    samples: list[tuple[str, pathlib.Path]] = field(default_factory=list)


@dataclass
class Problem:
    """A file that was not scored (unmatched, unreadable, not comparable) and why."""

    name: str
    file: str | None
    error: str


def match_files(pred: pathlib.Path, ref: pathlib.Path) -> tuple[list[TargetFiles], list[Problem]]:
    """Pair prediction files with reference files by target name.

    Returns:
      the targets (each with its samples, sorted by name) and the unmatched files as problems.
    """
    pred_files = _structure_files(pred, "PRED")
    ref_files = _structure_files(ref, "REF")
    if pred.is_file() and ref.is_file():
        return [TargetFiles(target_name(ref), ref, [(target_name(pred), pred)])], []

    problems: list[Problem] = []
    refs: dict[str, pathlib.Path] = {}
    for path in ref_files:
        name = target_name(path)
        if name in refs:
            problems.append(Problem(name, str(path), f"duplicate reference name (already {refs[name]})"))
            continue
        refs[name] = path
    targets = {name: TargetFiles(name, path) for name, path in refs.items()}
    seen: dict[str, pathlib.Path] = {}
    for path in pred_files:
        name = target_name(path)
        if name in seen:  # e.g. the same sample written as .pdb and .cif
            logger.warning("%s: prediction %s already read from %s; skipped", path, name, seen[name])
            continue
        seen[name] = path
        sample = _SAMPLE_NAME.match(name)
        if name in targets:
            targets[name].samples.append((name, path))
        elif sample and sample["target"] in targets:
            targets[sample["target"]].samples.append((name, path))
        else:
            problems.append(Problem(name, str(path), "no reference with this target name"))
    for t in targets.values():
        if not t.samples:
            problems.append(Problem(t.name, str(t.reference), "no prediction for this reference"))

    def sample_key(item):
        m = _SAMPLE_NAME.match(item[0])
        return (m["target"], int(m["index"])) if m else (item[0], -1)

    matched = []
    for name in sorted(targets):
        t = targets[name]
        if t.samples:
            t.samples.sort(key=sample_key)
            matched.append(t)
    return matched, problems


# --------------------------------------------------------------------------------------
# Aggregation and output
# --------------------------------------------------------------------------------------


def _mean_plddt(structure) -> float | None:
    """Mean B-factor of the CA atoms (predict writes pLDDT x 100 there); None if all are 0."""
    values = [
        b for chain in structure.chains
        for name, b, present in zip(chain.atom_names, chain.b_factors, chain.atom_mask)
        if name == "CA" and present
    ]
    if not values or not any(values):
        return None
    return float(np.mean(values))


def _plddt_correlation(results: list[dict]) -> dict:
    """Pearson r of each sample's mean pLDDT with its lDDT, when every sample carries pLDDT."""
    pairs = [(r["plddt"], r["lddt"]) for t in results for r in t["samples"]]
    if len(pairs) < 3 or any(p is None for p, _ in pairs):
        return {}
    x, y = np.array(pairs, dtype=float).T
    if x.std() == 0 or y.std() == 0:
        return {}
    return {"plddt_lddt_pearson": float(np.corrcoef(x, y)[0, 1]), "n_samples_with_plddt": len(pairs)}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _best(rows: list[dict], metric: str, lower_is_better: frozenset[str]) -> float:
    values = [r[metric] for r in rows if not math.isnan(r[metric])]
    if not values:
        return float("nan")
    return min(values) if metric in lower_is_better else max(values)


def _format_row(label: str, metrics: dict, names: tuple[str, ...], width: int) -> str:
    cells = []
    for m in names:
        v = metrics.get(m, float("nan"))
        if m == "n_aligned":
            cells.append(f"{v:>9.0f}" if not math.isnan(v) else f"{'-':>9}")
        else:
            cells.append(f"{v:>9.4f}" if not math.isnan(v) else f"{'-':>9}")
    return f"{label:<{width}} " + " ".join(cells)


def format_table(report: EvaluationReport) -> str:
    """The text table of ``simplefold evaluate``: one row per target (sample rows, mean and best for
    multi-sample targets), the mean and median over targets, and the pLDDT-lDDT correlation."""
    targets, summary, names = report.targets, report.summary, metrics.METRIC_NAMES
    labels = ["mean", "mean (best)"]
    for t in targets:
        labels.append(f"{t['name']} (mean)")
        labels.extend("  " + s["name"] for s in t["samples"])
    width = max(len(x) for x in labels + ["target"])
    rule = "-" * (width + 10 * len(names))
    rows = [f"{'target':<{width}} " + " ".join(f"{m:>9}" for m in names), rule]
    for t in targets:
        if t["n_samples"] == 1:
            rows.append(_format_row(t["name"], t, names, width))
            continue
        for s in t["samples"]:
            rows.append(_format_row("  " + s["name"], s, names, width))
        rows.append(_format_row(f"{t['name']} (mean)", t, names, width))
        rows.append(_format_row(f"{t['name']} (best)", t["best"], names, width))
    rows.append(rule)
    rows.append(_format_row(f"mean ({summary['n_targets']})", summary, names, width))
    rows.append(_format_row("median", summary["median"], names, width))
    if any(t["n_samples"] > 1 for t in targets):
        rows.append(_format_row("mean (best)", summary["best"], names, width))
    if "plddt_lddt_pearson" in summary:
        rows.append(f"pLDDT vs lDDT (per sample, n={summary['n_samples_with_plddt']}): "
                    f"Pearson r = {summary['plddt_lddt_pearson']:.3f}")
    return "\n".join(rows)


def write_plots(report: EvaluationReport, outdir: str | os.PathLike) -> None:
    """Per target: lDDT per reference residue of its best-lDDT sample; over targets: histograms."""
    from simplefold import plots  # matplotlib: only when plots are asked for

    outdir = pathlib.Path(outdir)
    references = {t.name: t.reference for t in report.matched}
    for entry in report.targets:
        best = max(entry["samples"], key=lambda r: -1.0 if math.isnan(r["lddt"]) else r["lddt"])
        pred = read_structure(best["file"], model=1)
        ref = read_structure(references[entry["name"]], model=1)
        mapping = alignment.match_structures(pred, ref, by_residue_number=report.by_residue_number)
        pred_atoms, ref_atoms, pair_index = alignment.matched_atoms(pred, ref, mapping)
        per_residue = metrics.lddt(pred_atoms, ref_atoms, atom_residue=pair_index, per_residue=True)
        numbers = None
        if len(set(mapping.ref_chain.tolist())) == 1:  # author numbering is unambiguous on one chain
            numbers = ref.chains[int(mapping.ref_chain[0])].res_ids[mapping.ref_res]
        plots.plot_lddt_per_residue(
            per_residue, outdir / f"{entry['name']}_lddt.png", title=f"{best['name']} vs {entry['name']}",
            residue_numbers=numbers,
        )
    for metric, label in (("tm_score", "TM-score"), ("lddt", "lDDT")):
        plots.plot_histogram(
            [t[metric] for t in report.targets], outdir / f"{metric}_hist.png", label, "targets (mean over samples)",
            value_range=(0.0, 1.0),
        )
    logger.info("wrote plots to %s", outdir)


# --------------------------------------------------------------------------------------
# The API
# --------------------------------------------------------------------------------------


@dataclass
class EvaluationReport:
    """What :func:`evaluate` found.

    Attributes:
      targets: one dict per scored target (see the module docstring), by target name.
      summary: means, best-sample means and medians over targets.
      problems: files that were not scored, and why.
      matched: the file matching the scores came from.
      by_residue_number: how residues were paired.
    """

    targets: list[dict[str, Any]]
    summary: dict[str, Any]
    problems: list[Problem]
    matched: list[TargetFiles]
    by_residue_number: bool = False

    @property
    def ok(self) -> bool:
        """Every file was matched and scored."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (strict JSON: NaN is null)."""
        return json_safe({
            "targets": self.targets,
            "summary": self.summary,
            "errors": [{"name": p.name, "file": p.file, "error": p.error} for p in self.problems],
        })


def evaluate(
    pred: str | os.PathLike, ref: str | os.PathLike, *, by_residue_number: bool = False, progress: bool = False
) -> EvaluationReport:
    """Score predictions against references (files or directories, matched by target name).

    Args:
      pred: a predicted structure file, or a directory of them (e.g. a ``simplefold predict`` output).
      ref: a reference structure file, or a directory of them.
      by_residue_number: pair residues by author number + insertion code instead of by sequence alignment.
      progress: a progress bar on stderr (when there is more than one pair).

    Returns:
      an :class:`EvaluationReport`; unmatched or unreadable files are in its ``problems``.

    Raises:
      EvaluationError: ``pred`` or ``ref`` does not exist or holds no structure files.
    """
    from tqdm import tqdm

    targets, problems = match_files(pathlib.Path(pred), pathlib.Path(ref))
    n_pairs = sum(len(t.samples) for t in targets)
    names = metrics.METRIC_NAMES
    results = []
    show = progress and n_pairs > 1
    with tqdm(total=n_pairs, desc="evaluate", unit="pair", disable=None if show else True, file=sys.stderr) as bar:
        for t in targets:
            try:
                reference = read_structure(t.reference, model=1)
            except Exception as exc:  # noqa: BLE001 - any unreadable reference is reported, not fatal
                problems.append(Problem(t.name, str(t.reference), f"cannot read reference: {exc}"))
                bar.update(len(t.samples))
                continue
            rows = []
            for sample_name, path in t.samples:
                try:
                    prediction = read_structure(path, model=1)
                    row = metrics.evaluate_pair(prediction, reference, by_residue_number=by_residue_number)
                    row["plddt"] = _mean_plddt(prediction)
                except Exception as exc:  # noqa: BLE001 - report and go on with the other files
                    logger.debug("scoring %s failed", path, exc_info=True)
                    problems.append(Problem(sample_name, str(path), str(exc)))
                else:
                    rows.append({"name": sample_name, "file": str(path), **row})
                bar.update(1)
            if not rows:
                continue
            entry = {"name": t.name, "reference": str(t.reference), "n_samples": len(rows)}
            entry.update({m: _mean([r[m] for r in rows]) for m in names})
            entry["best"] = {m: _best(rows, m, metrics.LOWER_IS_BETTER) for m in names}
            entry["samples"] = rows
            results.append(entry)

    summary: dict[str, Any] = {"n_targets": len(results)}
    summary.update({m: _mean([t[m] for t in results]) for m in names})
    summary["best"] = {m: _mean([t["best"][m] for t in results]) for m in names}
    summary["median"] = {m: float(np.median([t[m] for t in results])) if results else float("nan") for m in names}
    summary.update(_plddt_correlation(results))
    return EvaluationReport(results, summary, problems, targets, by_residue_number)

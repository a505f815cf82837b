"""Structural-ensemble analysis: CA RMSF, pairwise RMSD, conformational clusters, best match to references.

An *ensemble* is K conformations of the same protein: the models of an NMR entry, the
``<target>_ensemble.pdb`` written by ``simplefold predict``, or its ``<target>_sample_<k>`` files.
Only CA atoms are used. Residues are put in correspondence by (chain ID, author residue number,
insertion code, residue name); a residue counts only if its CA is present in every member.

Public API
----------
* ``AnalysisConfig`` – the knobs and their defaults.
* ``load_ensemble(paths) -> Ensemble`` – read files / directories into a (K, N, 3) CA array.
* ``superpose_to_mean(ca) -> (aligned, mean)`` – iterative superposition onto the ensemble mean.
* ``ca_rmsf(ca) -> (N,)`` – per-residue root-mean-square fluctuation after that superposition.
* ``pairwise_rmsd(ca) -> (K, K)`` – CA RMSD of every pair after optimal superposition.
* ``cluster_conformations(rmsd, threshold) -> list[Cluster]`` – average-linkage clusters, medoids.
* ``best_matches(members, references) -> list[ReferenceMatch]`` – best TM-score of any member per reference.
* ``analyze(ensemble, references, config) -> EnsembleAnalysis`` – all of the above;
  ``write_analysis(result, outdir)`` writes ``analysis.json``, PNGs, ``.npy``/``.csv`` files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from simplefold.evaluation import alignment, metrics
from simplefold.io.structure import (
    STRUCTURE_SUFFIXES,
    Structure,
    StructureError,
    read_structure,
    read_structure_models,
    structure_stem,
)
from simplefold.utils.files import atomic_open, atomic_write_text, json_safe, write_json

logger = logging.getLogger(__name__)

__all__ = [
    "AnalysisConfig",
    "Ensemble",
    "Cluster",
    "ReferenceMatch",
    "EnsembleAnalysis",
    "EnsembleError",
    "load_ensemble",
    "superpose_to_mean",
    "ca_rmsf",
    "pairwise_rmsd",
    "cluster_conformations",
    "best_matches",
    "analyze",
    "write_analysis",
]

_SAMPLE_NAME = re.compile(r"_sample_(\d+)$")


class EnsembleError(ValueError):
    """The inputs do not form an ensemble (no files, no common residues, fewer than one member)."""


@dataclasses.dataclass(frozen=True)
class AnalysisConfig:
    """Settings of :func:`analyze`.

    Attributes:
      cluster_rmsd: average-linkage cut (Å): two groups merge while their mean pairwise CA RMSD is
        at most this.
      max_iterations: cap on the rounds of superposition onto the mean.
      tolerance: stop when the mean structure moves less than this (Å, RMSD between rounds).
    """

    cluster_rmsd: float = 2.0
    max_iterations: int = 100
    tolerance: float = 1e-5


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Ensemble:
    """K conformations on a common set of N residues.

    Attributes:
      labels: K member names (``<file stem>`` or ``<file stem>:<model>`` for multi-model files).
      ca: (K, N, 3) float64 CA coordinates, Å, in the members' own frames.
      chain_ids, res_ids, res_names: (N,) residue identity of each column.
      members: the K structures as read (used for residue alignment to references).
    """

    labels: tuple[str, ...]
    ca: np.ndarray
    chain_ids: tuple[str, ...]
    res_ids: np.ndarray
    res_names: tuple[str, ...]
    members: tuple[Structure, ...]

    @property
    def num_members(self) -> int:
        return self.ca.shape[0]

    @property
    def num_residues(self) -> int:
        return self.ca.shape[1]


def _natural_key(path: Path):
    """Sort ``x_sample_2`` before ``x_sample_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files named directly, plus for each directory its ``*_sample_<k>`` structure files (or, if it
    has none, every structure file in it), in natural order."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [p for p in path.iterdir() if p.is_file() and structure_stem(p) is not None]
            samples = [p for p in found if _SAMPLE_NAME.search(structure_stem(p) or "")]
            chosen = sorted(samples or found, key=_natural_key)
            if not chosen:
                raise EnsembleError(f"{path}: directory has no structure files ({', '.join(STRUCTURE_SUFFIXES)}[.gz])")
            files.extend(chosen)
        elif path.is_file():
            files.append(path)
        else:
            raise EnsembleError(f"{path}: no such file or directory")
    if not files:
        raise EnsembleError("no ensemble input given")
    return files


#: An ensemble's members must share at least this fraction of the smallest member's CA residues.
MIN_COMMON_FRACTION = 0.5


def _residue_keys(structure: Structure) -> tuple[list[tuple], np.ndarray]:
    """Residue identities and (R, 3) CA coordinates of the residues of ``structure`` with a CA."""
    keys, coords = [], []
    for chain in structure.chains:
        ca, mask = chain.atom_coords("CA")
        for i in np.flatnonzero(mask):
            keys.append((chain.chain_id, int(chain.res_ids[i]), chain.ins_codes[i], chain.res_names[i]))
            coords.append(ca[i])
    return keys, np.asarray(coords, np.float64).reshape(-1, 3)


def ensemble_from_structures(structures: Sequence[Structure], labels: Sequence[str]) -> Ensemble:
    """Build an :class:`Ensemble` from structures of the same protein.

    Residues are the CA-bearing residues present in all members, in the first member's order.

    Raises:
      EnsembleError: no members, or no residue common to all of them.
    """
    if not structures:
        raise EnsembleError("the ensemble has no members")
    if len(labels) != len(structures):
        raise ValueError(f"{len(labels)} labels for {len(structures)} structures")
    per_member = [_residue_keys(s) for s in structures]
    common = set(per_member[0][0])
    for keys, _ in per_member[1:]:
        common &= set(keys)
    for label, (keys, _) in zip(labels, per_member):
        if len(set(keys)) != len(keys):  # e.g. two chains with the same ID: columns would be ambiguous
            raise EnsembleError(f"{label}: a (chain, residue number, insertion code) occurs twice")
    order = [k for k in per_member[0][0] if k in common]
    if not order:
        raise EnsembleError(
            f"members {labels[0]!r} ... {labels[-1]!r} share no residue with a CA "
            "(matched by chain ID, residue number, insertion code and name)"
        )
    smallest = min(range(len(per_member)), key=lambda k: len(per_member[k][0]))
    if len(order) < MIN_COMMON_FRACTION * len(per_member[smallest][0]):
        # e.g. two unrelated proteins that happen to share a few (chain, number, name) keys
        raise EnsembleError(
            f"{labels[smallest]!r} shares only {len(order)} of its {len(per_member[smallest][0])} CA residues with "
            f"the other members (need {MIN_COMMON_FRACTION:.0%}): these are not conformations of one protein"
        )
    for label, (keys, _) in zip(labels, per_member):
        if len(keys) > len(order):
            logger.warning("%s: %d of %d CA residues are not in every member and are ignored", label, len(keys) - len(order), len(keys))
    ca = np.empty((len(structures), len(order), 3))
    for k, (keys, coords) in enumerate(per_member):
        index = {key: i for i, key in enumerate(keys)}
        ca[k] = coords[[index[key] for key in order]]
    return Ensemble(
        labels=tuple(labels),
        ca=ca,
        chain_ids=tuple(k[0] for k in order),
        res_ids=np.asarray([k[1] for k in order], np.int64),
        res_names=tuple(k[3] for k in order),
        members=tuple(structures),
    )


def load_ensemble(paths: Sequence[str | os.PathLike]) -> Ensemble:
    """Read an ensemble from multi-model files, single-model files and/or directories of samples.

    Args:
      paths: structure files (every model of each is a member) or directories (their
        ``*_sample_<k>.<pdb|cif>[.gz]`` files, else all their structure files).

    Raises:
      EnsembleError: nothing to read or no common residues.
      simplefold.io.structure.StructureError: an unreadable file (the message names it).
    """
    structures, labels = [], []
    for path in _expand_inputs(paths):
        models = read_structure_models(path)
        stem = structure_stem(path) or path.name
        for m, s in enumerate(models, start=1):
            structures.append(s)
            labels.append(stem if len(models) == 1 else f"{stem}:{m}")
    return ensemble_from_structures(structures, labels)


# --------------------------------------------------------------------------------------
# Numerics on (K, N, 3) CA arrays
# --------------------------------------------------------------------------------------


def _check_ca(ca: np.ndarray) -> np.ndarray:
    ca = np.asarray(ca, dtype=np.float64)
    if ca.ndim != 3 or ca.shape[2] != 3 or ca.shape[0] == 0 or ca.shape[1] == 0:
        raise ValueError(f"CA ensemble must have shape (K>0, N>0, 3), got {ca.shape}")
    return ca


def superpose_to_mean(
    ca: np.ndarray, *, max_iterations: int = AnalysisConfig.max_iterations, tolerance: float = AnalysisConfig.tolerance
) -> tuple[np.ndarray, np.ndarray]:
    """Iteratively superpose every member onto the ensemble mean.

    Start from member 0 as the target; each round superposes all members onto the target (Kabsch)
    and makes their mean the next target, until the mean moves less than ``tolerance`` Å.

    Args:
      ca: (K, N, 3) coordinates, Å.

    Returns:
      aligned (K, N, 3) and their mean (N, 3), Å.
    """
    ca = _check_ca(ca)
    target = ca[0]
    aligned = ca.copy()
    for _ in range(max_iterations):
        aligned = np.stack([metrics.superpose(x, target) for x in ca])
        mean = aligned.mean(axis=0)
        shift = float(np.sqrt(np.mean(np.sum((mean - target) ** 2, axis=-1))))
        target = mean
        if shift < tolerance:
            break
    else:
        logger.warning("superposition onto the mean did not converge in %d rounds", max_iterations)
    return aligned, aligned.mean(axis=0)


def ca_rmsf(ca: np.ndarray, **superpose_kwargs) -> np.ndarray:
    """Per-residue root-mean-square fluctuation (Å) about the mean after :func:`superpose_to_mean`.

    Args:
      ca: (K, N, 3) CA coordinates, Å.

    Returns:
      (N,) RMSF, Å (all zero for a single member).
    """
    aligned, mean = superpose_to_mean(ca, **superpose_kwargs)
    return _fluctuation(aligned, mean)


def _fluctuation(aligned: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.sum((aligned - mean) ** 2, axis=-1), axis=0))


def pairwise_rmsd(ca: np.ndarray) -> np.ndarray:
    """CA RMSD (Å) of every pair of members after optimal (Kabsch) superposition.

    Args:
      ca: (K, N, 3) coordinates, Å.

    Returns:
      (K, K) symmetric matrix with a zero diagonal.
    """
    ca = _check_ca(ca)
    k = ca.shape[0]
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = metrics.rmsd(ca[i], ca[j])
    return out


@dataclasses.dataclass(frozen=True)
class Cluster:
    """One conformational cluster.

    Attributes:
      members: member indices, increasing.
      medoid: the member with the smallest summed RMSD to the others in the cluster (the representative).
      mean_rmsd_to_medoid: mean CA RMSD of the other members to the medoid, Å (0 for a singleton).
    """

    members: tuple[int, ...]
    medoid: int
    mean_rmsd_to_medoid: float

    @property
    def size(self) -> int:
        return len(self.members)


def cluster_conformations(rmsd: np.ndarray, threshold: float = AnalysisConfig.cluster_rmsd) -> list[Cluster]:
    """Average-linkage agglomerative clustering of a pairwise RMSD matrix.

    Groups merge while their mean inter-group RMSD is at most ``threshold`` Å (UPGMA cut by distance).

    Args:
      rmsd: (K, K) symmetric distance matrix, Å.
      threshold: cut height, Å.

    Returns:
      clusters, largest first (ties: smaller medoid index first).
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    d = np.asarray(rmsd, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"RMSD matrix must be square, got shape {d.shape}")
    if threshold < 0:
        raise ValueError(f"cluster threshold must be >= 0 Å, got {threshold}")
    k = d.shape[0]
    if k == 0:
        return []
    if k == 1:
        labels = np.zeros(1, np.int64)
    else:
        # Symmetrise and zero the diagonal: the Kabsch RMSD is symmetric only up to rounding.
        d = 0.5 * (d + d.T)
        np.fill_diagonal(d, 0.0)
        tree = linkage(squareform(d, checks=False), method="average")
        labels = fcluster(tree, t=threshold, criterion="distance")
    clusters = []
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        sub = d[np.ix_(idx, idx)]
        medoid_pos = int(np.argmin(sub.sum(axis=1)))
        others = np.delete(sub[medoid_pos], medoid_pos)
        clusters.append(
            Cluster(tuple(int(i) for i in idx), int(idx[medoid_pos]), float(others.mean()) if others.size else 0.0)
        )
    clusters.sort(key=lambda c: (-c.size, c.medoid))
    return clusters


# --------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReferenceMatch:
    """Agreement of every member with one reference.

    Attributes:
      name: reference name; path: its file (None for an in-memory structure).
      tm_scores: (K,) TM-score of each member (search over superpositions, normalised by the
        reference's resolved residues; NaN where no residue aligns).
      n_aligned: (K,) aligned residue pairs per member.
    """

    name: str
    path: str | None
    tm_scores: tuple[float, ...]
    n_aligned: tuple[int, ...]

    @property
    def best_member(self) -> int:
        """Index of the member with the highest TM-score (-1 if none aligned)."""
        scores = np.asarray(self.tm_scores, dtype=np.float64)
        if not np.isfinite(scores).any():
            return -1
        return int(np.nanargmax(scores))

    @property
    def best_tm_score(self) -> float:
        b = self.best_member
        return float(self.tm_scores[b]) if b >= 0 else float("nan")


def best_matches(members: Sequence[Structure], references: Sequence[Structure]) -> list[ReferenceMatch]:
    """TM-score of every member against every reference (residues matched by sequence alignment).

    Args:
      members: the K ensemble structures.
      references: reference structures (e.g. the two states of a fold-switching protein).

    Returns:
      one :class:`ReferenceMatch` per reference.
    """
    out = []
    for ref in references:
        ref_length = metrics.reference_length(ref)
        scores, counts = [], []
        mapping_cache: dict[tuple, alignment.ResidueMapping] = {}
        for member in members:
            # Members of one ensemble usually share sequence and layout: align once per layout.
            layout = tuple((c.chain_id, c.sequence, tuple(c.atom_coords("CA")[1])) for c in member.chains)
            mapping = mapping_cache.get(layout)
            if mapping is None:
                mapping = mapping_cache[layout] = alignment.match_structures(member, ref)
            n = len(mapping)
            counts.append(n)
            if n == 0:
                logger.warning("%s vs reference %s: no aligned residues", member.name, ref.name)
                scores.append(float("nan"))
                continue
            pred_ca = alignment.ca_coords(member, mapping.pred_chain, mapping.pred_res)
            ref_ca = alignment.ca_coords(ref, mapping.ref_chain, mapping.ref_res)
            scores.append(metrics.tm_score(pred_ca, ref_ca, ref_length=ref_length))
        out.append(ReferenceMatch(ref.name, ref.source, tuple(scores), tuple(counts)))
    return out


# --------------------------------------------------------------------------------------
# Whole analysis and output
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class EnsembleAnalysis:
    """Result of :func:`analyze`.

    Attributes:
      ensemble: the analysed ensemble.
      rmsf: (N,) CA RMSF, Å.
      mean_structure: (N, 3) CA mean after superposition, Å.
      rmsd: (K, K) pairwise CA RMSD, Å.
      clusters: conformational clusters, largest first.
      references: one match per reference (empty without references).
      config: settings used.
    """

    ensemble: Ensemble
    rmsf: np.ndarray
    mean_structure: np.ndarray
    rmsd: np.ndarray
    clusters: tuple[Cluster, ...]
    references: tuple[ReferenceMatch, ...]
    config: AnalysisConfig

    def pairwise_stats(self) -> dict[str, float]:
        """Mean / median / min / max of the off-diagonal pairwise RMSDs, Å (NaN for K < 2)."""
        k = self.rmsd.shape[0]
        if k < 2:
            return {"mean": float("nan"), "median": float("nan"), "min": float("nan"), "max": float("nan")}
        off = self.rmsd[np.triu_indices(k, 1)]
        return {
            "mean": float(off.mean()),
            "median": float(np.median(off)),
            "min": float(off.min()),
            "max": float(off.max()),
        }

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN as None)."""
        ens = self.ensemble
        labels = ens.labels
        d = {
            "n_members": ens.num_members,
            "n_residues": ens.num_residues,
            "members": list(labels),
            "residues": [
                {"chain": c, "res_id": int(r), "res_name": n} for c, r, n in zip(ens.chain_ids, ens.res_ids, ens.res_names)
            ],
            "rmsf": {
                "mean": float(self.rmsf.mean()),
                "min": float(self.rmsf.min()),
                "max": float(self.rmsf.max()),
                "max_chain": ens.chain_ids[int(np.argmax(self.rmsf))],
                "max_residue": int(ens.res_ids[int(np.argmax(self.rmsf))]),
                "per_residue": [float(v) for v in self.rmsf],
            },
            "pairwise_rmsd": self.pairwise_stats(),
            "clustering": {
                "method": "average linkage",
                "threshold_rmsd": self.config.cluster_rmsd,
                "n_clusters": len(self.clusters),
                "clusters": [
                    {
                        "size": c.size,
                        "representative": c.medoid,
                        "representative_label": labels[c.medoid],
                        "mean_rmsd_to_representative": c.mean_rmsd_to_medoid,
                        "members": list(c.members),
                    }
                    for c in self.clusters
                ],
            },
            "references": [
                {
                    "name": m.name,
                    "file": m.path,
                    "best_tm_score": m.best_tm_score,
                    "best_member": m.best_member,
                    "best_label": labels[m.best_member] if m.best_member >= 0 else None,
                    "tm_scores": list(m.tm_scores),
                    "n_aligned": list(m.n_aligned),
                }
                for m in self.references
            ],
        }
        return json_safe(d)


def analyze(
    ensemble: Ensemble,
    references: Sequence[Structure] = (),
    config: AnalysisConfig = AnalysisConfig(),
) -> EnsembleAnalysis:
    """RMSF, pairwise RMSD, clusters and (optionally) best TM-score to each reference."""
    aligned, mean = superpose_to_mean(ensemble.ca, max_iterations=config.max_iterations, tolerance=config.tolerance)
    rmsf = _fluctuation(aligned, mean)
    rmsd = pairwise_rmsd(ensemble.ca)
    clusters = cluster_conformations(rmsd, config.cluster_rmsd)
    matches = best_matches(ensemble.members, references) if references else []
    return EnsembleAnalysis(ensemble, rmsf, mean, rmsd, tuple(clusters), tuple(matches), config)


def load_references(paths: Sequence[str | os.PathLike]) -> list[Structure]:
    """Read model 1 of each reference file (``StructureError`` names a bad file)."""
    return [read_structure(p) for p in paths]


def write_analysis(result: EnsembleAnalysis, outdir: str | os.PathLike, *, write_representatives: bool = True) -> dict[str, Path]:
    """Write the analysis files into ``outdir``.

    Files: ``analysis.json``, ``rmsf.png``, ``rmsf.csv``, ``rmsd_heatmap.png``, ``rmsd_matrix.npy``,
    ``rmsd_matrix.csv`` and, with ``write_representatives``, ``representatives.pdb`` (model i = the
    medoid of cluster i, largest cluster first).

    Returns:
      name -> path of every file written.
    """
    from simplefold import plots
    from simplefold.io.structure import write_structure

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    ens = result.ensemble
    files: dict[str, Path] = {}

    files["rmsf_png"] = plots.plot_rmsf(
        result.rmsf, out / "rmsf.png", title=f"CA RMSF ({ens.num_members} members)", residue_numbers=ens.res_ids
        if len(set(ens.chain_ids)) == 1 else None,
    )
    rows = ["chain,res_id,res_name,rmsf"] + [
        f"{c},{r},{n},{v:.4f}" for c, r, n, v in zip(ens.chain_ids, ens.res_ids, ens.res_names, result.rmsf)
    ]
    atomic_write_text(out / "rmsf.csv", "\n".join(rows) + "\n")
    files["rmsf_csv"] = out / "rmsf.csv"

    files["rmsd_heatmap_png"] = plots.plot_rmsd_heatmap(result.rmsd, out / "rmsd_heatmap.png", labels=list(ens.labels))
    with atomic_open(out / "rmsd_matrix.npy", "wb") as fh:
        np.save(fh, result.rmsd)
    files["rmsd_matrix_npy"] = out / "rmsd_matrix.npy"
    header = ",".join(["member", *ens.labels])
    lines = [header] + [",".join([label, *(f"{v:.4f}" for v in row)]) for label, row in zip(ens.labels, result.rmsd)]
    atomic_write_text(out / "rmsd_matrix.csv", "\n".join(lines) + "\n")
    files["rmsd_matrix_csv"] = out / "rmsd_matrix.csv"

    summary = result.to_dict()
    if write_representatives and result.clusters:
        # One multi-model file, model i = representative of cluster i (largest cluster first).
        path = out / "representatives.pdb"
        reps = [ens.members[c.medoid] for c in result.clusters]
        if len({r.num_atoms for r in reps}) == 1 and len(reps) > 1:
            # a multi-model file shares its per-atom annotations between models: every model carries
            # the mean B-factor (pLDDT) of the representatives, as predict's ensemble files do
            mean_b = np.mean([np.concatenate([c.b_factors for c in r.chains]) for r in reps], axis=0)
            reps = [r.with_coords(r.coords, b_factors=mean_b) for r in reps]
        try:
            write_structure(path, reps)
        except (StructureError, ValueError) as exc:  # e.g. members with different atom layouts
            logger.warning("could not write %s: %s", path, exc)
        else:
            summary["clustering"]["representatives_file"] = path.name
            files["representatives"] = path

    files["json"] = out / "analysis.json"
    write_json(files["json"], summary)
    return files

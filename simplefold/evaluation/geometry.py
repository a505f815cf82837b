"""Local-chemistry and size checks of (predicted) protein structures, in Å.

* :func:`structure_geometry` – median backbone bond lengths (N–CA, CA–C, peptide C–N), median
  consecutive CA–CA distance, radius of gyration and heavy-atom clashes per atom of a
  :class:`simplefold.io.structure.Structure` (validation during training, ``benchmarks/geometry.py``).
* :func:`check_prediction` – the sanity check every predicted structure passes before it is
  written: ``errors`` (non-finite or out-of-format coordinates: the file cannot be written) and
  ``warnings`` (bond lengths or compactness far from any protein: the file is written, flagged).

A clash is a pair of heavy atoms closer than :data:`CLASH_DISTANCE` that are neither in the same
residue nor both backbone atoms of consecutive residues (those pairs are bonded or 2–3 bonds
apart); native structures score ≈ 0 (disulfide S–S pairs, 2.05 Å, are the rare exception).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from simplefold.io.structure import Chain, Structure

#: Ideal backbone geometry (Engh & Huber): N–CA, CA–C, peptide C–N bond lengths and the trans CA–CA
#: distance of consecutive residues, Å.
IDEAL = {"n_ca": 1.458, "ca_c": 1.525, "c_n": 1.329, "ca_ca": 3.80}
#: Heavy-atom pairs closer than this (Å) count as clashes.
CLASH_DISTANCE = 2.2
_BACKBONE = frozenset(("N", "CA", "C", "O"))

#: Sanity limits of :func:`check_prediction`: largest |coordinate| a PDB file can hold (8.3f), the
#: tolerated deviation of a median backbone bond length / CA–CA distance from :data:`IDEAL`, and the
#: smallest radius of gyration relative to a compact chain of the same length (2.2·L^0.38 Å).
MAX_ABS_COORD = 9999.0
BOND_TOLERANCE = 0.3
CA_CA_TOLERANCE = 0.6
MIN_RG_RATIO = 0.5


def compact_radius_of_gyration(num_residues: int) -> float:
    """Typical Rg (Å) of a compact globular chain: 2.2·L^0.38 (Skolnick et al.)."""
    return 2.2 * max(int(num_residues), 1) ** 0.38


def _atom_index(chain: Chain, name: str) -> np.ndarray:
    """(L,) index of atom ``name`` in each residue, −1 where the template has none or it is absent."""
    idx = np.full(chain.num_residues, -1, np.int64)
    names = np.asarray(chain.atom_names)
    hit = np.flatnonzero((names == name) & np.asarray(chain.atom_mask, bool))
    idx[chain.atom_residue[hit]] = hit
    return idx


def _distances(coords: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ok = (a >= 0) & (b >= 0)
    return np.linalg.norm(coords[a[ok]] - coords[b[ok]], axis=-1)


def chain_bonds(chain: Chain) -> dict[str, np.ndarray]:
    """Per-residue backbone distances of one chain (Å): ``n_ca``, ``ca_c`` and, for residue pairs
    with consecutive residue numbers, ``c_n`` (peptide bond) and ``ca_ca``."""
    xyz = np.asarray(chain.coords, np.float64)
    n, ca, c = (_atom_index(chain, k) for k in ("N", "CA", "C"))
    consecutive = np.diff(np.asarray(chain.res_ids, np.int64)) == 1
    nxt = lambda idx: np.where(consecutive, idx[1:], -1)  # noqa: E731
    prev = lambda idx: np.where(consecutive, idx[:-1], -1)  # noqa: E731
    return {
        "n_ca": _distances(xyz, n, ca),
        "ca_c": _distances(xyz, ca, c),
        "c_n": _distances(xyz, prev(c), nxt(n)),
        "ca_ca": _distances(xyz, prev(ca), nxt(ca)),
    }


def radius_of_gyration(coords: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square distance of the (masked) atoms from their centroid, Å."""
    x = np.asarray(coords, np.float64)
    if mask is not None:
        x = x[np.asarray(mask, bool)]
    if len(x) == 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.sum((x - x.mean(0)) ** 2, axis=-1))))


def count_clashes(structure: Structure, cutoff: float = CLASH_DISTANCE) -> int:
    """Heavy-atom pairs closer than ``cutoff`` Å, excluding same-residue pairs and backbone–backbone
    pairs of consecutive residues of one chain (see the module docstring)."""
    from scipy.spatial import cKDTree

    xyz, chain_of, res_of, bb = [], [], [], []
    for k, ch in enumerate(structure.chains):
        m = np.asarray(ch.atom_mask, bool)
        xyz.append(np.asarray(ch.coords, np.float64)[m])
        chain_of.append(np.full(int(m.sum()), k))
        res_of.append(np.asarray(ch.res_ids, np.int64)[ch.atom_residue[m]])
        bb.append(np.isin(np.asarray(ch.atom_names)[m], list(_BACKBONE)))
    if not xyz:
        return 0
    xyz = np.concatenate(xyz)
    if not np.all(np.isfinite(xyz)):
        raise ValueError("count_clashes: non-finite coordinates")
    if len(xyz) < 2:
        return 0
    chain_of, res_of, bb = map(np.concatenate, (chain_of, res_of, bb))
    pairs = cKDTree(xyz).query_pairs(cutoff, output_type="ndarray")
    if len(pairs) == 0:
        return 0
    i, j = pairs[:, 0], pairs[:, 1]
    same_chain = chain_of[i] == chain_of[j]
    sep = np.abs(res_of[i] - res_of[j])
    excluded = same_chain & ((sep == 0) | ((sep == 1) & bb[i] & bb[j]))
    return int(np.sum(~excluded))


def structure_geometry(structure: Structure, *, clashes: bool = True) -> dict[str, float]:
    """Median ``n_ca``, ``ca_c``, ``c_n``, ``ca_ca`` (Å, NaN when absent), ``rg`` (Å, all present heavy
    atoms), ``num_atoms`` and, with ``clashes``, ``clashes_per_atom`` (:func:`count_clashes` / atoms)."""
    bonds: dict[str, list[np.ndarray]] = {k: [] for k in IDEAL}
    for ch in structure.chains:
        for k, v in chain_bonds(ch).items():
            bonds[k].append(v)
    out: dict[str, float] = {}
    for k, parts in bonds.items():
        v = np.concatenate(parts) if parts else np.zeros(0)
        out[k] = float(np.median(v)) if len(v) else float("nan")
    mask = np.asarray(structure.atom_mask, bool)
    out["rg"] = radius_of_gyration(structure.coords, mask)
    out["num_atoms"] = int(mask.sum())
    if clashes:
        out["clashes_per_atom"] = count_clashes(structure) / max(out["num_atoms"], 1)
    return out


def check_prediction(structure: Structure) -> tuple[list[str], list[str]]:
    """Sanity check of a predicted structure before it is written.

    Returns:
      ``(errors, warnings)``. Errors: non-finite coordinates, or coordinates beyond ±9999 Å (a PDB
      file cannot hold them and no protein is that large); such a structure must not be written.
      Warnings: a median backbone bond length more than 0.3 Å from ideal, a median consecutive
      CA–CA distance more than 0.6 Å from 3.80 Å, or a radius of gyration below half that of a
      compact chain of the same length (a collapsed sample).
    """
    xyz = np.asarray(structure.coords, np.float64)[np.asarray(structure.atom_mask, bool)]
    errors: list[str] = []
    if not np.all(np.isfinite(xyz)):
        errors.append(f"{int(np.sum(~np.isfinite(xyz).all(-1)))} atoms have non-finite coordinates")
        return errors, []
    big = float(np.abs(xyz).max()) if len(xyz) else 0.0
    if big > MAX_ABS_COORD:
        errors.append(f"coordinates reach {big:.3g} Å (beyond ±{MAX_ABS_COORD:g} Å): the sample diverged")
        return errors, []
    geo = structure_geometry(structure, clashes=False)
    warnings = _geometry_warnings(geo, structure.num_residues)
    return errors, warnings


def _geometry_warnings(geo: Mapping[str, float], num_residues: int) -> list[str]:
    out = []
    labels = {"n_ca": "N–CA", "ca_c": "CA–C", "c_n": "peptide C–N", "ca_ca": "consecutive CA–CA"}
    for key, label in labels.items():
        value = geo.get(key, float("nan"))
        tol = CA_CA_TOLERANCE if key == "ca_ca" else BOND_TOLERANCE
        if np.isfinite(value) and abs(value - IDEAL[key]) > tol:
            out.append(f"median {label} distance {value:.2f} Å (ideal {IDEAL[key]:.2f} Å)")
    rg, rg0 = geo.get("rg", float("nan")), compact_radius_of_gyration(num_residues)
    if num_residues >= 10 and np.isfinite(rg) and rg < MIN_RG_RATIO * rg0:
        out.append(f"radius of gyration {rg:.1f} Å, below half the {rg0:.1f} Å of a compact chain "
                   f"of {num_residues} residues (collapsed sample)")
    return out

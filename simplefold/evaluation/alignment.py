"""Residue and atom correspondence between a predicted and a reference structure.

Two residue mappings are offered:

* sequence alignment (default): global alignment without end-gap penalties (semi-global) of the
  one-letter chain sequences with BLOSUM62 and affine gaps (open −10, extend −1), via
  ``biotite.sequence.align.align_optimal``; every aligned column pairs two residues, identical or not;
* author residue numbering (``by_residue_number=True``): residues with the same author number and
  insertion code are paired, as the ``TMscore`` program does.

Either way only pairs where *both* residues have a resolved CA are kept. Chains are paired first:
by residue number, chains with the same ID (else in file order); by sequence, greedily by sequence
identity of the alignment (ties: same chain ID, then file order).

Public API: ``align_chains``, ``pair_chains``, ``match_structures`` -> ``ResidueMapping``,
``matched_atoms``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from simplefold.io.structure import Chain, Structure

#: Atoms compared between two aligned residues of different type (shared by all amino acids but
#: GLY, which simply lacks CB).
BACKBONE_ATOMS = ("N", "CA", "C", "O", "CB")
#: Affine gap penalty (open, extend) of the sequence alignment, in BLOSUM62 units.
GAP_PENALTY = (-10, -1)


class AlignmentError(ValueError):
    """Two structures have no residue correspondence (e.g. no aligned residue with a CA in both)."""


@functools.cache
def _blosum62():
    from biotite.sequence.align import SubstitutionMatrix

    return SubstitutionMatrix.std_protein_matrix()


def _protein_sequence(sequence: str):
    from biotite.sequence import ProteinSequence

    # ProteinSequence knows B, Z, X and '*'; map anything else (U, O, J) to X.
    allowed = set(ProteinSequence.alphabet.get_symbols())
    return ProteinSequence("".join(c if c in allowed else "X" for c in sequence.upper()))


def _ca_mask(chain: Chain) -> np.ndarray:
    return chain.atom_coords("CA")[1]


def _sequence_alignment(pred_chain: Chain, ref_chain: Chain) -> np.ndarray:
    """(K, 2) residue index pairs of the aligned columns (no resolution filter)."""
    from biotite.sequence.align import align_optimal

    if pred_chain.num_residues == 0 or ref_chain.num_residues == 0:
        return np.zeros((0, 2), np.int64)
    alignment = align_optimal(
        _protein_sequence(pred_chain.sequence),
        _protein_sequence(ref_chain.sequence),
        _blosum62(),
        gap_penalty=GAP_PENALTY,
        terminal_penalty=False,
        max_number=1,
    )[0]
    trace = alignment.trace
    return trace[(trace[:, 0] >= 0) & (trace[:, 1] >= 0)].astype(np.int64)


def _number_alignment(pred_chain: Chain, ref_chain: Chain) -> np.ndarray:
    ref_index = {(int(r), i): k for k, (r, i) in enumerate(zip(ref_chain.res_ids, ref_chain.ins_codes))}
    pairs = [
        (k, ref_index[key])
        for k, key in enumerate(zip(map(int, pred_chain.res_ids), pred_chain.ins_codes))
        if key in ref_index
    ]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def align_chains(
    pred_chain: Chain, ref_chain: Chain, by_residue_number: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Residue correspondence of two chains.

    Args:
      pred_chain, ref_chain: ``simplefold.io.structure.Chain`` objects.
      by_residue_number: pair by author residue number + insertion code instead of by sequence alignment.

    Returns:
      ``(pred_res_idx, ref_res_idx)``: (K,) int arrays of residue indices into each chain, increasing,
      restricted to pairs whose residues both have a resolved CA.
    """
    pairs = _number_alignment(pred_chain, ref_chain) if by_residue_number else _sequence_alignment(pred_chain, ref_chain)
    keep = _ca_mask(pred_chain)[pairs[:, 0]] & _ca_mask(ref_chain)[pairs[:, 1]]
    pairs = pairs[keep]
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def pair_chains(pred: Structure, ref: Structure, by_residue_number: bool = False) -> list[tuple[int, int]]:
    """Pairs ``(pred_chain_index, ref_chain_index)``, each chain used at most once."""
    n_pred, n_ref = len(pred.chains), len(ref.chains)
    if n_pred == 0 or n_ref == 0:
        return []
    if n_pred == 1 and n_ref == 1:
        return [(0, 0)]
    if by_residue_number:
        ref_ids = {c.chain_id: j for j, c in enumerate(ref.chains)}
        pairs = [(i, ref_ids[c.chain_id]) for i, c in enumerate(pred.chains) if c.chain_id in ref_ids]
        return pairs or [(i, i) for i in range(min(n_pred, n_ref))]
    candidates = []
    for i, pc in enumerate(pred.chains):
        for j, rc in enumerate(ref.chains):
            cols = _sequence_alignment(pc, rc)
            identical = sum(pc.res_names[a] == rc.res_names[b] for a, b in cols)
            identity = identical / max(min(pc.num_residues, rc.num_residues), 1)
            candidates.append((-identity, pc.chain_id != rc.chain_id, abs(i - j), i, j))
    used_pred, used_ref, pairs = set(), set(), []
    for *_, i, j in sorted(candidates):
        if i not in used_pred and j not in used_ref:
            pairs.append((i, j))
            used_pred.add(i)
            used_ref.add(j)
    return sorted(pairs)


@dataclasses.dataclass(frozen=True)
class ResidueMapping:
    """Aligned residue pairs of two structures (K pairs, both CAs resolved).

    Attributes:
      pred_chain, pred_res: (K,) chain index into ``pred.chains`` and residue index into that chain.
      ref_chain, ref_res: (K,) the same for the reference.
      chain_pairs: the chain pairing used.
    """

    pred_chain: np.ndarray
    pred_res: np.ndarray
    ref_chain: np.ndarray
    ref_res: np.ndarray
    chain_pairs: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.pred_res)


def match_structures(pred: Structure, ref: Structure, *, by_residue_number: bool = False) -> ResidueMapping:
    """Residue correspondence of two structures: ``pair_chains`` then ``align_chains`` per chain pair."""
    chain_pairs = pair_chains(pred, ref, by_residue_number)
    parts = []
    for i, j in chain_pairs:
        p, r = align_chains(pred.chains[i], ref.chains[j], by_residue_number)
        parts.append((np.full(len(p), i), p, np.full(len(r), j), r))
    if parts:
        cols = [np.concatenate([part[k] for part in parts]).astype(np.int64) for k in range(4)]
    else:
        cols = [np.zeros(0, np.int64)] * 4
    return ResidueMapping(*cols, chain_pairs=tuple(chain_pairs))


def ca_coords(structure: Structure, chain_idx: np.ndarray, res_idx: np.ndarray) -> np.ndarray:
    """(K, 3) float64 CA coordinates of the listed residues."""
    out = np.zeros((len(res_idx), 3))
    for c in np.unique(chain_idx):
        sel = chain_idx == c
        out[sel] = structure.chains[c].atom_coords("CA")[0][res_idx[sel]]
    return out


def matched_atoms(
    pred: Structure, ref: Structure, mapping: ResidueMapping
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Heavy atoms present in both structures within the aligned residue pairs.

    Residues of the same type are compared atom for atom (same template); residues of different type
    only on ``BACKBONE_ATOMS`` present in both.

    Returns:
      pred_coords (M, 3), ref_coords (M, 3) float64 Å, and pair_index (M,) int: the aligned pair
      (0..K-1) each atom belongs to.
    """
    pred_xyz, ref_xyz, owner = [], [], []
    for k, (pc, pr, rc, rr) in enumerate(zip(mapping.pred_chain, mapping.pred_res, mapping.ref_chain, mapping.ref_res)):
        p_chain, r_chain = pred.chains[pc], ref.chains[rc]
        ps, rs = p_chain.residue_atom_slice(int(pr)), r_chain.residue_atom_slice(int(rr))
        p_names, r_names = p_chain.atom_names[ps], r_chain.atom_names[rs]
        if p_chain.res_names[pr] == r_chain.res_names[rr] and p_names == r_names:
            p_idx = np.arange(ps.start, ps.stop)
            r_idx = np.arange(rs.start, rs.stop)
        else:
            r_pos = {name: rs.start + n for n, name in enumerate(r_names)}
            shared = [(ps.start + n, r_pos[name]) for n, name in enumerate(p_names) if name in BACKBONE_ATOMS and name in r_pos]
            p_idx = np.asarray([a for a, _ in shared], np.int64)
            r_idx = np.asarray([b for _, b in shared], np.int64)
        keep = p_chain.atom_mask[p_idx] & r_chain.atom_mask[r_idx]
        pred_xyz.append(p_chain.coords[p_idx[keep]])
        ref_xyz.append(r_chain.coords[r_idx[keep]])
        owner.append(np.full(int(keep.sum()), k))
    if not owner:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, np.int64)
    return (
        np.concatenate(pred_xyz).astype(np.float64),
        np.concatenate(ref_xyz).astype(np.float64),
        np.concatenate(owner).astype(np.int64),
    )

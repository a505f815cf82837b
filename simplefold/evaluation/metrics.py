"""Structure comparison metrics: superposition, RMSD, TM-score, GDT and lDDT (vectorised numpy).

All coordinates are in Å. "pred" is the model being scored and "ref" the reference (native); every
score that needs a length is normalised by the *reference*.

Public API
----------
* ``kabsch(P, Q, weights=None) -> (R, t)`` – the proper rotation ``R`` (3, 3) and translation ``t`` (3,)
  minimising ``Σ w |P @ R.T + t − Q|²``.
* ``superpose(P, Q, weights=None) -> P'`` – ``P`` moved onto ``Q``.
* ``rmsd(P, Q, *, superpose=True, weights=None) -> float``.
* ``tm_d0(length) -> float`` – the TM-score distance scale.
* ``superposition_search(pred_ca, ref_ca, *, ref_length=None, gdt_cutoffs=...) -> SearchResult`` – the
  TM-score maximisation of the ``TMscore`` program (Zhang & Skolnick 2004): Kabsch on seed fragments of
  the aligned CA pairs (lengths n, n/2, n/4, …, min 4, every start position), then iterative extension to
  the pairs closer than ``d0_search + 1``. GDT counts are maximised over the same superpositions, as
  ``TMscore`` reports them.
* ``tm_score(pred_ca, ref_ca, *, ref_length=None) -> float`` and
  ``gdt(pred_ca, ref_ca, cutoffs=(1, 2, 4, 8), *, ref_length=None) -> float`` – thin wrappers of the search.
* ``lddt(pred_coords, ref_coords, atom_mask=None, atom_residue=None, *, per_residue=False, ...)`` – the
  superposition-free local distance difference test (Mariani et al. 2013) as ``biotite.structure.lddt``
  computes it: pairs within 15 Å in the reference, intra-residue pairs excluded, thresholds 0.5/1/2/4 Å;
  global score = mean over all pairs, per-residue score = mean over the pairs of each residue's atoms.
* ``lddt_jax(...)`` – the same in jax with masks (dense, for training-size inputs).
* ``evaluate_pair(pred, ref, *, by_residue_number=False) -> dict[str, float]`` – every metric for two
  ``simplefold.io.structure.Structure`` objects after residue correspondence
  (``simplefold.evaluation.alignment.match_structures``): ``tm_score, gdt_ts, gdt_ha, lddt, rmsd_ca, rmsd_all,
  n_aligned``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from simplefold.constants import LDDT_INCLUSION_RADIUS, LDDT_THRESHOLDS

if TYPE_CHECKING:
    from simplefold.io.structure import Structure

logger = logging.getLogger(__name__)

#: Metric names reported by ``evaluate_pair`` (and by ``simplefold evaluate``), in table order.
METRIC_NAMES = ("tm_score", "gdt_ts", "gdt_ha", "lddt", "rmsd_ca", "rmsd_all", "n_aligned")
#: Metrics where smaller is better (the "best" sample minimises them).
LOWER_IS_BETTER = frozenset({"rmsd_ca", "rmsd_all"})

GDT_TS_CUTOFFS = (1.0, 2.0, 4.0, 8.0)
GDT_HA_CUTOFFS = (0.5, 1.0, 2.0, 4.0)

# TMscore program search constants (TMscore.f): at most 20 extension iterations per seed, seed
# lengths n, n/2, ... (at most 6 of them), shortest seed 4 pairs.
_TM_MAX_ITERATIONS = 20
_TM_MAX_SEED_LENGTHS = 6
_TM_MIN_SEED_LENGTH = 4
_TM_BATCH_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------------------
# Superposition and RMSD
# --------------------------------------------------------------------------------------


def _as_coords(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {x.shape}")
    return x


def _kabsch_batched(
    P: np.ndarray, Q: np.ndarray, W: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Kabsch for many weightings of the same point pairs at once.

    Args:
      P, Q: (N, 3) mobile and fixed points.
      W: (B, N) non-negative weights; each row is one fit (a 0/1 row selects a subset).

    Returns:
      R (B, 3, 3) proper rotations and t (B, 3) translations with ``P @ R[b].T + t[b] ≈ Q``.
    """
    wsum = W.sum(axis=1)  # (B,)
    wsum_safe = np.where(wsum > 0, wsum, 1.0)[:, None]
    cp = (W @ P) / wsum_safe  # (B, 3)
    cq = (W @ Q) / wsum_safe
    # Covariance Σ w (p - cp)(q - cq)^T, expanded so that no (B, N, 3) centred copies are needed.
    outer = (P[:, :, None] * Q[:, None, :]).reshape(len(P), 9)
    H = (W @ outer).reshape(-1, 3, 3) - wsum[:, None, None] * cp[:, :, None] * cq[:, None, :]
    U, _, Vt = np.linalg.svd(H)
    # Reflection guard: flip the weakest singular direction when det < 0.
    d = np.sign(np.linalg.det(U @ Vt))
    d = np.where(d == 0, 1.0, d)
    D = np.ones((W.shape[0], 3))
    D[:, 2] = d
    R = np.einsum("bji,bj,bkj->bik", Vt, D, U)  # V diag(d) U^T
    t = cq - np.einsum("bij,bj->bi", R, cp)
    return R, t


def kabsch(
    P: np.ndarray, Q: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal proper rigid transform of ``P`` onto ``Q``.

    Args:
      P: (N, 3) mobile points, Å.
      Q: (N, 3) fixed points, Å.
      weights: optional (N,) non-negative weights (e.g. a 0/1 mask).

    Returns:
      ``(R, t)``: rotation (3, 3) with det +1 and translation (3,) minimising
      ``Σ w_i |R p_i + t − q_i|²``; apply as ``P @ R.T + t``.
    """
    P = _as_coords(P, "P")
    Q = _as_coords(Q, "Q")
    if P.shape != Q.shape:
        raise ValueError(f"P and Q must have the same shape, got {P.shape} and {Q.shape}")
    W = np.ones(len(P)) if weights is None else np.asarray(weights, dtype=np.float64)
    if W.shape != (len(P),):
        raise ValueError(f"weights must have shape ({len(P)},), got {W.shape}")
    if len(P) == 0 or W.sum() <= 0:
        raise ValueError("kabsch needs at least one point with positive weight")
    R, t = _kabsch_batched(P, Q, W[None])
    return R[0], t[0]


def superpose(P: np.ndarray, Q: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Return ``P`` (N, 3) optimally rotated and translated onto ``Q`` (N, 3)."""
    R, t = kabsch(P, Q, weights)
    return np.asarray(P, dtype=np.float64) @ R.T + t


def rmsd(
    P: np.ndarray, Q: np.ndarray, *, superpose: bool = True, weights: np.ndarray | None = None
) -> float:
    """Root-mean-square deviation (Å) between paired points ``P`` and ``Q`` (N, 3).

    With ``superpose=True`` (default) ``P`` is first Kabsch-superposed onto ``Q`` using the same
    weights; the mean is weighted by ``weights`` if given.
    """
    P = _as_coords(P, "P")
    Q = _as_coords(Q, "Q")
    if P.shape != Q.shape:
        raise ValueError(f"P and Q must have the same shape, got {P.shape} and {Q.shape}")
    W = np.ones(len(P)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(P) == 0 or W.sum() <= 0:
        return float("nan")
    if superpose:
        R, t = kabsch(P, Q, W)
        P = P @ R.T + t
    sq = np.sum((P - Q) ** 2, axis=-1)
    return float(np.sqrt(np.sum(W * sq) / np.sum(W)))


# --------------------------------------------------------------------------------------
# TM-score / GDT superposition search
# --------------------------------------------------------------------------------------


def tm_d0(length: int) -> float:
    """TM-score distance scale d0 (Å) for a reference of ``length`` residues (min 0.5)."""
    if length <= 15:
        return 0.5
    return max(1.24 * (length - 15) ** (1.0 / 3.0) - 1.8, 0.5)


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Outcome of ``superposition_search``.

    Attributes:
      tm_score: the maximal TM-score found (normalised by the reference length).
      gdt: cutoff (Å) -> maximal fraction of reference residues within the cutoff, each maximised
        separately over all superpositions tried (as the ``TMscore`` program reports GDT).
      rotation: (3, 3) and translation: (3,) of the TM-maximising superposition (pred -> ref frame).
      d0: the distance scale used.
      ref_length: the normalisation length.
    """

    tm_score: float
    gdt: dict[float, float]
    rotation: np.ndarray
    translation: np.ndarray
    d0: float
    ref_length: int

    @property
    def gdt_ts(self) -> float:
        return float(np.mean([self.gdt[c] for c in GDT_TS_CUTOFFS]))

    @property
    def gdt_ha(self) -> float:
        return float(np.mean([self.gdt[c] for c in GDT_HA_CUTOFFS]))


def _seed_lengths(n_aligned: int) -> list[int]:
    """Seed fragment lengths n, n/2, n/4, … (integer halving), ending at the minimum (4)."""
    min_len = min(_TM_MIN_SEED_LENGTH, n_aligned)
    lengths = []
    for k in range(_TM_MAX_SEED_LENGTHS - 1):
        length = n_aligned // 2**k
        if length <= min_len:
            lengths.append(min_len)
            return lengths
        lengths.append(length)
    lengths.append(min_len)
    return lengths


def _cut_masks(dist: np.ndarray, cutoff: float) -> np.ndarray:
    """Pairs closer than ``cutoff`` (B, n) with the TMscore rule: if a row keeps fewer than 3 pairs
    (and n > 3) its cutoff grows by 0.5 Å until it keeps at least 3."""
    n = dist.shape[1]
    mask = dist < cutoff
    if n <= 3:
        return mask
    few = mask.sum(axis=1) < 3
    if np.any(few):
        third = np.sort(dist[few], axis=1)[:, 2]
        # smallest cutoff + 0.5 k strictly above the third-smallest distance
        steps = np.floor((third - cutoff) / 0.5) + 1
        row_cut = cutoff + 0.5 * np.maximum(steps, 0)
        mask[few] = dist[few] < row_cut[:, None]
    return mask


def superposition_search(
    pred_ca: np.ndarray,
    ref_ca: np.ndarray,
    *,
    ref_length: int | None = None,
    gdt_cutoffs: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
) -> SearchResult:
    """TM-score maximising superposition search of the ``TMscore`` program.

    For every seed length (n, n/2, n/4, …, min 4 aligned pairs) and every start position, the seed
    fragment is Kabsch-superposed, the pairs closer than ``d0_search − 1`` are collected, and then up to
    20 times: superpose on the collected pairs, re-collect pairs closer than ``d0_search + 1`` (stop when
    the set no longer changes). TM-score and GDT counts are evaluated after every superposition and the
    maxima kept. ``d0_search`` is d0 clipped to [4.5, 8] Å. All seeds of one length run batched.

    Args:
      pred_ca: (n, 3) predicted CA coordinates of the aligned residue pairs, Å.
      ref_ca: (n, 3) reference CA coordinates, same order.
      ref_length: residues of the reference for normalisation (default n). Must be >= n.
      gdt_cutoffs: cutoffs (Å) whose GDT fractions are reported.

    Returns:
      ``SearchResult``.
    """
    x = _as_coords(pred_ca, "pred_ca")
    y = _as_coords(ref_ca, "ref_ca")
    if x.shape != y.shape:
        raise ValueError(f"pred_ca and ref_ca must have the same shape, got {x.shape} and {y.shape}")
    n = len(x)
    length = n if ref_length is None else int(ref_length)
    if length < n:
        raise ValueError(f"ref_length ({length}) is smaller than the number of aligned pairs ({n})")
    cutoffs = tuple(float(c) for c in gdt_cutoffs)
    d0 = tm_d0(length)
    if n == 0:
        return SearchResult(0.0, {c: 0.0 for c in cutoffs}, np.eye(3), np.zeros(3), d0, length)
    d0_search = min(max(d0, 4.5), 8.0)

    best_tm = -1.0
    best_R, best_t = np.eye(3), np.zeros(3)
    best_counts = np.zeros(len(cutoffs), dtype=np.int64)

    def score(mask: np.ndarray, cutoff: float) -> np.ndarray:
        """Superpose on each row of ``mask``; update maxima; return the next cut masks."""
        nonlocal best_tm, best_R, best_t, best_counts
        R, t = _kabsch_batched(x, y, mask.astype(np.float64))
        moved = np.matmul(x[None], R.transpose(0, 2, 1)) + t[:, None, :]
        dist = np.sqrt(np.sum((moved - y[None]) ** 2, axis=-1))  # (B, n)
        tm = np.sum(1.0 / (1.0 + (dist / d0) ** 2), axis=1) / length
        b = int(np.argmax(tm))
        if tm[b] > best_tm:
            best_tm, best_R, best_t = float(tm[b]), R[b], t[b]
        counts = np.array([np.count_nonzero(dist <= c, axis=1).max() for c in cutoffs], dtype=np.int64)
        best_counts = np.maximum(best_counts, counts)
        return _cut_masks(dist, cutoff)

    positions = np.arange(n)
    # Seeds are batched; the batch size bounds the (batch, n, 3) temporaries to ~_TM_BATCH_ELEMENTS.
    batch = max(1, _TM_BATCH_ELEMENTS // n)
    for seed_len in _seed_lengths(n):
        all_starts = np.arange(n - seed_len + 1)
        for b0 in range(0, len(all_starts), batch):
            starts = all_starts[b0 : b0 + batch]
            mask = (positions[None] >= starts[:, None]) & (positions[None] < starts[:, None] + seed_len)
            mask = score(mask, d0_search - 1.0)
            # Extension of all seeds of the batch together; a seed whose pair set stopped changing
            # would only reproduce itself, so it leaves the batch (TMscore stops it there too).
            for _ in range(_TM_MAX_ITERATIONS):
                new_mask = score(mask, d0_search + 1.0)
                changed = np.any(new_mask != mask, axis=1)
                if not np.any(changed):
                    break
                mask = new_mask[changed]
    gdt_fractions = {c: float(k) / length for c, k in zip(cutoffs, best_counts)}
    return SearchResult(best_tm, gdt_fractions, best_R, best_t, d0, length)


def tm_score(pred_ca: np.ndarray, ref_ca: np.ndarray, *, ref_length: int | None = None) -> float:
    """TM-score of aligned CA pairs (n, 3), maximised over superpositions, normalised by the reference.

    ``ref_length`` (default n) is the number of reference residues; unaligned reference residues count
    as zero.
    """
    return superposition_search(pred_ca, ref_ca, ref_length=ref_length, gdt_cutoffs=()).tm_score


def gdt(
    pred_ca: np.ndarray,
    ref_ca: np.ndarray,
    cutoffs: Sequence[float] = GDT_TS_CUTOFFS,
    *,
    ref_length: int | None = None,
) -> float:
    """Global distance test: mean over ``cutoffs`` of the fraction of reference residues whose CA lies
    within the cutoff (Å), each fraction maximised over the superpositions of the TM-score search.
    ``cutoffs=(1, 2, 4, 8)`` gives GDT-TS, ``(0.5, 1, 2, 4)`` GDT-HA.
    """
    res = superposition_search(pred_ca, ref_ca, ref_length=ref_length, gdt_cutoffs=cutoffs)
    return float(np.mean([res.gdt[float(c)] for c in cutoffs]))


# --------------------------------------------------------------------------------------
# lDDT
# --------------------------------------------------------------------------------------

def _contact_pairs(ref: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j with ``|ref_i − ref_j| <= radius`` (exact, float64).

    A cell list (biotite, float32 inside) proposes candidates within ``radius`` plus a margin; the
    float64 distance decides, so the result does not depend on float32 rounding.
    """
    from biotite.structure import CellList

    n = len(ref)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    margin = 1e-2
    cells = CellList(ref.astype(np.float32), cell_size=radius + margin)
    candidates = cells.get_atoms(ref.astype(np.float32), radius + margin)  # (n, k), -1 padded
    i = np.repeat(np.arange(n), candidates.shape[1])
    j = candidates.reshape(-1).astype(np.int64)
    keep = j > i  # also drops the -1 padding; every unordered pair once
    i, j = i[keep], j[keep]
    close = np.sum((ref[i] - ref[j]) ** 2, axis=-1) <= radius**2
    return i[close], j[close]


def lddt(
    pred_coords: np.ndarray,
    ref_coords: np.ndarray,
    atom_mask: np.ndarray | None = None,
    atom_residue: np.ndarray | None = None,
    *,
    per_residue: bool = False,
    inclusion_radius: float = LDDT_INCLUSION_RADIUS,
    thresholds: Sequence[float] = LDDT_THRESHOLDS,
    exclude_same_residue: bool = True,
) -> float | np.ndarray:
    """Local distance difference test (no superposition).

    A pair of distinct atoms (i, j), both in ``atom_mask``, counts when their reference distance is
    ``<= inclusion_radius`` and (with ``exclude_same_residue``) they lie in different residues. Its score
    is the fraction of ``thresholds`` that ``|d_pred − d_ref|`` does not exceed. This is the definition of
    ``biotite.structure.lddt`` (``aggregation='all'`` / ``'residue'``), evaluated in float64.

    Args:
      pred_coords: (A, 3) predicted coordinates, Å.
      ref_coords: (A, 3) reference coordinates, Å, same atom order.
      atom_mask: (A,) bool, atoms to use (e.g. present in both structures); default all.
      atom_residue: (A,) int residue index of each atom in ``0..R-1``; required when
        ``exclude_same_residue`` or ``per_residue``.
      per_residue: return (R,) scores instead of one number: the mean over the pairs whose first atom
        is in that residue (NaN for a residue without pairs). ``R = atom_residue.max() + 1``.
      inclusion_radius: reference distance cutoff, Å.
      thresholds: distance-error thresholds, Å.
      exclude_same_residue: skip intra-residue pairs.

    Returns:
      The global lDDT in [0, 1] (NaN if there is no pair) or a (R,) array.
    """
    pred = _as_coords(pred_coords, "pred_coords")
    ref = _as_coords(ref_coords, "ref_coords")
    if pred.shape != ref.shape:
        raise ValueError(f"pred_coords and ref_coords differ in shape: {pred.shape} vs {ref.shape}")
    n_atoms = len(ref)
    mask = np.ones(n_atoms, bool) if atom_mask is None else np.asarray(atom_mask, bool)
    if mask.shape != (n_atoms,):
        raise ValueError(f"atom_mask must have shape ({n_atoms},), got {mask.shape}")
    if atom_residue is None:
        if exclude_same_residue or per_residue:
            raise ValueError("atom_residue is required for exclude_same_residue or per_residue")
        residue = np.arange(n_atoms)
    else:
        residue = np.asarray(atom_residue, dtype=np.int64)
        if residue.shape != (n_atoms,):
            raise ValueError(f"atom_residue must have shape ({n_atoms},), got {residue.shape}")

    idx = np.flatnonzero(mask)
    i, j = _contact_pairs(ref[idx], inclusion_radius)
    i, j = idx[i], idx[j]
    if exclude_same_residue:
        inter = residue[i] != residue[j]
        i, j = i[inter], j[inter]
    d_ref = np.sqrt(np.sum((ref[i] - ref[j]) ** 2, axis=-1))
    d_pred = np.sqrt(np.sum((pred[i] - pred[j]) ** 2, axis=-1))
    err = np.abs(d_pred - d_ref)
    score = np.mean([err <= c for c in thresholds], axis=0) if len(err) else np.zeros(0)
    # Each unordered pair stands for (i, j) and (j, i), which score the same: the global mean is
    # unchanged and each residue of the pair gets one entry.
    if per_residue:
        n_res = int(residue.max()) + 1 if n_atoms else 0
        owners = np.concatenate([residue[i], residue[j]])
        total = np.bincount(owners, weights=np.concatenate([score, score]), minlength=n_res)
        count = np.bincount(owners, minlength=n_res)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return float(score.mean()) if len(score) else float("nan")


def lddt_jax(
    pred_coords,
    ref_coords,
    atom_mask,
    atom_residue=None,
    *,
    per_residue: bool = False,
    num_residues: int | None = None,
    inclusion_radius: float = LDDT_INCLUSION_RADIUS,
    thresholds: Sequence[float] = LDDT_THRESHOLDS,
):
    """jax version of ``lddt`` on dense (A, A) pair matrices, jit-compatible, with masks.

    Args:
      pred_coords, ref_coords: (..., A, 3) coordinates, Å (leading batch dims allowed).
      atom_mask: (..., A) bool/0-1 mask of atoms to use.
      atom_residue: optional (..., A) int residue index; when given, intra-residue pairs are excluded.
      per_residue: return (..., num_residues) per-residue scores (0 where a residue has no pair;
        requires ``atom_residue`` and a static ``num_residues``).

    Returns:
      (...,) global lDDT (0 when there is no pair), or (..., num_residues).
    """
    import jax.numpy as jnp

    pred = jnp.asarray(pred_coords)
    ref = jnp.asarray(ref_coords)
    mask = jnp.asarray(atom_mask).astype(pred.dtype)

    def pdist(x):
        return jnp.sqrt(jnp.maximum(jnp.sum((x[..., :, None, :] - x[..., None, :, :]) ** 2, -1), 0.0))

    d_ref, d_pred = pdist(ref), pdist(pred)
    n = ref.shape[-2]
    pair = mask[..., :, None] * mask[..., None, :] * (1.0 - jnp.eye(n, dtype=pred.dtype))
    pair = pair * (d_ref <= inclusion_radius)
    if atom_residue is not None:
        residue = jnp.asarray(atom_residue)
        pair = pair * (residue[..., :, None] != residue[..., None, :])
    err = jnp.abs(d_pred - d_ref)
    preserved = sum((err <= c).astype(pred.dtype) for c in thresholds) / len(thresholds)
    if per_residue:
        if atom_residue is None or num_residues is None:
            raise ValueError("per_residue needs atom_residue and num_residues")
        one_hot = jnp.asarray(atom_residue)[..., :, None] == jnp.arange(num_residues)
        one_hot = one_hot.astype(pred.dtype)  # (..., A, R)
        score = jnp.einsum("...ar,...a->...r", one_hot, jnp.sum(pair * preserved, -1))
        count = jnp.einsum("...ar,...a->...r", one_hot, jnp.sum(pair, -1))
        return jnp.where(count > 0, score / jnp.maximum(count, 1.0), 0.0)
    count = jnp.sum(pair, axis=(-2, -1))
    return jnp.where(count > 0, jnp.sum(pair * preserved, axis=(-2, -1)) / jnp.maximum(count, 1.0), 0.0)


# --------------------------------------------------------------------------------------
# Whole-structure comparison
# --------------------------------------------------------------------------------------


def reference_length(ref: Structure) -> int:
    """Residues of ``ref`` with a resolved CA (the normalisation length of TM-score and GDT)."""
    return int(sum(c.atom_coords("CA")[1].sum() for c in ref.chains))


def evaluate_pair(pred: Structure, ref: Structure, *, by_residue_number: bool = False) -> dict[str, float]:
    """Compare a predicted structure with a reference.

    Residues are matched by ``simplefold.evaluation.alignment.match_structures`` (sequence alignment, or author
    residue number with ``by_residue_number``); only pairs with both CAs resolved count.

    Returns:
      ``tm_score`` (TMscore-program search, normalised by the reference's resolved residues), ``gdt_ts``,
      ``gdt_ha`` (same search and normalisation), ``lddt`` (all matched heavy atoms, no superposition),
      ``rmsd_ca`` and ``rmsd_all`` (Å, after Kabsch on the matched CA / heavy atoms) and ``n_aligned``
      (aligned residue pairs).

    Raises:
      simplefold.evaluation.alignment.AlignmentError: no aligned residue pair.
    """
    from simplefold.evaluation import alignment

    mapping = alignment.match_structures(pred, ref, by_residue_number=by_residue_number)
    n = len(mapping)
    if n == 0:
        how = "residue number" if by_residue_number else "sequence alignment"
        raise alignment.AlignmentError(
            f"{pred.name} vs {ref.name}: no residue pairs with CA in both structures (matched by {how})"
        )
    pred_ca = alignment.ca_coords(pred, mapping.pred_chain, mapping.pred_res)
    ref_ca = alignment.ca_coords(ref, mapping.ref_chain, mapping.ref_res)
    search = superposition_search(pred_ca, ref_ca, ref_length=reference_length(ref))
    pred_atoms, ref_atoms, pair_index = alignment.matched_atoms(pred, ref, mapping)
    return {
        "tm_score": search.tm_score,
        "gdt_ts": search.gdt_ts,
        "gdt_ha": search.gdt_ha,
        "lddt": lddt(pred_atoms, ref_atoms, atom_residue=pair_index),
        "rmsd_ca": rmsd(pred_ca, ref_ca),
        "rmsd_all": rmsd(pred_atoms, ref_atoms),
        "n_aligned": n,
    }

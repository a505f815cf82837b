"""Residue crops to a token/atom budget: the Boltz neighbourhood crop used by SimpleFold training.

The crop interpolates between a *spatial* crop (neighbourhood 0: the residues closest in space to a
random query residue) and a *contiguous* crop (large neighbourhoods: stretches of sequence around
each picked residue). Resolved residues are visited in order of distance to the query; each one
contributes a sequence window of about ``neighborhood_size`` residues centred on it, and the crop
stops at the first window that would exceed the token or atom budget (official ``BoltzCropper``
semantics, re-implemented for single chains, which is what a training record is).
"""

from __future__ import annotations

import numpy as np

#: Official neighbourhood sizes: range(0, 41, 2).
DEFAULT_NEIGHBORHOODS = tuple(range(0, 41, 2))


def neighborhood_sizes(min_size: int = 0, max_size: int = 40) -> tuple[int, ...]:
    """Candidate neighbourhood sizes ``range(min_size, max_size + 1, 2)``."""
    if min_size < 0 or max_size < min_size:
        raise ValueError(f"invalid neighbourhood range {min_size}..{max_size}")
    return tuple(range(min_size, max_size + 1, 2))


def _window(center: int, size: int, length: int) -> tuple[int, int]:
    """Sequence window [lo, hi] around ``center``: grown one residue per side until it holds ``size``
    residues, never reaching further than ``size`` from the centre (so it stays short at chain ends)."""
    if length <= size:
        return 0, length - 1
    lo_bound, hi_bound = max(0, center - size), min(length - 1, center + size)
    half = 0
    while True:
        lo, hi = max(lo_bound, center - half), min(hi_bound, center + half)
        if hi - lo + 1 >= size or (lo == lo_bound and hi == hi_bound):
            return lo, hi
        half += 1


def neighborhood_crop(
    center_coords: np.ndarray,
    token_resolved: np.ndarray,
    atoms_per_token: np.ndarray,
    *,
    max_tokens: int,
    max_atoms: int | None,
    neighborhood_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Pick the residues of one crop.

    Args:
      center_coords: ``(M, 3)`` centre atom (CA) coordinates, any length unit.
      token_resolved: ``(M,)`` bool, centre atom resolved (only those can seed windows).
      atoms_per_token: ``(M,)`` heavy-atom count of each residue (for the atom budget).
      max_tokens: residue budget.
      max_atoms: heavy-atom budget (None = unlimited).
      neighborhood_size: window size (0 = purely spatial).
      rng: NumPy generator (the query residue is drawn from it).

    Returns:
      sorted int64 indices of the kept residues (at least one unless a single residue exceeds the
      atom budget). If even the query's window does not fit the budget, the crop is the part of
      that window nearest in sequence to the query that fits.

    Raises:
      ValueError: if no residue is resolved.
    """
    resolved = np.flatnonzero(np.asarray(token_resolved, bool))
    if resolved.size == 0:
        raise ValueError("no resolved residue to crop around")
    length = len(token_resolved)
    query = resolved[rng.integers(len(resolved))]
    dist = np.linalg.norm(center_coords[resolved] - center_coords[query], axis=-1)
    order = resolved[np.argsort(dist, kind="stable")]
    taken = np.zeros(length, bool)
    n_tokens = n_atoms = 0
    for tok in order:
        lo, hi = _window(int(tok), neighborhood_size, length)
        new = np.flatnonzero(~taken[lo : hi + 1]) + lo
        new_atoms = int(atoms_per_token[new].sum())
        if len(new) > max_tokens - n_tokens or (max_atoms is not None and n_atoms + new_atoms > max_atoms):
            break
        taken[new] = True
        n_tokens += len(new)
        n_atoms += new_atoms
    if n_tokens == 0:
        # The query's own window exceeds the budget (budget smaller than the neighbourhood, e.g. tiny
        # test crops), where the official cropper would return nothing: keep the residues of that
        # window nearest in sequence to the query that fit.
        lo, hi = _window(int(query), neighborhood_size, length)
        window = np.arange(lo, hi + 1)
        for tok in window[np.argsort(np.abs(window - query), kind="stable")]:
            if n_tokens + 1 > max_tokens or (max_atoms is not None and n_atoms + atoms_per_token[tok] > max_atoms):
                break
            taken[tok] = True
            n_tokens += 1
            n_atoms += int(atoms_per_token[tok])
    return np.flatnonzero(taken).astype(np.int64)

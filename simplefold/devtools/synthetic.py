"""Synthetic official-layout features for benchmarks (NumPy only): no structure, no ESM network.

A random single-chain protein whose heavy-atom counts are those of random standard residues
(about 8 per residue), padded to a multiple of 32 atom slots as the official featurizer pads, with
random ``ref_pos`` and ``esm_s``: realistic sizes for timing and memory, meaningless values.
"""

from __future__ import annotations

import numpy as np

# heavy atoms per standard residue, AF2 order ARNDCQEGHILKMFPSTWYV
_HEAVY_ATOMS = np.array([5, 11, 8, 8, 6, 9, 9, 4, 10, 8, 8, 9, 8, 11, 7, 6, 7, 14, 12, 7])
# Boltz res_type index of the AF2 residues (2 + AF2 index: pad and gap come first)
_RES_TYPE_OFFSET = 2


def synthetic_features(length: int, cfg, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Official-layout features (batch 1) for a random single-chain protein of ``length`` residues."""
    aa = rng.integers(0, 20, size=length)
    counts = _HEAVY_ATOMS[aa]
    n_real = int(counts.sum())
    n = -(-n_real // 32) * 32
    tok = np.repeat(np.arange(length), counts)
    atom_to_token = np.zeros((1, n, length), np.int64)
    atom_to_token[0, np.arange(n_real), tok] = 1
    idx = np.zeros((1, n), np.int64)
    idx[0, :n_real] = tok
    pad = np.zeros((1, n), np.float32)
    pad[0, :n_real] = 1
    ref_pos = np.zeros((1, n, 3), np.float32)
    ref_pos[0, :n_real] = rng.normal(scale=0.4, size=(n_real, 3))
    element = np.zeros((1, n, 128), np.int64)
    element[0, np.arange(n_real), rng.choice([6, 7, 8, 16], size=n_real)] = 1
    chars = np.zeros((1, n, 4, 64), np.int64)
    chars[0, :n_real, :, 0] = 1
    res_type = np.zeros((1, length, 33), np.int64)
    res_type[0, np.arange(length), aa + _RES_TYPE_OFFSET] = 1
    pocket = np.zeros((1, length, 4), np.int64)
    pocket[..., 0] = 1
    zeros_m = np.zeros((1, length), np.int64)
    return {
        "ref_pos": ref_pos, "ref_element": element, "ref_charge": np.zeros((1, n), np.int8),
        "ref_atom_name_chars": chars, "ref_space_uid": idx.copy(), "atom_pad_mask": pad,
        "atom_to_token": atom_to_token, "atom_to_token_idx": idx, "mol_type": zeros_m,
        "res_type": res_type, "pocket_feature": pocket, "residue_index": np.arange(length)[None],
        "entity_id": zeros_m, "asym_id": zeros_m, "sym_id": zeros_m,
        "max_num_tokens": np.array([length]),
        "esm_s": rng.normal(size=(1, length, cfg.esm_num_layers, cfg.esm_dim)).astype(np.float32),
    }



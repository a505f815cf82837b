"""Featurizer parity with the official pipeline and schema/padding invariants."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PARITY, PARITY_CASES

from simplefold import features as F


def _fixture(case):
    arrays = dict(np.load(PARITY / f"features_{case}.npz"))
    meta = json.loads((PARITY / f"features_{case}.json").read_text())
    return arrays, meta


@pytest.mark.parametrize("case", PARITY_CASES)
def test_sequence_features_match_official(case):
    ref, meta = _fixture(case)
    got = F.featurize_sequence(meta["sequence"], esm_s=ref["esm_s"][0], include_disto_target=True)
    got = F.add_batch_axis(got, batch=ref["ref_pos"].shape[0])
    official = {k for k in ref}
    assert official <= set(got), f"missing: {official - set(got)}"
    for key in sorted(official):
        a, b = np.asarray(got[key]), ref[key]
        assert a.shape == b.shape, key
        assert a.dtype == b.dtype, (key, a.dtype, b.dtype)
        if np.issubdtype(b.dtype, np.floating):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)
    F.validate(got, batched=True)


def test_schema_validation_names_the_key():
    feats = F.featurize_sequence("ACDEFGHIK")
    bad = dict(feats, ref_pos=feats["ref_pos"].astype(np.float64))
    with pytest.raises(ValueError, match="ref_pos"):
        F.validate(bad, require_network=False)
    bad = dict(feats, res_type=feats["res_type"][:-1])
    with pytest.raises(ValueError, match="res_type"):
        F.validate(bad, require_network=False)


def test_unknown_letters_map_to_unk():
    feats = F.featurize_sequence("AXBZJOUG")
    rt = feats["res_type"].argmax(-1)
    assert list(rt[1:7]) == [22] * 6  # UNK
    # UNK has the 5 atoms N, CA, C, O, CB
    assert int((feats["atom_to_token_idx"][: int(feats["atom_pad_mask"].sum())] == 1).sum()) == 5


def test_atoms_padded_to_multiple_of_32():
    for seq in ("G", "GG" * 4, "W" * 10, "ACDEFGHIKLMNPQRSTVWY"):
        feats = F.featurize_sequence(seq)
        n = feats["ref_pos"].shape[0]
        real = int(feats["atom_pad_mask"].sum())
        assert n % 32 == 0 and n - real < 32 and n >= real


def test_pad_to_bucket_masks_extra_slots():
    feats = F.featurize_sequence("MKTAYIAKQR")
    m, n = F.num_tokens(feats), F.num_atoms(feats)
    padded = F.pad_to_bucket(feats, F.bucket_size(m), F.atom_bucket_size(n, F.bucket_size(m)))
    F.validate(padded, require_network=False)
    assert F.num_tokens(padded) == 32 and F.num_atoms(padded) >= n
    assert padded["token_pad_mask"].sum() == m and padded["atom_slot_mask"].sum() == n
    assert padded["atom_pad_mask"].sum() == feats["atom_pad_mask"].sum()
    np.testing.assert_array_equal(padded["ref_pos"][:n], feats["ref_pos"])
    np.testing.assert_array_equal(padded["mol_index"], np.arange(F.num_atoms(padded)))


def test_crop_keeps_uncropped_length_and_consistency():
    feats = F.featurize_sequence("MKTAYIAKQRQISFVKSHFSRQ")
    keep = np.arange(5, 15)
    c = F.crop(feats, keep)
    F.validate(c, require_network=False)
    assert F.num_tokens(c) == 10 and int(c["max_num_tokens"]) == 22 and int(c["cropped_num_tokens"]) == 10
    np.testing.assert_array_equal(c["residue_index"], keep)
    n_real = int(c["atom_pad_mask"].sum())
    np.testing.assert_array_equal(c["atom_to_token"][:n_real].argmax(-1), c["atom_to_token_idx"][:n_real])
    # ref_pos of the crop equals the ref_pos of the same residues in the full features
    full_sel = np.isin(feats["atom_to_token_idx"], keep) & (feats["atom_pad_mask"] > 0)
    np.testing.assert_array_equal(c["ref_pos"][:n_real], feats["ref_pos"][full_sel])


def _chain(name="8cny_A.cif.gz"):
    from conftest import FIXTURES

    from simplefold.io.structure import read_structure

    return read_structure(FIXTURES / "structures" / name).chains[0]


def test_chain_features_consistent_with_sequence_features():
    chain = _chain()
    fc = F.featurize_chain(chain)
    fs = F.featurize_sequence(chain.sequence)
    F.validate(fc, require_network=False)
    # Everything the network reads from a chain equals the sequence featurizer's output
    # (UNK-mapped residues included), so training and inference see the same inputs.
    for key in ("ref_pos", "ref_element", "ref_charge", "ref_atom_name_chars", "atom_to_token", "res_type"):
        np.testing.assert_array_equal(fc[key], fs[key], err_msg=key)


def test_chain_ground_truth_masks_and_units():
    chain = _chain("1HIA_l_u.pdb.gz")  # has unresolved side-chain atoms
    fc = F.featurize_chain(chain)
    n = chain.num_atoms
    mask = fc["atom_resolved_mask"][:n]
    np.testing.assert_array_equal(mask, chain.atom_mask)
    # absent atoms are zero, never invented
    assert np.all(fc["coords"][:n][~mask] == 0)
    # model units: Å/16, centred on the resolved atoms
    xyz = chain.coords[chain.atom_mask]
    np.testing.assert_allclose(fc["coords"][:n][mask] * 16.0, xyz - xyz.mean(0), atol=1e-4)
    np.testing.assert_allclose(fc["coords"][:n][mask].mean(0), 0.0, atol=1e-5)
    # token masks follow CA / disto-atom presence
    ca = np.array([nm == "CA" for nm in chain.atom_names])
    np.testing.assert_array_equal(fc["token_resolved_mask"] > 0, chain.atom_mask[ca])

"""Invariants of the residue vocabulary and the reference-conformer table."""

from __future__ import annotations

import numpy as np
import pytest

from simplefold import residues as R


def test_res_type_vocabulary_is_the_official_33_tokens():
    assert R.NUM_RES_TYPES == 33 and len(set(R.RES_TYPES)) == 33
    assert R.RES_TYPES[:2] == ("<pad>", "-")
    # amino acids in alphabetical 3-letter order at 2..21, UNK at 22
    aa = R.RES_TYPES[2:22]
    assert list(aa) == sorted(aa) == sorted(R.ONE_TO_THREE.values())
    assert R.UNK_RES_TYPE == 22 and R.RES_TYPES[23:] == ("A", "G", "C", "U", "N", "DA", "DG", "DC", "DT", "DN")


def test_esm_alphabet_matches_fair_esm_layout():
    assert len(R.ESM_ALPHABET) == 33
    assert (R.ESM_CLS, R.ESM_PAD, R.ESM_EOS, R.ESM_UNK, R.ESM_MASK) == (0, 1, 2, 3, 32)
    assert R.ESM_ALPHABET[4:24] == tuple("LAGVSERTIDPKQNFYMHWC")


@pytest.mark.parametrize("letter", list(R.AF2_RESTYPES_WITH_X))
def test_conversion_tables_round_trip(letter):
    af2 = R.AF2_INDEX[letter]
    res_type = R.AF2_TO_RES_TYPE[af2]
    assert R.RES_TYPE_TO_AF2[res_type] == af2
    # ESM token of an AF2 id is the same letter (X stays X)
    assert R.ESM_ALPHABET[R.AF2_PLUS_ONE_TO_ESM[af2 + 1]] == letter
    assert R.res_name_to_one(R.RES_TYPES[res_type]) == letter


def test_unknown_letters_follow_the_official_map():
    for c in "XBZJUO":
        assert R.letter_to_res_type(c) == R.UNK_RES_TYPE
        assert R.sequence_to_af2(c)[0] == R.AF2_UNK
    assert R.letter_to_res_type("a") == R.RES_TYPE_INDEX["ALA"]
    assert R.letter_to_res_type(":") == R.UNK_RES_TYPE  # official: anything else is UNK
    assert R.AF2_PLUS_ONE_TO_ESM[0] == R.ESM_PAD


def test_heavy_atom_templates():
    t = R.residue_templates()
    counts = {"GLY": 4, "ALA": 5, "SER": 6, "CYS": 6, "PRO": 7, "TRP": 14, "UNK": 5, "ARG": 11, "TYR": 12}
    for name, n in counts.items():
        assert t[name].num_atoms == n, name
    for name in R.ONE_TO_THREE.values():
        tpl = t[name]
        assert tpl.atom_names[:4] == ("N", "CA", "C", "O"), name
        assert name == "GLY" or tpl.atom_names[4] == "CB"
        assert "OXT" not in tpl.atom_names and not any(a.startswith("H") for a in tpl.atom_names)
        assert len(set(tpl.atom_names)) == tpl.num_atoms
        assert tpl.ref_pos.shape == (tpl.num_atoms, 3) and tpl.ref_pos.dtype == np.float32
        # element of every atom is the first letter of its name for proteins
        assert all(e == a[0] for e, a in zip(tpl.elements, tpl.atom_names)), name
        # bonded N-CA and CA-C distances of the conformer are physical (Å)
        n_ca = np.linalg.norm(tpl.ref_pos[0] - tpl.ref_pos[1])
        ca_c = np.linalg.norm(tpl.ref_pos[1] - tpl.ref_pos[2])
        assert 1.3 < n_ca < 1.6 and 1.4 < ca_c < 1.65, name
    assert max(t[n].num_atoms for n in R.ONE_TO_THREE.values()) == R.MAX_ATOMS_PER_RESIDUE
    charged = {(n, a) for n, tpl in t.items() for a, q in zip(tpl.atom_names, tpl.charges) if q}
    assert charged == {("ARG", "NH2"), ("HIS", "ND1"), ("LYS", "NZ")}


def test_atom_name_encoding():
    np.testing.assert_array_equal(R.encode_atom_name("CA"), [35, 33, 0, 0])
    np.testing.assert_array_equal(R.encode_atom_name(" N  "), [46, 0, 0, 0])
    with pytest.raises(ValueError):
        R.encode_atom_name("TOOLONG")


def test_modified_residues_map_to_standard_amino_acids():
    assert set(R.MODIFIED_TO_STANDARD.values()) <= set(R.ONE_TO_THREE.values())
    assert R.MODIFIED_TO_STANDARD["MSE"] == "MET" and R.MODIFIED_ATOM_RENAMES[("MSE", "SE")] == ("SD", "S")

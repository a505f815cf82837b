"""Tests of simplefold.io.structure: reading real PDB/mmCIF files, refusing bad ones, writing and re-reading.

The fixtures in ``tests/fixtures/structures`` are small gzipped copies of files from the project's data
pool (see the README there). Readings are checked against gemmi, an independent parser, and against
the raw PDB lines where a specific feature (altloc, MSE, junk columns) is the point of the test.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pathlib
import re
from collections import Counter

import numpy as np
import pytest
from conftest import FIXTURES

from simplefold import residues
from simplefold.io.structure import (
    Chain,
    Structure,
    StructureError,
    read_structure,
    read_structure_models,
    structure_from_sequence,
    structure_stem,
    write_structure,
)



def _gemmi():
    """gemmi, the independent reader some tests check against; only those tests skip without it."""
    return pytest.importorskip("gemmi")

STRUCTURES = FIXTURES / "structures"
ALL_FIXTURES = sorted(p.name for p in STRUCTURES.glob("*.gz"))
STANDARD = set(residues.ONE_TO_THREE.values())


def _raw_atom_lines(name: str) -> list[str]:
    with gzip.open(STRUCTURES / name, "rt") as fh:
        return [line.rstrip("\n") for line in fh if line.startswith(("ATOM  ", "HETATM"))]


def _gemmi_structure(path: pathlib.Path):
    """gemmi reading of a fixture; files with junk in columns 73-80 are blanked there first."""
    try:
        return _gemmi().read_structure(str(path))
    except (RuntimeError, ValueError):
        with gzip.open(path, "rt") as fh:
            lines = [(ln.rstrip("\n")[:72] if ln.startswith(("ATOM", "HETATM")) else ln.rstrip("\n")) for ln in fh]
        return _gemmi().read_pdb_string("\n".join(lines))


def _gemmi_residue_atoms(residue) -> dict[str, np.ndarray]:
    """Heavy atoms of a gemmi residue; among alternate locations the highest occupancy (first on ties)."""
    best: dict[str, tuple[float, np.ndarray]] = {}
    for atom in residue:
        if atom.name.lstrip("0123456789")[:1] in ("H", "D"):
            continue  # hydrogen, by name: some files carry junk in the element column
        name = residues.MODIFIED_ATOM_RENAMES.get((residue.name, atom.name), (atom.name,))[0]
        xyz = np.array([atom.pos.x, atom.pos.y, atom.pos.z])
        if name not in best or atom.occ > best[name][0]:
            best[name] = (atom.occ, xyz)
    return {k: v[1] for k, v in best.items()}


def _assert_matches_gemmi(structure: Structure, path: pathlib.Path, model_index: int = 0):
    """Every residue and present atom we read is in the file (per gemmi) at the same place, and no
    ATOM-record standard amino acid of the file is missing from our reading."""
    gmodel = _gemmi_structure(path)[model_index]
    for chain in structure.chains:
        gchain = gmodel[chain.chain_id] if chain.chain_id else gmodel[" "] if gmodel.find_chain(" ") else gmodel[""]
        by_id = {}
        for res in gchain:
            by_id.setdefault((res.seqid.num, res.seqid.icode.strip()), res)
        for i in range(chain.num_residues):
            res = by_id[(int(chain.res_ids[i]), chain.ins_codes[i])]
            std = residues.MODIFIED_TO_STANDARD.get(res.name, res.name)
            assert chain.res_names[i] == (std if std in STANDARD else "UNK"), (res.name, chain.res_names[i])
            atoms = _gemmi_residue_atoms(res)
            sl = chain.residue_atom_slice(i)
            template = chain.atom_names[sl]
            for name, xyz, present in zip(template, chain.coords[sl], chain.atom_mask[sl]):
                assert present == (name in atoms), (chain.chain_id, res.seqid.num, name)
                if present:
                    np.testing.assert_allclose(xyz, atoms[name], atol=1e-3)
        ours = {(int(r), c) for r, c in zip(chain.res_ids, chain.ins_codes)}
        for key, res in by_id.items():
            if res.het_flag == "A" and res.name in STANDARD and any(a.name == "CA" for a in res):
                assert key in ours, f"ATOM residue {res.name} {key} of chain {chain.chain_id!r} was dropped"


# --------------------------------------------------------------------------------------
# Reading the fixtures
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_fixture_reads_like_gemmi(name):
    s = read_structure(STRUCTURES / name)
    assert s.name == re.sub(r"\.(pdb|cif)\.gz$", "", name)
    assert s.source == str(STRUCTURES / name)
    assert s.chains and all(c.num_residues > 0 for c in s.chains)
    for c in s.chains:
        expected = [a for r in c.res_names for a in residues.heavy_atom_names(r)]
        assert list(c.atom_names) == expected
        assert np.all(c.coords[~c.atom_mask] == 0)
        assert c.atom_residue.shape == (c.num_atoms,) and c.coords.dtype == np.float32
        assert len(c.sequence) == c.num_residues and set(c.sequence) <= set(residues.AF2_RESTYPES_WITH_X)
        assert not c.coords.flags.writeable  # frozen all the way down
    _assert_matches_gemmi(s, STRUCTURES / name)


def test_altloc_keeps_highest_occupancy_per_atom():
    lines = _raw_atom_lines("1MSI.pdb.gz")
    copies: dict[tuple, list[tuple[float, np.ndarray]]] = {}
    for ln in lines:
        if ln[16] != " " and ln[17:20] != "HOH":
            key = (ln[21], int(ln[22:26]), ln[12:16].strip())
            xyz = np.array([float(ln[30:38]), float(ln[38:46]), float(ln[46:54])])
            copies.setdefault(key, []).append((float(ln[54:60]), xyz))
    later_wins = [k for k, v in copies.items() if len(v) > 1 and v[1][0] > v[0][0]]
    assert later_wins, "fixture should hold an atom whose second altloc has the higher occupancy"
    chain = read_structure(STRUCTURES / "1MSI.pdb.gz").chain("A")
    for chain_id, res_id, atom in later_wins:
        i = list(chain.res_ids).index(res_id)
        j = chain.residue_atom_slice(i).start + chain.atom_names[chain.residue_atom_slice(i)].index(atom)
        best = max(copies[(chain_id, res_id, atom)], key=lambda c: c[0])
        np.testing.assert_allclose(chain.coords[j], best[1], atol=1e-3)
        assert chain.occupancy[j] == pytest.approx(best[0])


def test_hydrogens_and_waters_dropped():
    lines = _raw_atom_lines("1MSI.pdb.gz")
    assert any(ln[76:78].strip() == "H" for ln in lines) and any(ln[17:20] == "HOH" for ln in lines)
    s = read_structure(STRUCTURES / "1MSI.pdb.gz")
    for c in s.chains:
        assert set(c.res_names) <= STANDARD | {"UNK"}
        assert all(e != "H" for e in c.elements)


def test_selenomethionine_read_as_methionine():
    lines = _raw_atom_lines("3PC8_l_u.pdb.gz")
    se = {int(ln[22:26]): np.array([float(ln[30:38]), float(ln[38:46]), float(ln[46:54])])
          for ln in lines if ln[17:20] == "MSE" and ln[12:16].strip() == "SE"}
    assert se
    chain = read_structure(STRUCTURES / "3PC8_l_u.pdb.gz").chains[0]
    for res_id, xyz in se.items():
        i = list(chain.res_ids).index(res_id)
        assert chain.res_names[i] == "MET" and chain.sequence[i] == "M"
        sl = chain.residue_atom_slice(i)
        j = sl.start + chain.atom_names[sl].index("SD")
        assert chain.atom_mask[j] and chain.elements[j] == "S"
        np.testing.assert_allclose(chain.coords[j], xyz, atol=1e-3)


def test_modified_residues_listed_after_the_chain_are_put_in_place():
    lines = _raw_atom_lines("1FQJ_l_u.pdb.gz")
    mse_ids = sorted({int(ln[22:26]) for ln in lines if ln[17:20] == "MSE"})
    last_atom = max(i for i, ln in enumerate(lines) if ln.startswith("ATOM"))
    assert all(ln[17:20] == "MSE" or ln[17:20] == "HOH" for ln in lines[last_atom + 1 :] if ln.startswith("HETATM"))
    chain = read_structure(STRUCTURES / "1FQJ_l_u.pdb.gz").chains[0]
    assert np.all(np.diff(chain.res_ids) > 0)  # sequence order restored
    for res_id in mse_ids:
        assert chain.res_names[list(chain.res_ids).index(res_id)] == "MET"


def test_modified_residue_kept_and_ligands_dropped():
    lines = _raw_atom_lines("2HPR.pdb.gz")
    cso = {int(ln[22:26]) for ln in lines if ln[17:20] == "CSO"}
    assert cso and any(ln[17:20] == "SO4" for ln in lines)
    chain = read_structure(STRUCTURES / "2HPR.pdb.gz").chains[0]
    for res_id in cso:
        assert chain.res_names[list(chain.res_ids).index(res_id)] == "CYS"
    # A free Ala-Pro dipeptide (HETATM, not bonded to the chain) is a ligand, not part of the chain.
    lines = _raw_atom_lines("1PIN.pdb.gz")
    free = {int(ln[22:26]) for ln in lines if ln.startswith("HETATM") and ln[17:20] in ("ALA", "PRO")}
    assert free
    chain = read_structure(STRUCTURES / "1PIN.pdb.gz").chains[0]
    assert not free & set(chain.res_ids.tolist())


def test_nucleic_acid_chains_dropped():
    s = read_structure(STRUCTURES / "1BF4.pdb.gz")
    dna_chains = {ln[21] for ln in _raw_atom_lines("1BF4.pdb.gz") if ln[17:20].strip() in ("DA", "DC", "DG", "DT")}
    assert dna_chains and not dna_chains & set(s.chain_ids)
    assert s.chain_ids == ("A",)


def test_junk_columns_and_blank_chain_ids():
    lines = _raw_atom_lines("1ACB_l_b.pdb.gz")
    assert any(not ln[76:78].strip().isalpha() for ln in lines)  # the element column holds junk
    s = read_structure(STRUCTURES / "1ACB_l_b.pdb.gz")
    assert all(e in ("C", "N", "O", "S") for e in s.chains[0].elements)
    for name in ("1HIA_l_u.pdb.gz", "T1026.pdb.gz"):
        s = read_structure(STRUCTURES / name)
        assert s.chain_ids == ("",)
        assert s.chain("").num_residues == s.num_residues


def test_insertion_codes_read():
    chain = read_structure(STRUCTURES / "3SGQ_r_u.pdb.gz").chains[0]
    lines = _raw_atom_lines("3SGQ_r_u.pdb.gz")
    with_ins = {(int(ln[22:26]), ln[26]) for ln in lines if ln.startswith("ATOM") and ln[26] != " "}
    assert with_ins
    assert with_ins <= set(zip(chain.res_ids.tolist(), chain.ins_codes))


def test_header_resolution_and_method():
    header = gzip.open(STRUCTURES / "1MSI.pdb.gz", "rt").read()
    res = float(re.search(r"^REMARK   2 RESOLUTION\.\s+([\d.]+)", header, re.M).group(1))
    method = re.search(r"^EXPDTA\s+(.+?)\s*$", header, re.M).group(1)
    s = read_structure(STRUCTURES / "1MSI.pdb.gz")
    assert s.resolution == pytest.approx(res) and s.method == method
    nmr = read_structure(STRUCTURES / "1adz_models1-3.pdb.gz")
    assert nmr.method == "SOLUTION NMR" and nmr.resolution is None


def test_nmr_models():
    path = STRUCTURES / "1adz_models1-3.pdb.gz"
    models = read_structure_models(path)
    assert len(models) == 3
    assert len({m.sequences for m in models}) == 1
    assert np.abs(models[0].coords - models[1].coords).max() > 0.5  # distinct conformers
    second = read_structure(path, model=2)
    np.testing.assert_array_equal(second.coords, models[1].coords)
    _assert_matches_gemmi(second, path, model_index=1)
    with pytest.raises(StructureError, match=r"model 4 requested but the file has 3 model"):
        read_structure(path, model=4)


def test_chain_selection():
    s = read_structure(STRUCTURES / "1BF4.pdb.gz", chains=["A"])
    assert s.chain_ids == ("A",)
    with pytest.raises(StructureError, match=r"1BF4\.pdb\.gz: chain\(s\) \['B'\] not found"):
        read_structure(STRUCTURES / "1BF4.pdb.gz", chains=["B"])  # B is DNA
    with pytest.raises(KeyError):
        s.chain("Q")


def test_chain_helpers():
    chain = read_structure(STRUCTURES / "8cny_A.cif.gz").chains[0]
    starts = chain.residue_starts
    assert starts[0] == 0 and starts[-1] == chain.num_atoms and len(starts) == chain.num_residues + 1
    for i in (0, 5, chain.num_residues - 1):
        sl = chain.residue_atom_slice(i)
        assert np.all(chain.atom_residue[sl] == i)
        assert chain.atom_names[sl] == residues.heavy_atom_names(chain.res_names[i])
    ca, ca_mask = chain.atom_coords("CA")
    assert ca.shape == (chain.num_residues, 3) and ca_mask.all()
    np.testing.assert_array_equal(ca[3], chain.coords[chain.residue_atom_slice(3)][1])


# --------------------------------------------------------------------------------------
# Refusing bad input
# --------------------------------------------------------------------------------------

_GOOD_LINES = gzip.open(STRUCTURES / "2HPR.pdb.gz", "rt").read().splitlines()


def _bad_files(tmp: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
    """name -> (path, regex the reason must match)."""
    text = "\n".join(_GOOD_LINES) + "\n"
    atom_lines = [ln for ln in _GOOD_LINES if ln.startswith("ATOM")]
    cif_text = gzip.open(STRUCTURES / "8cny_A.cif.gz", "rt").read()
    rng = np.random.default_rng(0)
    files = {
        "empty.pdb": (b"", "empty file"),
        "blank.cif": (b"\n\n  \n", "empty file"),
        "trunc.pdb.gz": (gzip.compress(text.encode())[:4000], "corrupt or truncated gzip"),
        "notgzip.pdb.gz": (b"\x1f\x8b" + rng.bytes(500), "corrupt or truncated gzip"),
        "random.pdb": (rng.bytes(3000), "binary content"),
        "image.cif": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rng.bytes(200), "binary content"),
        "words.pdb": (b"this is not a structure\n", "no ATOM/HETATM records"),
        "cut.pdb": (
            ("\n".join(atom_lines[:30] + [atom_lines[30][:40]]) + "\n").encode(),
            "truncated ATOM record at line 31",
        ),
        "badfloat.pdb": ((atom_lines[0][:46] + "  xx.yyy" + atom_lines[0][54:] + "\n").encode(), "cannot parse"),
        "water.pdb": (
            b"HETATM    1  O   HOH A   1      11.104  13.207  10.000  1.00  0.00           O\nEND\n",
            "no protein chain",
        ),
        "dna.pdb": (
            b"ATOM      1  P    DA B   1      11.104  13.207  10.000  1.00  0.00           P\n"
            b"ATOM      2  C1'  DA B   1      12.104  13.207  10.000  1.00  0.00           C\n",
            "no protein chain",
        ),
        "noatoms.cif": (b"data_x\n_cell.length_a 10.0\n", "no atom_site category"),
        "trunc.cif": (cif_text[: len(cif_text) // 2].encode(), "cannot parse structure"),
        "junk.bcif": (b"\x81\xa3abc" + rng.bytes(100), "cannot parse structure"),
        "truncated.bcif": (b"", "empty file"),
    }
    out = {}
    for name, (data, reason) in files.items():
        (tmp / name).write_bytes(data)
        out[name] = (tmp / name, reason)
    (tmp / "folder.pdb").mkdir()
    out["folder.pdb"] = (tmp / "folder.pdb", "is a directory")
    out["missing.pdb"] = (tmp / "missing.pdb", "file not found")
    return out


def test_bad_files_refused_with_one_line_reason(tmp_path):
    cases = _bad_files(tmp_path)
    assert len(cases) >= 15
    for name, (path, reason) in cases.items():
        for reader in (read_structure, read_structure_models):
            with pytest.raises(StructureError) as info:
                reader(path)
            msg = str(info.value)
            assert msg.startswith(f"{path}: "), msg
            assert "\n" not in msg, msg
            assert re.search(reason, msg), (name, msg)


def test_short_pdb_lines_without_occupancy_are_read(tmp_path):
    # Coordinates present, occupancy/B-factor columns absent: tolerated (occupancy 1, B 0).
    atoms = [ln[:54] for ln in _GOOD_LINES if ln.startswith("ATOM")][:40]
    path = tmp_path / "short.pdb"
    path.write_text("\n".join(atoms) + "\n")
    chain = read_structure(path).chains[0]
    assert np.all(chain.occupancy[chain.atom_mask] == 1) and np.all(chain.b_factors == 0)


# --------------------------------------------------------------------------------------
# Writing and round trips
# --------------------------------------------------------------------------------------


def _oxt_checks(chain: Chain, oxt: np.ndarray):
    sl = chain.residue_atom_slice(chain.num_residues - 1)
    names = chain.atom_names[sl]
    ca, c, o = (chain.coords[sl][names.index(a)].astype(np.float64) for a in ("CA", "C", "O"))
    assert np.linalg.norm(oxt - c) == pytest.approx(1.25, abs=2e-3)
    # trigonal carboxyl: OXT in the CA-C-O plane, ~120 degrees from both
    normal = np.cross(ca - c, o - c)
    assert abs(np.dot(oxt - c, normal / np.linalg.norm(normal))) < 1e-2
    for other in (ca, o):
        u, v = other - c, oxt - c
        angle = math.degrees(math.acos(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)))
        assert 105 < angle < 135


@pytest.mark.parametrize("ext", ["pdb", "cif", "bcif", "pdb.gz", "cif.gz"])
@pytest.mark.parametrize("name", ["1BF4.pdb.gz", "1HIA_l_u.pdb.gz"])
def test_round_trip(tmp_path, name, ext):
    import biotite.structure.io.pdb as biotite_pdb
    import biotite.structure.io.pdbx as pdbx

    s = read_structure(STRUCTURES / name)
    out = tmp_path / f"copy.{ext}"
    write_structure(out, s)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # temp file renamed away
    assert out.read_bytes()[:2] == b"\x1f\x8b" if ext.endswith(".gz") else out.read_bytes()[:2] != b"\x1f\x8b"

    back = read_structure(out)
    assert back.name == "copy"
    assert back.sequences == s.sequences
    expected_ids = tuple(c or "A" for c in s.chain_ids)  # blank chain IDs get "A"
    assert back.chain_ids == expected_ids
    for a, b in zip(s.chains, back.chains):
        np.testing.assert_array_equal(a.atom_mask, b.atom_mask)
        np.testing.assert_allclose(b.coords, a.coords, atol=1e-3)
        np.testing.assert_allclose(b.b_factors[b.atom_mask], a.b_factors[a.atom_mask], atol=1e-2)
        np.testing.assert_allclose(b.occupancy[b.atom_mask], a.occupancy[a.atom_mask], atol=1e-2)
        np.testing.assert_array_equal(a.res_ids, b.res_ids)
        assert a.ins_codes == b.ins_codes

    # biotite: same atoms plus one OXT per chain, B-factors kept
    raw = gzip.decompress(out.read_bytes()) if ext.endswith(".gz") else out.read_bytes()
    if ext.startswith("pdb"):
        assert raw.decode().startswith("HEADER") and "\nCRYST1" in raw.decode()
        arr = biotite_pdb.PDBFile.read(io.StringIO(raw.decode())).get_structure(model=1, extra_fields=["b_factor"])
    elif ext == "bcif":
        arr = pdbx.get_structure(pdbx.BinaryCIFFile.read(io.BytesIO(raw)), model=1, extra_fields=["b_factor"])
    else:
        arr = pdbx.get_structure(pdbx.CIFFile.read(io.StringIO(raw.decode())), model=1, extra_fields=["b_factor"])
    assert arr.array_length() == int(s.atom_mask.sum()) + len(s.chains)
    assert np.all(arr.element != "")
    for chain, cid in zip(s.chains, expected_ids):
        oxt = arr[(arr.chain_id == cid) & (arr.atom_name == "OXT")]
        assert oxt.array_length() == 1 and oxt.res_id[0] == chain.res_ids[-1]
        _oxt_checks(chain, oxt.coord[0])
    written_b = np.concatenate([c.b_factors[c.atom_mask] for c in s.chains])
    np.testing.assert_allclose(arr.b_factor[arr.atom_name != "OXT"], written_b, atol=1e-2)

    # gemmi (not for BinaryCIF, which it does not read)
    if ext != "bcif":
        gst = _gemmi().read_structure(str(out))
        assert len(gst) == 1
        for chain, cid in zip(s.chains, expected_ids):
            gchain = gst[0][cid]
            assert _gemmi().one_letter_code([r.name for r in gchain]) == chain.sequence
            xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for r in gchain for a in r if a.name != "OXT"])
            np.testing.assert_allclose(xyz, chain.coords[chain.atom_mask], atol=1e-3)
            b_iso = np.array([a.b_iso for r in gchain for a in r if a.name != "OXT"])
            np.testing.assert_allclose(b_iso, chain.b_factors[chain.atom_mask], atol=1e-2)
            assert [a.name for a in gchain[len(gchain) - 1]][-1] == "OXT"


@pytest.mark.parametrize("ext", ["pdb", "cif", "bcif"])
def test_ensemble_round_trip(tmp_path, ext):
    models = read_structure_models(STRUCTURES / "1adz_models1-3.pdb.gz")
    out = tmp_path / f"ensemble.{ext}"
    write_structure(out, models)
    back = read_structure_models(out)
    assert len(back) == 3
    for a, b in zip(models, back):
        assert a.sequences == b.sequences
        np.testing.assert_allclose(b.coords, a.coords, atol=1e-3)
    if ext != "bcif":
        gst = _gemmi().read_structure(str(out))
        assert len(gst) == 3
        for k in range(3):
            xyz = np.array([[a.pos.x, a.pos.y, a.pos.z] for r in gst[k][0] for a in r if a.name != "OXT"])
            np.testing.assert_allclose(xyz, models[k].coords[models[k].atom_mask], atol=1e-3)


def test_ensemble_needs_identical_atoms(tmp_path):
    a = read_structure(STRUCTURES / "1HIA_l_u.pdb.gz")
    b = read_structure(STRUCTURES / "T1026.pdb.gz")
    with pytest.raises(ValueError, match="different atoms"):
        write_structure(tmp_path / "x.pdb", [a, b])
    assert not list(tmp_path.iterdir())


def test_write_replaces_existing_file_atomically(tmp_path):
    s = read_structure(STRUCTURES / "1HIA_l_u.pdb.gz")
    out = tmp_path / "model.pdb"
    out.write_text("old content\n")
    write_structure(out, s)
    assert read_structure(out).sequences == s.sequences
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pdb"]
    with pytest.raises(StructureError, match="unknown structure format"):
        write_structure(tmp_path / "model.xyz", s)
    write_structure(tmp_path / "model.txt", s, format="mmcif")
    assert read_structure(tmp_path / "model.txt").sequences == s.sequences  # sniffed as mmCIF


def test_structure_from_sequence_and_with_coords(tmp_path):
    seq = "NLYIQWLKDGGPSSGRPPPS"
    n_atoms = sum(len(residues.heavy_atom_names(residues.ONE_TO_THREE[c])) for c in seq)
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(n_atoms, 3)).astype(np.float32) * 10
    plddt = np.linspace(20, 95, len(seq)).astype(np.float32)
    s = structure_from_sequence(seq, coords, name="trp_cage", b_factors=plddt)
    chain = s.chain("A")
    assert chain.sequence == seq and chain.atom_mask.all() and np.all(chain.occupancy == 1)
    np.testing.assert_array_equal(chain.res_ids, np.arange(1, len(seq) + 1))
    np.testing.assert_array_equal(chain.b_factors, plddt[chain.atom_residue])
    np.testing.assert_array_equal(s.coords, coords)

    out = tmp_path / "trp_cage.pdb"
    write_structure(out, s)
    back = read_structure(out)
    assert back.sequences == (seq,)
    np.testing.assert_allclose(back.coords, coords, atol=1e-3)
    np.testing.assert_allclose(back.chains[0].b_factors, chain.b_factors, atol=1e-2)

    # unknown letters -> UNK, ':' separates chains
    multi = structure_from_sequence("ACX:GB", np.zeros((5 + 6 + 5 + 4 + 5, 3)), name="m", chain_id="C")
    assert multi.chain_ids == ("C", "D")
    assert multi.chains[0].res_names == ("ALA", "CYS", "UNK") and multi.chains[1].res_names == ("GLY", "UNK")
    with pytest.raises(ValueError, match="heavy atoms"):
        structure_from_sequence(seq, coords[:-1], name="bad")

    # a prediction on an experimental layout: all atoms present afterwards, per-residue pLDDT
    exp = read_structure(STRUCTURES / "1HIA_l_u.pdb.gz")
    assert not exp.atom_mask.all()
    pred = exp.with_coords(np.ones((exp.num_atoms, 3)), b_factors=np.full(exp.num_residues, 70.0),
                           atom_mask=np.ones(exp.num_atoms, bool), name="pred")
    assert pred.name == "pred" and pred.atom_mask.all() and np.all(pred.chains[0].b_factors == 70)
    assert exp.atom_mask.sum() < pred.atom_mask.sum()  # the original is untouched
    with pytest.raises(ValueError):
        exp.with_coords(np.ones((3, 3)))


def test_chain_validates_lengths():
    with pytest.raises(ValueError, match="coords has length"):
        Chain("A", ("GLY",), np.array([1]), ("",), residues.heavy_atom_names("GLY"), ("N", "C", "C", "O"),
              np.zeros(4, np.int32), np.zeros((3, 3)), np.ones(4, bool), np.ones(4), np.zeros(4))


# --------------------------------------------------------------------------------------
# Sweep over the project's data pool (run with SIMPLEFOLD_SHARED_DATA=<data dir>)
# --------------------------------------------------------------------------------------

def sweep_structures(root: pathlib.Path) -> tuple[int, Counter, list[tuple[str, str]]]:
    """Read every structure file under ``root``: (number read, refusals by reason, crashes)."""
    read, refused, crashes = 0, Counter(), []
    files = sorted(
        p for p in root.rglob("*") if p.is_file() and structure_stem(p) is not None
    )
    for path in files:
        try:
            read_structure(path)
            read += 1
        except StructureError as e:
            msg = str(e)
            if "\n" in msg or not msg.startswith(f"{path}: "):
                crashes.append((str(path), f"badly formed message: {msg!r}"))
            refused[msg.removeprefix(f"{path}: ").split(" (")[0]] += 1
        except Exception as e:  # noqa: BLE001 - anything else is a crash to report
            crashes.append((str(path), repr(e)))
    return read, refused, crashes


@pytest.mark.slow
def test_sweep_shared_structures():
    root = os.environ.get("SIMPLEFOLD_SHARED_DATA")
    if not root:
        pytest.skip("set SIMPLEFOLD_SHARED_DATA to a data folder (e.g. /work/shared/data) to sweep its structures")
    root = pathlib.Path(root)
    if (root / "structures").is_dir():
        root = root / "structures"
    read, refused, crashes = sweep_structures(root)
    n_refused = sum(refused.values())
    print(f"\nstructure sweep of {root}: read {read}, refused {n_refused} {dict(refused)}, crashes {len(crashes)}")
    assert read + sum(refused.values()) > 0
    assert not crashes, crashes[:5]


def test_format_sniffed_from_content(tmp_path):
    s = read_structure(STRUCTURES / "1HIA_l_u.pdb.gz")
    write_structure(tmp_path / "a.pdb", s)
    write_structure(tmp_path / "b.cif", s)
    (tmp_path / "pdb_named.cif").write_bytes((tmp_path / "a.pdb").read_bytes())
    (tmp_path / "cif_named.pdb").write_bytes((tmp_path / "b.cif").read_bytes())
    (tmp_path / "noext").write_bytes((tmp_path / "b.cif").read_bytes())
    for name in ("pdb_named.cif", "cif_named.pdb", "noext"):
        back = read_structure(tmp_path / name)
        assert back.sequences == s.sequences
        np.testing.assert_allclose(back.coords, s.coords, atol=1e-3)

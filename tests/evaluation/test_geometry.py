"""Backbone geometry, radius of gyration, clashes and the pre-write structure check (``simplefold.evaluation.geometry``)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FIXTURES

from simplefold.evaluation import geometry
from simplefold.io.structure import read_structure

NATIVES = [FIXTURES / "training" / "1PGA.pdb.gz", FIXTURES / "structures" / "1BF4.pdb.gz",
           FIXTURES / "structures" / "2HPR.pdb.gz"]


@pytest.mark.parametrize("path", NATIVES, ids=lambda p: p.name.split(".")[0])
def test_natives_have_ideal_backbone_no_clashes_and_pass_the_check(path):
    s = read_structure(path)
    g = geometry.structure_geometry(s)
    for key, ideal in geometry.IDEAL.items():
        assert abs(g[key] - ideal) < 0.03, (key, g[key])
    assert g["clashes_per_atom"] < 0.01
    assert 0.8 < g["rg"] / geometry.compact_radius_of_gyration(s.num_residues) < 1.3
    assert geometry.check_prediction(s) == ([], [])


def test_radius_of_gyration_and_scaling():
    s = read_structure(NATIVES[0])
    g = geometry.structure_geometry(s)
    assert g["rg"] == pytest.approx(10.45, abs=0.01)  # protein G B1 heavy atoms
    shrunk = s.with_coords(s.coords * 0.4)
    h = geometry.structure_geometry(shrunk)
    for key in ("n_ca", "ca_c", "c_n", "ca_ca", "rg"):
        assert h[key] == pytest.approx(0.4 * g[key], rel=1e-5)
    assert h["clashes_per_atom"] > 1.0  # every atom has non-bonded neighbours within 2.2 Å
    errors, warnings = geometry.check_prediction(shrunk)
    assert errors == []
    text = " ".join(warnings)
    for label in ("N–CA", "CA–C", "peptide C–N", "consecutive CA–CA", "radius of gyration"):
        assert label in text


def test_clash_count_excludes_bonded_and_counts_close_pairs():
    s = read_structure(NATIVES[0])
    xyz = np.array(s.coords)
    assert geometry.count_clashes(s) == 0
    ch = s.chains[0]
    # move residue 30's CA onto residue 10's CA (not bonded): clashes appear
    names = np.asarray(ch.atom_names)
    ca = np.flatnonzero(names == "CA")
    xyz[ca[30]] = xyz[ca[10]] + 0.5
    assert geometry.count_clashes(s.with_coords(xyz)) >= 1
    # a peptide bond shortened to 1.0 Å is a bond, not a clash
    xyz = np.array(s.coords)
    c5, n6 = np.flatnonzero(names == "C")[5], np.flatnonzero(names == "N")[6]
    xyz[n6] = xyz[c5] + (xyz[n6] - xyz[c5]) / np.linalg.norm(xyz[n6] - xyz[c5])
    assert geometry.count_clashes(s.with_coords(xyz)) == 0


def test_check_prediction_errors_on_non_finite_and_diverged_coordinates():
    s = read_structure(NATIVES[0])
    xyz = np.array(s.coords)
    xyz[3] = np.nan
    errors, warnings = geometry.check_prediction(s.with_coords(xyz))
    assert errors and "non-finite" in errors[0] and warnings == []
    errors, _ = geometry.check_prediction(s.with_coords(s.coords * 2000.0))  # |x| > 9999 Å
    assert errors and "diverged" in errors[0]
    errors, warnings = geometry.check_prediction(s.with_coords(s.coords * 1.0))
    assert errors == [] and warnings == []


def test_writer_refuses_non_finite_or_too_large_coordinates(tmp_path):
    from simplefold.io.structure import StructureError, write_structure

    s = read_structure(NATIVES[0])
    xyz = np.array(s.coords)
    xyz[0, 0] = np.inf
    with pytest.raises(StructureError, match="non-finite"):
        write_structure(tmp_path / "a.pdb", s.with_coords(xyz))
    with pytest.raises(StructureError, match="beyond the PDB format"):
        write_structure(tmp_path / "b.pdb", s.with_coords(s.coords * 2000.0))
    write_structure(tmp_path / "c.cif", s.with_coords(s.coords * 2000.0))  # mmCIF has no column limit
    assert not (tmp_path / "a.pdb").exists() and not (tmp_path / "b.pdb").exists()

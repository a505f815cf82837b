"""What other tools read from our files: entities, sequence, pLDDT (ModelCIF), TER/SEQRES; no date."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from simplefold import residues
from simplefold.io.structure import read_structure, structure_from_sequence, write_structure

SEQ = "MTYKLILNGKTLKGETTTEA"
SEQ2 = "GSHMK"


def _prediction(seq=SEQ, name="pred_sample_0", plddt=True):
    rng = np.random.default_rng(0)
    n_res = len(seq.replace(":", ""))
    names = [a for c in seq.replace(":", "") for a in residues.heavy_atom_names(residues.ONE_TO_THREE[c])]
    # an extended chain: residue i at 3.8 Å spacing, atoms jittered around it
    res_of_atom = np.repeat(np.arange(n_res), [len(residues.heavy_atom_names(residues.ONE_TO_THREE[c])) for c in seq.replace(":", "")])
    coords = np.stack([res_of_atom * 3.8, np.zeros(len(names)), np.zeros(len(names))], -1) + rng.normal(0, 0.7, (len(names), 3))
    per_res = np.linspace(20, 90, n_res).round(2)
    b = per_res[res_of_atom] if plddt else None
    return structure_from_sequence(seq, coords.astype(np.float32), name=name, b_factors=b), per_res


def test_mmcif_entities_sequence_and_plddt_read_by_gemmi_and_biotite(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    from biotite.structure.io import pdbx

    st, per_res = _prediction()
    path = tmp_path / "pred.cif"
    write_structure(path, st)
    g = gemmi.read_structure(str(path))
    g.setup_entities()
    polys = [e for e in g.entities if e.entity_type == gemmi.EntityType.Polymer]
    assert len(polys) == 1
    assert gemmi.one_letter_code(polys[0].full_sequence) == SEQ
    doc = gemmi.cif.read(str(path))
    block = doc.sole_block()
    local = block.find("_ma_qa_metric_local.", ["label_seq_id", "metric_value"])
    got = np.array([float(r[1]) for r in local])
    np.testing.assert_allclose(got, per_res, atol=0.006)
    assert [int(r[0]) for r in local] == list(range(1, len(SEQ) + 1))
    glob = float(block.find_value("_ma_qa_metric_global.metric_value"))
    assert glob == pytest.approx(per_res.mean(), abs=0.006)
    assert block.find_value("_software.name") == "simplefold"
    cif = pdbx.CIFFile.read(str(path))
    seqs = pdbx.get_sequence(cif)
    assert [str(s) for s in seqs.values()] == [SEQ]
    assert pdbx.get_structure(cif, model=1).array_length() == st.num_atoms + 1  # + OXT
    assert read_structure(path).sequences == (SEQ,)


def test_two_chains_with_one_sequence_share_an_entity(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    st, _ = _prediction(f"{SEQ2}:{SEQ2}:{SEQ}", plddt=False)
    path = tmp_path / "multi.cif"
    write_structure(path, st)
    g = gemmi.read_structure(str(path))
    g.setup_entities()
    assert sorted(len(e.subchains) for e in g.entities if e.entity_type == gemmi.EntityType.Polymer) == [1, 2]
    block = gemmi.cif.read(str(path)).sole_block()
    assert block.find_values("_ma_qa_metric_local.metric_value") is not None
    assert len(block.find_values("_ma_qa_metric_local.metric_value")) == 0  # no pLDDT, no QA categories


def test_pdb_has_seqres_ter_title_and_no_date(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    st, _ = _prediction(f"{SEQ}:{SEQ2}")
    a, b = tmp_path / "a.pdb", tmp_path / "b.pdb"
    write_structure(a, st)
    write_structure(b, st)
    assert a.read_bytes() == b.read_bytes()  # byte-identical for identical input (no wall-clock date)
    lines = a.read_text().splitlines()
    assert lines[0].startswith("HEADER") and not any(ch.isdigit() for ch in lines[0][50:59])
    assert "TITLE     pred_sample_0" in lines
    assert sum(line.startswith("TER") for line in lines) == 2
    assert sum(line.startswith("SEQRES") for line in lines) == 3  # 20 residues: 2 lines, 5 residues: 1
    g = gemmi.read_structure(str(a))
    g.setup_entities()
    seqs = sorted(gemmi.one_letter_code(e.full_sequence) for e in g.entities if e.entity_type == gemmi.EntityType.Polymer)
    assert seqs == sorted([SEQ, SEQ2])
    write_structure(tmp_path / "ens.pdb", [st, st])
    assert "ensemble of 2 models" in (tmp_path / "ens.pdb").read_text().splitlines()[1]


@pytest.mark.skipif(shutil.which("mkdssp") is None, reason="mkdssp (Debian package dssp) is not installed")
def test_dssp_reads_residues_from_our_mmcif(tmp_path):
    st, _ = _prediction()
    path = tmp_path / "pred.cif"
    write_structure(path, st)
    out = tmp_path / "out.dssp"
    p = subprocess.run(["mkdssp", str(path), str(out)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "  #  RESIDUE" in text  # the classic format (output named .dssp)
    # one line per residue of chain A (an mmCIF with only _atom_site gives none)
    rows = re.findall(r"^ +\d+ +(\d+) A ([A-Z])", text.split("  #  RESIDUE", 1)[1], flags=re.M)
    assert "".join(aa for _, aa in rows) == SEQ

"""Tests of simplefold.evaluation.analysis and ``simplefold analyze`` on a real NMR ensemble and constructed ensembles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES

from simplefold.evaluation import analysis
from simplefold.cli import main
from simplefold.io.structure import Structure, StructureError, read_structure, read_structure_models, write_structure

NMR = FIXTURES / "analysis" / "1adz.pdb.gz"  # 30 models, chain A, 71 residues
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _rigid(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x`` (..., 3) under a random rotation and a translation of up to 50 Å."""
    return x @ _random_rotation(rng).T + rng.uniform(-50, 50, size=3)


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


@pytest.fixture(scope="module")
def nmr() -> analysis.Ensemble:
    return analysis.load_ensemble([NMR])


@pytest.fixture(scope="module")
def two_states() -> tuple[Structure, Structure]:
    """State A = model 1 of 1adz; state B = A with residues 36.. swung 80° about a hinge at residue 35."""
    a = read_structure(NMR)
    chain = a.chains[0]
    ca, _ = chain.atom_coords("CA")
    hinge = 35
    rot = _axis_rotation(np.cross(ca[hinge + 1] - ca[hinge - 1], [0.0, 0.0, 1.0]), np.deg2rad(80))
    coords = a.coords.astype(np.float64)
    moving = chain.atom_residue > hinge
    coords[moving] = (coords[moving] - ca[hinge]) @ rot.T + ca[hinge]
    b = a.with_coords(coords, name="state_b")
    return a, b


def _noisy_copies(s: Structure, n: int, sigma: float, rng: np.random.Generator) -> list[Structure]:
    out = []
    for _ in range(n):
        xyz = _rigid(s.coords.astype(np.float64) + rng.normal(scale=sigma, size=s.coords.shape), rng)
        out.append(s.with_coords(xyz))
    return out


# --------------------------------------------------------------------------------------
# Real NMR ensemble
# --------------------------------------------------------------------------------------


def test_nmr_ensemble_rmsf_and_rmsd_shapes(nmr):
    assert nmr.ca.shape == (30, 71, 3)
    assert nmr.labels[0] == "1adz:1" and nmr.labels[-1] == "1adz:30"
    assert set(nmr.chain_ids) == {"A"}
    rmsf = analysis.ca_rmsf(nmr.ca)
    assert rmsf.shape == (71,)
    assert np.all(np.isfinite(rmsf)) and np.all(rmsf >= 0)
    # NMR models differ: every residue fluctuates a little, the termini most.
    assert rmsf.min() > 0.1
    assert np.argmax(rmsf) in (0, 1, 2, 68, 69, 70)
    d = analysis.pairwise_rmsd(nmr.ca)
    assert d.shape == (30, 30)
    np.testing.assert_allclose(d, d.T, atol=1e-9)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert np.all(d[~np.eye(30, dtype=bool)] > 0)


def test_nmr_matches_biotite(nmr):
    """RMSD matrix and RMSF agree with biotite's superimpose / rmsd / rmsf (independent implementation)."""
    import biotite.structure as struc

    stack = struc.AtomArrayStack(nmr.num_members, nmr.num_residues)
    stack.coord = nmr.ca.astype(np.float32)
    expected = np.stack([struc.rmsd(stack[i], struc.superimpose(stack[i], stack)[0]) for i in range(30)])
    np.testing.assert_allclose(analysis.pairwise_rmsd(nmr.ca), expected, atol=1e-4)

    ref = stack[0].coord
    for _ in range(100):
        fitted = struc.superimpose(ref, stack.coord)[0]
        new_ref = fitted.mean(axis=0)
        if np.abs(new_ref - ref).max() < 1e-6:
            break
        ref = new_ref
    np.testing.assert_allclose(analysis.ca_rmsf(nmr.ca), struc.rmsf(fitted.mean(axis=0), fitted), atol=1e-4)


# --------------------------------------------------------------------------------------
# Constructed ensembles
# --------------------------------------------------------------------------------------


def test_rigid_copies_have_zero_rmsf_and_rmsd(nmr):
    rng = np.random.default_rng(0)
    base = nmr.ca[0]
    ca = np.stack([_rigid(base, rng) for _ in range(8)])
    np.testing.assert_allclose(analysis.ca_rmsf(ca), 0.0, atol=1e-5)
    np.testing.assert_allclose(analysis.pairwise_rmsd(ca), 0.0, atol=1e-5)
    clusters = analysis.cluster_conformations(analysis.pairwise_rmsd(ca), 0.5)
    assert [c.size for c in clusters] == [8]


def test_superpose_to_mean_returns_mean_frame(nmr):
    aligned, mean = analysis.superpose_to_mean(nmr.ca[:5])
    np.testing.assert_allclose(aligned.mean(axis=0), mean, atol=1e-9)
    # Each aligned member is optimally superposed on the mean: Kabsch cannot improve it further.
    from simplefold.evaluation import metrics

    for x in aligned:
        assert metrics.rmsd(x, mean, superpose=False) == pytest.approx(metrics.rmsd(x, mean), abs=1e-6)


def test_perturbed_residue_has_peak_rmsf(nmr):
    rng = np.random.default_rng(1)
    base = nmr.ca[0]
    members = []
    for _ in range(12):
        x = base + rng.normal(scale=0.05, size=base.shape)
        x[40] += rng.normal(scale=2.0, size=3)
        members.append(_rigid(x, rng))
    rmsf = analysis.ca_rmsf(np.stack(members))
    assert int(np.argmax(rmsf)) == 40
    assert rmsf[40] > 5 * np.median(rmsf)


def test_clustering_recovers_two_states(two_states):
    rng = np.random.default_rng(2)
    a, b = two_states
    members = _noisy_copies(a, 5, 0.3, rng) + _noisy_copies(b, 7, 0.3, rng)
    order = rng.permutation(12)
    members = [members[i] for i in order]
    is_b = order >= 5
    ens = analysis.ensemble_from_structures(members, [f"m{i}" for i in range(12)])
    d = analysis.pairwise_rmsd(ens.ca)
    clusters = analysis.cluster_conformations(d, 2.0)
    assert [c.size for c in clusters] == [7, 5]
    assert set(clusters[0].members) == set(np.flatnonzero(is_b))
    assert set(clusters[1].members) == set(np.flatnonzero(~is_b))
    for c in clusters:
        sub = d[np.ix_(c.members, c.members)]
        assert c.medoid == c.members[int(np.argmin(sub.sum(axis=1)))]
        assert 0 < c.mean_rmsd_to_medoid < 2.0
    # A zero cut leaves every (distinct) member alone; a huge one merges everything.
    assert len(analysis.cluster_conformations(d, 0.0)) == 12
    assert [c.size for c in analysis.cluster_conformations(d, 100.0)] == [12]


def test_best_tm_identifies_each_state(two_states):
    rng = np.random.default_rng(3)
    a, b = two_states
    members = _noisy_copies(a, 3, 0.5, rng) + _noisy_copies(b, 3, 0.5, rng)
    matches = analysis.best_matches(members, [a, b])
    assert [m.name for m in matches] == [a.name, "state_b"]
    tm = np.array([m.tm_scores for m in matches])  # (ref, member)
    assert matches[0].best_member in (0, 1, 2)
    assert matches[1].best_member in (3, 4, 5)
    assert matches[0].best_tm_score > 0.85 and matches[1].best_tm_score > 0.85
    # The wrong state scores clearly lower for every member.
    assert np.all(tm[0, :3] > tm[1, :3] + 0.2) and np.all(tm[1, 3:] > tm[0, 3:] + 0.2)
    assert all(n == 71 for m in matches for n in m.n_aligned)


def test_residues_missing_in_one_member_are_dropped(two_states):
    a, _ = two_states
    chain = a.chains[0]
    mask = a.atom_mask.copy()
    mask[(np.asarray(chain.atom_names) == "CA") & (chain.atom_residue == 10)] = False
    members = [a, a.with_coords(a.coords, atom_mask=mask), a]
    ens = analysis.ensemble_from_structures(members, ["x", "y", "z"])
    assert ens.num_residues == 70
    assert int(chain.res_ids[10]) not in set(ens.res_ids.tolist())


# --------------------------------------------------------------------------------------
# Loading and CLI
# --------------------------------------------------------------------------------------


def test_load_directory_of_samples(tmp_path, two_states):
    a, b = two_states
    rng = np.random.default_rng(4)
    members = _noisy_copies(a, 11, 0.2, rng)
    for k, s in enumerate(members):
        write_structure(tmp_path / f"tgt_sample_{k}.pdb", s)
    write_structure(tmp_path / "tgt_ensemble.pdb", [a, b])  # not a sample: must be ignored
    ens = analysis.load_ensemble([tmp_path])
    assert ens.labels == tuple(f"tgt_sample_{k}" for k in range(11))  # natural order: 2 before 10
    np.testing.assert_allclose(ens.ca[10], members[10].chains[0].atom_coords("CA")[0], atol=1e-3)
    # A multi-model file contributes every model.
    both = analysis.load_ensemble([tmp_path / "tgt_ensemble.pdb"])
    assert both.labels == ("tgt_ensemble:1", "tgt_ensemble:2")


def test_load_errors(tmp_path):
    with pytest.raises(analysis.EnsembleError, match="no such file"):
        analysis.load_ensemble([tmp_path / "missing.pdb"])
    with pytest.raises(analysis.EnsembleError, match="no structure files"):
        analysis.load_ensemble([tmp_path])
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a structure\n")
    with pytest.raises(StructureError, match="bad.pdb"):
        analysis.load_ensemble([bad])


def test_cli_writes_heatmap_and_json(tmp_path, two_states, capsys):
    a, b = two_states
    write_structure(tmp_path / "state_a.pdb", a)
    write_structure(tmp_path / "state_b.pdb", b)
    out = tmp_path / "out"
    rc = main(["analyze", str(NMR), "-o", str(out), "--ref", str(tmp_path / "state_a.pdb"), str(tmp_path / "state_b.pdb")])
    assert rc == 0
    table = capsys.readouterr().out
    assert "pairwise RMSD" in table and "state_a" in table
    for name in ("rmsd_heatmap.png", "rmsf.png"):
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_SIGNATURE)
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["n_members"] == 30 and summary["n_residues"] == 71
    matrix = np.load(out / "rmsd_matrix.npy")
    assert matrix.shape == (30, 30)
    off = matrix[np.triu_indices(30, 1)]
    assert summary["pairwise_rmsd"]["mean"] == pytest.approx(off.mean())
    assert len(summary["rmsf"]["per_residue"]) == 71
    assert sum(c["size"] for c in summary["clustering"]["clusters"]) == 30
    # State A is model 1 of the ensemble itself.
    ref_a = summary["references"][0]
    assert ref_a["best_label"] == "1adz:1" and ref_a["best_tm_score"] == pytest.approx(1.0, abs=1e-6)
    reps = read_structure_models(out / "representatives.pdb")
    assert len(reps) == summary["clustering"]["n_clusters"]

    rc = main(["analyze", str(NMR), "-o", str(tmp_path / "out2"), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_members"] == 30 and printed["references"] == []


def test_cli_rejects_single_member(tmp_path, two_states):
    write_structure(tmp_path / "one.pdb", two_states[0])
    assert main(["analyze", str(tmp_path / "one.pdb"), "-o", str(tmp_path / "o")]) == 2
    assert main(["analyze", str(tmp_path / "nothing.pdb"), "-o", str(tmp_path / "o")]) == 2


def test_unrelated_proteins_are_not_an_ensemble(tmp_path, capsys):
    """Two different proteins share a few (chain, number, name) keys by chance; analyze refuses
    them with a reason instead of building an 'ensemble' of those residues."""
    a = read_structure(FIXTURES / "structures" / "1BF4.pdb.gz")
    b = read_structure(FIXTURES / "structures" / "2HPR.pdb.gz")
    keys = [set(analysis._residue_keys(s)[0]) for s in (a, b)]
    assert 0 < len(keys[0] & keys[1]) < 0.5 * min(map(len, keys))  # the case of the issue: a few shared keys
    with pytest.raises(analysis.EnsembleError, match="not conformations of one protein"):
        analysis.ensemble_from_structures([a, b], ["1BF4", "2HPR"])
    for s in (a, b):
        write_structure(tmp_path / f"{s.name}.pdb", s)
    assert main(["analyze", str(tmp_path / "1BF4.pdb"), str(tmp_path / "2HPR.pdb"), "-o", str(tmp_path / "out")]) == 2


def test_representatives_written_when_members_carry_their_own_plddt(tmp_path, two_states):
    """Predicted samples differ in their B-factors (each its own pLDDT); the representatives file is
    still written (models share the mean B-factor, as predict's ensemble files do)."""
    a, b = two_states
    rng = np.random.default_rng(0)
    members = [s.with_coords(s.coords, b_factors=rng.uniform(20, 90, s.num_atoms).astype(np.float32))
               for s in (a, b, a, b)]
    for k, m in enumerate(members):
        write_structure(tmp_path / "in" / f"t_sample_{k}.pdb", m)
    out = tmp_path / "out"
    assert main(["analyze", str(tmp_path / "in"), "-o", str(out)]) == 0
    summary = json.loads((out / "analysis.json").read_text())
    reps = read_structure_models(out / "representatives.pdb")
    assert len(reps) == summary["clustering"]["n_clusters"] >= 2

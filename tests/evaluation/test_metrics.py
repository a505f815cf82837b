"""Tests of simplefold.evaluation.metrics and simplefold.evaluation.alignment.

Analytic cases check the definitions; real structure pairs (tests/fixtures/metrics, see its README)
check TM-score/GDT against the ``TMscore`` program on the same residue mapping and lDDT against
``biotite.structure.lddt`` on the same atoms.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import FIXTURES
from simplefold.evaluation import alignment, metrics
from simplefold.io.structure import Chain, Structure, read_structure

DATA = FIXTURES / "metrics"
TMSCORE = shutil.which("TMscore")
needs_tmscore = pytest.mark.skipif(TMSCORE is None, reason="TMscore binary not installed (apt-get install tm-align)")


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def random_chain_coords(rng: np.random.Generator, n: int) -> np.ndarray:
    """A CA-like random walk with 3.8 Å steps (n, 3)."""
    steps = rng.normal(size=(n, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, axis=0)


# --------------------------------------------------------------------------------------
# Superposition, RMSD, TM-score, GDT: analytic cases
# --------------------------------------------------------------------------------------


def test_kabsch_recovers_rigid_motion():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(20, 3)) * 10
    R_true, t_true = random_rotation(rng), rng.normal(size=3) * 30
    Q = P @ R_true.T + t_true
    R, t = metrics.kabsch(P, Q)
    np.testing.assert_allclose(R, R_true, atol=1e-10)
    np.testing.assert_allclose(t, t_true, atol=1e-9)
    assert metrics.rmsd(P, Q) < 1e-9
    np.testing.assert_allclose(metrics.superpose(P, Q), Q, atol=1e-9)


def test_kabsch_never_reflects():
    rng = np.random.default_rng(1)
    P = rng.normal(size=(15, 3)) * 5
    mirror = P * np.array([-1.0, 1.0, 1.0])
    R, _ = metrics.kabsch(P, mirror)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert metrics.rmsd(P, mirror) > 0.5  # a mirror image is not superposable


def test_kabsch_weights_select_points():
    rng = np.random.default_rng(2)
    P = rng.normal(size=(12, 3)) * 5
    Q = P @ random_rotation(rng).T + 3.0
    Q_bad = Q.copy()
    Q_bad[8:] += rng.normal(size=(4, 3)) * 10  # outliers that weight 0 must ignore
    w = np.r_[np.ones(8), np.zeros(4)]
    R, t = metrics.kabsch(P, Q_bad, w)
    np.testing.assert_allclose(P[:8] @ R.T + t, Q[:8], atol=1e-9)
    assert metrics.rmsd(P, Q_bad, weights=w) < 1e-9


def test_rmsd_without_superposition_is_translation_length():
    P = np.random.default_rng(3).normal(size=(10, 3))
    assert metrics.rmsd(P, P + np.array([3.0, 4.0, 0.0]), superpose=False) == pytest.approx(5.0)
    assert metrics.rmsd(P, P + np.array([3.0, 4.0, 0.0])) == pytest.approx(0.0, abs=1e-9)


def test_tm_d0():
    assert metrics.tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert metrics.tm_d0(10) == 0.5  # short chains: floor
    assert metrics.tm_d0(17) == 0.5  # formula below 0.5 is clipped


def test_identical_and_rigidly_moved_copies_score_one():
    rng = np.random.default_rng(4)
    ref = random_chain_coords(rng, 80)
    moved = ref @ random_rotation(rng).T + np.array([40.0, -12.0, 7.0])
    for pred in (ref, moved):
        res = metrics.superposition_search(pred, ref)
        assert res.tm_score == pytest.approx(1.0, abs=1e-12)
        assert res.gdt_ts == 1.0 and res.gdt_ha == 1.0
        np.testing.assert_allclose(pred @ res.rotation.T + res.translation, ref, atol=1e-8)
        assert metrics.rmsd(pred, ref) == pytest.approx(0.0, abs=1e-8)


def test_tm_half_displaced_and_reference_normalisation():
    """Half the residues exact, half translated 1000 Å away: TM = 1/2 (+ a ~1e-6 far-pair term)."""
    rng = np.random.default_rng(5)
    ref = random_chain_coords(rng, 60)
    pred = ref.copy()
    pred[30:] += np.array([1000.0, 0.0, 0.0])
    d0 = metrics.tm_d0(60)
    far = 30 / (1 + (1000 / d0) ** 2) / 60  # upper bound of what the displaced half can add
    tm = metrics.tm_score(pred, ref)
    assert 0.5 <= tm <= 0.5 + far + 1e-12
    # Unaligned reference residues count as zero: 60 pairs in a 120-residue reference.
    tm_120 = metrics.tm_score(ref, ref, ref_length=120)
    d0_120 = metrics.tm_d0(120)
    assert tm_120 == pytest.approx(0.5, abs=1e-12)
    assert d0_120 > d0


def test_tm_score_under_known_noise_is_below_one_and_monotone():
    rng = np.random.default_rng(6)
    ref = random_chain_coords(rng, 100)
    scores = [metrics.tm_score(ref + rng.normal(size=ref.shape) * s, ref) for s in (0.5, 2.0, 5.0)]
    assert 1.0 > scores[0] > scores[1] > scores[2] > 0.0


def test_gdt_constructed_example():
    """30 exact residues, 10 displaced far away, 10 reference residues unaligned (L = 50)."""
    rng = np.random.default_rng(7)
    ref = random_chain_coords(rng, 40) * 3  # spread out so no two residues are within 8 Å after moves
    pred = ref.copy()
    pred[30:] += rng.normal(size=(10, 3)) * 5 + 60.0
    for cutoffs in (metrics.GDT_TS_CUTOFFS, metrics.GDT_HA_CUTOFFS, (0.1,), (8.0,)):
        assert metrics.gdt(pred, ref, cutoffs, ref_length=50) == pytest.approx(30 / 50)
    res = metrics.superposition_search(pred, ref, ref_length=50)
    assert res.gdt_ts == pytest.approx(0.6) and res.gdt_ha == pytest.approx(0.6)


def test_seed_batching_does_not_change_the_search(monkeypatch):
    rng = np.random.default_rng(12)
    ref = random_chain_coords(rng, 70)
    pred = ref + rng.normal(size=ref.shape) * 3.0
    whole = metrics.superposition_search(pred, ref)
    monkeypatch.setattr(metrics, "_TM_BATCH_ELEMENTS", 70 * 3)  # 3 seeds per batch
    parts = metrics.superposition_search(pred, ref)
    assert parts.tm_score == pytest.approx(whole.tm_score, abs=1e-12)
    assert parts.gdt == whole.gdt


def test_seed_lengths_follow_tmscore():
    assert metrics._seed_lengths(100) == [100, 50, 25, 12, 6, 4]
    assert metrics._seed_lengths(20) == [20, 10, 5, 4]
    assert metrics._seed_lengths(8) == [8, 4]
    assert metrics._seed_lengths(3) == [3]


def test_search_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        metrics.tm_score(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="ref_length"):
        metrics.tm_score(np.zeros((5, 3)), np.zeros((5, 3)), ref_length=4)


# --------------------------------------------------------------------------------------
# lDDT: analytic cases, jax version, biotite
# --------------------------------------------------------------------------------------


def _lddt_toy():
    # residues 0..3, one atom each; atom B (residue 1) moves 0.6 Å along x in the prediction.
    ref = np.array([[0.0, 0, 0], [3.0, 0, 0], [0.0, 4, 0], [100.0, 0, 0]])
    pred = ref.copy()
    pred[1, 0] = 3.6
    return pred, ref, np.arange(4)


def test_lddt_hand_computed():
    pred, ref, res = _lddt_toy()
    # AB: |3.6-3| = 0.6 -> 3/4 thresholds; BC: |5.3815-5| = 0.38 -> 4/4; AC: exact -> 4/4.
    # D is > 15 Å from everything: no pairs.
    assert metrics.lddt(pred, ref, atom_residue=res) == pytest.approx((2 * 0.75 + 4 * 1.0) / 6)
    per_res = metrics.lddt(pred, ref, atom_residue=res, per_residue=True)
    np.testing.assert_allclose(per_res[:3], [0.875, 0.875, 1.0])
    assert np.isnan(per_res[3])
    # masking B out leaves only the exact AC pair
    assert metrics.lddt(pred, ref, atom_mask=[True, False, True, True], atom_residue=res) == 1.0


def test_lddt_identity_rigid_invariance_and_intra_residue_exclusion():
    rng = np.random.default_rng(8)
    ref = random_chain_coords(rng, 50)
    res = np.repeat(np.arange(25), 2)
    moved = ref @ random_rotation(rng).T + 17.0
    assert metrics.lddt(ref, ref, atom_residue=res) == 1.0
    assert metrics.lddt(moved, ref, atom_residue=res) == pytest.approx(1.0)
    # two atoms of one residue whose distance changes by 10 Å: no pair unless intra-residue pairs count
    pair_ref = np.array([[0.0, 0, 0], [1.5, 0, 0]])
    pair_pred = np.array([[0.0, 0, 0], [11.5, 0, 0]])
    assert np.isnan(metrics.lddt(pair_pred, pair_ref, atom_residue=[0, 0]))
    assert metrics.lddt(pair_pred, pair_ref, atom_residue=[0, 0], exclude_same_residue=False) == 0.0


def test_lddt_matches_biotite_on_random_perturbation():
    import biotite.structure as struc

    rng = np.random.default_rng(9)
    ref = random_chain_coords(rng, 300) * 0.6  # dense enough for many contacts
    res = np.repeat(np.arange(100), 3)
    pred = ref + rng.normal(size=ref.shape) * 1.2
    atoms = struc.AtomArray(len(ref))
    atoms.coord = ref
    atoms.res_id = res + 1
    atoms.chain_id[:] = "A"
    assert metrics.lddt(pred, ref, atom_residue=res) == pytest.approx(float(struc.lddt(atoms, pred)), abs=1e-9)
    np.testing.assert_allclose(
        metrics.lddt(pred, ref, atom_residue=res, per_residue=True),
        struc.lddt(atoms, pred, aggregation="residue"),
        atol=1e-9,
    )


def test_lddt_contacts_are_exact_at_the_inclusion_radius():
    """A pair at 15 Å counts, one at 15.000001 Å does not (decided in float64, not in float32)."""
    ref = np.array([[0.0, 0, 0], [15.0, 0, 0], [0.0, 15.000001, 0]])
    pred = ref.copy()
    pred[2, 1] += 3.0  # A-C error 3 Å (scores 1/4 if the pair counted); A-B exact
    res = np.arange(3)
    assert metrics.lddt(pred, ref, atom_residue=res) == 1.0
    assert metrics.lddt(pred, ref, atom_residue=res, inclusion_radius=15.00001) == pytest.approx((2 + 2 * 0.25) / 4)
    assert np.isnan(metrics.lddt(pred, ref, atom_residue=res, inclusion_radius=14.9999))


def test_lddt_jax_matches_numpy():
    rng = np.random.default_rng(11)
    ref = random_chain_coords(rng, 60) * 0.6
    res = np.repeat(np.arange(20), 3)
    pred = ref + rng.normal(size=ref.shape)
    mask = rng.random(60) > 0.2
    want = metrics.lddt(pred, ref, mask, res)
    got = metrics.lddt_jax(pred.astype(np.float32), ref.astype(np.float32), mask, res)
    assert float(got) == pytest.approx(want, abs=1e-5)
    want_res = np.nan_to_num(metrics.lddt(pred, ref, mask, res, per_residue=True), nan=0.0)
    got_res = metrics.lddt_jax(
        pred.astype(np.float32), ref.astype(np.float32), mask, res, per_residue=True, num_residues=20
    )
    np.testing.assert_allclose(np.asarray(got_res), want_res, atol=1e-5)
    # batched
    batched = metrics.lddt_jax(np.stack([pred, ref]), np.stack([ref, ref]), np.stack([mask, mask]), np.stack([res, res]))
    np.testing.assert_allclose(np.asarray(batched), [want, 1.0], atol=1e-5)


# --------------------------------------------------------------------------------------
# Residue correspondence
# --------------------------------------------------------------------------------------


def subset_chain(chain: Chain, keep: np.ndarray) -> Chain:
    """The chain restricted to the residues ``keep`` (sorted indices)."""
    atoms = np.concatenate([np.arange(*chain.residue_atom_slice(int(i)).indices(chain.num_atoms)) for i in keep])
    new_res = np.searchsorted(keep, chain.atom_residue[atoms])
    return dataclasses.replace(
        chain,
        res_names=tuple(chain.res_names[i] for i in keep),
        res_ids=chain.res_ids[keep],
        ins_codes=tuple(chain.ins_codes[i] for i in keep),
        atom_names=tuple(chain.atom_names[a] for a in atoms),
        elements=tuple(chain.elements[a] for a in atoms),
        atom_residue=new_res,
        coords=chain.coords[atoms],
        atom_mask=chain.atom_mask[atoms],
        occupancy=chain.occupancy[atoms],
        b_factors=chain.b_factors[atoms],
    )


@pytest.fixture(scope="module")
def t1026() -> Structure:
    return read_structure(DATA / "T1026.pdb.gz")


def test_sequence_alignment_recovers_deleted_residues(t1026):
    chain = t1026.chains[0]
    keep = np.r_[0:20, 31:90, 95 : chain.num_residues]
    part = subset_chain(chain, keep)
    p, r = alignment.align_chains(part, chain)
    np.testing.assert_array_equal(p, np.arange(len(keep)))
    # every residue finds an identical partner; where a gap edge is ambiguous (a repeated motif next
    # to the deletion) an equally scoring partner may be chosen, so only almost all are the originals
    assert [part.res_names[i] for i in p] == [chain.res_names[j] for j in r]
    assert np.all(np.diff(r) > 0)
    assert np.mean(r == keep) > 0.95
    # the same by residue number (author numbers are kept by subset_chain)
    p, r = alignment.align_chains(part, chain, by_residue_number=True)
    np.testing.assert_array_equal(r, keep)


def test_residue_number_mapping_uses_insertion_codes_and_offsets(t1026):
    chain = t1026.chains[0]
    renumbered = dataclasses.replace(chain, res_ids=chain.res_ids + 1000)
    assert len(alignment.align_chains(renumbered, chain, by_residue_number=True)[0]) == 0
    assert len(alignment.align_chains(renumbered, chain)[0]) == chain.num_residues
    ins = list(chain.ins_codes)
    ins[5] = "A"
    with_ins = dataclasses.replace(chain, ins_codes=tuple(ins))
    p, _ = alignment.align_chains(with_ins, chain, by_residue_number=True)
    assert 5 not in p and len(p) == chain.num_residues - 1
    pred = dataclasses.replace(t1026, chains=(renumbered,))
    with pytest.raises(alignment.AlignmentError, match="no residue pairs"):
        metrics.evaluate_pair(pred, t1026, by_residue_number=True)
    assert metrics.evaluate_pair(pred, t1026)["tm_score"] == pytest.approx(1.0)


def test_unresolved_ca_residues_are_not_paired(t1026):
    chain = t1026.chains[0]
    mask = chain.atom_mask.copy()
    ca = np.flatnonzero(np.asarray(chain.atom_names) == "CA")
    mask[ca[:10]] = False
    holes = dataclasses.replace(chain, atom_mask=mask)
    p, r = alignment.align_chains(holes, chain)
    np.testing.assert_array_equal(p, np.arange(10, chain.num_residues))
    res = metrics.evaluate_pair(dataclasses.replace(t1026, chains=(holes,)), t1026)
    assert res["n_aligned"] == chain.num_residues - 10
    # normalised by the full reference: the 10 missing residues cost 10/L of the TM-score
    assert res["tm_score"] == pytest.approx((chain.num_residues - 10) / chain.num_residues)


def test_chain_pairing_is_order_independent():
    b = read_structure(DATA / "1A2K_r_b.pdb.gz")
    u = read_structure(DATA / "1A2K_r_u.pdb.gz")
    forward = alignment.pair_chains(b, u)
    swapped = dataclasses.replace(b, chains=b.chains[::-1])
    backward = alignment.pair_chains(swapped, u)
    assert len(forward) == 2 and len(backward) == 2
    n_b = len(b.chains)
    assert sorted((n_b - 1 - i, j) for i, j in backward) == forward
    assert metrics.evaluate_pair(swapped, u)["tm_score"] == pytest.approx(metrics.evaluate_pair(b, u)["tm_score"])


def test_mismatched_residue_types_compare_backbone_atoms_only():
    pred = read_structure(DATA / "d1cih__.pdb.gz")
    ref = read_structure(DATA / "d1lfma_.pdb.gz")
    mapping = alignment.match_structures(pred, ref)
    _, _, owner = alignment.matched_atoms(pred, ref, mapping)
    pc, rc = pred.chains[0], ref.chains[0]
    mismatched = [k for k, (i, j) in enumerate(zip(mapping.pred_res, mapping.ref_res)) if pc.res_names[i] != rc.res_names[j]]
    assert mismatched, "homologs should differ somewhere"
    counts = np.bincount(owner, minlength=len(mapping))
    assert counts[mismatched].max() <= len(alignment.BACKBONE_ATOMS)
    assert counts.max() > len(alignment.BACKBONE_ATOMS)  # identical residues keep side chains


# --------------------------------------------------------------------------------------
# Real pairs: TMscore program and biotite lDDT
# --------------------------------------------------------------------------------------

DB5 = ("1GL1_l", "1CLV_l", "1OC0_l", "4CPA_l", "1J2J_l", "1FLE_l", "1HIA_l", "1CGI_l", "1R0R_l", "1A2K_r")
HOMOLOGS = (("1UTJ_A", "1A0J_A"), ("1EUF_A", "1A0J_A"), ("1A0L_A", "1A0J_A"), ("d1cih__", "d1lfma_"), ("d2pcbb_", "d1lfma_"))
NMR = (("2sdf_models", 2), ("2sdf_models", 3), ("1s40_models", 2))
PERTURBATIONS = ("noise1", "noise3", "hinge")

REAL_PAIRS = (
    [f"db5:{p}" for p in DB5]
    + [f"homolog:{a}:{b}" for a, b in HOMOLOGS]
    + [f"nmr:{f}:{m}" for f, m in NMR]
    + [f"casp:T1026:{p}" for p in PERTURBATIONS]
)


def perturbed(native: Structure, kind: str) -> Structure:
    """A deterministic distorted copy of ``native`` (all atoms)."""
    rng = np.random.default_rng(sum(map(ord, kind)))
    xyz = native.coords.astype(np.float64)
    if kind == "noise1":
        xyz = xyz + rng.normal(size=xyz.shape) * 1.0
    elif kind == "noise3":
        xyz = xyz + rng.normal(size=xyz.shape) * 3.0
    elif kind == "hinge":  # rotate the C-terminal half 35° about an axis through residue 70's CA
        chain = native.chains[0]
        ca, _ = chain.atom_coords("CA")
        axis = random_rotation(rng)[0]
        angle = np.deg2rad(35)
        K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        R = np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K
        moving = chain.atom_residue >= 70
        xyz[moving] = (xyz[moving] - ca[70]) @ R.T + ca[70]
        xyz = xyz + rng.normal(size=xyz.shape) * 0.5
    return native.with_coords(xyz, name=f"{native.name}_{kind}")


def load_pair(case: str) -> tuple[Structure, Structure]:
    kind, *parts = case.split(":")
    if kind == "db5":
        return read_structure(DATA / f"{parts[0]}_b.pdb.gz"), read_structure(DATA / f"{parts[0]}_u.pdb.gz")
    if kind == "homolog":
        return read_structure(DATA / f"{parts[0]}.pdb.gz"), read_structure(DATA / f"{parts[1]}.pdb.gz")
    if kind == "nmr":
        path = DATA / f"{parts[0]}.pdb.gz"
        return read_structure(path, model=int(parts[1])), read_structure(path, model=1)
    native = read_structure(DATA / f"{parts[0]}.pdb.gz")
    return perturbed(native, parts[1]), native


def _write_ca_pdb(path: pathlib.Path, coords: np.ndarray, numbers) -> None:
    lines = [
        f"ATOM  {k + 1:5d}  CA  ALA A{num:4d}    {x:8.3f}{y:8.3f}{z:8.3f}  1.00  0.00           C"
        for k, (num, (x, y, z)) in enumerate(zip(numbers, coords))
    ]
    path.write_text("\n".join(lines + ["TER", "END"]) + "\n")


def run_tmscore(pred_pdb: pathlib.Path, ref_pdb: pathlib.Path) -> dict[str, float]:
    out = subprocess.run([TMSCORE, str(pred_pdb), str(ref_pdb)], capture_output=True, text=True, check=True).stdout
    values = {}
    for key, pattern in (("tm_score", r"TM-score\s*=\s*([\d.]+)"), ("gdt_ts", r"GDT-TS-score\s*=\s*([\d.]+)"),
                         ("gdt_ha", r"GDT-HA-score\s*=\s*([\d.]+)")):
        match = re.search(pattern, out)
        assert match, f"TMscore output lacks {key}:\n{out}"
        values[key] = float(match.group(1))
    return values


def tmscore_on_mapping(pred: Structure, ref: Structure, tmp_path: pathlib.Path) -> dict[str, float]:
    """Run TMscore with our residue mapping: the reference's resolved CAs are numbered 1..L, the
    prediction's aligned CAs get their partner's number (TMscore pairs residues by number)."""
    mapping = alignment.match_structures(pred, ref)
    number = {}
    ref_ca = []
    for j, chain in enumerate(ref.chains):
        xyz, mask = chain.atom_coords("CA")
        for r in np.flatnonzero(mask):
            ref_ca.append(xyz[r])
            number[(j, r)] = len(ref_ca)
    _write_ca_pdb(tmp_path / "ref.pdb", np.array(ref_ca), range(1, len(ref_ca) + 1))
    pred_ca = alignment.ca_coords(pred, mapping.pred_chain, mapping.pred_res)
    _write_ca_pdb(tmp_path / "pred.pdb", pred_ca, [number[(j, r)] for j, r in zip(mapping.ref_chain, mapping.ref_res)])
    return run_tmscore(tmp_path / "pred.pdb", tmp_path / "ref.pdb")


def test_enough_real_pairs():
    assert len(REAL_PAIRS) >= 20


@needs_tmscore
@pytest.mark.parametrize("case", REAL_PAIRS)
def test_tm_score_and_gdt_match_tmscore_program(case, tmp_path):
    pred, ref = load_pair(case)
    ours = metrics.evaluate_pair(pred, ref)
    theirs = tmscore_on_mapping(pred, ref, tmp_path)
    assert ours["n_aligned"] >= 25
    # TMscore prints 4 decimals; the acceptance bound is 0.005
    assert abs(ours["tm_score"] - theirs["tm_score"]) < 0.005
    assert abs(ours["gdt_ts"] - theirs["gdt_ts"]) < 0.005
    assert abs(ours["gdt_ha"] - theirs["gdt_ha"]) < 0.005


@pytest.mark.parametrize("case", REAL_PAIRS)
def test_lddt_matches_biotite_and_metrics_are_sane(case):
    import biotite.structure as struc

    pred, ref = load_pair(case)
    mapping = alignment.match_structures(pred, ref)
    pred_atoms, ref_atoms, owner = alignment.matched_atoms(pred, ref, mapping)
    atoms = struc.AtomArray(len(ref_atoms))
    atoms.coord = ref_atoms
    atoms.res_id = owner + 1
    atoms.chain_id[:] = "A"
    want = float(struc.lddt(atoms, pred_atoms))
    ours = metrics.evaluate_pair(pred, ref)
    assert abs(ours["lddt"] - want) < 0.005
    # biotite works in float32: a distance error within ~1e-6 Å of a threshold can flip there, which
    # moves the score of the (few) residues owning that pair by 1/4 of a pair
    per_res = metrics.lddt(pred_atoms, ref_atoms, atom_residue=owner, per_residue=True)
    diff = np.abs(per_res - struc.lddt(atoms, pred_atoms, aggregation="residue"))
    assert np.mean(diff > 1e-6) < 0.02 and diff.max() < 0.01
    assert 0.0 < ours["tm_score"] <= 1.0 and 0.0 < ours["lddt"] <= 1.0
    assert 0.0 <= ours["gdt_ha"] <= ours["gdt_ts"] <= 1.0
    assert ours["rmsd_ca"] == pytest.approx(
        metrics.rmsd(alignment.ca_coords(pred, mapping.pred_chain, mapping.pred_res),
                     alignment.ca_coords(ref, mapping.ref_chain, mapping.ref_res))
    )
    assert ours["rmsd_all"] > 0.0 and ours["n_aligned"] == len(mapping)


@needs_tmscore
@pytest.mark.parametrize("name", ["1GL1_l", "1FLE_l", "1R0R_l"])
def test_residue_number_mode_matches_tmscore_on_raw_files(name, tmp_path):
    """TMscore itself pairs by residue number; on single-chain files it must agree with our mode."""
    import gzip

    paths = []
    for suffix in ("b", "u"):
        out = tmp_path / f"{name}_{suffix}.pdb"
        out.write_bytes(gzip.decompress((DATA / f"{name}_{suffix}.pdb.gz").read_bytes()))
        paths.append(out)
    pred, ref = read_structure(paths[0]), read_structure(paths[1])
    ours = metrics.evaluate_pair(pred, ref, by_residue_number=True)
    # these entries are numbered consistently, so both mappings agree
    by_number = alignment.match_structures(pred, ref, by_residue_number=True)
    by_sequence = alignment.match_structures(pred, ref)
    np.testing.assert_array_equal(by_number.pred_res, by_sequence.pred_res)
    np.testing.assert_array_equal(by_number.ref_res, by_sequence.ref_res)
    theirs = run_tmscore(*paths)
    assert abs(ours["tm_score"] - theirs["tm_score"]) < 0.005
    assert abs(ours["gdt_ts"] - theirs["gdt_ts"]) < 0.005

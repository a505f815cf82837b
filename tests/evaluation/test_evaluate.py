"""Tests of ``simplefold evaluate`` (run through ``simplefold.cli.main``)."""

from __future__ import annotations

import json
import pathlib
import shutil

import numpy as np
import pytest

from conftest import FIXTURES
from simplefold.evaluation import metrics
from simplefold.cli import main
from simplefold.evaluation.evaluate import target_name
from simplefold.io.structure import read_structure, write_structure

DATA = FIXTURES / "metrics"


def noisy_copy(path: pathlib.Path, sigma: float, seed: int, out: pathlib.Path) -> None:
    native = read_structure(path)
    rng = np.random.default_rng(seed)
    write_structure(out, native.with_coords(native.coords + rng.normal(size=native.coords.shape) * sigma))


def read_json(path: pathlib.Path) -> dict:
    text = path.read_text()
    assert "NaN" not in text  # strict JSON
    return json.loads(text)


@pytest.mark.parametrize(
    "file_name, name",
    [
        ("T1026.pdb.gz", "T1026"),
        ("T1026_sample_3.pdb", "T1026_sample_3"),
        ("a9_1a95.pdb1_3.dill_l_b_COMPLEX.pdb.gz", "a9_1a95.pdb1_3.dill_l_b_COMPLEX"),
        ("7ftv_A.cif", "7ftv_A"),
        ("x.bcif.gz", "x"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_target_name(file_name, name):
    assert target_name(pathlib.Path(file_name)) == name


def test_file_vs_file_table_and_json(tmp_path, capsys):
    pred, ref = DATA / "1GL1_l_b.pdb.gz", DATA / "1GL1_l_u.pdb.gz"
    out = tmp_path / "res" / "eval.json"
    assert main(["evaluate", str(pred), str(ref), "--json", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["target", *metrics.METRIC_NAMES]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:] if not line.startswith("-")}
    assert set(rows) == {"1GL1_l_u", "mean", "median"}

    result = read_json(out)
    assert set(result) == {"targets", "summary", "errors"}
    assert result["errors"] == []
    (target,) = result["targets"]
    want = metrics.evaluate_pair(read_structure(pred), read_structure(ref))
    assert target["name"] == "1GL1_l_u" and target["n_samples"] == 1
    assert [s["name"] for s in target["samples"]] == ["1GL1_l_b"]
    for m in metrics.METRIC_NAMES:
        assert target[m] == pytest.approx(want[m])
        assert target["samples"][0][m] == pytest.approx(want[m])
        assert target["best"][m] == pytest.approx(want[m])
        assert result["summary"][m] == pytest.approx(want[m])
        assert float(rows["1GL1_l_u"][metrics.METRIC_NAMES.index(m)]) == pytest.approx(want[m], abs=6e-5)
    assert result["summary"]["n_targets"] == 1


@pytest.fixture()
def predict_layout(tmp_path) -> tuple[pathlib.Path, pathlib.Path]:
    """A ``simplefold predict``-style output dir (two samples of T1026, one of 1R0R) and a ref dir."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    (pred / "T1026").mkdir(parents=True)
    (pred / "1R0R").mkdir(parents=True)
    ref.mkdir()
    shutil.copy(DATA / "T1026.pdb.gz", ref / "T1026.pdb.gz")
    shutil.copy(DATA / "1R0R_l_u.pdb.gz", ref / "1R0R.pdb.gz")
    noisy_copy(DATA / "T1026.pdb.gz", 0.5, 0, pred / "T1026" / "T1026_sample_0.pdb")
    noisy_copy(DATA / "T1026.pdb.gz", 2.0, 1, pred / "T1026" / "T1026_sample_1.pdb")
    shutil.copy(DATA / "1R0R_l_b.pdb.gz", pred / "1R0R" / "1R0R_sample_0.pdb.gz")
    return pred, ref


def test_predict_layout_directories(predict_layout, tmp_path, capsys):
    pred, ref = predict_layout
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(pred), str(ref), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    for label in ("  T1026_sample_0", "  T1026_sample_1", "T1026 (mean)", "T1026 (best)", "1R0R ", "mean (2)",
                  "mean (best)"):
        assert label in table

    result = read_json(out)
    assert result["errors"] == []
    t1026, r0r = sorted(result["targets"], key=lambda t: t["name"] != "T1026")
    assert t1026["n_samples"] == 2 and r0r["n_samples"] == 1
    assert [s["name"] for s in t1026["samples"]] == ["T1026_sample_0", "T1026_sample_1"]
    s0, s1 = t1026["samples"]
    assert s0["tm_score"] > s1["tm_score"]  # less noise, better score
    for m in metrics.METRIC_NAMES:
        assert t1026[m] == pytest.approx((s0[m] + s1[m]) / 2)
        best = min(s0[m], s1[m]) if m in metrics.LOWER_IS_BETTER else max(s0[m], s1[m])
        assert t1026["best"][m] == pytest.approx(best)
        assert result["summary"][m] == pytest.approx((t1026[m] + r0r[m]) / 2)
        assert result["summary"]["best"][m] == pytest.approx((t1026["best"][m] + r0r["best"][m]) / 2)
    assert t1026["rmsd_all"] > 0.3 and r0r["tm_score"] > 0.8


def test_unmatched_and_unreadable_files_are_reported(predict_layout, tmp_path, caplog):
    pred, ref = predict_layout
    (pred / "T1026" / "T1026_sample_2.pdb").write_text("this is not a structure file\n")
    shutil.copy(DATA / "1CGI_l_b.pdb.gz", pred / "orphan.pdb.gz")
    shutil.copy(DATA / "1FLE_l_u.pdb.gz", ref / "1FLE.pdb.gz")
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(pred), str(ref), "--json", str(out)]) == 1
    result = read_json(out)
    errors = {e["name"]: e for e in result["errors"]}
    assert set(errors) == {"T1026_sample_2", "orphan", "1FLE"}
    assert "T1026_sample_2.pdb" in errors["T1026_sample_2"]["file"]
    assert "no reference" in errors["orphan"]["error"]
    assert "no prediction" in errors["1FLE"]["error"]
    # the readable samples are still scored
    names = {t["name"]: t for t in result["targets"]}
    assert set(names) == {"T1026", "1R0R"} and names["T1026"]["n_samples"] == 2
    assert "T1026_sample_2" in caplog.text


def test_same_sample_in_two_formats_is_scored_once(predict_layout, tmp_path):
    pred, ref = predict_layout
    structure = read_structure(pred / "T1026" / "T1026_sample_0.pdb")
    write_structure(pred / "T1026" / "T1026_sample_0.cif", structure)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(pred), str(ref), "--json", str(out)]) == 0
    t1026 = next(t for t in read_json(out)["targets"] if t["name"] == "T1026")
    assert [s["name"] for s in t1026["samples"]] == ["T1026_sample_0", "T1026_sample_1"]


def test_residue_number_mode_and_unscorable_pair(tmp_path):
    # 1CLV bound is numbered from 501, unbound from 1: no pairs by number, all pairs by sequence.
    pred, ref = DATA / "1CLV_l_b.pdb.gz", DATA / "1CLV_l_u.pdb.gz"
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(pred), str(ref), "--json", str(out)]) == 0
    assert read_json(out)["targets"][0]["n_aligned"] == 32
    assert main(["evaluate", str(pred), str(ref), "--by-residue-number", "--json", str(out)]) == 1
    result = read_json(out)
    assert result["targets"] == [] and "no residue pairs" in result["errors"][0]["error"]
    assert result["summary"]["n_targets"] == 0 and result["summary"]["tm_score"] is None


def test_bad_paths_are_usage_errors(tmp_path):
    assert main(["evaluate", str(tmp_path / "missing.pdb"), str(DATA / "T1026.pdb.gz")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(tmp_path / "empty"), str(DATA / "T1026.pdb.gz")]) == 2


def test_median_and_plddt_correlation_from_b_factors(tmp_path):
    """Predictions carrying pLDDT in the B-factor column: the summary gets the per-sample Pearson r
    of mean pLDDT with lDDT; here the noisier copies get lower pLDDT, so r is strongly positive."""
    native = read_structure(DATA / "T1026.pdb.gz")
    refs, preds = tmp_path / "refs", tmp_path / "preds"
    refs.mkdir()
    preds.mkdir()
    rng = np.random.default_rng(0)
    for k, sigma in enumerate((0.3, 1.0, 2.0, 4.0)):
        name = f"t{k}"
        write_structure(refs / f"{name}.pdb", native)
        coords = native.coords + rng.normal(size=native.coords.shape) * sigma
        plddt = np.full(native.num_atoms, 90.0 - 20 * k, np.float32)
        write_structure(preds / f"{name}.pdb", native.with_coords(coords, b_factors=plddt))
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(preds), str(refs), "--json", str(out)]) == 0
    summary = read_json(out)["summary"]
    assert summary["n_samples_with_plddt"] == 4 and summary["plddt_lddt_pearson"] > 0.9
    lddts = sorted(t["lddt"] for t in read_json(out)["targets"])
    assert summary["median"]["lddt"] == pytest.approx((lddts[1] + lddts[2]) / 2)
    assert [t["samples"][0]["plddt"] for t in sorted(read_json(out)["targets"], key=lambda t: t["name"])] == [
        pytest.approx(90.0 - 20 * k, abs=0.01) for k in range(4)
    ]

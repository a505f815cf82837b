"""Tests of simplefold.plots: every figure function writes a valid PNG atomically and closes its figure."""

from __future__ import annotations

import matplotlib.figure
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

from simplefold import plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    # A real drawing, not a blank canvas.
    assert image[..., :3].std() > 0.01


def _cases(rng):
    n = 60
    return {
        "plddt": lambda p: plots.plot_plddt([rng.uniform(30, 95, n) for _ in range(3)], p, "target"),
        "plddt_fraction": lambda p: plots.plot_plddt([rng.uniform(0.3, 0.95, n)], p, "fractions"),
        "lddt": lambda p: plots.plot_lddt_per_residue(np.r_[rng.uniform(0, 1, n - 1), np.nan], p, "T1026"),
        "histogram": lambda p: plots.plot_histogram(rng.uniform(0, 1, 40), p, "TM-score", "all targets"),
        "histogram_empty": lambda p: plots.plot_histogram([np.nan], p, "TM-score", "none"),
        "heatmap": lambda p: plots.plot_rmsd_heatmap(rng.uniform(0, 5, (6, 6)), p, labels=[f"s{i}" for i in range(6)]),
        "heatmap_big": lambda p: plots.plot_rmsd_heatmap(rng.uniform(0, 5, (60, 60)), p),
        "rmsf": lambda p: plots.plot_rmsf(rng.uniform(0, 3, n), p, residue_numbers=np.arange(5, 5 + n)),
        "loss": lambda p: plots.plot_loss_curves(
            np.arange(100), {"train": np.exp(-np.arange(100) / 30), "val": np.r_[np.full(50, np.nan), np.linspace(1, 0.2, 50)]},
            p, log_y=True,
        ),
    }


@pytest.mark.parametrize("case", list(_cases(np.random.default_rng(0))))
def test_plot_writes_png_and_closes_figure(tmp_path, case):
    plt.close("all")
    path = tmp_path / "sub" / "dir" / f"{case}.png"  # missing parent directories are created
    returned = _cases(np.random.default_rng(0))[case](path)
    assert returned == path
    _assert_png(path)
    assert plt.get_fignums() == []
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "rmsf.png"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.plot_rmsf(np.ones(10), target)
    assert target.read_bytes() == b"old"  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["rmsf.png"]
    assert plt.get_fignums() == []


def test_bad_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="square"):
        plots.plot_rmsd_heatmap(np.zeros((3, 4)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels"):
        plots.plot_rmsd_heatmap(np.zeros((3, 3)), tmp_path / "x.png", labels=["a"])
    with pytest.raises(ValueError, match="different lengths"):
        plots.plot_plddt([np.ones(5), np.ones(6)], tmp_path / "x.png")
    with pytest.raises(ValueError, match="at least one"):
        plots.plot_plddt([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="values for"):
        plots.plot_loss_curves([1, 2, 3], {"loss": [1.0, 2.0]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="1-D"):
        plots.plot_rmsf(np.zeros((3, 3)), tmp_path / "x.png")
    with pytest.raises(ValueError, match="residue_numbers"):
        plots.plot_lddt_per_residue(np.ones(4), tmp_path / "x.png", residue_numbers=[1, 2])
    assert not (tmp_path / "x.png").exists()
    assert plt.get_fignums() == []


def test_histogram_value_range(tmp_path):
    path = plots.plot_histogram([0.2, 0.4, 0.9], tmp_path / "h.png", "TM-score", value_range=(0.0, 1.0))
    _assert_png(path)


def test_evaluate_plots_option(tmp_path, capsys):
    """``simplefold evaluate --plots DIR`` writes one lDDT-per-residue plot per target and the histograms."""
    from conftest import FIXTURES

    from simplefold.cli import main
    from simplefold.io.structure import read_structure, write_structure

    nmr = FIXTURES / "analysis" / "1adz.pdb.gz"
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    write_structure(tmp_path / "ref" / "T1.pdb", read_structure(nmr, model=1))
    for k in (0, 1):
        write_structure(tmp_path / "pred" / f"T1_sample_{k}.pdb", read_structure(nmr, model=k + 2))
    rc = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--plots", str(tmp_path / "plots")])
    assert rc == 0
    assert "T1" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["T1_lddt.png", "lddt_hist.png", "tm_score_hist.png"]
    for p in (tmp_path / "plots").iterdir():
        _assert_png(p)

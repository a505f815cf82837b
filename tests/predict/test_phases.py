"""simplefold.predict.phases: the phased run gives fold()'s results and resumes at a phase boundary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simplefold.predict import fold, phases
from simplefold.predict.options import FoldOptions
from simplefold.predict.run import predict_to_directory
from simplefold.predict.targets import as_targets

STEPS = 20
SEQS = [("a", "MKTAYIAKQRQISFVKSHFSRQ"), ("b", "GSHMLEDPVNNEWQY")]


def _summary(out, name):
    return json.loads((out / name / "summary.json").read_text())


def test_phased_run_matches_fold_and_resumes_after_a_crash_in_the_plddt_phase(tiny_model_dir, tmp_path, monkeypatch):
    options = FoldOptions(num_samples=3, seed=7, num_steps=STEPS, batch_size=2)
    targets = as_targets(SEQS)
    expected = fold(SEQS, str(tiny_model_dir), num_samples=3, seed=7, num_steps=STEPS, batch_size=2)

    out = tmp_path / "out"

    class Crash(RuntimeError):
        pass

    def crash(*a, **k):
        raise Crash("killed in the pLDDT phase")

    # a crash at the start of the pLDDT phase: the sampling phase's files stay behind
    monkeypatch.setattr(phases, "load_plddt_pair", crash)
    with pytest.raises(Crash):
        predict_to_directory(targets, out, str(tiny_model_dir), options)
    for name, _ in SEQS:
        assert phases.samples_path(out, name).is_file()
        assert not (out / name / "summary.json").exists()
    monkeypatch.undo()

    # resumed: nothing is sampled again, only the pLDDT phase runs
    report = predict_to_directory(targets, out, str(tiny_model_dir), options)
    assert set(report.status.values()) == {"ok"}
    memory = json.loads((out / phases.WORK_DIR / phases.MEMORY_FILE).read_text())
    assert set(memory["peak_rss_bytes"]) == {"esm", "plddt"}
    assert all(v > 0 for v in memory["peak_rss_bytes"].values())
    for res in expected:
        summary = _summary(out, res.name)
        assert not phases.samples_path(out, res.name).exists()  # deleted once the target is written
        for s, got in zip(res.samples, summary["samples"]):
            assert got["rank"] == s.rank
            np.testing.assert_allclose(got["plddt"], np.round(s.plddt, 2), atol=0.006)
        from simplefold.io.structure import read_structure

        st = read_structure(out / res.name / f"{res.name}_sample_1.pdb")
        np.testing.assert_allclose(st.coords, res.samples[1].structure.coords, atol=1e-3)  # PDB: 3 decimals


def test_samples_of_other_settings_are_sampled_again(tiny_model_dir, tmp_path):
    targets = as_targets(SEQS[:1])
    out = tmp_path / "out"
    options = FoldOptions(num_samples=1, seed=1, num_steps=STEPS)
    predict_to_directory(targets, out, str(tiny_model_dir), options)
    memory = json.loads((out / phases.WORK_DIR / phases.MEMORY_FILE).read_text())
    assert set(memory["peak_rss_bytes"]) == {"esm", "sampling", "plddt"}
    first = _summary(out, "a")["samples"][0]["plddt"]
    # another seed: the earlier output does not count, the target is sampled and scored again
    predict_to_directory(targets, out, str(tiny_model_dir), FoldOptions(num_samples=1, seed=2, num_steps=STEPS))
    assert _summary(out, "a")["seed"] == 2 and _summary(out, "a")["samples"][0]["plddt"] != first


def test_folding_network_released_before_a_separate_plddt_latent_is_loaded(tiny_model_dir, tmp_path, monkeypatch):
    """The released-model path: the pLDDT latent is another network (the 1.6B), loaded only after
    the folding network's buffers are deleted."""
    from simplefold.predict import loading

    options = FoldOptions(num_samples=2, seed=3, num_steps=STEPS)
    expected = fold(SEQS, str(tiny_model_dir), num_samples=2, seed=3, num_steps=STEPS)
    released = []
    real_release = phases.release_arrays

    def release(*trees):
        released.extend(trees)
        real_release(*trees)

    def separate_pair(path, cfg, *, network=None, offline=False, precision=None):
        assert network is None and released, "the folding network must be released first"
        latent, _ = loading._load_dir(path, precision)  # the same weights, loaded as a separate latent
        _, head, _ = loading.load_plddt_pair(path, cfg, precision=precision)
        return latent, head, "separate latent"

    monkeypatch.setattr(phases, "release_arrays", release)
    monkeypatch.setattr(phases, "plddt_needs_network", lambda path, cfg: False)
    monkeypatch.setattr(phases, "load_plddt_pair", separate_pair)
    predict_to_directory(as_targets(SEQS), tmp_path / "out", str(tiny_model_dir), options)
    from flax import nnx
    import jax

    assert any(leaf.is_deleted() for t in released for leaf in jax.tree.leaves(nnx.state(t.module)))
    for res in expected:
        summary = _summary(tmp_path / "out", res.name)
        for s, got in zip(res.samples, summary["samples"]):
            np.testing.assert_allclose(got["plddt"], np.round(s.plddt, 2), atol=0.006)


def test_sampling_bar_counts_sampler_steps(tiny_model_dir, tmp_path, monkeypatch):
    """The sampling bar's total is every pending target's chunks x steps, and it moves while one
    sample runs (several updates per chunk), not once per target or sample."""
    bars = []

    class Bar:
        def __init__(self, total=None, **kwargs):
            self.total, self.n, self.updates, self.kwargs = total, 0, [], kwargs
            bars.append(self)

        def update(self, k=1):
            self.n += k
            self.updates.append(k)

        def set_postfix_str(self, *a, **k):
            pass

        def close(self):
            pass

    monkeypatch.setattr(phases, "progress_bar", Bar)
    options = FoldOptions(num_samples=3, seed=7, num_steps=STEPS, batch_size=2)  # 2 chunks per target
    predict_to_directory(as_targets(SEQS), tmp_path / "out", str(tiny_model_dir), options, progress=True)
    (bar,) = [b for b in bars if b.kwargs.get("desc") == "sampling"]
    assert bar.kwargs["unit"] == "step" and bar.total == len(SEQS) * 2 * STEPS
    assert bar.n == bar.total
    positive = [k for k in bar.updates if k > 0]
    assert len(positive) >= len(SEQS) * 2 * 5  # at least 5 reports per chunk of 20 steps

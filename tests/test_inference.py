"""simplefold.predict: the fold API, chunk/bucket invariance, planning and memory estimates.

A tiny random ``FoldingConfig.tiny()`` network with 4 sampler steps keeps this fast; the
compilations land in the persistent cache set up by conftest.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from simplefold.predict import fold
from simplefold.predict.engine import Folder
from simplefold.predict.loading import LoadedModel, ModelNotFoundError, demo_model_path
from simplefold.predict.options import FoldOptions
from simplefold.predict.planning import count_parameters, estimate_memory, format_plan, plan, plan_target
from simplefold.predict.targets import Target, TargetError, as_targets, check_target, read_targets

SEQ_A = "MKTAYIAKQRQISFVKSHFSRQ"  # 22 residues -> bucket 32
SEQ_B = "GSHMLEDPVNNEWQY"  # 15 residues -> bucket 32
# 20 steps: with fewer, the first Euler step from t = 1e-4 (w ~ 99) blows coordinates up to ~1e3 Å
STEPS = 20


def random_tiny(seed: int = 0, **overrides):
    """``FoldingConfig.tiny()`` with random weights, including the adaLN-Zero parameters that are
    zero at init (otherwise the velocity is exactly 0 and the network would not matter).

    Those get a small scale (0.002) so that 20 sampler steps stay in a sane coordinate range."""
    import jax
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT

    net = FoldingDiT(FoldingConfig.tiny(**overrides), rngs=nnx.Rngs(seed))
    state = nnx.state(net, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(seed + 100), 1000))
    state = jax.tree.map(lambda x: jax.random.normal(next(keys), x.shape, x.dtype) * 0.002 if not x.any() else x, state)
    nnx.update(net, state)
    return net


@pytest.fixture(scope="module")
def tiny():
    from flax import nnx

    from simplefold.model import PLDDTConfig, PLDDTHead

    net = random_tiny(0)
    head = PLDDTHead(PLDDTConfig.tiny(), rngs=nnx.Rngs(1))
    return LoadedModel(network=net, config=net.config, name="tiny", plddt_head=head)


def _coords(result):
    return np.stack([s.structure.coords for s in result.samples])


def _plddts(result):
    return np.stack([s.plddt for s in result.samples])


def test_sample_identical_alone_in_chunk_and_other_bucket(tiny):
    """Same seed -> bit-identical sample (coordinates and pLDDT) whether run in a chunk of 4,
    alone, in a chunk of 3, or padded to other buckets (see simplefold/reproducible.py for why
    this holds exactly on CPU)."""
    opts4 = FoldOptions(num_samples=4, seed=7, num_steps=STEPS, plddt=True, batch_size=4)
    chunk4 = Folder(tiny, opts4).fold_target(Target("a", SEQ_A))
    assert chunk4.plan.chunk == 4 and chunk4.plan.bucket_tokens == 32

    alone = Folder(tiny, dataclasses.replace(opts4, batch_size=1)).fold_target(Target("a", SEQ_A))
    assert alone.plan.chunk == 1 and alone.plan.num_chunks == 4
    np.testing.assert_array_equal(_coords(alone), _coords(chunk4))
    np.testing.assert_array_equal(_plddts(alone), _plddts(chunk4))

    # buckets 64 and 256 instead of 32: extra masked residues and many more atom slots
    for bucket in (64, 256):
        other = Folder(tiny, dataclasses.replace(opts4, batch_size=1, token_buckets=(bucket,))).fold_target(
            Target("a", SEQ_A)
        )
        assert other.plan.bucket_tokens == bucket and other.plan.bucket_atoms > chunk4.plan.bucket_atoms
        np.testing.assert_array_equal(_coords(other), _coords(chunk4))
        np.testing.assert_array_equal(_plddts(other), _plddts(chunk4))

    # a sample in the middle of a chunk of 3 equals the same sample in a chunk of 4
    three = Folder(tiny, dataclasses.replace(opts4, num_samples=3, batch_size=3)).fold_target(Target("a", SEQ_A))
    np.testing.assert_array_equal(_coords(three), _coords(chunk4)[:3])

    # the samples themselves differ, and the seed matters
    c = _coords(chunk4)
    assert np.abs(c[0] - c[1]).max() > 1.0
    reseeded = Folder(tiny, dataclasses.replace(opts4, seed=8)).fold_target(Target("a", SEQ_A))
    assert np.abs(_coords(reseeded) - c).max() > 1.0
    # ... and so does the network (its velocity is not trivially zero)
    other_net = LoadedModel(network=random_tiny(1), config=tiny.config, name="tiny1")
    assert np.abs(_coords(Folder(other_net, opts4).fold_target(Target("a", SEQ_A))) - c).max() > 0.1


def test_fold_api_inputs_results_and_plddt(tiny, tmp_path):
    from simplefold.io.fasta import read_sequences
    from simplefold.io.structure import read_structure, write_structure

    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">rec1 first\n{SEQ_B}\n>rec2\n{SEQ_A}\n")
    records = read_sequences(fasta)
    results = fold([SEQ_A, ("named", SEQ_B), records[0]], model=tiny, num_samples=2, seed=3, num_steps=STEPS,
                     batch_size=2)
    assert [r.name for r in results] == ["seq_0", "named", "rec1"]
    assert results[2].target.source == f"{fasta}:1"
    for r, seq in zip(results, (SEQ_A, SEQ_B, SEQ_B)):
        assert len(r.samples) == 2 and [s.index for s in r.samples] == [0, 1]
        assert sorted(s.rank for s in r.samples) == [1, 2]
        assert r.best.mean_plddt == max(s.mean_plddt for s in r.samples)
        for s in r.samples:
            st = s.structure
            assert st.sequences == (seq,)
            assert s.plddt.shape == (len(seq),) and np.all((s.plddt > 0) & (s.plddt < 100))
            # per-residue pLDDT on every atom of the residue
            chain = st.chains[0]
            np.testing.assert_allclose(chain.b_factors, s.plddt[chain.atom_residue], rtol=1e-6)
            # centred in Å
            assert np.abs(st.coords.mean(0)).max() < 1e-2
    # same target name + seed -> same structure, whatever else is in the call
    np.testing.assert_array_equal(results[1].structures[0].coords,
                                  fold(("named", SEQ_B), tiny, num_samples=2, seed=3, num_steps=STEPS,
                                         batch_size=2)[0].structures[0].coords)
    # the structures are writable and readable
    out = tmp_path / "ens.cif"
    write_structure(out, results[0].ensemble_structures())
    back = read_structure(out)
    assert back.sequences == (SEQ_A,)
    mean = np.mean([s.plddt for s in results[0].samples], axis=0)
    np.testing.assert_allclose(back.chains[0].b_factors, mean[back.chains[0].atom_residue], atol=0.01)


def test_fold_rejects_bad_targets(tiny):
    with pytest.raises(TargetError, match="empty sequence"):
        fold([("ok", SEQ_A), ("bad", "")], tiny, num_steps=STEPS)
    with pytest.raises(TargetError, match="several chains"):
        fold("MKTAY:GSHML", tiny, num_steps=STEPS)
    with pytest.raises(TypeError, match="sequence #0"):
        as_targets([42])


def test_as_targets_names_are_safe_and_unique():
    ts = as_targets([("a/b", "mk ta"), ("a/b", "GG"), "AAA"])
    assert [t.name for t in ts] == ["a_b", "a_b_2", "seq_2"]
    assert ts[0].sequence == "MKTA"


def test_read_targets_keeps_good_records_of_a_bad_file(tmp_path):
    f = tmp_path / "in.fasta"
    f.write_text(f">good1\n{SEQ_A}\n>bad\nMKT1AY\n>empty\n>good2 x\n{SEQ_B}\n>good1\nAAAA\n>two\nMKT:GSH\n")
    ts = read_targets(f)
    assert [t.name for t in ts] == ["good1", "bad", "empty", "good2", "good1_2", "two"]
    assert [t.error is None for t in ts] == [True, False, False, True, False, True]
    assert f"{f}:4" in ts[1].error and "digit" in ts[1].error
    assert "empty record" in ts[2].error and "duplicate" in ts[4].error
    assert ts[5].sequence == "MKT:GSH"
    with pytest.raises(TargetError, match="several chains"):
        check_target(ts[5])
    with pytest.raises(TargetError, match="digit"):
        check_target(ts[1])


def test_read_targets_folder_unnamed_record_and_cross_file_duplicate(tmp_path):
    a, b = tmp_path / "a.fasta", tmp_path / "b.fasta"
    a.write_text(f">x\n{SEQ_A}\n>\nMKT\n")
    b.write_text(f">y\n{SEQ_B}\n>X dup\nGG\n")
    ts = read_targets(tmp_path)
    assert [t.name for t in ts] == ["x", "a_line3", "y", "X"]
    assert [t.error is None for t in ts] == [True, False, True, False]
    assert ts[1].error.startswith(f"{a}:3: record 'a_line3': empty record name") and ts[1].source == f"{a}:3"
    assert ts[2].source == f"{b}:1" and ts[2].sequence == SEQ_B
    assert ts[3].error.startswith(f"{b}:3: record 'X': duplicate record name (also in {a}:1)")
    assert ts[3].description == "X dup" and ts[3].source == f"{b}:3"


def test_parameter_count_matches_official_sizes():
    from simplefold.model import FoldingConfig

    # official counts from instantiating the PyTorch models (spec §1.8)
    assert count_parameters(FoldingConfig.simplefold_100M()) == pytest.approx(96_680_488, rel=1e-3)
    assert count_parameters(FoldingConfig.simplefold_1_6B()) == pytest.approx(1_588_589_864, rel=1e-3)
    assert count_parameters(FoldingConfig.simplefold_3B()) == pytest.approx(2_864_973_224, rel=1e-3)


def test_plan_respects_budget_batch_size_and_devices():
    from simplefold.model import FoldingConfig

    cfg = FoldingConfig.simplefold_100M()
    t = Target("t", "A" * 300)
    opts = FoldOptions(num_samples=10, num_steps=100, plddt=False)
    big = plan_target(t, cfg, opts, budget=80 * 10**9)
    assert big.bucket_tokens == 320 and big.chunk == 10 and big.num_chunks == 1 and big.error is None
    est = estimate_memory(cfg, big.bucket_tokens, big.bucket_atoms, 1)
    budget = est.params + est.features + 3 * est.per_sample + 1
    small = plan_target(t, cfg, opts, budget=budget)
    assert small.chunk == 3 and small.num_chunks == 4 and small.memory_bytes <= budget
    assert plan_target(t, cfg, dataclasses.replace(opts, batch_size=2), budget=80 * 10**9).chunk == 2
    # 3 devices: per-device chunk rounded up, total a multiple of 3
    assert plan_target(t, cfg, opts, budget=80 * 10**9, num_devices=3).chunk == 12
    # too long for the budget: an error naming the target, not an exception
    huge = plan_target(Target("huge", "A" * 3000), cfg, opts, budget=2 * 10**9)
    assert huge.chunk == 0 and "huge" in huge.error and "memory budget" in huge.error
    # time estimate grows with steps and samples
    assert plan_target(t, cfg, dataclasses.replace(opts, num_steps=200), budget=10**11).seconds == pytest.approx(
        2 * big.seconds, rel=0.05
    )


def test_plan_reads_only_configs(tmp_path, monkeypatch):
    """plan() on a released name needs no weights (the weights manager must not be touched)."""
    from simplefold.weights import cache

    def boom(*a, **k):
        raise AssertionError("plan() tried to resolve weights")

    monkeypatch.setattr(cache, "resolve", boom)
    plans = plan([("a", SEQ_A), ("bad", "")], "simplefold_3B", FoldOptions(num_samples=2, max_memory_gb=100))
    assert plans[0].error is None and plans[0].memory_bytes > 4 * 2.8e9  # 3B weights in float32
    assert "empty sequence" in plans[1].error
    table = format_plan(plans)
    assert "a " in table and "FAILS" in table and "2 targets, 1 would fail" in table
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        plan([SEQ_A], "simplefold_42M")


def test_demo_model_resolution_message():
    try:
        path = demo_model_path()
    except ModelNotFoundError as exc:
        assert "not bundled" in str(exc)
    else:
        assert (path / "config.json").is_file()


@pytest.mark.slow
def test_samples_sharded_over_two_devices_match_one_device(tmp_path):
    """With 2 (fake CPU) devices the sample axis is sharded over a mesh; results equal one device."""
    script = textwrap.dedent(
        f"""
        import numpy as np, jax
        from flax import nnx
        from simplefold.predict.engine import Folder
        from simplefold.predict.loading import LoadedModel
        from simplefold.predict.options import FoldOptions
        from simplefold.predict.targets import Target
        from simplefold.model import FoldingConfig, FoldingDiT
        assert len(jax.devices()) == 2
        cfg = FoldingConfig.tiny()
        net = FoldingDiT(cfg, rngs=nnx.Rngs(0))
        st = nnx.state(net, nnx.Param)
        st = jax.tree.map(lambda x: x if x.any() else 0.002 * jax.random.normal(jax.random.key(1), x.shape, x.dtype), st)
        nnx.update(net, st)
        m = LoadedModel(network=net, config=cfg, name="tiny")
        opts = FoldOptions(num_samples=3, seed=7, num_steps={STEPS}, plddt=False)
        two = Folder(m, opts)
        assert two.mesh is not None
        r2 = two.fold_target(Target("a", "{SEQ_A}"))
        assert r2.plan.chunk == 4  # 3 samples rounded up to a multiple of 2 devices
        r1 = Folder(m, opts, devices=jax.devices()[:1]).fold_target(Target("a", "{SEQ_A}"))
        a = np.stack([s.structure.coords for s in r1.samples])
        b = np.stack([s.structure.coords for s in r2.samples])
        np.testing.assert_array_equal(a, b)
        assert np.abs(a[0] - a[1]).max() > 1.0
        print("OK", np.abs(a - b).max())
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout


def test_esm_conditioned_model_uses_esm_features(tmp_path):
    """An ESM-conditioned model gets esm_s from the given encoder (tiny ESM2 fixture, 3 layers x 64)."""
    from conftest import PARITY
    from simplefold.esm import esm_features
    from simplefold.weights.esm import load_official_esm2

    encoder = load_official_esm2(PARITY / "esm2_t2_d64.pt")
    net = random_tiny(0, condition="esm", esm_dim=64, esm_num_layers=3)
    model = LoadedModel(network=net, config=net.config, name="tiny_esm", esm=encoder, esm_cache=tmp_path / "cache")
    opts = FoldOptions(num_samples=1, seed=1, num_steps=STEPS, plddt=False)
    res = Folder(model, opts).fold_target(Target("a", SEQ_B))
    assert res.samples[0].structure.sequences == (SEQ_B,)
    assert model.describe()["esm"] == encoder.identity
    assert list((tmp_path / "cache").rglob("*.npy"))  # features went through the cache
    # passing the same features explicitly gives the same structure; other features do not
    esm_s = esm_features(encoder, [SEQ_B])[0]
    same = Folder(model, opts).fold_target(Target("a", SEQ_B), esm_s=esm_s)
    np.testing.assert_array_equal(same.samples[0].structure.coords, res.samples[0].structure.coords)
    other = Folder(model, opts).fold_target(Target("a", SEQ_B), esm_s=esm_s[::-1].copy())
    assert np.abs(other.samples[0].structure.coords - res.samples[0].structure.coords).max() > 1e-3

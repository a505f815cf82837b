"""simplefold.predict: the fold API, targets, model resolution, devices and ESM conditioning.

conftest's tiny random network with 20 sampler steps keeps this fast; the compilations land in
the persistent cache set up by conftest. Bit-identity across chunks and buckets:
``tests/test_reproducible.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import random_tiny

from simplefold.predict import fold
from simplefold.predict.engine import Folder
from simplefold.predict.loading import LoadedModel, ModelNotFoundError, demo_model_path
from simplefold.predict.options import FoldOptions
from simplefold.predict.targets import Target, TargetError, as_targets, check_target, read_targets

SEQ_A = "MKTAYIAKQRQISFVKSHFSRQ"  # 22 residues -> bucket 32
SEQ_B = "GSHMLEDPVNNEWQY"  # 15 residues -> bucket 32
# 20 steps: with fewer, the first Euler step from t = 1e-4 (w ~ 99) blows coordinates up to ~1e3 Å
STEPS = 20


def test_fold_api_inputs_results_and_plddt(tiny_model, tmp_path):
    from simplefold.io.fasta import read_sequences
    from simplefold.io.structure import read_structure, write_structure

    fasta = tmp_path / "two.fasta"
    fasta.write_text(f">rec1 first\n{SEQ_B}\n>rec2\n{SEQ_A}\n")
    records = read_sequences(fasta)
    results = fold([SEQ_A, ("named", SEQ_B), records[0]], model=tiny_model, num_samples=2, seed=3, num_steps=STEPS,
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
                                  fold(("named", SEQ_B), tiny_model, num_samples=2, seed=3, num_steps=STEPS,
                                         batch_size=2)[0].structures[0].coords)
    # the structures are writable and readable
    out = tmp_path / "ens.cif"
    write_structure(out, results[0].ensemble_structures())
    back = read_structure(out)
    assert back.sequences == (SEQ_A,)
    mean = np.mean([s.plddt for s in results[0].samples], axis=0)
    np.testing.assert_allclose(back.chains[0].b_factors, mean[back.chains[0].atom_residue], atol=0.01)


def test_fold_rejects_bad_targets(tiny_model):
    with pytest.raises(TargetError, match="empty sequence"):
        fold([("ok", SEQ_A), ("bad", "")], tiny_model, num_steps=STEPS)
    with pytest.raises(TargetError, match="several chains"):
        fold("MKTAY:GSHML", tiny_model, num_steps=STEPS)
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
    (tmp_path / "c.fasta").write_bytes(bytes(range(200, 256)) * 4)  # a binary file among them
    ts = read_targets(tmp_path)
    assert [t.name for t in ts] == ["x", "a_line3", "y", "b.X", "c_line1"]
    assert [t.error is None for t in ts] == [True, False, True, True, False]
    assert ts[1].error.startswith(f"{a}:3: record 'a_line3': empty record name") and ts[1].source == f"{a}:3"
    assert ts[2].source == f"{b}:1" and ts[2].sequence == SEQ_B
    # the second "x"/"X" is folded too, under a name qualified by its file; its source says where it is
    assert ts[3].sequence == "GG" and ts[3].description == "X dup" and ts[3].source == f"{b}:3"
    assert "not UTF-8" in ts[4].error and str(tmp_path / "c.fasta") in ts[4].error


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


def test_esm_conditioned_model_uses_esm_features(tmp_path, esm_encoder):
    """An ESM-conditioned model gets esm_s from the given encoder (tiny ESM2 fixture, 3 layers x 64)."""
    from simplefold.esm import esm_features

    encoder = esm_encoder
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


def test_fold_with_a_progress_bar_gives_the_same_samples(tiny_model):
    """progress=True runs each trajectory in segments (for the step bar): same coordinates and
    pLDDT bit for bit as without a bar."""
    kw = dict(model=tiny_model, num_samples=3, seed=11, num_steps=STEPS, batch_size=2)
    quiet = fold([SEQ_A, ("b", SEQ_B)], **kw)
    shown = fold([SEQ_A, ("b", SEQ_B)], progress=True, **kw)
    for a, b in zip(quiet, shown, strict=True):
        for sa, sb in zip(a.samples, b.samples, strict=True):
            np.testing.assert_array_equal(sa.structure.coords, sb.structure.coords)
            np.testing.assert_array_equal(sa.plddt, sb.plddt)

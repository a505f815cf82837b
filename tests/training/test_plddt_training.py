"""pLDDT head training (simplefold.training.plddt, ``simplefold train-plddt``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES, REPO

from simplefold.evaluation import metrics
from simplefold.training import plddt as P


# ----------------------------------------------------------------------------- targets


def test_token_lddt_hand_computed():
    # three tokens; atoms: 0 = CA0, 1 = CB0, 2 = CA1 (GLY: rep = CA), 3 = CA2, 4 = CB2
    true = np.array([[0, 0, 0], [1.5, 0, 0], [4, 0, 0], [20, 0, 0], [10, 0, 0]], float)
    pred = true.copy()
    pred[1] = [1.5, 0.7, 0]  # CB0 moved
    pred[4] = [11.2, 0, 0]  # CB2 moved by 1.2 Å along x
    rep = np.array([1, 2, 4])
    ctr = np.array([0, 2, 3])
    mask = np.ones(5, bool)
    lddt, valid = P.token_lddt_targets(pred, true, mask, rep, ctr)
    # token 0 (CB0): pairs to CA0 (d 1.5) and CA1 (d 2.5); CA2 at 20 Å is beyond 15 Å
    e_ca0 = abs(np.hypot(1.5, 0.7) - 1.5)  # 0.155 -> all 4 thresholds
    e_ca1 = abs(np.hypot(2.5, 0.7) - 2.5)  # 0.096 -> all 4
    assert e_ca0 < 0.5 and e_ca1 < 0.5
    # token 1 (CA1 is its own rep, the identical atom pair is excluded): CA0 (d 4) only; CA2 at 16 Å no
    # token 2 (CB2): CA0 at 10 Å (error 1.2 -> thresholds 2, 4), CA1 at 6 Å (error 1.2 -> 2, 4),
    #   CA2 at 10 Å (error 1.2 -> 2, 4)
    np.testing.assert_allclose(lddt, [1.0, 1.0, 0.5], atol=1e-6)
    assert valid.tolist() == [True, True, True]

    # unresolved CA0: token 0 keeps CA1 only; token 1 loses its only pair; token 2 keeps CA1, CA2
    mask[0] = False
    lddt, valid = P.token_lddt_targets(pred, true, mask, rep, ctr)
    assert valid.tolist() == [True, False, True]
    np.testing.assert_allclose(lddt, [1.0, 0.0, 0.5], atol=1e-6)
    # unresolved representative atom: token not scored
    mask[:] = True
    mask[4] = False
    _, valid = P.token_lddt_targets(pred, true, mask, rep, ctr)
    assert valid.tolist() == [True, True, False]


def _real_chain():
    from simplefold.io.structure import read_structure

    return read_structure(FIXTURES / "training" / "1PGA.pdb.gz").chains[0]


def test_token_lddt_matches_metrics_lddt_on_ca():
    """With rep = centre = CA the target is the per-residue CA lDDT of ``metrics.lddt``."""
    chain = _real_chain()
    ca, ca_mask = chain.atom_coords("CA")
    rng = np.random.default_rng(0)
    pred = ca + rng.normal(scale=1.5, size=ca.shape)
    idx = np.arange(len(ca))
    lddt, valid = P.token_lddt_targets(pred[None], ca, ca_mask, idx, idx)
    ref = metrics.lddt(pred, ca, ca_mask, idx, per_residue=True)
    assert np.array_equal(valid, np.isfinite(ref) & ca_mask)
    np.testing.assert_allclose(lddt[0][valid], ref[valid], atol=1e-6)
    assert 0.2 < lddt[0][valid].mean() < 0.9  # a non-trivial case


def test_token_lddt_cb_against_loop():
    """CB (CA for GLY) representatives on a real chain against a direct double loop."""
    from simplefold import features as F

    chain = _real_chain()
    feats = F.featurize_chain(chain)
    a = int(feats["atom_pad_mask"].sum())
    true = feats["coords"][:a].astype(np.float64) * F.COORD_SCALE
    rng = np.random.default_rng(1)
    pred = true + rng.normal(scale=1.0, size=true.shape)
    mask = feats["atom_resolved_mask"][:a].astype(bool)
    rep = np.argmax(feats["token_to_rep_atom"], -1)
    ctr = np.argmax(feats["r_set_to_rep_atom"], -1)
    lddt, valid = P.token_lddt_targets(pred, true, mask, rep, ctr)
    for i in range(len(rep)):
        scores = []
        for j in range(len(ctr)):
            if rep[i] == ctr[j] or not (mask[rep[i]] and mask[ctr[j]]):
                continue
            dt = np.linalg.norm(true[rep[i]] - true[ctr[j]])
            if dt >= 15.0:
                continue
            err = abs(np.linalg.norm(pred[rep[i]] - pred[ctr[j]]) - dt)
            scores.append(0.25 * sum(err < c for c in (0.5, 1.0, 2.0, 4.0)))
        assert valid[i] == bool(scores)
        if scores:
            assert lddt[i] == pytest.approx(np.mean(scores), abs=1e-6)
    assert any(chain.res_names[i] == "GLY" for i in range(chain.num_residues))  # the CA-as-rep case is covered


def test_bins_and_loss():
    import jax.numpy as jnp

    got = P.lddt_to_bins(np.array([0.0, 0.0199, 0.02, 0.5, 0.999, 1.0]), 50)
    assert got.tolist() == [0, 0, 1, 25, 49, 49]
    logits = np.zeros((2, 3, 50), np.float32)
    logits[0, 0, 10] = 5.0
    target = np.array([[0.2, 0.9, 0.1], [0.5, 0.5, 0.5]], np.float32)
    mask = np.array([[1, 0, 0], [1, 1, 0]], np.float32)
    ce_hot = -(5.0 - np.log(np.exp(5.0) + 49))  # bin 10 = floor(0.2 * 50)
    want = (ce_hot + np.log(50.0)) / 2  # example 0: one token; example 1: uniform logits
    assert float(P.plddt_loss(jnp.asarray(logits), jnp.asarray(target), jnp.asarray(mask))) == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------- head training


class _Folding:  # the parts of a FoldingConfig the head needs
    name = "synthetic"
    hidden_size = 32
    num_heads = 2


def _synthetic_set(n: int, m: int = 16, seed: int = 0) -> P.ConfidenceSet:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, m, 32)).astype(np.float32)
    target = 1 / (1 + np.exp(-2 * latent[..., 0]))  # learnable from the latent
    mask = (rng.random((n, m)) > 0.1).astype(np.float32)
    pos = np.broadcast_to(np.arange(m, dtype=np.int32), (n, m))
    zeros = np.zeros((n, m), np.int32)
    arrays = {
        "latent": latent, "target": target.astype(np.float32), "mask": mask, "token_pad_mask": np.ones((n, m), np.float32),
        "residue_index": pos.copy(), "entity_id": zeros, "asym_id": zeros, "sym_id": zeros,
        "chain": np.arange(n, dtype=np.int32), "partial": np.zeros(n, np.int8),
        "start_time": np.zeros(n, np.float32), "allatom_lddt": target.mean(-1).astype(np.float32),
    }
    return P.ConfidenceSet(arrays, [f"c{i}" for i in range(n)])


def test_head_training_reduces_loss():
    train, dev = _synthetic_set(48), _synthetic_set(16, seed=1)
    cfg = P.plddt_config_from_dict({"head": {"depth": 1}, "fit": {"epochs": 12, "batch_size": 8, "lr": 3e-3,
                                                                   "warmup_steps": 5}})
    result = P.train_head(train, _Folding(), cfg, dev=dev, progress=False)
    hist = result.history
    assert len(hist) == 12 and result.best_epoch == 12  # without a holdout set: the last epoch
    assert hist[-1]["train_loss"] < 0.7 * hist[0]["train_loss"]
    plddt, loss = P.predict_plddt(result.head, dev)
    assert loss == pytest.approx(hist[-1]["dev_loss"], rel=1e-5)
    assert P.evaluate_predictions(plddt, dev)["token_pearson"] > 0.6  # learned the latent -> lDDT map


def test_head_training_keeps_best_holdout_epoch():
    train, holdout = _synthetic_set(24), _synthetic_set(8, seed=2)
    cfg = P.plddt_config_from_dict({"head": {"depth": 1}, "fit": {"epochs": 10, "batch_size": 8, "lr": 1e-2,
                                                                   "warmup_steps": 1}})
    result = P.train_head(train, _Folding(), cfg, holdout=holdout, progress=False)
    losses = [h["holdout_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 < 10  # it overfits 24 samples
    assert P.predict_plddt(result.head, holdout)[1] == pytest.approx(min(losses), rel=1e-5)


def test_split_by_chain():
    data = _synthetic_set(10)
    fit, held = P.split_by_chain(data, 0.3, seed=0)
    assert len(fit) == 7 and len(held) == 3
    assert not set(fit["chain"].tolist()) & set(held["chain"].tolist())
    assert P.split_by_chain(data, 0.0, seed=0)[1] is None


def test_confidence_set_roundtrip(tmp_path):
    data = _synthetic_set(3)
    data.fingerprint = "abc"
    back = P.ConfidenceSet.load(data.save(tmp_path / "set.npz"))
    assert back.chain_ids == data.chain_ids and back.fingerprint == "abc"
    for k, v in data.arrays.items():
        np.testing.assert_array_equal(back[k], v)
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.npz"):
        P.ConfidenceSet.load(tmp_path / "bad.npz")


def test_config_overrides_and_errors(tmp_path):
    from simplefold.training.config import ConfigError

    cfg = P.load_plddt_config(None, ["samples.num_steps=7", "samples.partial_start_times=[0.5]", "chains.max_val_chains=null"])
    assert cfg.samples.num_steps == 7 and cfg.samples.partial_start_times == (0.5,) and cfg.chains.max_val_chains is None
    with pytest.raises(ConfigError, match="fit.epoch"):
        P.load_plddt_config(None, ["fit.epoch=3"])
    bad = tmp_path / "c.json"
    bad.write_text('{"fit": {"epochs": "many"}}')
    with pytest.raises(ConfigError, match="c.json"):
        P.load_plddt_config(bad)
    repo_cfg = P.load_plddt_config(REPO / "train" / "demo_plddt.json")
    assert repo_cfg.samples.tau == 0.3


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    """A random tiny folding model (converted dir) and a 3-chain prepared dataset with train/dev."""
    from flax import nnx

    from simplefold.weights import checkpoints
    from simplefold.model import FoldingConfig, FoldingDiT
    from simplefold.io.dataset import prepare_dataset

    root = tmp_path_factory.mktemp("plddt")
    cfg = FoldingConfig.tiny(hidden_size=32, num_heads=2, depth=1, atom_hidden_size=32, atom_num_heads=2)
    model_dir = checkpoints.save_converted(FoldingDiT(cfg, rngs=nnx.Rngs(0)), root / "model")
    files = {"training/1PGA.pdb.gz": ("A", "train"), "structures/2HPR.pdb.gz": ("A", "train"),
             "structures/1PIN.pdb.gz": ("A", "dev")}
    split = root / "split.csv"
    split.write_text("file,chain,split\n" + "".join(f"{FIXTURES / f},{c},{s}\n" for f, (c, s) in files.items()))
    prepare_dataset([FIXTURES / f for f in files], root / "prepared", split_csv=split, workers=1, progress=False)
    return root, model_dir, root / "prepared"


_TINY = ["chains.max_tokens=32", "chains.max_atoms=256", "samples.num_steps=3", "samples.partial_num_steps=2",
         "fit.epochs=3", "fit.batch_size=4", "fit.warmup_steps=1"]


def test_train_plddt_cli_end_to_end(tiny_setup, monkeypatch, capsys):
    from simplefold.weights import checkpoints
    from simplefold.cli import main
    from simplefold.model.plddt import PLDDTModel

    root, model_dir, prepared = tiny_setup
    out = root / "head"
    args = ["train-plddt", "--model", str(model_dir), "--data", str(prepared), "-o", str(out),
            "--cache-dir", str(root / "cache"), "--no-progress", *_TINY]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["dev"]["samples"] == 4  # one dev chain x (2 from noise + 2 partial)
    head = checkpoints.load_converted(out)
    assert isinstance(head, PLDDTModel)
    assert head.config.hidden_size == 32 and head.config.depth == 2 and head.config.num_heads == 2
    saved = json.loads((out / P.METRICS_FILE).read_text())
    # two train chains: one is fitted, one held out for choosing the epoch
    assert saved["train"]["targets"]["samples"] == 4 and saved["holdout_chains"] == 1
    assert len(saved["history"]) == 3 and 1 <= saved["best_epoch"] <= 3
    assert sorted(p.name for p in (root / "cache").iterdir())[0].startswith("dev-")
    assert not [p for p in root.iterdir() if p.name.startswith(".head")]  # no temp dir left behind

    # an existing output is refused; with --overwrite the cached samples are reused (no sampling)
    assert main(args) == 2
    monkeypatch.setattr(P, "build_confidence_set", lambda *a, **k: pytest.fail("cache not used"))
    assert main([*args, "--overwrite"]) == 0
    capsys.readouterr()


def test_trained_head_is_used_by_predict(tiny_setup):
    """A head placed at <model>/plddt/ is picked up by load_model and gives per-residue pLDDT."""
    import shutil

    from simplefold.predict import fold
    from simplefold.predict.loading import load_model

    root, model_dir, prepared = tiny_setup
    out = root / "head_predict"
    cfg = P.load_plddt_config(None, [*_TINY, "chains.max_train_chains=1", "samples.num_partial=0", "fit.epochs=1"])
    P.train_plddt(str(model_dir), prepared, out, cfg, progress=False)
    bundle = root / "model_with_head"
    shutil.copytree(model_dir, bundle)
    shutil.copytree(out, bundle / "plddt")
    loaded = load_model(str(bundle))
    assert loaded.plddt_head is not None
    result = fold([("pep", "MKTAYIAKQRQISFVKSH")], model=loaded, num_steps=2)[0]
    plddt = result.samples[0].plddt
    assert plddt is not None and plddt.shape == (18,) and np.all((plddt >= 0) & (plddt <= 100))


def test_train_plddt_errors(tiny_setup, tmp_path):
    from simplefold.cli import main

    root, model_dir, prepared = tiny_setup
    assert main(["train-plddt", "--model", str(tmp_path / "nope"), "--data", str(prepared), "-o", str(tmp_path / "o")]) == 2
    assert main(["train-plddt", "--model", str(model_dir), "--data", str(tmp_path), "-o", str(tmp_path / "o")]) == 2
    cfg = P.load_plddt_config(None, [*_TINY, "chains.val_split=test"])
    with pytest.raises(ValueError, match="no records in split 'test'"):
        P.train_plddt(str(model_dir), prepared, tmp_path / "o", cfg, progress=False)

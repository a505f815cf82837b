"""Exporting a training run as a converted model (simplefold.training.export)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FIXTURES

from simplefold.training.export import ExportError, export_run, restore_run_model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step run of a tiny model (checkpoints at steps 2 and 3; EMA decay 0.5 so EMA != params)."""
    from simplefold.training.config import config_from_dict
    from simplefold.io.dataset import prepare_dataset
    from simplefold.training.loop import train

    root = tmp_path_factory.mktemp("export")
    files = {"training/1PGA.pdb.gz": ("A", "train"), "structures/2HPR.pdb.gz": ("A", "train")}
    split = root / "split.csv"
    split.write_text("file,chain,split\n" + "".join(f"{FIXTURES / f},{c},{s}\n" for f, (c, s) in files.items()))
    prepare_dataset([FIXTURES / f for f in files], root / "prepared", split_csv=split, workers=1, progress=False)
    config = config_from_dict({
        "model": {"preset": "tiny", "overrides": {"name": "tiny_run", "hidden_size": 32, "num_heads": 2, "depth": 1,
                                                  "atom_hidden_size": 32, "atom_num_heads": 2}},
        "data": {"data_dir": str(root / "prepared"), "max_tokens": 32, "max_atoms": 256, "multiplicity": 2,
                 "pad_to_max": True, "read_threads": 1, "prefetch": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "ema_decay": 0.5},
        "loop": {"output_dir": str(root / "run"), "max_steps": 3, "log_every": 1, "compute_dtype": "float32",
                 "progress_bar": False, "tensorboard": False},
        "checkpoint": {"every_steps": 2, "keep_last": 3, "keep_best": 0, "async_save": False},
        "validation": {"every_steps": 0},
    })
    train(config)
    return root, config


def _checkpoint_state(run_dir, config, step):
    """The raw train state of a checkpoint, restored with the training code's own checkpointer."""
    import jax

    from simplefold.training import checkpointing, state as state_lib

    model_cfg = state_lib.model_config(config.model, "float32")
    graphdef, init_fn = state_lib.state_initializer(model_cfg, state_lib.make_optimizer(config.optim))
    ckpt = checkpointing.RunCheckpointer(run_dir / "checkpoints", config.checkpoint)
    try:
        state, _, _ = ckpt.restore(step, jax.eval_shape(init_fn))
    finally:
        ckpt.close()
    return graphdef, state


def _outputs(module_or_model, feats, y, t):
    out = module_or_model(y, t, feats)
    return np.asarray(out["predict_velocity"]), np.asarray(out["latent"])


@pytest.fixture(scope="module")
def inputs():
    from simplefold import features as F
    from simplefold.io.structure import read_structure

    chain = read_structure(FIXTURES / "training" / "1PGA.pdb.gz").chains[0]
    feats = F.add_batch_axis(F.featurize_chain(chain))
    rng = np.random.default_rng(0)
    y = (0.5 * feats["coords"] + 0.5 * rng.normal(size=feats["coords"].shape)).astype(np.float32)
    return feats, y, np.array([0.5], np.float32)


def test_export_latest_is_the_ema_model(tiny_run, inputs, tmp_path):
    from flax import nnx

    from simplefold.weights import checkpoints

    root, config = tiny_run
    out = export_run(root / "run", tmp_path / "model")
    assert out == (tmp_path / "model").absolute()
    model = checkpoints.load_converted(out)
    assert model.config.name == "tiny_run" and model.config.hidden_size == 32 and model.config.dtype == "float32"
    provenance = json.loads((out / "train_config.json").read_text())
    assert provenance["step"] == 3 and provenance["weights"] == "ema"
    assert provenance["train_config"]["model"]["overrides"]["name"] == "tiny_run"

    graphdef, state = _checkpoint_state(root / "run", config, 3)
    feats, y, t = inputs
    v, lat = _outputs(model, feats, y, t)
    v_ema, lat_ema = _outputs(nnx.merge(graphdef, state["ema_params"], state["model_state"]), feats, y, t)
    v_raw, _ = _outputs(nnx.merge(graphdef, state["params"], state["model_state"]), feats, y, t)
    np.testing.assert_allclose(v, v_ema, rtol=0, atol=1e-6)
    np.testing.assert_allclose(lat, lat_ema, rtol=0, atol=1e-6)
    assert np.abs(v_raw - v_ema).max() > 1e-4  # EMA and raw weights differ, so the choice is tested


def test_export_step_and_raw_params(tiny_run, inputs, tmp_path):
    from flax import nnx

    from simplefold.weights import checkpoints

    root, config = tiny_run
    out = export_run(root / "run", tmp_path / "m2", step=2, use_ema=False)
    assert json.loads((out / "train_config.json").read_text())["step"] == 2
    graphdef, state = _checkpoint_state(root / "run", config, 2)
    feats, y, t = inputs
    v, _ = _outputs(checkpoints.load_converted(out), feats, y, t)
    v_raw, _ = _outputs(nnx.merge(graphdef, state["params"], state["model_state"]), feats, y, t)
    np.testing.assert_allclose(v, v_raw, rtol=0, atol=1e-6)


def test_export_never_overwrites_by_accident(tiny_run, tmp_path):
    root, _ = tiny_run
    target = tmp_path / "model"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(ExportError, match="already exists"):
        export_run(root / "run", target)
    assert (target / "keep.txt").exists()
    export_run(root / "run", target, overwrite=True)
    assert not (target / "keep.txt").exists() and (target / "config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp/backup dirs left


def test_export_errors(tiny_run, tmp_path):
    root, _ = tiny_run
    with pytest.raises(ExportError, match="not a training run"):
        export_run(tmp_path, tmp_path / "x")
    with pytest.raises(ExportError, match=r"no checkpoint of step 7 \(available: 2, 3\)"):
        restore_run_model(root / "run", step=7)
    with pytest.raises(ExportError, match="val/lddt"):  # this run never validated
        restore_run_model(root / "run", step="best")
    with pytest.raises(ExportError, match="step must be"):
        restore_run_model(root / "run", step="newest")
    assert not (tmp_path / "x").exists()


def test_select_best_step():
    """'best' picks the highest validation metric among checkpoints that carry it."""
    from simplefold.training import export

    class Manager:
        def all_steps(self):
            return [250, 500, 750, 1000]

        def metrics(self, step):
            return {500: {"val/lddt": 0.41}, 750: {"val/lddt": 0.38}, 1000: {"val/tm": 0.9}}.get(step)

    assert export._select_step(Manager(), "ckpts", "best", "val/lddt") == 500
    assert export._select_step(Manager(), "ckpts", None, "val/lddt") == 1000
    assert export._select_step(Manager(), "ckpts", "750", "val/lddt") == 750

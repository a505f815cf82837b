"""Training: config parsing, exact kill -9 resume, 1-vs-8-device and 2-process equivalence, learning check,
fine-tuning init from converted weights.

The heavy checks run ``simplefold train`` in subprocesses (as a user would) on a tiny model and a small
dataset prepared from fixture structures; the learning check over-fits one real protein (protein G
B1, ``fixtures/training/1PGA.pdb.gz``) and samples it back.
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import FIXTURES, REPO

from simplefold.training import config as C

PROTEIN = FIXTURES / "training" / "1PGA.pdb.gz"
EXTRA = (FIXTURES / "structures" / "1HIA_l_u.pdb.gz", FIXTURES / "structures" / "2HPR.pdb.gz")
TRAIN_KEYS = ("loss", "mse", "smooth_lddt_loss", "lddt", "grad_norm", "lr")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> pathlib.Path:
    """Prepared dataset: 1PGA (train) + two more small chains (train), every chain in 'train'."""
    from simplefold.io.dataset import prepare_dataset

    root = tmp_path_factory.mktemp("prepared")
    rows = ["file,chain,split"]
    from simplefold.io.structure import read_structure

    for f in (PROTEIN, *EXTRA):
        for c in read_structure(f).chains:
            rows.append(f"{f.resolve()},{c.chain_id},train")
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    out = root / "data"
    summary = prepare_dataset([PROTEIN, *EXTRA], out, split_csv=root / "split.csv", workers=1, progress=False)
    assert summary.records >= 3 and summary.files_error == 0
    return out


def _tiny_config(data_dir: pathlib.Path, out: pathlib.Path, **sections) -> dict:
    cfg = {
        "model": {"preset": "tiny", "overrides": {"condition": "embedding", "depth": 1}},
        "data": {"data_dir": str(data_dir), "max_tokens": 24, "max_atoms": 192, "multiplicity": 2,
                 "batch_per_device": 2, "pad_to_max": True, "read_threads": 1, "prefetch": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 4},
        "loop": {"output_dir": str(out), "max_steps": 30, "log_every": 1, "progress_bar": False,
                 "tensorboard": False, "compute_dtype": "float32"},
        "checkpoint": {"every_steps": 4, "keep_last": 2, "keep_best": 0},
        "validation": {"every_steps": 0},
        "mesh": {"distributed": "false"},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    env.update(extra)
    return env


def _train_cmd(config_path: pathlib.Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "simplefold", "-q", "train", "--config", str(config_path), *overrides]


def _metrics(run: pathlib.Path) -> dict[int, dict]:
    from simplefold.training.loop import read_metrics

    return {r["step"]: r for r in read_metrics(run) if "loss" in r}


def _final_state(run: pathlib.Path):
    import orbax.checkpoint as ocp

    steps = sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    return ocp.StandardCheckpointer().restore((run / "checkpoints" / str(steps[-1]) / "state").absolute())


# ----------------------------------------------------------------------------- config


def test_config_defaults_file_and_overrides(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"optim": {"lr": 3e-4}, "model": {"overrides": {"depth": 2}}}))
    cfg = C.load_config(path, ["loop.max_steps=7", "model.overrides.condition=embedding", "data.max_length=null"])
    assert cfg.optim.lr == 3e-4 and cfg.loop.max_steps == 7 and cfg.data.max_length is None
    assert dict(cfg.model.overrides) == {"depth": 2, "condition": "embedding"}
    assert cfg.optim.warmup_steps == C.OptimSection().warmup_steps  # untouched default
    assert C.config_from_dict(json.loads(cfg.to_json())) == cfg  # JSON round trip


def test_learning_rate_schedule_official_and_cosine_decay():
    from simplefold.training.state import learning_rate_schedule

    official = learning_rate_schedule(C.OptimSection(lr=1e-3, min_lr=1e-6, warmup_steps=20))
    assert float(official(0)) == pytest.approx(1e-6, rel=1e-4) and float(official(10)) == pytest.approx(0.5e-3, rel=1e-2)
    assert float(official(20)) == float(official(10_000)) == pytest.approx(1e-3)  # then constant
    decay = learning_rate_schedule(C.OptimSection(lr=1e-3, min_lr=1e-5, warmup_steps=20, decay_steps=580))
    assert float(decay(10)) == pytest.approx(float(official(10)), rel=1e-2)  # same warm-up
    assert float(decay(20)) == pytest.approx(1e-3)
    assert float(decay(20 + 290)) == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-3)  # half-way down the cosine
    assert float(decay(600)) == float(decay(5000)) == pytest.approx(1e-5)
    no_warmup = learning_rate_schedule(C.OptimSection(lr=1e-3, min_lr=1e-5, warmup_steps=0, decay_steps=100))
    assert float(no_warmup(0)) == pytest.approx(1e-3) and float(no_warmup(100)) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="decay_steps"):
        learning_rate_schedule(C.OptimSection(decay_steps=-1))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["optim.learning_rate=1"], r"optim.*learning_rate"),
        (["optim.lr=fast"], r"optim\.lr.*number"),
        (["loop.max_steps=1.5"], r"loop\.max_steps.*integer"),
        (["nosuch.key=1"], r"nosuch"),
        (["lr=1"], r"lr=1"),
        (["loop.max_steps"], r"loop\.max_steps"),
        (["data.pad_to_max=1"], r"data\.pad_to_max.*true/false"),
    ],
)
def test_config_errors_name_the_key(overrides, match):
    with pytest.raises(C.ConfigError, match=match):
        C.apply_overrides(C.TrainConfig(), overrides)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"optim": {"lr": 1e-3,}}')
    with pytest.raises(C.ConfigError, match=r"bad\.json.*line 1"):
        C.load_config(bad)
    bad.write_text('{"optimizer": {}}')
    with pytest.raises(C.ConfigError, match=r"bad\.json.*optimizer"):
        C.load_config(bad)
    with pytest.raises(C.ConfigError, match="missing.json"):
        C.load_config(tmp_path / "missing.json")


def test_shipped_configs_parse():
    train_dir = REPO / "train"
    # train/ also holds pLDDT-head configs (``simplefold train-plddt``), which have no "model" section
    configs = sorted(p for p in train_dir.glob("*.json") if "model" in json.loads(p.read_text()))
    assert len(configs) >= 8
    for path in configs:
        cfg = C.load_config(path)
        from simplefold.training.state import model_config

        if cfg.model.init_from is None:
            model_config(cfg.model, "float32")  # preset + overrides build a FoldingConfig


def test_cli_rejects_bad_override(tmp_path, capsys):
    from simplefold.cli import main

    path = tmp_path / "c.json"
    path.write_text("{}")
    assert main(["train", "--config", str(path), "optim.nope=1"]) == 2
    assert main(["train", "--config", str(path), "--print-config", "optim.lr=0.5"]) == 0
    assert json.loads(capsys.readouterr().out)["optim"]["lr"] == 0.5


# ----------------------------------------------------------------------------- kill -9 resume


@pytest.mark.slow
def test_kill9_resume_is_exact(prepared, tmp_path):
    """kill -9 a run at a random step after its first checkpoint; the restarted run's losses (and final
    weights) equal those of an uninterrupted run bit for bit."""
    max_steps = 30
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    for d in (ref_dir, run_dir):
        (tmp_path / f"{d.name}.json").write_text(json.dumps(_tiny_config(prepared, d)))
    ref = subprocess.run(_train_cmd(tmp_path / "ref.json"), env=_env(), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr[-3000:]

    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randint(6, max_steps - 6)
    proc = subprocess.Popen(_train_cmd(tmp_path / "run.json"), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    ckpt_dir = run_dir / "checkpoints"
    while time.time() < deadline and proc.poll() is None:
        have_ckpt = ckpt_dir.is_dir() and any(p.name.isdigit() for p in ckpt_dir.iterdir())
        if have_ckpt and max(_metrics(run_dir), default=0) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"run was not killed (seed {seed}, rc {proc.returncode})"
    killed_at = max(_metrics(run_dir))
    assert killed_at < max_steps, f"run finished before the kill (seed {seed})"

    resumed = subprocess.run(_train_cmd(tmp_path / "run.json"), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = json.loads(resumed.stdout)["start_step"]
    assert 4 <= start <= killed_at and start % 4 == 0, (start, killed_at, seed)

    got, want = _metrics(run_dir), _metrics(ref_dir)
    assert sorted(got) == sorted(want) == list(range(1, max_steps + 1))
    for step in range(1, max_steps + 1):
        for key in TRAIN_KEYS:
            assert got[step][key] == want[step][key], (step, key, got[step][key], want[step][key], seed)
    a, b = _final_state(run_dir), _final_state(ref_dir)
    import jax

    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# ----------------------------------------------------------------------------- multi-device / multi-process

_MESH_SCRIPT = r"""
import json, sys
import jax, numpy as np
from simplefold.training import config as C, loader as L, sharding as Sh, state as S, step as St

cfg = C.config_from_dict(json.loads(sys.argv[1]))
mcfg = S.model_config(cfg.model, "float32")
tx = S.make_optimizer(cfg.optim)
graphdef, init_fn = S.state_initializer(mcfg, tx)
it = L.make_train_iterator(cfg.data, batch_per_host=8)
batches = [next(it) for _ in range(2)]

def run(data, fsdp, devices):
    mesh = Sh.make_mesh(C.MeshSection(data=data, fsdp=fsdp), devices)
    shard = Sh.state_shardings(jax.eval_shape(init_fn), mesh, 1024)
    fn = St.make_train_step(graphdef, tx, cfg.optim, cfg.loss, cfg.data.multiplicity)
    step = jax.jit(fn, in_shardings=(shard, Sh.batch_sharding(mesh)), out_shardings=(shard, Sh.replicated(mesh)))
    with jax.set_mesh(mesh):
        state = jax.jit(init_fn, out_shardings=shard)()
        losses = []
        for b in batches:
            state, m = step(state, Sh.global_batch(b, mesh))
            losses.append(float(m["loss"]))
    return losses, jax.device_get(state["params"]), Sh.fraction_sharded(state)

assert jax.device_count() == 8
l1, p1, f1 = run(1, 1, jax.devices()[:1])
l8, p8, f8 = run(4, 2, jax.devices())
diff = [float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8))]
scale = [float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(p1)]
print(json.dumps({"loss1": l1, "loss8": l8, "param_max_abs_diff": max(diff), "param_max_abs": max(scale),
                  "frac_sharded_1": f1, "frac_sharded_8": f8}))
"""


@pytest.mark.slow
def test_one_vs_eight_devices(prepared, tmp_path):
    """The same 2 train steps on 1 device and on a data=4 x fsdp=2 mesh (params sharded) agree.

    Tolerance: losses rtol 1e-5; parameters within 1e-5 of the largest parameter magnitude. (AdamW
    divides each gradient by its own RMS, so a weight whose gradient is at float32 round-off level
    moves by up to ~lr in a direction set by summation order; exact equality is not expected.)"""
    cfg = _tiny_config(prepared, tmp_path / "unused")
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    res = subprocess.run([sys.executable, "-c", _MESH_SCRIPT, json.dumps(cfg)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(out)
    assert out["frac_sharded_1"] == 0.0 and out["frac_sharded_8"] > 0.5
    np.testing.assert_allclose(out["loss8"], out["loss1"], rtol=1e-5)
    assert out["param_max_abs_diff"] <= 1e-5 * out["param_max_abs"], out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(prepared, tmp_path):
    """Two processes (jax.distributed on 127.0.0.1, gloo CPU collectives, 1 device each, 1 protein per
    device) reproduce a 1-process run with 2 proteins per device: same global batches, same losses."""
    steps = 6
    ref_dir, dist_dir = tmp_path / "ref", tmp_path / "dist"
    (tmp_path / "ref.json").write_text(json.dumps(_tiny_config(prepared, ref_dir, loop={"max_steps": steps})))
    port = _free_port()
    (tmp_path / "dist.json").write_text(json.dumps(_tiny_config(
        prepared, dist_dir, loop={"max_steps": steps}, data={"batch_per_device": 1},
        mesh={"distributed": "true", "coordinator_address": f"127.0.0.1:{port}", "num_processes": 2,
              "cpu_collectives": "gloo"},
    )))
    procs = [
        subprocess.Popen(_train_cmd(tmp_path / "dist.json", f"mesh.process_id={i}"), env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    ref = subprocess.run(_train_cmd(tmp_path / "ref.json"), env=_env(), capture_output=True, text=True, timeout=300)
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert ref.returncode == 0, ref.stderr[-3000:]
    got, want = _metrics(dist_dir), _metrics(ref_dir)
    assert sorted(got) == sorted(want) == list(range(1, steps + 1))
    for step in got:
        for key in ("loss", "grad_norm"):
            np.testing.assert_allclose(got[step][key], want[step][key], rtol=1e-5, err_msg=f"step {step} {key}")


# ----------------------------------------------------------------------------- fine-tuning init


def test_init_from_converted_weights(prepared, tmp_path):
    """``model.init_from`` a ``save_converted`` directory starts from exactly those weights."""
    import jax
    from flax import nnx

    from simplefold.weights import checkpoints
    from simplefold.model import FoldingConfig, FoldingDiT
    from simplefold.training.loop import train

    src = FoldingDiT(FoldingConfig.tiny(depth=1), rngs=nnx.Rngs(123))
    checkpoints.save_converted(src, tmp_path / "converted")
    cfg = _tiny_config(prepared, tmp_path / "ft", loop={"max_steps": 1},
                       model={"init_from": str(tmp_path / "converted"), "init_seed": 0},
                       optim={"lr": 1e-9, "min_lr": 1e-9, "warmup_steps": 0})
    result = train(C.config_from_dict(cfg))
    assert result.final_step == 1
    restored = _final_state(tmp_path / "ft")
    want = jax.tree.leaves(nnx.state(src, nnx.Param))
    got = jax.tree.leaves(restored["params"])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6)  # one step of lr 1e-9
    # init_seed 0 would have produced different weights: the init really came from the directory
    fresh = jax.tree.leaves(nnx.state(FoldingDiT(FoldingConfig.tiny(depth=1), rngs=nnx.Rngs(0)), nnx.Param))
    assert any(not np.allclose(np.asarray(g), np.asarray(f)) for g, f in zip(got, fresh))


# ----------------------------------------------------------------------------- learning check


@pytest.mark.slow
def test_learns_one_protein(tmp_path):
    """Over-fit protein G B1 (56 residues) with a tiny model; a sampled structure (EMA weights) must be
    within 2 Å CA-RMSD (after superposition) of the native.

    The structure keeps its frame (``data.augment=false``) so a ~1M-parameter model can memorise it in
    ~100 CPU steps; everything else (loader, loss, optimizer, EMA, sampler, metrics) is the real path.
    """
    from simplefold.io.dataset import prepare_dataset
    from simplefold.training.loop import train

    (tmp_path / "split.csv").write_text(f"file,chain,split\n{PROTEIN.resolve()},A,train\n")
    data = tmp_path / "data"
    prepare_dataset([PROTEIN], data, split_csv=tmp_path / "split.csv", workers=1, progress=False)
    steps = 120
    cfg = {
        "model": {"preset": "tiny", "overrides": {"condition": "embedding"}},
        "data": {"data_dir": str(data), "val_split": "train", "max_tokens": 64, "max_atoms": 512,
                 "multiplicity": 8, "augment": False, "read_threads": 1, "prefetch": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 20, "ema_decay": 0.9},
        "loop": {"output_dir": str(tmp_path / "run"), "max_steps": steps, "log_every": 20, "seed": 0,
                 "progress_bar": False, "tensorboard": False, "compute_dtype": "float32"},
        "checkpoint": {"every_steps": 10_000, "keep_best": 0},
        "validation": {"every_steps": steps, "num_proteins": 1, "num_steps": 250, "max_tokens": 64, "seed": 0},
        "mesh": {"distributed": "false"},
    }
    t0 = time.time()
    result = train(C.config_from_dict(cfg))
    # the validation sample is scored with metrics.rmsd (Kabsch superposition) over resolved CAs
    rmsd = result.last_validation["val/rmsd_ca"]
    print(f"learning check: CA-RMSD {rmsd:.2f} A after {steps} steps, {time.time() - t0:.0f} s")
    assert rmsd < 2.0
    first = _metrics(tmp_path / "run")[20]["loss"]
    assert result.last_metrics["loss"] < first


# ----------------------------------------------------------------------------- ESM-conditioned training

ESM_PT = FIXTURES / "parity" / "esm2_t2_d64.pt"  # a 2-layer, 64-wide ESM2 (E = 3 representations)


def test_esm_condition_needs_esm_model(prepared, tmp_path):
    from simplefold.training.loop import train

    cfg = _tiny_config(prepared, tmp_path / "esm", model={"overrides": {"condition": "esm", "esm_num_layers": 3}})
    with pytest.raises(ValueError, match=r"condition='esm' training needs data\.esm_model"):
        train(C.config_from_dict(cfg))


def test_esm_conditioned_training(prepared, tmp_path):
    """The loader adds ``esm_s`` of each *cropped* sequence; a tiny ESM-conditioned model trains."""
    from simplefold import esm
    from simplefold.training import loader
    from simplefold.weights.esm import load_official_esm2
    from simplefold.io.dataset import load_chain, load_records
    from simplefold.training.loop import train

    cfg = C.config_from_dict(_tiny_config(
        prepared, tmp_path / "esm", loop={"max_steps": 2},
        model={"overrides": {"condition": "esm", "esm_num_layers": 3, "esm_dim": 64, "depth": 1}},
        data={"esm_model": str(ESM_PT), "augment": False},
    ))
    records = load_records(prepared, "train")
    it = loader.make_train_iterator(cfg.data, condition="esm", batch_per_host=2, records=records)
    batch = next(it)
    builder = loader.ExampleBuilder(str(prepared), tuple(records), cfg.data, "esm")
    encoder = load_official_esm2(ESM_PT)
    for p in range(2):
        record = builder.record_for(p)
        rng = np.random.default_rng([cfg.data.shuffle_seed, 1, p])
        idx = loader.crop_chain(load_chain(prepared, record), cfg.data, rng)
        seq = "".join(record.sequence[i] for i in idx)
        want = esm.esm_features(encoder, [seq])[0]
        m = len(idx)
        assert batch["esm_s"].shape[2:] == (3, 64)
        np.testing.assert_allclose(batch["esm_s"][p, :m], want, rtol=1e-5, atol=1e-5)
        assert not batch["esm_s"][p, m:].any()  # padding
    result = train(cfg)
    assert result.final_step == 2 and np.isfinite(result.last_metrics["loss"])


def test_unstable_validation_sampler_is_refused(prepared, tmp_path):
    """validation.num_steps below 230 (official log grid) would validate with exploding samples."""
    from simplefold.training.loop import train

    cfg = _tiny_config(prepared, tmp_path / "run", validation={"every_steps": 2, "num_proteins": 1, "num_steps": 10})
    with pytest.raises(ValueError, match=r"validation\.num_steps=10.*unstable.*>= 230"):
        train(C.config_from_dict(cfg))
    assert not (tmp_path / "run" / "checkpoints").exists()

"""Benchmark the jitted training step on this machine: steps/s and residues/s per config.

Usage::

    python benchmarks/train_step.py                          # tiny (train/tiny_cpu.json) and simplefold_100M
    python benchmarks/train_step.py --configs train/tiny_cpu.json --steps 20

Each config's model, crop budget (``data.max_tokens`` / ``max_atoms``), multiplicity and batch are
used as they are (``pad_to_max``: every step sees a full crop); the batch is synthetic (random
residues, random coordinates; an ESM-conditioned model gets random ``esm_s``, so the ESM2 forward
that the loader runs is NOT included). One compile step and one warm step, then ``--steps`` timed steps on one
device. "CPU s/step" is process CPU time (all threads), which tells the work of a step
independently of contention on a shared machine. residues/s counts crop residues (without
multiplicity copies).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np
from flax import nnx

from simplefold import features as F
from simplefold.training import config as C
from simplefold.training import loader, sharding, state as S, step as St

_AA = "ARNDCQEGHILKMFPSTWYV"


def synthetic_batch(cfg: C.TrainConfig, condition: str, esm_shape: tuple[int, int], rng) -> dict[str, np.ndarray]:
    """One padded batch of ``batch_per_device`` random proteins filling the crop budget."""
    data = cfg.data
    seq = "".join(rng.choice(list(_AA), size=data.max_tokens))
    feats = F.featurize_sequence(seq)
    while int(feats["atom_pad_mask"].sum()) > data.max_atoms:  # shorten until the atom budget holds
        seq = seq[:-1]
        feats = F.featurize_sequence(seq)
    n = feats["coords"].shape[0]
    feats["coords"] = rng.standard_normal((n, 3)).astype(np.float32) * feats["atom_pad_mask"][:, None]
    feats["atom_resolved_mask"] = feats["atom_pad_mask"].astype(bool)
    if condition == "esm":
        feats["esm_s"] = rng.standard_normal((len(seq), *esm_shape)).astype(np.float32)
    ex = loader.compact_features(feats, condition=condition)
    return loader.pad_batch([ex] * data.batch_per_device, data.max_tokens, data.max_atoms, pad_to_max=True)


def bench(path: str, steps: int, dtype: str) -> dict[str, float | str]:
    cfg = C.load_config(path)
    mcfg = S.model_config(cfg.model, S.resolve_compute_dtype(dtype))
    tx = S.make_optimizer(cfg.optim)
    model = S.build_model(mcfg, 0)
    graphdef, params, rest = S.split_model(model)
    state = S.init_state(params, rest, tx, 0)
    mesh = sharding.make_mesh(C.MeshSection(data=1, fsdp=1), jax.devices()[:1])
    batch = synthetic_batch(cfg, mcfg.condition, (mcfg.esm_num_layers, mcfg.esm_dim), np.random.default_rng(0))
    shardings = sharding.state_shardings(state, mesh, cfg.mesh.min_shard_elements)
    state = jax.device_put(state, shardings)  # committed like the loop's state: no recompile after step 1
    fn = jax.jit(
        St.make_train_step(graphdef, tx, cfg.optim, cfg.loss, cfg.data.multiplicity),
        in_shardings=(shardings, sharding.batch_sharding(mesh)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    with jax.set_mesh(mesh):
        gb = sharding.global_batch(batch, mesh)
        t0 = time.perf_counter()
        state, m = fn(state, gb)
        jax.block_until_ready(m)
        compile_s = time.perf_counter() - t0
        state, m = fn(state, gb)  # one untimed warm step
        jax.block_until_ready(m)
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            state, m = fn(state, gb)
        jax.block_until_ready(m)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    residues = float(np.sum(batch["token_pad_mask"]))
    return {
        "config": path, "params_M": S.count_params(params) / 1e6, "tokens": cfg.data.max_tokens,
        "atoms": int(batch["atom_pad_mask"].shape[1]), "mult": cfg.data.multiplicity,
        "batch": cfg.data.batch_per_device, "compile_s": compile_s, "steps_per_s": steps / wall,
        "residues_per_s": residues * steps / wall, "cpu_s_per_step": cpu / steps,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="+", default=["train/tiny_cpu.json", "train/simplefold_100M.json"])
    p.add_argument("--steps", type=int, default=5, help="timed steps after the compile step")
    p.add_argument("--dtype", default="auto", help="compute dtype (auto: float32 on CPU)")
    args = p.parse_args(argv)
    print(f"backend {jax.default_backend()}, {jax.device_count()} device(s); {args.steps} timed steps after compile")
    cols = ("config", "params_M", "tokens", "atoms", "mult", "batch", "compile_s", "steps_per_s", "residues_per_s",
            "cpu_s_per_step")
    print(" | ".join(cols))
    for path in args.configs:
        r = bench(path, args.steps, args.dtype)
        print(" | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Sampler speed and memory for the SimpleFold-100M architecture (random weights), on this machine.

Measures

* seconds per sampler step (one network call + update) at L = 128 and 256 residues, one sample,
  timed on a short run after compilation and extrapolated to the official 500 steps (the
  fixed cost of a run is a few array transfers, negligible next to 500 network calls);
* memory of 1 vs 16 samples at L = 128: XLA's buffer plan for the whole jitted trajectory
  (arguments = weights + features, temporaries, output), next to the analytic
  ``sampler.estimate_sample_memory``.

Usage::

    python benchmarks/sample.py [--lengths 128 256] [--steps 20] [--samples 1 16] [--threads N]

Reference: the official PyTorch sampler took 103 s for 500 steps at L = 128 (one sample) on this
CPU. ESM features are random (the ESM network is not part of the sampler).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _features(length: int, seed: int):
    import numpy as np

    from simplefold import features

    rng = np.random.default_rng(seed)
    seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), length))
    esm_s = rng.normal(size=(length, 37, 2560)).astype(np.float32)
    return features.add_batch_axis(features.featurize_sequence(seq, esm_s=esm_s), 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    p.add_argument("--steps", type=int, default=20, help="timed steps per run (extrapolated to --full-steps)")
    p.add_argument("--full-steps", type=int, default=500)
    p.add_argument("--samples", type=int, nargs="+", default=[1, 16], help="sample counts for the memory table")
    p.add_argument("--memory-length", type=int, default=128)
    p.add_argument("--arch", default="simplefold_100M")
    args = p.parse_args(argv)

    import jax
    from flax import nnx

    from simplefold.sampling import sampler
    from simplefold.model.config import FoldingConfig
    from simplefold.model.folding import FoldingDiT, FoldingModel

    factory = {"simplefold_100M": FoldingConfig.simplefold_100M, "simplefold_360M": FoldingConfig.simplefold_360M}[args.arch]
    cfg = factory()
    t0 = time.perf_counter()
    model = FoldingModel(FoldingDiT(cfg, rngs=nnx.Rngs(0)))
    n_params = sum(x.size for x in jax.tree.leaves(model.state))
    param_bytes = sum(x.nbytes for x in jax.tree.leaves(model.state))
    print(f"# {args.arch}: {n_params / 1e6:.1f} M parameters (random init {time.perf_counter() - t0:.1f} s); "
          f"backend {jax.default_backend()}, {os.cpu_count()} CPUs visible", flush=True)

    print("\n## Speed: one sample, tau = 0.1")
    print("(wall = elapsed seconds; cpu = process CPU seconds over all threads, which is what a shared,")
    print(" oversubscribed machine still measures faithfully; on an idle machine wall ≈ cpu / threads)")
    print(f"| L | N atoms | compile+{args.steps} steps wall (s) | {args.steps} steps wall (s) | wall s / step | "
          f"cpu s / step | extrapolated {args.full_steps} steps wall (s) | extrapolated cpu (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for length in args.lengths:
        feats = _features(length, seed=length)
        n_atoms = feats["atom_pad_mask"].shape[1]
        key = jax.random.key(0)
        t0 = time.perf_counter()
        jax.block_until_ready(sampler.sample(model, feats, num_steps=args.steps, tau=0.1, key=key))
        first = time.perf_counter() - t0
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(sampler.sample(model, feats, num_steps=args.steps, tau=0.1, key=key))
        run, cpu = time.perf_counter() - t0, time.process_time() - c0
        per_step, cpu_step = run / args.steps, cpu / args.steps
        print(f"| {length} | {n_atoms} | {first:.1f} | {run:.2f} | {per_step:.3f} | {cpu_step:.3f} | "
              f"{per_step * args.full_steps:.0f} | {cpu_step * args.full_steps:.0f} |", flush=True)

    print(f"\n## Memory at L = {args.memory_length} (whole {args.full_steps}-step trajectory; MiB)")
    print("| samples | XLA arguments | XLA temporaries | XLA total | analytic estimate |")
    print("|---|---|---|---|---|")
    feats = _features(args.memory_length, seed=args.memory_length)
    n_atoms = feats["atom_pad_mask"].shape[1]
    mib = 2.0**20
    for s in args.samples:
        st = sampler.memory_stats(model, feats, num_samples=s, num_steps=args.full_steps)
        est = sampler.estimate_sample_memory(cfg, n_atoms, args.memory_length, s, param_bytes=param_bytes)
        print(f"| {s} | {st['argument'] / mib:.0f} | {st['temp'] / mib:.0f} | {st['total'] / mib:.0f} | {est / mib:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

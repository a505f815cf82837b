"""Benchmark one FoldingDiT forward (random weights) on this machine: ms per call and peak memory.

Usage::

    python benchmarks/forward.py                       # simplefold_100M, L = 64 128 256 512, B = 1
    python benchmarks/forward.py --lengths 128 --dtype bfloat16 --repeats 10

Inputs are synthetic but realistic in size: heavy-atom counts of random standard residues
(about 8 atoms per residue) padded to a multiple of 32, and ``esm_s`` of shape (1, L, 37, 2560).
Time is the median (and min) of ``--repeats`` jitted calls after one compile call, with the features
already on the device (as in a sampler loop). "CPU ms" is the process CPU time per call (all
threads): on a shared machine it tells how much work a call is, independently of contention. Memory is the device's peak bytes in use when the backend
reports it, else the process's peak RSS (``ru_maxrss``, monotonic over the run).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

from simplefold.model import OFFICIAL_SIZES, FoldingConfig, FoldingDiT
from simplefold.devtools.synthetic import synthetic_features
from simplefold.model.folding import FoldingModel

def _peak_memory() -> tuple[float, str]:
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return stats["peak_bytes_in_use"] / 2**20, "device peak"
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"


def _matmul_gflops() -> float:
    """Throughput of a 2048^3 float32 matmul right now: tells how contended the CPU is."""
    a = jax.numpy.ones((2048, 2048), jax.numpy.float32)
    f = jax.jit(lambda m: m @ m)
    jax.block_until_ready(f(a))
    t0 = time.perf_counter()
    for _ in range(3):
        jax.block_until_ready(f(a))
    return 3 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="simplefold_100M", choices=sorted(OFFICIAL_SIZES))
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    cfg = OFFICIAL_SIZES[args.size](dtype=args.dtype)
    t0 = time.perf_counter()
    model = FoldingModel(FoldingDiT(cfg, rngs=nnx.Rngs(args.seed)))
    init_s = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    print(f"# {args.size} ({args.dtype}), B=1, backend={jax.default_backend()}, init {init_s:.1f} s", flush=True)
    print(f"# calibration: f32 2048^3 matmul at {_matmul_gflops():.0f} GFLOP/s now (~465 on 2 idle cores)", flush=True)
    print(f"{'L':>5} {'N atoms':>8} {'compile+1st (s)':>16} {'median ms':>10} {'min ms':>8} {'CPU ms':>8} {'peak MiB':>9}  memory")
    for length in args.lengths:
        feats = model.prepare(synthetic_features(length, cfg, rng))
        n = feats["ref_pos"].shape[1]
        x = rng.normal(size=(1, n, 3)).astype(np.float32)
        t = np.array([0.5], np.float32)
        t0 = time.perf_counter()
        jax.block_until_ready(model(x, t, feats))
        first = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            jax.block_until_ready(model(x, t, feats))
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        mem, kind = _peak_memory()
        print(
            f"{length:>5} {n:>8} {first:>16.2f} {statistics.median(times):>10.1f} {min(times):>8.1f} "
            f"{statistics.median(cpu):>8.0f} {mem:>9.0f}  {kind}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

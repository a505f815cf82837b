"""Peak RSS per phase of a real ``simplefold predict`` on random-weight checkpoints, against ``--dry-run``'s estimate.

Builds (once, under ``--work``) random-weight converted checkpoints of a real folding size
(``--size``, default simplefold_100M) conditioned on a real ESM2 (``--esm``, default the 650M, whose
random checkpoint is quick to write; ``esm2_t36_3B_UR50D`` is the released models' encoder, 5.7 GB of
float16 on disk and in RAM), with the model's own pLDDT head in ``plddt/`` (a head of the folding
width; its latent is the folding network's own, so the pLDDT phase keeps that network resident).
The folding config is the released one with its ESM input sized to ``--esm`` and another name,
so no released weights are looked up. Then runs ``simplefold predict`` in a fresh process (the
ESM weights resolved to the random checkpoint, an empty embedding cache) and compares the peak RSS
of each phase (``OUT/.simplefold/memory.json``: ``VmHWM`` reset at each phase start) with the
planner's per-phase estimate (:func:`simplefold.predict.planning.plan`).

    .venv/bin/python benchmarks/memory.py --length 256 --steps 10
    .venv/bin/python benchmarks/memory.py --length 256 --steps 10 --precision bfloat16
    .venv/bin/python benchmarks/memory.py --esm esm2_t36_3B_UR50D --official-plddt --size simplefold_3B --precision bfloat16

Random weights fold nothing meaningful; memory does not depend on the values.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("benchmarks.memory")

#: A 256-residue test protein is cut from this (repeated) sequence.
_SEQUENCE = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEGLYTHMKALRPDEDRLSPLHSVYVDQWDWERVMGDGERQFSTLKSTVEAIWAGIKATEAAVSEEFGLAPFLPDQIHFVHSQELLSRYPDLDAKGRERAIAKDLGAVFLVGIGGKLSDGHRHDVRAPDYDDW"


def write_random_esm2(config_name: str, out: Path, seed: int = 0) -> Path:
    """A converted ESM2 directory (the layout of :func:`simplefold.weights.esm.convert_official_esm2`)
    with random float16 weights, written one layer group at a time (peak: one layer)."""
    import orbax.checkpoint as ocp

    from simplefold.model import esm2
    from simplefold.weights import esm as esm_weights

    if (out / "config.json").is_file():
        return out
    config = esm2.ESM2_CONFIGS[config_name]
    shapes = esm2.param_shapes(config)
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ckptr = ocp.Checkpointer(ocp.StandardCheckpointHandler())

    def rand(shape):
        return (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)

    layer_paths = esm2._leaf_paths(shapes["layers"])
    for i in range(config.num_layers):
        group: dict = {}
        for path in layer_paths:
            if path == ("inv_freq",):
                esm2._set(group, path, esm2.rotary_inv_freq(config.head_dim))
            else:
                esm2._set(group, path, rand(tuple(esm2._get(shapes["layers"], path).shape[1:])))
        ckptr.save(tmp / "params" / f"layer_{i:03d}", args=ocp.args.StandardSave(group))
    top: dict = {}
    for path in esm2._leaf_paths(shapes):
        if path[0] != "layers":
            esm2._set(top, path, rand(tuple(esm2._get(shapes, path).shape)))
    ckptr.save(tmp / "params" / "top", args=ocp.args.StandardSave(top))
    ckptr.close()
    meta = {
        "format": esm_weights._CONVERTED_FORMAT,
        "conversion_version": esm_weights.ESM_CONVERSION_VERSION,
        "config": config.to_dict(),
        "groups": ["top"] + [f"layer_{i:03d}" for i in range(config.num_layers)],
        "dtype": "float16",
        "source_file": f"random_{config_name}",
        "source_sha256": f"random-{config_name}-{seed}",
    }
    (tmp / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
    tmp.rename(out)
    return out


def write_random_model(size: str, esm_name: str, out: Path, seed: int = 0) -> Path:
    """A converted folding model of the released ``size`` reading ``esm_name``'s representations,
    random weights, with its own random pLDDT head (folding width, depth 4) in ``plddt/``."""
    from flax import nnx

    from simplefold.model import FoldingDiT, PLDDTConfig, PLDDTHead
    from simplefold.model.config import OFFICIAL_SIZES
    from simplefold.model.esm2 import ESM2_CONFIGS
    from simplefold.weights.checkpoints import save_converted

    if (out / "plddt" / "config.json").is_file():
        return out
    esm = ESM2_CONFIGS[esm_name]
    cfg = dataclasses.replace(OFFICIAL_SIZES[size](), name=f"random_{size}", esm_num_layers=esm.num_representations,
                              esm_dim=esm.embed_dim)
    save_converted(FoldingDiT(cfg, rngs=nnx.Rngs(seed)), out)
    head = PLDDTConfig(name=f"random_head_{size}", hidden_size=cfg.hidden_size, num_heads=cfg.num_heads, depth=4)
    save_converted(PLDDTHead(head, rngs=nnx.Rngs(seed + 1)), out / "plddt")
    return out


def write_random_numpy(cfg, out: Path, seed: int = 0, kernel_dtype=np.float32) -> Path:
    """A converted folding model / pLDDT head (``save_converted``'s layout) with random float32
    weights drawn leaf by leaf in NumPy: one copy of the weights (a module initialised in JAX and
    then saved holds two), for sizes like the 1.6B pLDDT trunk. ``kernel_dtype`` bfloat16 stores
    the linear kernels so (the 3B: a float32 checkpoint cannot be written from one process in
    24 GB; it loads as bfloat16 inference storage without the float32-to-bf16 read transient)."""
    import orbax.checkpoint as ocp
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT, PLDDTHead
    from simplefold.weights import checkpoints

    if (out / "config.json").is_file():
        return out
    cls = FoldingDiT if isinstance(cfg, FoldingConfig) else PLDDTHead
    state = nnx.state(nnx.eval_shape(lambda: cls(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(state):
        shape = var.get_value().shape
        value = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        var.set_value(value.astype(kernel_dtype) if path and path[-1] == "kernel" else value)
    out.mkdir(parents=True, exist_ok=True)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(out / checkpoints._STATE_DIR, state, force=True)
    ckptr.wait_until_finished()
    (out / checkpoints._CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    return out


def _child(args) -> int:
    """The measured process: ``simplefold predict`` with the ESM weights resolved to the random checkpoint."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from simplefold.cli import main
    from simplefold.predict.loading import ESM_WEIGHTS
    from simplefold.weights import cache

    from simplefold.predict.loading import PLDDT_HEAD_WEIGHTS, PLDDT_LATENT_WEIGHTS

    real = cache.resolve
    dirs = {ESM_WEIGHTS: Path(args.esm_dir)}
    if args.official_plddt:
        dirs[PLDDT_LATENT_WEIGHTS] = Path(args.work) / "random_simplefold_1.6B"
        dirs[PLDDT_HEAD_WEIGHTS] = Path(args.work) / "random_plddt_module_1.6B"
    cache.resolve = lambda name, **kw: dirs[name] if name in dirs else real(name, **kw)
    argv = ["predict", args.sequence, "-o", args.out, "--model", args.model_dir, "--steps", str(args.steps),
            "--precision", args.precision, "--no-progress", "--offline", "--format", "cif"]  # cif: random weights give
    # coordinates wider than PDB's columns
    return main(argv)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/simplefold_memory_bench"))
    ap.add_argument("--size", default="simplefold_100M")
    ap.add_argument("--esm", default="esm2_t33_650M_UR50D")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--official-plddt", action="store_true",
                    help="the released pLDDT pair's sizes (random 1.6B latent, 6.4 GB, + official head) instead of "
                         "an own head; needs --esm esm2_t36_3B_UR50D (the released configs read ESM2-3B)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sequence", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", help=argparse.SUPPRESS)
    ap.add_argument("--esm-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return _child(args)
    if args.build:  # in its own process, so that the benchmark's parent gives the memory back
        from simplefold.model import FoldingConfig, PLDDTConfig

        write_random_numpy(FoldingConfig.simplefold_1_6B(), args.work / "random_simplefold_1.6B")
        write_random_numpy(PLDDTConfig.plddt_1_6B(), args.work / "random_plddt_module_1.6B", seed=1)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    from simplefold.predict import planning
    from simplefold.predict.options import FoldOptions

    args.work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    esm_dir = write_random_esm2(args.esm, args.work / args.esm)
    if args.official_plddt:
        from flax import nnx

        from simplefold.model import FoldingDiT
        from simplefold.model.config import OFFICIAL_SIZES
        from simplefold.weights.checkpoints import save_converted

        if subprocess.call([sys.executable, __file__, "--build", "--work", str(args.work)]) != 0:
            return 1
        model_dir = args.work / f"{args.size}_official_pair"
        if not (model_dir / "config.json").is_file():  # the released config and name: the official pair is used
            if args.size in ("simplefold_100M", "simplefold_360M", "simplefold_700M"):
                save_converted(FoldingDiT(OFFICIAL_SIZES[args.size](), rngs=nnx.Rngs(0)), model_dir)
            else:  # 1.1B and up: written leaf by leaf, bf16 kernels on disk (see write_random_numpy)
                import ml_dtypes

                write_random_numpy(OFFICIAL_SIZES[args.size](), model_dir, kernel_dtype=ml_dtypes.bfloat16)
    else:
        model_dir = write_random_model(args.size, args.esm, args.work / f"{args.size}_{args.esm}")
    logger.info("random checkpoints ready in %.0f s", time.perf_counter() - t0)
    seq = (_SEQUENCE * (args.length // len(_SEQUENCE) + 1))[: args.length]
    out = args.work / f"out_{args.precision}_{args.length}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, SIMPLEFOLD_CACHE=str(args.work / "cache"))
    shutil.rmtree(args.work / "cache" / "esm_features", ignore_errors=True)  # the ESM phase must run
    t0 = time.perf_counter()
    rc = subprocess.call([sys.executable, __file__, "--child", "--sequence", seq, "--out", str(out), "--model-dir",
                          str(model_dir), "--esm-dir", str(esm_dir), "--steps", str(args.steps), "--precision",
                          args.precision, "--work", str(args.work)] + (["--official-plddt"] if args.official_plddt else []),
                         env=env)
    wall = time.perf_counter() - t0
    if not (out / ".simplefold" / "memory.json").is_file():
        logger.error("predict failed (exit %d)", rc)
        return rc or 1
    if rc != 0:
        logger.warning("predict exit %d (the target failed after its phases ran; see the log)", rc)
    measured = json.loads((out / ".simplefold" / "memory.json").read_text())
    plan_ = planning.plan([("bench", seq)], str(model_dir), FoldOptions(precision=args.precision, num_steps=args.steps))[0]
    pair = "official pLDDT pair (1.6B latent + head)" if args.official_plddt else "own pLDDT head"
    est = dict(plan_.phase_bytes)
    print(f"{args.size} + {args.esm} + {pair} (random weights), L = {args.length}, 1 sample, {args.steps} steps, "
          f"{args.precision}; predict took {wall:.0f} s; per-phase peaks exact: {measured.get('exact')}")
    print(f"{'phase':<10} {'estimate GB':>11} {'measured GB':>11} {'est/meas':>8}")
    for phase, peak in measured["peak_rss_bytes"].items():
        e = est.get(phase)
        ratio = f"{e / peak:.2f}" if e else "-"
        print(f"{phase:<10} {(e or 0) / 1e9:>11.2f} {peak / 1e9:>11.2f} {ratio:>8}")
    print(f"{'largest':<10} {plan_.memory_bytes / 1e9:>11.2f} {max(measured['peak_rss_bytes'].values()) / 1e9:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where the time of one FoldingDiT forward goes: each stage jitted on its own, ms per call.

Usage::

    python benchmarks/profile_forward.py                 # simplefold_100M, L = 128 and 256
    python benchmarks/profile_forward.py --lengths 128 --repeats 9 --ynn both

Each stage of ``FoldingDiT.__call__`` runs as its own jitted function on the inputs the previous
stage produced (features already on the device), so the rows add up to about the whole forward
(the last row) minus fusion across stage boundaries. "CPU ms" is process CPU time per call (all
threads), which is less sensitive to other load on a shared machine than wall time.
``--ynn on`` compiles with XLA:CPU's YNNPACK fusions (the default jax.jit), ``off`` as
``simplefold.reproducible.stable_jit`` does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from simplefold.devtools.synthetic import synthetic_features
from simplefold.model import OFFICIAL_SIZES, FoldingDiT
from simplefold.model import embeddings as emb
from simplefold.model.folding import FoldingModel, _device_features, _gather_tokens, _pool_atoms
from simplefold.model.precision import PRECISIONS, cast_for_inference, with_precision
from simplefold.reproducible import CPU_COMPILER_OPTIONS



def _timed(fn, args, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(*args))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall) * 1e3, statistics.median(cpu) * 1e3


def stages():
    """(name, fn(model, values) -> new values) per stage; each reads what earlier stages wrote.

    The stages follow :meth:`FoldingDiT.encode` (once per protein in the sampler) and
    :meth:`FoldingDiT.denoise` (every sampler step).
    """

    def encode(model, s):
        return {"ctx": model.encode(s["f"])}

    def condition(model, s):
        c = model.time_condition(s["t"]) + s["ctx"].length_c
        return {"c": jnp.broadcast_to(c, (s["x"].shape[0], c.shape[-1]))}

    def atom_input(model, s):
        ctx, x = s["ctx"], s["x"]
        coord = model.atom_pos_proj(emb.fourier_encode(x, model.freq_bands[...]))
        feat = jnp.broadcast_to(ctx.atom_feat, (x.shape[0], *ctx.atom_feat.shape[1:]))
        return {"atom_in": model.atom_in_proj(jnp.concatenate([feat.astype(coord.dtype), coord], axis=-1))}

    def encoder(model, s):
        h = model.context2atom_proj(s["atom_in"])
        h = model.atom_encoder_transformer(h, model.atom_enc_cond_proj(s["c"]), s["ctx"].atom_ctx)
        return {"atom_latent": model.atom2latent_proj(h)}

    def to_residues(model, s):
        ctx = s["ctx"]
        M = ctx.res_cond.shape[1]
        latent = _pool_atoms(s["atom_latent"], ctx.weight, ctx.atom_to_token_idx, M)
        res = jnp.broadcast_to(ctx.res_cond, latent.shape).astype(latent.dtype)
        return {"latent": model.esm_cat_proj(jnp.concatenate([latent, res], axis=-1)).astype(jnp.float32)}

    def trunk(model, s):
        return {"latent": model.trunk(s["latent"], s["c"], s["ctx"].token_ctx)}

    def decoder(model, s):
        ctx = s["ctx"]
        out = _gather_tokens(s["latent"], ctx.atom_to_token_idx) * ctx.weight[..., None] + s["atom_latent"]
        out = jax.nn.silu(model.latent2atom_proj_0(out))
        out = model.latent2atom_proj_3(model.latent2atom_proj_2(out.astype(jnp.float32)))
        out = model.atom_decoder_transformer(out, model.atom_dec_cond_proj(s["c"]), ctx.atom_ctx)
        return {"velocity": model.final_layer(out, s["c"])}

    return [
        ("encode (once per protein)", encode), ("condition (t + length)", condition),
        ("coords Fourier + atom_in_proj", atom_input), ("atom encoder", encoder),
        ("pool + ESM concat projection", to_residues), ("trunk", trunk), ("decoder + final layer", decoder),
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="simplefold_100M", choices=sorted(OFFICIAL_SIZES))
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--ynn", choices=("on", "off", "both"), default="off")
    p.add_argument("--precision", choices=PRECISIONS, default="float32", help="network precision (bfloat16: the mixed mode)")
    args = p.parse_args(argv)
    cfg = with_precision(OFFICIAL_SIZES[args.arch](), args.precision)
    model = cast_for_inference(FoldingDiT(cfg, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(model)
    modes = ("off", "on") if args.ynn == "both" else (args.ynn,)
    print(f"{args.arch} {args.precision}, jax {jax.__version__}, {jax.device_count()} device(s), repeats {args.repeats}")
    for L in args.lengths:
        feats = synthetic_features(L, cfg, np.random.default_rng(0))
        f = _device_features(FoldingModel(model).prepare(feats), cfg.condition)
        N = feats["ref_pos"].shape[1]
        base = {"f": f, "t": jnp.full((1,), 0.7, jnp.float32), "x": jax.random.normal(jax.random.key(0), (1, N, 3))}
        print(f"\nL = {L} (N = {N} atom slots)")
        print("| stage | " + " | ".join(f"ms (YNN {m}) | CPU ms" for m in modes) + " |")
        print("|---|" + "---|---|" * len(modes))
        rows: dict[str, list[str]] = {}
        totals = {m: [0.0, 0.0] for m in modes}
        for mode in modes:
            opts = dict(CPU_COMPILER_OPTIONS) if mode == "off" else None
            s = dict(base)
            for name, fn in stages():
                jitted = jax.jit(lambda st, s_in, fn=fn: fn(nnx.merge(graphdef, st), s_in), compiler_options=opts)
                out = jitted(state, s)
                wall, cpu = _timed(jitted, (state, s), args.repeats)
                rows.setdefault(name, []).append(f"{wall:.1f} | {cpu:.1f}")
                totals[mode][0] += wall
                totals[mode][1] += cpu
                s.update(out)
        whole = []
        for mode in modes:
            opts = dict(CPU_COMPILER_OPTIONS) if mode == "off" else None
            fwd = jax.jit(lambda st, x, t, ff: nnx.merge(graphdef, st)(x, t, ff), compiler_options=opts)
            wall, cpu = _timed(fwd, (state, base["x"], base["t"], dict(FoldingModel(model).prepare(feats))), args.repeats)
            whole.append(f"{wall:.1f} | {cpu:.1f}")
        for name, cells in rows.items():
            print(f"| {name} | " + " | ".join(cells) + " |")
        print("| sum of stages | " + " | ".join(f"{totals[m][0]:.1f} | {totals[m][1]:.1f}" for m in modes) + " |")
        print("| whole forward (one jit) | " + " | ".join(whole) + " |")


if __name__ == "__main__":
    main()

"""How precisely a trained model's one-step estimate x̂1 reproduces a native's local geometry, on the
linear path and along the sampler's own trajectory (the diagnosis in train/README.md section 5).

Usage::

    python benchmarks/denoising.py MODEL STRUCTURE [--chain A] [--draws 8] [--tau 0.1 0] [--seed 0]

MODEL is anything ``simplefold predict --model`` takes (an exported run, ``demo``); STRUCTURE a
PDB/mmCIF file of the native. Local error = distances of the atom pairs closer than 2.6 Å in the
native (bonds and bond angles), predicted minus native, in Å: mean signed (negative = short) and mean
absolute, over pairs and draws. Two tables:

* on the path x_t = t·x1 + (1−t)·x0 (x1 the centred native, x0 ~ N(0, I)): the error of x̂1 =
  x_t + (1−t)·v and of x_t itself, and Rg(x̂1)/Rg(native) — how much the network improves on its input;
* along the official Euler–Maruyama trajectory (default grid, 500 log-spaced steps) for each τ: the
  same at the first grid time ≥ each t, and of the final state (what ``predict`` writes).

Embedding-conditioned models only (``demo``, ``tiny`` runs); an ESM model needs its ESM features.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

#: pairs closer than this in the native (Å): covalent bonds and 1–3 (bond-angle) pairs
LOCAL_PAIR_CUTOFF = 2.6
TIMES = (0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("structure")
    p.add_argument("--chain", default=None, help="chain id (default: the first chain)")
    p.add_argument("--draws", type=int, default=8, help="noise draws / samples per row (default 8)")
    p.add_argument("--tau", type=float, nargs="+", default=[0.1, 0.0])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import jax.numpy as jnp

    from simplefold import features as F
    from simplefold.constants import COORD_SCALE
    from simplefold.io.structure import read_structure
    from simplefold.model.folding import host_features
    from simplefold.predict.loading import load_model
    from simplefold.sampling import sampler

    model = load_model(args.model)
    if model.condition != "embedding":
        sys.exit(f"{args.model}: condition {model.condition!r}; this script runs embedding-conditioned models only")
    chains = read_structure(args.structure).chains
    chain = next((c for c in chains if args.chain in (None, c.chain_id)), None)
    if chain is None:
        sys.exit(f"{args.structure}: no chain {args.chain!r} (has {[c.chain_id for c in chains]})")
    feats = F.featurize_chain(chain)
    pad = feats["atom_pad_mask"].astype(bool)  # the atoms the sampler moves
    real = pad & feats["atom_resolved_mask"].astype(bool)  # the atoms scored
    x1 = np.where(real[:, None], feats["coords"], 0.0).astype(np.float32)  # centred on the resolved atoms
    net_feats = host_features(F.add_batch_axis({k: v for k, v in feats.items() if k != "coords"}, 1), "embedding")
    net_feats = {k: jnp.asarray(v) for k, v in net_feats.items()}

    native = x1[real]
    d_native = np.linalg.norm(native[:, None] - native[None], axis=-1)
    i, j = np.nonzero(np.triu((d_native > 0) & (d_native < LOCAL_PAIR_CUTOFF / COORD_SCALE), 1))
    rg_native = np.sqrt((native**2).sum(-1).mean())

    def local(x: np.ndarray) -> tuple[float, float, float]:
        """(mean signed, mean absolute local error in Å, mean Rg ratio) of ``x`` ``(S, N, 3)``."""
        x = x[:, real]
        x = x - x.mean(1, keepdims=True)
        err = (np.linalg.norm(x[:, i] - x[:, j], axis=-1) - d_native[i, j]) * COORD_SCALE
        rg = np.sqrt((x**2).sum(-1).mean(1)) / rg_native
        return float(err.mean()), float(np.abs(err).mean()), float(rg.mean())

    def velocity(y: np.ndarray, t: float) -> np.ndarray:
        out = model.network(jnp.asarray(y, jnp.float32), jnp.full((y.shape[0],), t, jnp.float32), net_feats)
        return np.asarray(out["predict_velocity"], np.float32)

    def centred(y: np.ndarray) -> np.ndarray:
        return y - y[:, pad].mean(1, keepdims=True) * pad[None, :, None]

    rng = np.random.default_rng(args.seed)
    s = args.draws
    print(f"{args.model} on {args.structure} chain {chain.chain_id}: {int(real.sum())} atoms, "
          f"{len(i)} local pairs, {s} draws")
    print("\non the path     x̂1: signed  |err|  Rg×    x_t: signed  |err|")
    for t in TIMES:
        y = centred(t * x1[None] + (1.0 - t) * rng.standard_normal((s,) + x1.shape).astype(np.float32) * pad[:, None])
        xh = local(y + (1.0 - t) * velocity(y, t))
        st = local(y)
        print(f"  t = {t:4.2f}  {xh[0]:+12.3f} {xh[1]:6.3f} {xh[2]:5.3f}  {st[0]:+11.3f} {st[1]:6.3f}")

    cfg = sampler.SamplerConfig()
    grid = np.asarray(cfg.time_grid())
    for tau in args.tau:
        print(f"\ntrajectory τ = {tau:g} ({cfg.num_steps} steps)   x̂1: signed  |err|  Rg×    state: signed  |err|  Rg×")
        y = rng.standard_normal((s,) + x1.shape).astype(np.float32) * pad[:, None]
        pending = list(TIMES)
        for k in range(len(grid) - 1):
            t, t_next = float(grid[k]), float(grid[k + 1])
            yc = centred(y)
            v = velocity(yc, t)
            if pending and t >= pending[0]:
                while pending and t >= pending[0]:
                    pending.pop(0)
                xh, st = local(yc + (1.0 - t) * v), local(yc)
                print(f"  t = {t:5.3f} {xh[0]:+18.3f} {xh[1]:6.3f} {xh[2]:5.3f}  {st[0]:+13.3f} {st[1]:6.3f} {st[2]:5.3f}")
            eps = rng.standard_normal(y.shape).astype(np.float32) * pad[:, None]
            y = np.asarray(sampler.em_update(jnp.asarray(yc), jnp.asarray(v), t, t_next, jnp.asarray(eps), tau,
                                             cfg.w_cutoff))
        fin = local(centred(y))
        print(f"  final {'':>35} {fin[0]:+13.3f} {fin[1]:6.3f} {fin[2]:5.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Error of the bfloat16 mixed mode against float32: forward outputs and whole sampled structures.

Usage::

    python benchmarks/precision_error.py                 # fixtures + demo model, 500 steps
    python benchmarks/precision_error.py --steps 100 --samples 2

Prints one table:

* **forward**: the official-format fixture model (``tests/fixtures/parity``, random weights of the
  official code) on each fixture protein: max |bf16 - f32| and the relative L2 error, both as a
  fraction of the float32 output's scale (max |f32|), for ``predict_velocity`` and ``latent``;
* **sample**: whole trajectories from identical noise (same seed, same PRNG keys), float32 vs
  bfloat16: CA-RMSD (Å, after superposition) between the two final structures, per sample, for the
  fixture model (features of the fixture proteins) and for the bundled demo model through
  ``simplefold.fold`` (the sequences of ``data/examples``).

The full-scale 100M case (random weights) is measured by ``benchmarks/gpu_side_by_side.py``
(bf16 forward vs the official float32 outputs).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
PARITY = ROOT / "tests" / "fixtures" / "parity"
EXAMPLES = ROOT / "data" / "examples"
CASES = ("trpcage", "gb1", "villin_x")
PRECISIONS = ("float32", "bfloat16")


def _fixture_models():
    from simplefold.weights.checkpoints import load_official_model

    summary = json.loads((PARITY / "folding_d64_h4.json").read_text())["summary"]
    return {p: load_official_model(PARITY / "folding_d64_h4.ckpt", summary, precision=p) for p in PRECISIONS}


def forward_rows(models) -> list[list[str]]:
    rows = []
    for case in CASES:
        feats = dict(np.load(PARITY / f"features_{case}.npz"))
        ref = np.load(PARITY / f"forward_{case}.npz")
        out = {p: m(ref["noised_pos"], ref["t"], feats) for p, m in models.items()}
        cells = []
        for key in ("predict_velocity", "latent"):
            a, b = (np.asarray(out[p][key], np.float64) for p in PRECISIONS)
            scale = np.abs(a).max()
            cells.append(f"{np.abs(b - a).max() / scale:.2e} / {np.linalg.norm(b - a) / np.linalg.norm(a):.2e}")
        rows.append(["forward", "fixture d64 (official format)", case, *cells])
    return rows


def _ca_rmsd(a, b) -> float:
    from simplefold.evaluation.metrics import rmsd

    pa, ma = a.chain(a.chain_ids[0]).atom_coords("CA")
    pb, mb = b.chain(b.chain_ids[0]).atom_coords("CA")
    m = ma & mb
    return rmsd(pa[m], pb[m])


def fixture_sample_rows(models, steps: int, samples: int) -> list[list[str]]:
    from simplefold.sampling import sampler

    rows = []
    for case in CASES[:2]:
        feats = {k: v[:1] for k, v in np.load(PARITY / f"features_{case}.npz").items()}
        mask = feats["atom_pad_mask"][0].astype(bool)
        rms = []
        for k in range(samples):
            key = jax.random.key(k)
            x = {p: np.asarray(sampler.sample(m, feats, num_steps=steps, key=key))[0][mask] * 16.0 for p, m in models.items()}
            d = x["bfloat16"] - x["float32"]
            # all heavy atoms, no superposition: the same noise gives the same frame
            rms.append(float(np.sqrt((d ** 2).sum(-1).mean())))
        rows.append(["sample", f"fixture d64, {steps} steps", case, "all-atom RMSD (Å, same frame): "
                     + ", ".join(f"{r:.3f}" for r in rms), ""])
    return rows


def demo_sample_rows(steps: int, samples: int) -> list[list[str]]:
    from simplefold import fold
    from simplefold.io.fasta import parse_fasta

    rows = []
    for path in sorted(EXAMPLES.glob("*.fasta")):
        rec = parse_fasta(path)[0]
        res = {p: fold((rec.name, rec.sequence), "demo", num_samples=samples, num_steps=steps, plddt=False,
                       precision=p, offline=True)[0] for p in PRECISIONS}
        rms = [_ca_rmsd(a, b) for a, b in zip(res["float32"].structures, res["bfloat16"].structures)]
        rows.append(["sample", f"demo, {steps} steps, fold()", f"{rec.name} ({len(rec.sequence)} aa)",
                     "CA-RMSD (Å): " + ", ".join(f"{r:.3f}" for r in rms), ""])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500, help="sampler steps (official default 500)")
    p.add_argument("--samples", type=int, default=2, help="samples per protein")
    args = p.parse_args(argv)
    models = _fixture_models()
    rows = forward_rows(models) + fixture_sample_rows(models, args.steps, args.samples)
    rows += demo_sample_rows(args.steps, args.samples)
    print(f"bfloat16 mixed mode vs float32 (jax {jax.__version__}, {jax.default_backend()})\n")
    print("| kind | model | protein | forward: velocity max err / rel L2 (of max abs f32) · sample: bf16 vs f32 structure | forward: latent, same |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

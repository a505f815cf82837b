#!/usr/bin/env python
"""Make simplefold's PyTorch-derived package data and official-code golden fixtures.

Run with a Python that has torch, numpy, hydra-core, omegaconf and einops (the venv that
``../shared/tools/official/setup.sh`` builds; the official sampler module also
needs ``pip install tqdm mashumaro ihm modelcif rdkit`` there), with this repository on ``PYTHONPATH`` (only
NumPy-only modules of the package are imported) and, for the official subcommands, the
``src/simplefold`` folder of an extracted apple/ml-simplefold tree on ``PYTHONPATH`` too:

    VENV=~/.cache/simplefold-official/venv; SRC=~/.cache/simplefold-official/src
    PYTHONPATH=. $VENV/bin/python tools/official_fixtures.py package-tables
    PYTHONPATH=.:$SRC/src/simplefold $VENV/bin/python tools/official_fixtures.py official-tables
    PYTHONPATH=.:$SRC/src/simplefold $VENV/bin/python tools/official_fixtures.py forward
    PYTHONPATH=.:$SRC/src/simplefold $VENV/bin/python tools/official_fixtures.py sampler

Subcommands
  package-tables   simplefold/assets/torch_tables.npz: the constant tables of the official model
                   (absolute-PE omega, timestep / Fourier / RoPE / ESM-rotary frequencies, pLDDT bin
                   centres) evaluated with the same torch expressions as the official modules, for
                   every width in use (see ``simplefold.model.torch_tables``).
  official-tables  tests/fixtures/official/tables.npz: the same tables, but read out of the official
                   modules themselves (their sin/cos/polar/softmax replaced by identities while they
                   run), for every released width, plus the sampler's time grids. The tests check
                   the package against this independent extraction.
  forward          tests/fixtures/official/forward_<arch>.npz + <arch>.json: official FoldingDiT
                   outputs for a head-dim-72 architecture and for depth-1 versions of each released
                   width, with deterministic weights from ``simplefold.model.random_init`` (the
                   tests regenerate them from the seed; the json pins their sha256).
  sampler          tests/fixtures/official/sampler_hd72_trpcage.npz: a 500-step τ = 0.01 run of the
                   official EMSampler with the hd72 model, every noise draw recorded.

Everything runs on the CPU in float32 with one thread. Nothing here is imported by the package. The
official-code helpers (import, hydra build with overridden sizes, deterministic weights) are in
``simplefold.devtools.official``, shared with ``benchmarks/gpu_side_by_side.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import pathlib

import numpy as np

from simplefold.devtools import official

ROOT = pathlib.Path(__file__).resolve().parent.parent
PARITY = ROOT / "tests" / "fixtures" / "parity"
OFFICIAL_OUT = ROOT / "tests" / "fixtures" / "official"
TABLES_OUT = ROOT / "simplefold" / "assets" / "torch_tables.npz"

# (D, heads, atom width, atom heads) of the released foldingdit_*.yaml
RELEASED_WIDTHS = {
    "100M": (768, 12, 256, 4),
    "360M": (1024, 16, 256, 4),
    "700M": (1152, 16, 256, 4),
    "1.1B": (1280, 20, 384, 6),
    "1.6B": (1536, 24, 512, 8),
    "3B": (2048, 32, 640, 10),
}
PLDDT_WIDTH = (1536, 24)
# widths of the test fixtures and the demo / tiny presets, besides the released ones
EXTRA_WIDTHS = (64, 128, 144)
FIXTURE_SEED = 20261202


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def _meta(torch) -> dict:
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": np.__version__,
        "made": datetime.date.today().isoformat(),
        "by": "tools/official_fixtures.py",
    }


# ----------------------------------------------------------------------------- package tables
def package_tables(args) -> None:
    """Evaluate the official constant expressions with torch for every width in use."""
    torch = _torch()
    recs: list[tuple[str, dict, np.ndarray]] = []

    # AbsolutePositionEncoding.get_1d_pos_embed: D/2 frequencies; D = every multiple of 64
    # up to 2560 (all released trunk widths) and the fixture/demo widths
    dims = sorted(set(range(64, 2561, 64)) | set(EXTRA_WIDTHS))
    for d in dims:
        n = d // 2
        omega = 2 ** torch.linspace(0, math.log(224, 2) - 1, n)
        omega *= torch.pi
        recs.append(("abs_pe_omega", {"n": n, "max_wavelength": 224.0}, omega.numpy()))
    # TimestepEmbedder.timestep_embedding
    for half in (64, 128, 256, 512):
        freqs = torch.exp(-math.log(10000) * torch.arange(start=0, end=half, dtype=torch.float32) / half)
        recs.append(("timestep_freqs", {"half": half, "max_period": 10000.0}, freqs.numpy()))
    # FourierPositionEncoding buffer (log sampling)
    for nf in (16, 32, 64, 128, 256):
        bands = 2.0 ** torch.linspace(0.0, 12.0, steps=nf)
        recs.append(("fourier_freq_bands", {"num_freqs": nf, "min_freq_log2": 0.0, "max_freq_log2": 12.0}, bands.numpy()))
    # compute_axial_cis: per-axis frequencies for head dims that are multiples of 2*in_dim
    for hd in range(8, 257, 8):
        interval = 8
        freq = 1.0 / (100.0 ** (torch.arange(0, hd, interval)[: (hd // interval)].float() / hd))
        recs.append(("rope_freqs", {"head_dim": hd, "in_dim": 4, "base": 100.0}, freq.numpy()))
    # fair-esm RotaryEmbedding.inv_freq (also a checkpoint buffer)
    for hd in range(8, 257, 8):
        inv = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        recs.append(("esm_rotary_inv_freq", {"head_dim": hd}, inv.numpy()))
    # confidence_module.compute_aggregated_metric bin centres
    for nb in (10, 16, 32, 50, 64, 100, 128):
        bw = 1.0 / nb
        bounds = torch.arange(start=0.5 * bw, end=1.0, step=bw)
        recs.append(("plddt_bin_centres", {"num_bins": nb, "end": 1.0}, bounds.numpy()))

    arrays, index = {}, []
    for i, (name, params, arr) in enumerate(recs):
        key = f"t{i}"
        arrays[key] = np.asarray(arr, np.float32)
        index.append({"name": name, "params": params, "array": key})
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, index=np.array(json.dumps(index)), meta=np.array(json.dumps(_meta(torch))), **arrays)
    print(f"wrote {out}: {len(index)} tables, {sum(a.size for a in arrays.values())} floats")


# ----------------------------------------------------------------------------- official modules
def _import_official():
    """Import the official torch modules (their package root must be on PYTHONPATH), one thread."""
    try:
        return official.import_official(threads=1)
    except ImportError as e:
        raise SystemExit(str(e)) from None


_patched = official.patched


def official_tables(args) -> None:
    """Read every constant table out of the official modules (identity in place of sin/cos/...)."""
    torch = _import_official()
    from model.torch import confidence_module, layers, pos_embed
    from model.torch.sampler import EMSampler

    out: dict[str, np.ndarray] = {}
    ident = lambda x: x  # noqa: E731
    dims = sorted({w[0] for w in RELEASED_WIDTHS.values()} | {PLDDT_WIDTH[0]} | set(EXTRA_WIDTHS))
    for d in dims:
        pe = pos_embed.AbsolutePositionEncoding(in_dim=1, embed_dim=d, include_input=True)
        with _patched(torch, "sin", ident):
            emb = pe.get_1d_pos_embed(torch.ones(1))  # sin(1 * omega) -> omega
        out[f"abs_pe_omega_d{d}"] = emb[0, : d // 2].numpy()
    with _patched(torch, "cos", ident):
        temb = layers.TimestepEmbedder.timestep_embedding(torch.ones(1), 256)  # cos(1 * freqs) first
    out["timestep_freqs_256"] = temb[0, :128].numpy()
    fpe = pos_embed.FourierPositionEncoding(in_dim=3, include_input=True, min_freq_log2=0, max_freq_log2=12, num_freqs=128)
    out["fourier_freq_bands_128"] = fpe.freq_bands.numpy()
    head_dims = set()
    for d, h, da, ha in RELEASED_WIDTHS.values():
        head_dims |= {d // h, da // ha}
    head_dims |= {PLDDT_WIDTH[0] // PLDDT_WIDTH[1], 16, 32, 72}
    for hd in sorted(head_dims):
        def polar(abs_, angle):
            return torch.complex(angle, torch.zeros_like(angle))

        with _patched(torch, "polar", polar):
            cis = pos_embed.compute_axial_cis(torch.ones(1, 1, 4), 4, hd, 100.0)
        out[f"rope_freqs_hd{hd}"] = cis.real[0, 0, : hd // 8].numpy()
    eye = torch.eye(50) * 1e4  # softmax -> one-hot rows, so the aggregate is each bin centre
    out["plddt_bin_centres_50"] = confidence_module.compute_aggregated_metric(eye).numpy()
    for n in (1, 2, 3, 5, 8, 10, 16, 20, 32, 50, 64, 100, 128, 200, 250, 256, 500, 512, 1000):
        out[f"sampler_log_grid_{n}"] = EMSampler(num_timesteps=n, log_timesteps=True).steps.numpy()
        out[f"sampler_linear_grid_{n}"] = EMSampler(num_timesteps=n, log_timesteps=False).steps.numpy()
    dest = pathlib.Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(dest, **{k: np.asarray(v, np.float32) for k, v in out.items()})
    (dest.with_suffix(".json")).write_text(json.dumps(_meta(torch), indent=1) + "\n")
    print(f"wrote {dest}: {len(out)} tables")


# ----------------------------------------------------------------------------- official FoldingDiT
def _arch_variants() -> dict[str, dict]:
    """name -> official constructor sizes of the fixture architectures."""
    v = {
        # head dim 72 as simplefold_700M, encoder/decoder depth 2, small enough for a 500-step run
        "hd72": dict(hidden_size=144, num_heads=2, depth=2, atom_hidden=32, atom_heads=2, atom_depth=2),
    }
    for name, (d, h, da, ha) in RELEASED_WIDTHS.items():
        v[f"w{d}"] = dict(hidden_size=d, num_heads=h, depth=1, atom_hidden=da, atom_heads=ha, atom_depth=1, release=name)
    return v


def _official_model(sizes: dict):
    """An official FoldingDiT built from foldingdit_100M.yaml with the sizes overridden (esm2_8M features)."""
    return official.official_model(sizes, esm_model="esm2_8M")


def _load_random_weights(torch, model, seed: int) -> tuple[str, dict]:
    return official.load_random_weights(model, seed)


def _features(torch, case: str, batch: int | None = None) -> dict:
    z = np.load(PARITY / f"features_{case}.npz")
    out = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
    if batch is not None:
        out = {k: v[:batch] for k, v in out.items()}
    return out


def forward(args) -> None:
    torch = _import_official()
    OFFICIAL_OUT.mkdir(parents=True, exist_ok=True)
    wanted = args.arch or list(_arch_variants())
    for name, sizes in _arch_variants().items():
        if name not in wanted:
            continue
        model, summary, hydra_cfg = _official_model(sizes)
        digest, shapes = _load_random_weights(torch, model, FIXTURE_SEED)
        cases = ("trpcage", "villin_x", "gb1") if name == "hd72" else ("trpcage",)
        arrays = {}
        for case in cases:
            ref = np.load(PARITY / f"forward_{case}.npz")
            with torch.no_grad():
                out = model(torch.from_numpy(ref["noised_pos"]), torch.from_numpy(ref["t"]), _features(torch, case))
            arrays[f"{case}_predict_velocity"] = out["predict_velocity"].numpy()
            arrays[f"{case}_latent"] = out["latent"].numpy()
        np.savez_compressed(OFFICIAL_OUT / f"forward_{name}.npz", **arrays)
        record = {
            "summary": summary | {"name": f"official_{name}"}, "release": sizes.get("release"),
            "seed": FIXTURE_SEED, "weights_sha256": digest, "state_dict_shapes": shapes,
            "inputs": {c: f"tests/fixtures/parity/forward_{c}.npz (noised_pos, t) + features_{c}.npz" for c in cases},
            "hydra_config": hydra_cfg, "made": _meta(torch),
        }
        (OFFICIAL_OUT / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        n = sum(int(np.prod(s)) for s in shapes.values())
        print(f"{name}: {n:,} parameters, cases {cases}, |v|max {max(np.abs(arrays[f'{c}_predict_velocity']).max() for c in cases):.3g}")


def sampler(args) -> None:
    """500 official EMSampler steps at τ = 0.01 with the hd72 model on trp-cage, noise recorded."""
    torch = _import_official()
    from model.flow import LinearPath
    from model.torch import sampler as sampler_mod

    model, _, _ = _official_model(_arch_variants()["hd72"])
    _load_random_weights(torch, model, FIXTURE_SEED)
    feats = _features(torch, "trpcage", batch=1)
    n_steps, tau = 500, 0.01
    gen = torch.Generator().manual_seed(FIXTURE_SEED)
    noise = torch.randn(feats["coords"].shape, generator=gen)
    eps_log, states, vels = [], [], []
    record_at = set(np.linspace(0, n_steps - 1, 20).round().astype(int).tolist())

    def randn_like(y, **kw):
        e = torch.randn(y.shape, generator=gen)
        eps_log.append(e.numpy().copy())
        return e

    def model_fn(noised_pos, t, feats):
        out = model(noised_pos, t, feats)
        if len(eps_log) - 1 in record_at:
            states.append(noised_pos.numpy().copy())
            vels.append(out["predict_velocity"].numpy().copy())
        return out

    em = sampler_mod.EMSampler(num_timesteps=n_steps, t_start=1e-4, tau=tau, log_timesteps=True, w_cutoff=0.99)
    with torch.no_grad(), _patched(sampler_mod.torch, "randn_like", randn_like):
        res = em.sample(model_fn, LinearPath(), noise.clone(), feats)
    den = res["denoised_coords"].numpy()
    pad = feats["atom_pad_mask"].numpy()[..., None]
    # centred on the real atoms, in Å (the parity fixtures' _angstrom convention; padded slots kept)
    ang = (den - (den * pad).sum(1, keepdims=True) / pad.sum(1, keepdims=True)) * 16.0
    dest = OFFICIAL_OUT / "sampler_hd72_trpcage.npz"
    np.savez_compressed(
        dest, time_grid=em.steps.numpy(), tau=np.float32(tau), initial_noise=noise.numpy(), eps=np.stack(eps_log),
        recorded_steps=np.array(sorted(record_at)), y_centered_recorded=np.stack(states),
        velocity_recorded=np.stack(vels), denoised_coords=den, denoised_coords_angstrom=ang.astype(np.float32),
    )
    print(f"wrote {dest}: |final| max {np.abs(den).max():.3g} (model units)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("package-tables")
    s.add_argument("--out", default=str(TABLES_OUT))
    s.set_defaults(fn=package_tables)
    s = sub.add_parser("official-tables")
    s.add_argument("--out", default=str(OFFICIAL_OUT / "tables.npz"))
    s.set_defaults(fn=official_tables)
    s = sub.add_parser("forward")
    s.add_argument("--arch", nargs="*", help="subset of: " + " ".join(_arch_variants()))
    s.set_defaults(fn=forward)
    s = sub.add_parser("sampler")
    s.set_defaults(fn=sampler)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()

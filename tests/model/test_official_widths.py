"""Full-width fidelity: constant tables and forward passes against the official code at every released width.

The small parity fixtures (D = 64) cannot see errors that grow with the width: a 1-ulp change of
an absolute-PE frequency is invisible at D = 64 and 4 err/tol at D = 768. The fixtures in
``tests/fixtures/official`` were made by ``tools/official_fixtures.py`` with the official modules:

* ``tables.npz`` — every constant table read out of the official modules at the released widths;
* ``forward_<arch>.npz`` — official FoldingDiT outputs for a head-dim-72 architecture (``hd72``)
  and depth-1 versions of each released width (``w768`` … ``w2048``), whose weights are
  regenerated here from the seed (``simplefold.model.random_init``; the json pins their sha256);
* ``sampler_hd72_trpcage.npz`` — a 500-step τ = 0.01 official EMSampler run with recorded noise.
"""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import FIXTURES, PARITY
from simplefold.sampling import flow, sampler
from simplefold.weights.checkpoints import load_official_model
from simplefold.model import OFFICIAL_PLDDT_SIZES, OFFICIAL_SIZES, FoldingConfig
from simplefold.model import embeddings as emb
from simplefold.model import torch_tables
from simplefold.model.esm2 import rotary_inv_freq
from simplefold.model.plddt import plddt_bin_centers
from simplefold.model.random_init import random_state_dict, state_dict_digest
from simplefold.devtools.torch_writer import save_torch_zip

OFFICIAL = FIXTURES / "official"
TABLES = np.load(OFFICIAL / "tables.npz")
ARCHS = ("hd72", "w768", "w1024", "w1152", "w1280", "w1536", "w2048")
# err/tol as ../shared/tools/official/perf_side_by_side.py reports it: |ours - ref| / (atol + rtol |ref|)
ATOL = RTOL = 1e-4
# the sampler's end-to-end tolerance (fixture README of the official sampler fixtures), model units
END_TO_END_500 = dict(atol=1e-4, rtol=1e-4)


def err_over_tol(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    return float((np.abs(got - want) / (ATOL + RTOL * np.abs(want))).max())


# ---------------------------------------------------------------- constant tables
def _widths():
    cfgs = [make() for make in OFFICIAL_SIZES.values()]
    return cfgs, [make() for make in OFFICIAL_PLDDT_SIZES.values()]


@pytest.mark.parametrize("name", list(OFFICIAL_SIZES))
def test_folding_tables_bit_identical_at_released_width(name):
    cfg = OFFICIAL_SIZES[name]()
    np.testing.assert_array_equal(emb.abs_pe_omega(cfg.hidden_size, cfg.abs_pe_max_wavelength), TABLES[f"abs_pe_omega_d{cfg.hidden_size}"])
    np.testing.assert_array_equal(emb.rope_freqs(cfg.head_dim, cfg.rope_in_dim, cfg.rope_base), TABLES[f"rope_freqs_hd{cfg.head_dim}"])
    np.testing.assert_array_equal(
        emb.rope_freqs(cfg.atom_head_dim, cfg.rope_in_dim, cfg.rope_base), TABLES[f"rope_freqs_hd{cfg.atom_head_dim}"]
    )
    np.testing.assert_array_equal(emb.timestep_freqs(cfg.time_embed_dim // 2, cfg.time_max_period), TABLES["timestep_freqs_256"])
    np.testing.assert_array_equal(
        emb.fourier_freq_bands(cfg.fourier_num_freqs, cfg.fourier_min_freq_log2, cfg.fourier_max_freq_log2),
        TABLES["fourier_freq_bands_128"],
    )


@pytest.mark.parametrize("name", list(OFFICIAL_PLDDT_SIZES))
def test_plddt_tables_bit_identical(name):
    cfg = OFFICIAL_PLDDT_SIZES[name]()
    np.testing.assert_array_equal(emb.rope_freqs(cfg.head_dim, cfg.rope_in_dim, cfg.rope_base), TABLES[f"rope_freqs_hd{cfg.head_dim}"])
    np.testing.assert_array_equal(plddt_bin_centers(cfg.num_bins), TABLES[f"plddt_bin_centres_{cfg.num_bins}"])


@pytest.mark.parametrize("d", [64, 128, 144])
def test_tables_bit_identical_at_fixture_and_demo_widths(d):
    np.testing.assert_array_equal(emb.abs_pe_omega(d), TABLES[f"abs_pe_omega_d{d}"])


def test_fallback_formulas_stay_within_two_ulps(monkeypatch):
    """Widths without a shipped table use NumPy: torch's linspace exactly, pow/exp correctly rounded
    (torch's SLEEF pow is within 1 ulp; the product with pi can add one more)."""
    monkeypatch.setattr(torch_tables, "lookup", lambda name, **params: None)
    for fn in (emb.abs_pe_omega, emb.rope_freqs, emb.timestep_freqs, emb.fourier_freq_bands):
        fn.cache_clear()
    try:
        pairs = [(emb.abs_pe_omega(d), TABLES[f"abs_pe_omega_d{d}"]) for d in (64, 768, 1152, 2048)]
        pairs += [(emb.rope_freqs(hd), TABLES[f"rope_freqs_hd{hd}"]) for hd in (16, 64, 72)]
        pairs += [(emb.timestep_freqs(128), TABLES["timestep_freqs_256"]), (emb.fourier_freq_bands(128), TABLES["fourier_freq_bands_128"])]
        for got, want in pairs:
            ulps = np.abs(got.view(np.int32).astype(np.int64) - want.view(np.int32))
            assert ulps.max() <= 2, ulps.max()
    finally:
        for fn in (emb.abs_pe_omega, emb.rope_freqs, emb.timestep_freqs, emb.fourier_freq_bands):
            fn.cache_clear()


def test_esm_rotary_inv_freq_matches_checkpoint_buffer():
    from simplefold.weights.torch_reader import open_state_dict

    with open_state_dict(PARITY / "esm2_t2_d64.pt", prefix="model") as sd:
        key = next(k for k in sd.shapes() if k.endswith("rot_emb.inv_freq"))
        buf = np.asarray(sd[key], np.float32)
    np.testing.assert_array_equal(rotary_inv_freq(2 * buf.shape[0]), buf)


@pytest.mark.parametrize("n", sorted({int(k.rsplit("_", 1)[1]) for k in TABLES.files if k.startswith("sampler_log_grid_")}))
def test_sampler_time_grids_bit_identical(n):
    np.testing.assert_array_equal(flow.log_time_grid(n), TABLES[f"sampler_log_grid_{n}"])
    np.testing.assert_array_equal(flow.linear_time_grid(n), TABLES[f"sampler_linear_grid_{n}"])


def test_every_released_table_is_shipped_not_recomputed():
    """The package data covers every width the released models use (no silent fallback)."""
    folding, plddt = _widths()
    for cfg in folding:
        assert torch_tables.lookup("abs_pe_omega", n=cfg.hidden_size // 2, max_wavelength=cfg.abs_pe_max_wavelength) is not None
        for hd in (cfg.head_dim, cfg.atom_head_dim):
            assert torch_tables.lookup("rope_freqs", head_dim=hd, in_dim=cfg.rope_in_dim, base=cfg.rope_base) is not None
    for cfg in plddt:
        assert torch_tables.lookup("rope_freqs", head_dim=cfg.head_dim, in_dim=cfg.rope_in_dim, base=cfg.rope_base) is not None
        assert torch_tables.lookup("plddt_bin_centres", num_bins=cfg.num_bins, end=1.0) is not None
    assert torch_tables.lookup("esm_rotary_inv_freq", head_dim=64) is not None  # ESM2-3B / 650M
    assert torch_tables.meta()["torch"]


# ---------------------------------------------------------------- forward passes
def _record(arch: str) -> dict:
    return json.loads((OFFICIAL / f"{arch}.json").read_text())


def _model(arch: str, tmp_path):
    rec = _record(arch)
    cfg = FoldingConfig.from_official(rec["summary"])
    weights = random_state_dict(rec["state_dict_shapes"], seed=rec["seed"], freq_bands=emb.fourier_freq_bands(cfg.fourier_num_freqs))
    # a different digest means NumPy's generator or the init rule changed, not the model
    assert state_dict_digest(weights) == rec["weights_sha256"], "regenerate tests/fixtures/official (tools/official_fixtures.py)"
    path = tmp_path / f"{arch}.ckpt"
    save_torch_zip(path, weights)
    del weights
    return load_official_model(path, cfg)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_matches_official_at_width(arch, tmp_path):
    model = _model(arch, tmp_path)
    ref = np.load(OFFICIAL / f"forward_{arch}.npz")
    cases = sorted({k.split("_predict_velocity")[0] for k in ref.files if k.endswith("_predict_velocity")})
    for case in cases:
        feats = dict(np.load(PARITY / f"features_{case}.npz"))
        inp = np.load(PARITY / f"forward_{case}.npz")
        out = model(inp["noised_pos"], inp["t"], feats)
        for key in ("predict_velocity", "latent"):
            e = err_over_tol(out[key], ref[f"{case}_{key}"])
            assert e <= 1.0, f"{arch} {case} {key}: err/tol {e:.3f}"


@pytest.mark.slow
def test_sampler_500_steps_tau_001_matches_official_hd72(tmp_path):
    model = _model("hd72", tmp_path)
    s = np.load(OFFICIAL / "sampler_hd72_trpcage.npz")
    feats = {k: v[:1] for k, v in np.load(PARITY / "features_trpcage.npz").items()}
    np.testing.assert_array_equal(sampler.SamplerConfig(num_steps=500).time_grid(), s["time_grid"])
    for j, i in enumerate(s["recorded_steps"]):
        v = model(s["y_centered_recorded"][j], np.full((1,), s["time_grid"][i], np.float32), feats)["predict_velocity"]
        assert err_over_tol(v, s["velocity_recorded"][j]) <= 1.0, f"velocity at step {i}"
    out = sampler.sample(model, feats, num_steps=500, tau=float(s["tau"]), initial_noise=s["initial_noise"], eps=s["eps"])
    np.testing.assert_allclose(np.asarray(out), s["denoised_coords"], **END_TO_END_500)
    np.testing.assert_allclose(
        sampler.postprocess(out, feats["atom_pad_mask"]), s["denoised_coords_angstrom"],
        atol=16 * END_TO_END_500["atol"], rtol=END_TO_END_500["rtol"],
    )
    assert jnp.isfinite(out).all()

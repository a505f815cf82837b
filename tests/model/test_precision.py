"""Mixed bfloat16 precision: what is stored and computed in bf16, what stays float32, and its error."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import PARITY
from simplefold.sampling import sampler
from simplefold.weights.checkpoints import load_official_model, load_official_plddt
from simplefold.model.precision import check_precision, with_precision

SUMMARY = json.loads((PARITY / "folding_d64_h4.json").read_text())["summary"]
PLDDT_SUMMARY = json.loads((PARITY / "plddt_d64_h4.json").read_text())["summary"]


@pytest.fixture(scope="module")
def models():
    return {p: load_official_model(PARITY / "folding_d64_h4.ckpt", SUMMARY, precision=p) for p in ("float32", "bfloat16")}


def test_precision_names_are_validated():
    assert check_precision(None) == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("float16")
    with pytest.raises(ValueError, match="precision must be one of"):
        load_official_model(PARITY / "folding_d64_h4.ckpt", SUMMARY, precision="fp8")


def test_bf16_stores_kernels_in_bf16_and_keeps_the_rest_float32(models):
    m = models["bfloat16"]
    assert m.config.dtype == "bfloat16"
    kinds = {}
    for path, var in nnx.to_flat_state(nnx.state(m.module, nnx.Param)):
        kinds.setdefault(path[-1], set()).add(str(var.get_value().dtype))
    assert kinds.pop("kernel") == {"bfloat16"}
    assert all(d == {"float32"} for d in kinds.values()), kinds  # norms, biases, esm combine, ...
    f32 = nnx.to_flat_state(nnx.state(models["float32"].module, nnx.Param))
    assert {str(v.get_value().dtype) for _, v in f32} == {"float32"}


@pytest.mark.parametrize("case", ["trpcage", "gb1"])
def test_bf16_forward_is_close_to_float32_and_returns_float32(models, case):
    feats = dict(np.load(PARITY / f"features_{case}.npz"))
    ref = np.load(PARITY / f"forward_{case}.npz")
    out = {p: m(ref["noised_pos"], ref["t"], feats) for p, m in models.items()}
    for key in ("predict_velocity", "latent"):
        lo = np.asarray(out["bfloat16"][key])
        assert lo.dtype == np.float32 and np.isfinite(lo).all()
        scale = np.abs(ref[key]).max()
        err32 = np.abs(np.asarray(out["float32"][key]) - ref[key]).max() / scale
        err16 = np.abs(lo - ref[key]).max() / scale
        # bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.2 %) per product input;
        # measured 0.6-0.7 % of the output scale for the velocity, ~2 % for the latent
        assert err32 < 1e-5 and 1e-4 < err16 < 0.05, (key, err32, err16)


def test_bf16_plddt_head_loads_and_stays_in_unit_interval():
    head = load_official_plddt(PARITY / "plddt_d64_h4.ckpt", PLDDT_SUMMARY, precision="bfloat16")
    z = np.load(PARITY / "plddt_trpcage.npz")
    feats = dict(np.load(PARITY / "features_trpcage.npz"))
    p = np.asarray(head(z["latent"], feats)["plddt"])
    assert p.dtype == np.float32 and ((p >= 0) & (p <= 1)).all()
    assert 0 < np.abs(p - z["plddt"]).max() < 0.05


def test_bf16_sampler_runs_with_float32_state(models):
    feats = {k: v[:1] for k, v in np.load(PARITY / "features_trpcage.npz").items()}
    out = {p: sampler.sample(m, feats, num_steps=6, tau=0.0, key=jax.random.key(3)) for p, m in models.items()}
    assert out["bfloat16"].dtype == jnp.float32 and bool(jnp.isfinite(out["bfloat16"]).all())
    assert sampler.as_velocity_model(models["bfloat16"]).precision == "bfloat16"
    # same noise, 6 deterministic steps: the trajectories stay close (model units, scale ~1)
    assert float(jnp.abs(out["bfloat16"] - out["float32"]).max()) < 0.1


def test_with_precision_only_changes_the_compute_dtype(models):
    cfg = models["float32"].config
    assert with_precision(cfg, "bfloat16") == cfg.__class__(**{**cfg.__dict__, "dtype": "bfloat16"})


def test_converted_model_restores_bf16_kernels_directly(tmp_path, models):
    """load_converted(precision="bfloat16") reads the kernels straight into bf16 (no float32 copy),
    with the same values as casting the float32 weights."""
    from simplefold.weights.checkpoints import load_converted, save_converted

    save_converted(models["float32"], tmp_path / "m")
    lo = load_converted(tmp_path / "m", "bfloat16")
    want = dict(nnx.to_flat_state(nnx.state(models["bfloat16"].module, nnx.Param)))
    got = dict(nnx.to_flat_state(nnx.state(lo.module, nnx.Param)))
    assert set(got) == set(want)
    for path, var in got.items():
        a, b = np.asarray(var.get_value()), np.asarray(want[path].get_value())
        assert a.dtype == b.dtype, path
        np.testing.assert_array_equal(a, b, err_msg=str(path))


def test_unstacked_blocks_compute_what_the_block_scan_computes():
    """BlockStack.unstack (bf16 inference) holds the same parameters per block and gives the scan's
    result (float32 here, so any reordering of the maths would show)."""
    from simplefold.model.layers import AttnContext, BlockStack, DiTBlock

    W, L = 32, 12
    stack = BlockStack(lambda r: DiTBlock(W, 4, 64, dtype="float32", rngs=r), 3, rngs=nnx.Rngs(1))
    # non-zero adaLN modulation so every block changes the stream
    for path, var in nnx.to_flat_state(nnx.state(stack, nnx.Param)):
        var.set_value(jax.random.normal(jax.random.key(len(path)), var.get_value().shape) * 0.1)
    x = jax.random.normal(jax.random.key(2), (2, L, W))
    c = jax.random.normal(jax.random.key(3), (2, W))
    ctx = AttnContext(jnp.ones((1, L, 4)), jnp.zeros((1, L, 4)), key_mask=None)
    want = np.asarray(stack(x, c, ctx))
    stacked = nnx.state(stack.blocks, nnx.Param)
    stack.unstack()
    assert not hasattr(stack, "blocks") and len(stack.layers) == 3
    for i, layer in enumerate(stack.layers):
        for (p, a), (q, b) in zip(nnx.to_flat_state(nnx.state(layer, nnx.Param)), nnx.to_flat_state(stacked)):
            assert p == q
            np.testing.assert_array_equal(np.asarray(a.get_value()), np.asarray(b.get_value())[i])
    np.testing.assert_allclose(np.asarray(stack(x, c, ctx)), want, rtol=1e-5, atol=1e-6)


def test_bf16_inference_model_is_not_saved_as_a_checkpoint(tmp_path, models):
    from simplefold.weights.checkpoints import save_converted

    with pytest.raises(TypeError, match="float32 model"):
        save_converted(models["bfloat16"], tmp_path / "m")
    assert not (tmp_path / "m").exists()

"""simplefold.reproducible and the padding-invariant attention: the pieces that make a sample
bit-identical across chunk sizes and buckets (end-to-end checks live in test_sampler.py,
test_inference.py and test_demo_model.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simplefold.sampling import flow
from simplefold.model import layers
from simplefold.reproducible import CPU_COMPILER_OPTIONS, padding_invariant_sum, stable_jit


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 33, 100, 1000])
def test_padding_invariant_sum_is_a_sum(n):
    x = np.random.default_rng(n).standard_normal((3, n, 2)).astype(np.float32)
    got = np.asarray(padding_invariant_sum(jnp.asarray(x), axis=1))
    assert got.shape == (3, 1, 2)
    np.testing.assert_allclose(got, x.astype(np.float64).sum(1, keepdims=True), rtol=1e-5, atol=1e-5)
    # integers are summed exactly
    np.testing.assert_array_equal(padding_invariant_sum(jnp.arange(n, dtype=jnp.float32), axis=0), [n * (n - 1) / 2])


def test_padding_invariant_sum_ignores_appended_zeros_to_the_bit():
    rng = np.random.default_rng(0)
    f = jax.jit(padding_invariant_sum, static_argnums=1)
    for n in (5, 56, 100, 300):
        # values spanning many magnitudes so that the order of additions matters
        x = (rng.standard_normal((4, n)) * 10.0 ** rng.integers(-4, 4, (4, n))).astype(np.float32)
        ref = np.asarray(f(jnp.asarray(x), -1))
        for extra in (1, 3, 64, 1000):
            padded = np.pad(x, ((0, 0), (0, extra)))
            np.testing.assert_array_equal(np.asarray(f(jnp.asarray(padded), -1)), ref, err_msg=f"n={n} +{extra}")
        # the order matters for these values: a different association gives a different sum,
        # so the equalities above are not trivially true
        assert np.any(np.asarray(jnp.sum(x[:, ::-1], axis=-1, keepdims=True)) != ref) or n < 8


def test_masked_mean_does_not_see_padding_slots():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 300, 3)).astype(np.float32) * 30
    mask = (rng.random((2, 300)) > 0.2).astype(np.float32)
    ref = np.asarray(flow.masked_mean(jnp.asarray(x), jnp.asarray(mask)))
    np.testing.assert_allclose(ref[:, 0], (x * mask[..., None]).sum(1) / mask.sum(1)[:, None], rtol=1e-5, atol=1e-5)
    xp = np.concatenate([x, rng.standard_normal((2, 724, 3)).astype(np.float32)], axis=1)  # 1024 slots
    mp = np.pad(mask, ((0, 0), (0, 724)))
    np.testing.assert_array_equal(np.asarray(flow.masked_mean(jnp.asarray(xp), jnp.asarray(mp))), ref)


def _qkv(rng, b, length, h=4, hd=16):
    return [jnp.asarray(rng.standard_normal((b, length, h, hd)).astype(np.float32)) for _ in range(3)]


def test_dense_attention_equals_softmax_attention():
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, 2, 150)
    mask = jnp.asarray(rng.random((2, 150)) > 0.3)
    got = layers.dense_attention(q, k, v, mask)
    ref = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(layers.dense_attention(q, k, v), jax.nn.dot_product_attention(q, k, v), rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("length", [20, 56, 100, 130])
def test_dense_attention_ignores_masked_padding_keys_to_the_bit(length):
    rng = np.random.default_rng(length)
    q, k, v = _qkv(rng, 1, length)
    f = stable_jit(layers.dense_attention)
    ref = np.asarray(f(q, k, v, jnp.ones((1, length), bool)))
    for total in (length + 8, 256, 300):
        pad = ((0, 0), (0, total - length), (0, 0), (0, 0))
        # padded rows hold arbitrary finite values: they are masked, not zero
        qp, kp, vp = (jnp.asarray(np.pad(np.asarray(a), pad, constant_values=3.0)) for a in (q, k, v))
        mask = jnp.asarray(np.arange(total)[None] < length)
        got = np.asarray(f(qp, kp, vp, mask))[:, :length]
        np.testing.assert_array_equal(got, ref, err_msg=f"L={length} padded to {total}")


def test_stable_jit_rows_do_not_depend_on_the_row_count():
    """The measured cause: on XLA:CPU, product rows depend on the row count unless YNN fusions are off."""
    if jax.default_backend() != "cpu":
        pytest.skip("the compiler options are CPU-only")
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.standard_normal((128, 384)).astype(np.float32))
    x = jnp.asarray(rng.standard_normal((256, 128)).astype(np.float32))
    f = stable_jit(lambda a, b: a @ b)
    ref = np.asarray(f(x, w))
    for m in (1, 2, 5, 32, 48, 64, 100):
        np.testing.assert_array_equal(np.asarray(f(x[:m], w)), ref[:m], err_msg=f"{m} rows")
    text = f.lower(x[:32], w).compile().as_text()
    assert "ynn_fusion" not in text
    assert CPU_COMPILER_OPTIONS == {"xla_cpu_experimental_ynn_fusion_type": ""}


def test_stable_jit_keeps_jit_arguments():
    calls = []

    def g(x, n):
        calls.append(n)
        return x * n

    f = stable_jit(g, static_argnames=("n",))
    assert float(f(jnp.float32(2.0), n=3)) == 6.0
    assert float(f(jnp.float32(5.0), n=3)) == 15.0
    assert calls == [3]  # traced once for n = 3
    assert f.__wrapped__ is g

"""Tests of simplefold.sampling.flow: path maths, time distribution, grids, centring, Kabsch, rotations."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PARITY, PARITY_CASES

from simplefold.sampling import flow


def _rand(seed, shape, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


def _rotation_matrix(seed):
    q = np.random.default_rng(seed).normal(size=4)
    return np.asarray(flow.quaternion_to_matrix(jnp.asarray(q, jnp.float32)))


# ----------------------------------------------------------------------------- time grids


@pytest.mark.parametrize("n", [8, 500])
def test_log_time_grid_bit_exact(n):
    ref = np.load(PARITY / "constants_d64_h4.npz")[f"sampler_log_time_grid_{n}"]
    got = flow.log_time_grid(n)
    assert got.dtype == np.float32 and got.shape == (n + 1,)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("case", PARITY_CASES)
def test_log_time_grid_matches_sampler_fixture(case):
    np.testing.assert_array_equal(flow.log_time_grid(8), np.load(PARITY / f"sampler_{case}.npz")["time_grid"])


def test_log_time_grid_formula_n10():
    # t_i = (1 - 10^(-2i/n))/0.99 clamped to [1e-4, 1]: the official EMSampler grid
    # (src/simplefold/model/torch/sampler.py)
    i = np.arange(11)
    expected = np.clip((1 - 10.0 ** (-2 * i / 10)) / 0.99, 1e-4, 1.0)
    np.testing.assert_allclose(flow.log_time_grid(10), expected, rtol=1e-6, atol=1e-7)
    g500 = flow.log_time_grid(500)
    assert np.all(np.diff(g500) > 0)
    assert int(np.sum(g500[:-1] >= 0.99)) == 74  # 74 of the 500 official steps have t >= w_cutoff (noise-free)


def test_linear_time_grid():
    g = flow.linear_time_grid(4, 1e-4)
    np.testing.assert_allclose(g, np.linspace(1e-4, 1, 5), rtol=1e-7)
    with pytest.raises(ValueError):
        flow.log_time_grid(0)


# ----------------------------------------------------------------------------- path


def test_interpolate_endpoints_and_velocity():
    x0, x1 = _rand(0, (2, 7, 3)), _rand(1, (2, 7, 3))
    np.testing.assert_array_equal(flow.interpolate(x0, x1, jnp.zeros(2)), x0)
    np.testing.assert_array_equal(flow.interpolate(x0, x1, jnp.ones(2)), x1)
    t = jnp.array([0.3, 0.7])
    h = 1e-2
    fd = (flow.interpolate(x0, x1, t + h) - flow.interpolate(x0, x1, t - h)) / (2 * h)
    np.testing.assert_allclose(fd, flow.target_velocity(x0, x1), atol=2e-4)
    # per-sample t
    np.testing.assert_allclose(flow.interpolate(x0, x1, t)[1], 0.7 * x1[1] + 0.3 * x0[1], atol=1e-6)


def test_score_from_velocity_point_mass():
    # Data = point mass x1: p_t = N(t x1, (1-t)^2 I); exact velocity (x1 - x)/(1 - t),
    # exact score (t x1 - x)/(1 - t)^2.
    x1, x = _rand(2, (3, 5, 3)), _rand(3, (3, 5, 3))
    t = jnp.array([0.1, 0.5, 0.9])
    tb = np.asarray(t)[:, None, None]
    v = (x1 - x) / (1 - tb)
    np.testing.assert_allclose(flow.score_from_velocity(v, x, t), (tb * x1 - x) / (1 - tb) ** 2, rtol=1e-4, atol=1e-4)


def test_sample_time_distribution():
    t = np.asarray(flow.sample_time(jax.random.key(0), (200_000,)))
    assert t.shape == (200_000,) and t.dtype == np.float32
    assert t.min() > 0 and t.max() < 1
    # moments of 0.98·sigmoid(u) + 0.02·v by Gauss–Hermite quadrature over u ~ N(0.8, 1.7²)
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    sig = 1 / (1 + np.exp(-(0.8 + 1.7 * z)))
    mean = 0.98 * np.sum(w * sig) + 0.02 * 0.5
    var = 0.98**2 * (np.sum(w * sig**2) - np.sum(w * sig) ** 2) + 0.02**2 / 12
    assert abs(t.mean() - mean) < 5 * math.sqrt(var / t.size)
    assert abs(t.var() - var) < 0.02 * var
    # weighted sum: median ≈ 0.98·sigmoid(0.8) + 0.02·0.5
    assert np.median(t) == pytest.approx(0.98 * (1 / (1 + math.exp(-0.8))) + 0.01, abs=0.01)


# ----------------------------------------------------------------------------- centring / alignment


def test_center_uses_mask_only():
    x = _rand(4, (2, 6, 3))
    mask = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], np.float32)
    c = np.asarray(flow.center(x, mask))
    np.testing.assert_allclose(c[0, :3].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(c[1].mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(c - x, np.broadcast_to((c - x)[:, :1], x.shape), atol=1e-6)  # one shift per sample
    x2 = x.copy()
    x2[0, 3:] += 100.0  # padding must not move the centre
    np.testing.assert_allclose(np.asarray(flow.center(x2, mask))[0, :3], c[0, :3], atol=1e-5)


def test_weighted_rigid_align_recovers_rigid_motion():
    x_true = _rand(5, (2, 20, 3), 3.0)
    rots = np.stack([_rotation_matrix(10), _rotation_matrix(11)])
    x_pred = np.einsum("bni,bij->bnj", x_true, rots) + np.array([[[1.0, -2.0, 0.5]], [[0.0, 3.0, 1.0]]], np.float32)
    mask = np.ones((2, 20), np.float32)
    mask[1, 15:] = 0
    x_pred_noisy = x_pred.copy()
    x_pred_noisy[1, 15:] = 50.0  # unresolved atoms must not influence the fit
    out = np.asarray(flow.weighted_rigid_align(x_true, x_pred_noisy, np.ones((2, 20)), mask))
    np.testing.assert_allclose(out[0], x_pred[0], atol=1e-4)
    np.testing.assert_allclose(out[1], x_pred[1], atol=1e-4)  # including the unresolved atoms' images


def test_weighted_rigid_align_no_reflection_and_centroid():
    x_true = _rand(6, (1, 30, 3), 3.0)
    x_pred = x_true * np.array([1.0, 1.0, -1.0], np.float32) + 2.0  # a mirror image
    mask = np.ones((1, 30), np.float32)
    out = np.asarray(flow.weighted_rigid_align(x_true, x_pred, np.ones((1, 30)), mask))
    # proper motion: distances preserved, chirality kept (not equal to the mirror)
    d = lambda a: np.linalg.norm(a[:, None] - a[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(out[0]), d(x_true[0]), atol=1e-4)
    assert np.abs(out - x_pred).max() > 0.5
    np.testing.assert_allclose(out[0].mean(0), x_pred[0].mean(0), atol=1e-5)
    ct, co = x_true[0] - x_true[0].mean(0), out[0] - out[0].mean(0)
    rot = np.linalg.lstsq(ct, co, rcond=None)[0]
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-4)


def test_weighted_rigid_align_has_no_gradient():
    x_true, x_pred = _rand(7, (1, 10, 3)), _rand(8, (1, 10, 3))
    g = jax.grad(lambda p: jnp.sum(flow.weighted_rigid_align(x_true, p, jnp.ones((1, 10)), jnp.ones((1, 10)))))(x_pred)
    np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------- rotations / augmentation


def test_random_rotation_is_uniform_so3():
    r = np.asarray(flow.random_rotation(jax.random.key(1), (20_000,)))
    np.testing.assert_allclose(np.einsum("bij,bkj->bik", r, r), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
    # Haar measure: E[R] = 0 and E[R_ij²] = 1/3
    assert np.abs(r.mean(0)).max() < 0.03
    np.testing.assert_allclose((r**2).mean(0), 1 / 3, atol=0.01)


def test_center_random_augmentation():
    x = _rand(9, (4, 12, 3), 2.0)
    mask = np.ones((4, 12), np.float32)
    mask[:, 10:] = 0
    out = np.asarray(flow.center_random_augmentation(jax.random.key(2), x, mask, s_trans=0.5))
    d = lambda a: np.linalg.norm(a[:, :, None] - a[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(out), d(x), atol=1e-4)
    # each sample: centred then rotated then translated, so the masked mean is the translation
    shifts = out[:, :10].mean(1)
    assert np.abs(shifts).max() < 0.5 * 5
    many = flow.center_random_augmentation(jax.random.key(3), np.repeat(x[:1], 4000, 0), np.repeat(mask[:1], 4000, 0), 0.5)
    sh = np.asarray(flow.masked_mean(many, np.repeat(mask[:1], 4000, 0)))[:, 0]
    np.testing.assert_allclose(sh.std(0), 0.5, rtol=0.06)


def test_noised_sample():
    x1 = _rand(11, (5, 8, 3))
    t, x0, x_t = flow.noised_sample(jax.random.key(4), x1)
    assert t.shape == (5,) and x0.shape == x1.shape and len(set(np.asarray(t).tolist())) == 5
    np.testing.assert_allclose(x_t, flow.interpolate(x0, x1, t), atol=1e-6)
    t2, x02, _ = flow.noised_sample(jax.random.key(4), x1)
    np.testing.assert_array_equal(t, t2)
    np.testing.assert_array_equal(x0, x02)

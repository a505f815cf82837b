"""Tests of simplefold.training.losses: masked MSE, smooth lDDT (both weightings), the full flow-matching loss."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simplefold.sampling import flow
from simplefold.training import losses

SIGMOID_MAX = sum(1 / (1 + math.exp(-c)) for c in (0.5, 1.0, 2.0, 4.0)) / 4  # ε of a perfect pair


def _rand(seed, shape, scale=1.0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32) * scale


def _chain(seed, b, n):
    """Random-walk 'protein' in model units (3.8 Å steps), centred."""
    steps = _rand(seed, (b, n, 3))
    steps = steps / np.linalg.norm(steps, axis=-1, keepdims=True) * (3.8 / 16)
    x = np.cumsum(steps, axis=1)
    return (x - x.mean(1, keepdims=True)).astype(np.float32)


def _rot(seed):
    q = np.random.default_rng(seed).normal(size=4)
    return np.asarray(flow.quaternion_to_matrix(jnp.asarray(q, jnp.float32)))


def test_masked_mse_formula():
    pred, target = _rand(0, (2, 5, 3)), _rand(1, (2, 5, 3))
    mask = np.array([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], np.float32)
    sq = (pred - target) ** 2 * mask[..., None]
    expected = np.mean(sq.sum(1) / mask.sum(1)[:, None])
    assert float(losses.masked_mse(pred, target, mask)) == pytest.approx(expected, rel=1e-6)
    pred2 = pred.copy()
    pred2[0, 2] += 10.0  # unresolved atom
    assert float(losses.masked_mse(pred2, target, mask)) == pytest.approx(expected, rel=1e-6)
    assert float(losses.masked_mse(target, target, mask)) == 0.0


def test_smooth_lddt_hand_computed():
    true = np.array([[[0, 0, 0], [3, 0, 0], [0, 4, 0], [30, 0, 0]]], np.float32)
    pred = np.array([[[0, 0, 0], [3.5, 0, 0], [0, 4, 0], [31, 0, 0]]], np.float32)
    mask = np.ones((1, 4), np.float32)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    eps = lambda dd: np.mean([sig(c - dd) for c in (0.5, 1, 2, 4)])  # noqa: E731
    # pairs within 15 Å: (0,1), (0,2), (1,2), both directions; atom 3 is > 15 Å from all
    d12_pred = math.hypot(3.5, 4)
    expected = (eps(0.5) + eps(0.0) + eps(abs(5 - d12_pred))) / 3
    got = float(losses.smooth_lddt(pred, true, mask, 15.0)[0])
    assert got == pytest.approx(expected, rel=1e-5)


def test_smooth_lddt_perfect_and_per_sample_masking():
    x = _chain(2, 2, 30) * 16
    mask = np.ones((2, 30), np.float32)
    mask[1, 20:] = 0
    np.testing.assert_allclose(losses.smooth_lddt(x, x, mask), SIGMOID_MAX, rtol=2e-5)  # float32 sums
    pred = x + _rand(3, x.shape, 1.5)
    both = np.asarray(losses.smooth_lddt(pred, x, mask))
    # each sample scored on its own pairs only (HEAD fix; the old code averaged ε over the batch)
    alone0 = float(losses.smooth_lddt(pred[:1], x[:1], mask[:1])[0])
    alone1 = float(losses.smooth_lddt(pred[1:, :20], x[1:, :20], mask[1:, :20])[0])
    np.testing.assert_allclose(both, [alone0, alone1], rtol=1e-5)
    assert abs(alone0 - alone1) > 1e-3  # the test would not notice batch averaging otherwise


def test_smooth_lddt_loss_weightings():
    x = _chain(4, 2, 25) * 16
    pred = x + _rand(5, x.shape, np.array([0.5, 3.0], np.float32)[:, None, None])
    mask = np.ones((2, 25), np.float32)
    t = np.array([0.2, 0.9], np.float32)
    lddt = np.asarray(losses.smooth_lddt(pred, x, mask))
    pre, _ = losses.smooth_lddt_loss(pred, x, mask, t, losses.LossConfig(smooth_lddt_weight=0.5))
    assert float(pre) == pytest.approx((1 - lddt.mean()) * 0.5, rel=1e-6)
    fine, _ = losses.smooth_lddt_loss(pred, x, mask, t, losses.LossConfig(lddt_weight_schedule=True, smooth_lddt_weight=0.5))
    assert float(fine) == pytest.approx(np.mean((1 - lddt) * np.array([1.0, 1 + 8 * 0.4])), rel=1e-6)


def _noised(seed, b=2, n=40):
    x1 = _chain(seed, b, n)
    x0 = _rand(seed + 100, (b, n, 3))
    t = np.array([0.3, 0.8], np.float32)[:b]
    return x0, x1, t, np.asarray(flow.interpolate(x0, x1, t))


def test_flow_matching_loss_perfect_prediction():
    x0, x1, t, x_t = _noised(6)
    resolved = np.ones((2, 40), np.float32)
    resolved[0, 35:] = 0
    pad = np.ones((2, 40), np.float32)
    loss, aux = losses.flow_matching_loss(flow.target_velocity(x0, x1), x_t, x0, x1, t, resolved, pad)
    assert float(aux["mse"]) < 1e-9
    np.testing.assert_allclose(aux["lddt"], SIGMOID_MAX, rtol=1e-5)
    assert float(loss) == pytest.approx(1 - SIGMOID_MAX, abs=1e-5)
    assert float(aux["loss"]) == float(loss)


def test_realigned_mse_invariant_to_rigid_motion_of_ground_truth():
    x0, x1, t, x_t = _noised(7)
    v = np.asarray(flow.target_velocity(x0, x1)) + _rand(8, x0.shape, 0.3)
    resolved = np.ones((2, 40), np.float32)
    pad = np.ones((2, 40), np.float32)
    cfg = losses.LossConfig(smooth_lddt_weight=0.0)
    _, a = losses.flow_matching_loss(v, x_t, x0, x1, t, resolved, pad, cfg)
    x1_moved = np.einsum("bni,ij->bnj", x1, _rot(9)) + np.float32(0.7)
    _, b = losses.flow_matching_loss(v, x_t, x0, x1_moved, t, resolved, pad, cfg)
    assert float(b["mse"]) == pytest.approx(float(a["mse"]), rel=1e-4)
    _, c = losses.flow_matching_loss(v, x_t, x0, x1_moved, t, resolved, pad, losses.LossConfig(use_rigid_align=False, smooth_lddt_weight=0.0))
    assert float(c["mse"]) > 2 * float(a["mse"])  # without alignment the target does move
    assert "lddt" not in b


def test_flow_matching_loss_callable_and_gradient():
    x0, x1, t, x_t = _noised(10)
    x_t, x1 = x_t.copy(), x1.copy()
    x_t[:, 36:] = 0.0  # padding-like coincident atoms (x̂1 = 0 there) must not create NaN gradients
    x1[:, 36:] = 0.0
    resolved = np.ones((2, 40), np.float32)
    resolved[:, 36:] = 0
    pad = resolved.copy()
    w = jnp.float32(0.9)

    def loss_of(scale):
        f = lambda y, tt: scale * (jnp.asarray(x1) - y) / (1 - tt[:, None, None])  # noqa: E731
        return losses.flow_matching_loss(f, x_t, x0, x1, t, resolved, pad, losses.LossConfig(lddt_weight_schedule=True))[0]

    g = jax.grad(loss_of)(w)
    assert np.isfinite(float(g)) and float(g) != 0.0
    # pred x̂1 = x_t + v (1 - t) = x_t + scale (x1 - x_t): scale 1 is perfect
    assert float(loss_of(jnp.float32(1.0))) < float(loss_of(w))


def test_rg_loss_measures_relative_size():
    x0, x1, t, x_t = _noised(11)
    mask = np.ones((2, 40), np.float32)
    assert float(losses.rg_loss(x1, x1, mask)) == pytest.approx(0.0, abs=1e-10)
    moved = np.einsum("bni,ij->bnj", x1, _rot(3)) + np.float32(2.0)  # rotation + translation: same size
    assert float(losses.rg_loss(moved, x1, mask)) == pytest.approx(0.0, abs=1e-8)
    assert float(losses.rg_loss(0.5 * x1, x1, mask)) == pytest.approx(0.25, rel=1e-5)
    rg = np.sqrt(np.mean(np.sum((x1 - x1.mean(1, keepdims=True)) ** 2, -1), -1))
    np.testing.assert_allclose(np.asarray(losses.radius_of_gyration(x1, mask)), rg, rtol=1e-5)
    v = (x1 - x_t) / (1 - t[:, None, None])  # perfect velocity: x̂1 = x1
    cfg = losses.LossConfig(smooth_lddt_weight=0.0, rg_weight=3.0)
    _, aux = losses.flow_matching_loss(0.7 * v, x_t, x0, x1, t, mask, mask, cfg)
    assert float(aux["rg_loss"]) > 0 and float(aux["loss"]) == pytest.approx(float(aux["mse"]) + 3.0 * float(aux["rg_loss"]), rel=1e-5)
    _, aux = losses.flow_matching_loss(v, x_t, x0, x1, t, mask, mask, cfg)
    assert float(aux["rg_loss"]) < 1e-8


def test_noise_scales_are_one_or_log_uniform():
    from simplefold.training import step

    key = jax.random.key(0)
    np.testing.assert_array_equal(np.asarray(step.noise_scales(key, 64, 0.0, 0.05)), np.ones(64))
    k = np.asarray(step.noise_scales(key, 20000, 0.5, 0.05))
    scaled = k[k < 1.0]
    assert 0.47 < len(scaled) / len(k) < 0.53
    assert scaled.min() >= 0.05 and scaled.max() <= 1.0
    # log-uniform on [log 0.05, 0]: the median is sqrt(0.05)
    assert np.median(scaled) == pytest.approx(np.sqrt(0.05), rel=0.05)
    assert np.all(np.asarray(step.noise_scales(key, 100, 1.0, 0.05)) < 1.0)


def test_blur_noise_blurs_the_data_point_and_keeps_the_target_on_x1():
    """Blur augmentation: x_t = t·(x1 + a·δ) + (1−t)·x0 with the taper a = λ·min(1, (1−t)/0.1), the
    target velocity still lands on x1, and the blur itself moves atoms towards their neighbours."""
    from simplefold.training import step

    # two resolved atoms 1 Å apart move towards each other by the same amount; a masked one is ignored
    x = jnp.asarray([[[0.0, 0, 0], [1.0 / 16, 0, 0], [0.5, 0, 0]]])
    d = np.asarray(step.blur_offset(x, jnp.asarray([[1.0, 1.0, 0.0]])))
    assert d[0, 0, 0] > 0 and d[0, 1, 0] == pytest.approx(-d[0, 0, 0]) and np.all(d[0, 2] == 0)
    w = math.exp(-1.0 / (2 * step.BLUR_SIGMA**2))  # neighbour weight at 1 Å
    assert d[0, 0, 0] == pytest.approx(w / (1 + w) / 16, rel=1e-5)

    b, n = 6, 40
    x1, x0 = jnp.asarray(_chain(0, b, n)), jnp.asarray(_rand(1, (b, n, 3)))
    mask = jnp.ones((b, n))
    t = jnp.asarray([0.0, 0.3, 0.8, 0.9, 0.95, 1.0])
    key = jax.random.key(0)
    e = step.blur_noise(key, x1, mask, t, fraction=1.0, maximum=0.5)
    assert np.all(np.isfinite(np.asarray(e)))
    x_t = flow.interpolate(x0 + e, x1, t)
    tb = t[:, None, None]
    # which λ each copy drew: the same key, the same draws
    lam = np.asarray(jax.random.uniform(jax.random.split(key)[1], (b,), jnp.float32, 0.0, 0.5))
    a = lam * np.minimum(1.0, (1.0 - np.asarray(t)) / step.BLUR_TAPER)
    expected = tb * (x1 + a[:, None, None] * step.blur_offset(x1, mask)) + (1 - tb) * x0
    np.testing.assert_allclose(np.asarray(x_t), np.asarray(expected), atol=1e-5)
    # the velocity target x1 − (x0 + e) lands on x1 from x_t (t < 1)
    landed = x_t + (1 - tb) * flow.target_velocity(x0 + e, x1)
    np.testing.assert_allclose(np.asarray(landed)[:-1], np.asarray(x1)[:-1], atol=1e-5)
    # fraction 0: no blur at all
    assert not np.any(np.asarray(step.blur_noise(key, x1, mask, t, fraction=0.0, maximum=0.5)))

def test_clash_loss_penalises_only_new_close_contacts():
    from conftest import FIXTURES

    from simplefold.io.structure import read_structure

    s = read_structure(FIXTURES / "training" / "1PGA.pdb.gz")
    x = np.asarray(s.coords, np.float32)[None]
    m = np.ones(x.shape[:2], np.float32)
    assert float(losses.clash_loss(x, x, m)) == 0.0  # bonds and native contacts are not clashes
    y = x.copy()
    y[0, 100] = x[0, 300] + np.float32([1.0, 0.0, 0.0])  # atom 100 lands 1 Å from atom 300
    d_true = np.linalg.norm(x[0, 100] - x[0, 300])
    assert d_true > 3.0
    got = float(losses.clash_loss(y, x, m))
    assert got >= 1.5 / x.shape[1] - 1e-6  # at least the (2.5 − 1.0) Å overlap of that pair, per atom
    m[0, 100] = 0.0  # masked atoms do not count
    assert float(losses.clash_loss(y, x, m)) < got
    assert float(losses.clash_loss(0.5 * x, x, np.ones_like(m))) > 1.0


def test_bond_loss_sees_bonds_and_angles_only():
    from conftest import FIXTURES

    from simplefold.io.structure import read_structure

    s = read_structure(FIXTURES / "training" / "1PGA.pdb.gz")
    x = np.asarray(s.coords, np.float32)[None]
    m = np.ones(x.shape[:2], np.float32)
    assert float(losses.bond_loss(x, x, m)) == 0.0
    moved = np.einsum("bni,ij->bnj", x, _rot(5)) + np.float32(3.0)  # rigid motion: same distances
    assert float(losses.bond_loss(moved, x, m)) < 1e-9
    # 0.9× everything: a bond of d Å is 0.1·d short; the pairs are bonds (≈1.2–1.5 Å) and 1–3
    # pairs (≈2.2–2.5 Å), so the mean squared error lies between (0.12)² and (0.26)²
    got = float(losses.bond_loss(0.9 * x, x, m))
    assert 0.12**2 < got < 0.26**2
    # weighted by 1/(1 + σ²), σ = 16·(1 − t) Å the path's noise per coordinate at t
    for t, w in ((1.0, 1.0), (0.95, 1 / 1.64), (0.5, 1 / 65.0)):
        assert float(losses.bond_loss(0.9 * x, x, m, np.float32([t]))) == pytest.approx(got * w, rel=1e-4)
    # stretching one N–CA bond costs
    d = np.linalg.norm(x[0, :, None] - x[0, None], axis=-1)
    n_pairs = int(((d < 2.6) & (d > 0)).sum())
    assert n_pairs > 3 * x.shape[1]  # bonds and 1–3 partners: ≈ 4.7 per atom in 1PGA
    y = x.copy()
    y[0, 1] += (x[0, 1] - x[0, 0]) * 0.2  # atom 1 (CA) moves away from atom 0 (N) along the bond
    assert float(losses.bond_loss(y, x, m)) > 0.0
    m[0, 1] = 0.0  # unresolved atoms do not count
    assert float(losses.bond_loss(y, x, m)) == pytest.approx(0.0, abs=1e-10)
    # in the total loss with its weight; off (no key) by default
    x0, x1, t, x_t = _noised(12)
    mask = np.ones((2, 40), np.float32)
    v = (x1 - x_t) / (1 - t[:, None, None])
    cfg = losses.LossConfig(smooth_lddt_weight=0.0, bond_weight=2.0)
    _, aux = losses.flow_matching_loss(0.8 * v, x_t, x0, x1, t, mask, mask, cfg)
    assert float(aux["loss"]) == pytest.approx(float(aux["mse"]) + 2.0 * float(aux["bond_loss"]), rel=1e-5)
    pred_a = (x_t + 0.8 * v * (1 - t[:, None, None])) * 16.0
    true_a = x1 * 16.0
    assert float(aux["bond_loss"]) == pytest.approx(float(losses.bond_loss(pred_a - pred_a.mean(1, keepdims=True),
                                                                            true_a, mask, t)), rel=1e-4)
    _, aux = losses.flow_matching_loss(0.8 * v, x_t, x0, x1, t, mask, mask, losses.LossConfig())
    assert "bond_loss" not in aux


@pytest.mark.parametrize("field, value, match", [
    ("noise_scale_fraction", 1.5, r"loss\.noise_scale_fraction"),
    ("blur_fraction", -0.1, r"loss\.blur_fraction"),
    ("blur_max", 2.0, r"loss\.blur_max"),
    ("time_sampling", "beta", r"loss\.time_sampling"),
])
def test_train_step_refuses_out_of_range_augmentations(field, value, match):
    import dataclasses

    from simplefold.training import config as C
    from simplefold.training import step

    bad = dataclasses.replace(C.LossSection(), **{field: value})
    with pytest.raises(ValueError, match=match):
        step.make_train_step(None, None, C.OptimSection(), bad, multiplicity=2)

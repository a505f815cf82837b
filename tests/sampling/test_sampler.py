"""Tests of simplefold.sampling.sampler against the official EMSampler fixtures and analytic cases."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import PARITY, PARITY_CASES, parity_features

from simplefold.sampling import sampler

# Tolerances from the fixture README (|port − ref| ≤ atol + rtol·|ref|).
ARITH = dict(atol=1e-5, rtol=1e-6)  # one step of arithmetic from stored inputs
END_TO_END_8 = dict(atol=1e-3, rtol=1e-5)  # 8-step run with the real network
END_TO_END_500 = dict(atol=1e-4, rtol=1e-4)  # 500-step run with the real network
VELOCITY = dict(atol=1e-4, rtol=1e-4)


def _fixture(case):
    return np.load(PARITY / f"sampler_{case}.npz")


def _features(case):
    return parity_features(case)


def _replay_velocity(time_grid, velocities):
    """A fake network that returns the recorded velocity of the step whose t it is called with."""

    def fn(params, y, t, feats):
        grid, vel = params
        return vel[jnp.argmin(jnp.abs(grid - t[0]))]

    return sampler.VelocityModel(fn, (jnp.asarray(time_grid[:-1]), jnp.asarray(velocities)))


# ----------------------------------------------------------------------------- config / grid


def test_config_defaults_and_grid():
    cfg = sampler.SamplerConfig()
    assert (cfg.num_steps, cfg.tau, cfg.t_start, cfg.w_cutoff, cfg.log_timesteps) == (500, 0.1, 1e-4, 0.99, True)
    np.testing.assert_array_equal(sampler.SamplerConfig(num_steps=8).time_grid(), _fixture("trpcage")["time_grid"])
    np.testing.assert_allclose(sampler.SamplerConfig(num_steps=4, log_timesteps=False).time_grid(), np.linspace(1e-4, 1, 5), rtol=1e-6)
    with pytest.raises(ValueError):
        sampler.SamplerConfig(tau=-1.0)


def test_diffusion_coefficient():
    t = jnp.array([0.0, 0.5, 0.98999, 0.99, 0.999], jnp.float32)
    w = np.asarray(sampler.diffusion_coefficient(t, 0.99))
    np.testing.assert_allclose(w[:3], (1 - np.asarray(t[:3])) / (np.asarray(t[:3]) + 0.01), rtol=1e-6)
    np.testing.assert_array_equal(w[3:], 0.0)


# ----------------------------------------------------------------------------- fixture replay (no network)


@pytest.mark.parametrize("case", PARITY_CASES)
@pytest.mark.parametrize("run", [0, 1])
def test_step_arithmetic_replays_fixture(case, run):
    s = _fixture(case)
    grid, tau = s["time_grid"], float(s["taus"][run])
    pad = np.load(PARITY / f"features_{case}.npz")["atom_pad_mask"][0]
    y_pre, y_c, vel = s[f"run{run}_y_pre"], s[f"run{run}_y_centered"], s[f"run{run}_velocity"]
    nxt = np.concatenate([y_pre[1:], s[f"run{run}_denoised_coords"][None]])
    for i in range(len(grid) - 1):
        np.testing.assert_allclose(sampler._center_samples(jnp.asarray(y_pre[i]), jnp.asarray(pad)), y_c[i], **ARITH)
        got = sampler.em_update(y_c[i], vel[i], grid[i], grid[i + 1], s["eps"][i], tau, 0.99)
        np.testing.assert_allclose(got, nxt[i], **ARITH, err_msg=f"step {i}")
    np.testing.assert_array_equal(s[f"run{run}_t_model"], np.repeat(grid[:-1, None], 2, 1))


@pytest.mark.parametrize("case", PARITY_CASES)
def test_sample_replays_fixture_with_recorded_velocities(case):
    """The whole jitted scan (centring, score, cutoff, noise) fed with the recorded velocities."""
    s = _fixture(case)
    feats = _features(case)
    for run in (0, 1):
        vm = _replay_velocity(s["time_grid"], s[f"run{run}_velocity"])
        out = sampler.sample(vm, feats, num_steps=8, tau=float(s["taus"][run]), initial_noise=s["initial_noise"], eps=s["eps"])
        assert out.shape == s["initial_noise"].shape and out.dtype == jnp.float32
        np.testing.assert_allclose(out, s[f"run{run}_denoised_coords"], **ARITH)
        np.testing.assert_allclose(
            sampler.postprocess(out, feats["atom_pad_mask"]), s[f"run{run}_denoised_coords_angstrom"],
            atol=16 * ARITH["atol"], rtol=ARITH["rtol"],
        )


def test_postprocess_centres_and_scales():
    x = np.random.default_rng(0).normal(size=(2, 6, 3)).astype(np.float32) + 5
    mask = np.array([1, 1, 1, 1, 0, 0], np.float32)
    out = np.asarray(sampler.postprocess(x, mask))
    np.testing.assert_allclose(out[:, :4].mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(out, (x - x[:, :4].mean(1, keepdims=True)) * 16, atol=1e-5)


# ----------------------------------------------------------------------------- analytic behaviour


def _point_mass_velocity(x1):
    """Exact velocity field when the data distribution is the single structure x1: (x1 − y)/(1 − t)."""

    def fn(params, y, t, feats):
        return (params - y) / (1.0 - t[:, None, None])

    return sampler.VelocityModel(fn, jnp.asarray(x1))


@pytest.mark.parametrize("tau", [0.0, 0.1])
def test_point_mass_is_reached_exactly(tau):
    # With the exact field the last step (t ≥ w_cutoff: no score, no noise; dt = 1 − t) lands on x1.
    n, real = 40, 33
    rng = np.random.default_rng(1)
    x1 = np.zeros((1, n, 3), np.float32)
    x1[0, :real] = rng.normal(size=(real, 3)) * 0.5
    feats = {"atom_pad_mask": (np.arange(n) < real).astype(np.float32)[None]}
    out = sampler.sample(_point_mass_velocity(x1), feats, num_steps=8, tau=tau, key=jax.random.key(0), num_samples=3)
    np.testing.assert_allclose(out, np.broadcast_to(x1, (3, n, 3)), atol=1e-4)


def test_tau_zero_is_deterministic_and_tau_positive_is_not():
    n = 24
    feats = {"atom_pad_mask": np.ones((1, n), np.float32)}
    x1 = np.random.default_rng(2).normal(size=(1, n, 3)).astype(np.float32)

    def soft(params, y, t, feats):  # a smooth field that does not snap to one point
        return jnp.tanh(params - y)

    vm = sampler.VelocityModel(soft, jnp.asarray(x1))
    y0 = np.random.default_rng(3).normal(size=(2, n, 3)).astype(np.float32)
    a = sampler.sample(vm, feats, num_steps=6, tau=0.0, key=jax.random.key(1), initial_noise=y0)
    b = sampler.sample(vm, feats, num_steps=6, tau=0.0, key=jax.random.key(2), initial_noise=y0)
    c = sampler.sample(vm, feats, num_steps=6, tau=0.0, initial_noise=y0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    d = sampler.sample(vm, feats, num_steps=6, tau=0.1, key=jax.random.key(1), initial_noise=y0)
    assert np.abs(np.asarray(d) - np.asarray(a)).max() > 1e-3


# ----------------------------------------------------------------------------- randomness / chunking


def test_sample_keys_depend_only_on_seed_target_index():
    k = sampler.sample_keys(42, "T1024", 5)
    data = lambda keys: np.asarray(jax.random.key_data(keys))  # noqa: E731
    np.testing.assert_array_equal(data(k), data(sampler.sample_keys(42, "T1024", 5)))
    np.testing.assert_array_equal(data(k)[2:4], data(sampler.sample_keys(42, "T1024", 2, start=2)))
    assert not np.array_equal(data(k), data(sampler.sample_keys(42, "T1025", 5)))
    assert not np.array_equal(data(k), data(sampler.sample_keys(43, "T1024", 5)))
    assert len({tuple(r) for r in data(k)}) == 5


def test_noise_of_an_atom_does_not_depend_on_padding():
    keys = sampler.sample_keys(0, "x", 3)
    a, b = sampler.draw_initial_noise(keys, 160), sampler.draw_initial_noise(keys, 192)
    np.testing.assert_array_equal(a, b[:, :160])
    np.testing.assert_array_equal(sampler.draw_step_noise(keys, 7, 160), sampler.draw_step_noise(keys, 7, 192)[:, :160])
    assert not np.array_equal(sampler.draw_step_noise(keys, 7, 160), sampler.draw_step_noise(keys, 8, 160))
    assert np.abs(np.asarray(a).std() - 1) < 0.05


def test_input_validation():
    feats = _features("trpcage")
    vm = _point_mass_velocity(np.zeros((1, 160, 3), np.float32))
    with pytest.raises(ValueError, match="batch size 1"):
        sampler.sample(vm, {"atom_pad_mask": np.ones((2, 160), np.float32)}, num_steps=2, key=jax.random.key(0))
    with pytest.raises(ValueError, match="eps must have shape"):
        sampler.sample(vm, feats, num_steps=2, initial_noise=np.zeros((2, 160, 3)), eps=np.zeros((3, 2, 160, 3)))
    with pytest.raises(ValueError, match="needs key"):
        sampler.sample(vm, feats, num_steps=2, tau=0.1, initial_noise=np.zeros((2, 160, 3)))
    with pytest.raises(ValueError, match="per-sample keys"):
        sampler.sample(vm, feats, num_steps=2, key=sampler.sample_keys(0, "a", 3), num_samples=2)


# ----------------------------------------------------------------------------- with the official network


@pytest.mark.parametrize("case", PARITY_CASES)
def test_velocity_on_stored_states(official_model, case):
    s = _fixture(case)
    feats = _features(case)
    for run in (0, 1):
        y_c = s[f"run{run}_y_centered"]
        for i in range(y_c.shape[0]):
            v = official_model(y_c[i], s[f"run{run}_t_model"][i], feats)["predict_velocity"]
            np.testing.assert_allclose(v, s[f"run{run}_velocity"][i], **VELOCITY, err_msg=f"run {run} step {i}")


@pytest.mark.parametrize("case", PARITY_CASES)
def test_sampler_end_to_end_8_steps(official_model, case):
    s = _fixture(case)
    feats = _features(case)
    for run in (0, 1):
        out = sampler.sample(official_model, feats, num_steps=8, tau=float(s["taus"][run]), initial_noise=s["initial_noise"], eps=s["eps"])
        np.testing.assert_allclose(out, s[f"run{run}_denoised_coords"], **END_TO_END_8)
        np.testing.assert_allclose(
            sampler.postprocess(out, feats["atom_pad_mask"]), s[f"run{run}_denoised_coords_angstrom"],
            atol=16 * END_TO_END_8["atol"], rtol=END_TO_END_8["rtol"],
        )


def test_sampler_end_to_end_500_steps(official_model):
    s = np.load(PARITY / "sampler_long_trpcage.npz")
    feats = _features("trpcage")
    np.testing.assert_array_equal(sampler.SamplerConfig().time_grid(), s["time_grid"])
    # the recorded steps: network velocity on the recorded states (centred as the sampler does)
    pad = jnp.asarray(feats["atom_pad_mask"][0])
    for j, i in enumerate(s["recorded_steps"]):
        y_c = sampler._center_samples(jnp.asarray(s["y_pre_recorded"][j]), pad)
        v = official_model(y_c, np.full((1,), s["time_grid"][i], np.float32), feats)["predict_velocity"]
        np.testing.assert_allclose(v, s["velocity_recorded"][j], **VELOCITY, err_msg=f"step {i}")
    out = sampler.sample(official_model, feats, num_steps=500, tau=0.1, initial_noise=s["initial_noise"], eps=s["eps"])
    out = np.asarray(out)
    np.testing.assert_allclose(out, s["denoised_coords"], **END_TO_END_500)
    np.testing.assert_allclose(
        sampler.postprocess(out, feats["atom_pad_mask"]), s["denoised_coords_angstrom"],
        atol=16 * END_TO_END_500["atol"], rtol=END_TO_END_500["rtol"],
    )


# ----------------------------------------------------------------------------- stability of the grid


def test_noise_gain_matches_a_step_with_an_exact_denoiser():
    """For data concentrated on one structure x*, the exact velocity is (x* − y)/(1 − t); one official
    step then maps the noise n = y − t·x* to g·n with g from ``SamplerConfig.noise_gains``."""
    cfg = sampler.SamplerConfig(num_steps=10, tau=0.0)
    grid = cfg.time_grid()
    gains = cfg.noise_gains()
    rng = np.random.default_rng(0)
    x_star = jnp.asarray(rng.normal(size=(1, 40, 3)) * 0.6, jnp.float32)
    for i in range(cfg.num_steps):
        t, t_next = float(grid[i]), float(grid[i + 1])
        noise = jnp.asarray(rng.normal(size=(1, 40, 3)), jnp.float32)
        y = t * x_star + (1.0 - t) * noise
        v = (x_star - y) / (1.0 - t)
        y_next = sampler.em_update(y, v, grid[i], grid[i + 1], jnp.zeros_like(y), 0.0, cfg.w_cutoff)
        ratio = np.asarray(y_next - t_next * x_star) / np.asarray(y - t * x_star)
        np.testing.assert_allclose(ratio, gains[i], rtol=2e-3, atol=2e-4)


def test_official_grid_is_unstable_below_230_steps():
    assert sampler.SamplerConfig(num_steps=10).max_noise_gain() == pytest.approx(36.27, abs=0.01)
    assert sampler.SamplerConfig(num_steps=100).max_noise_gain() == pytest.approx(3.54, abs=0.01)
    assert sampler.min_stable_steps() == 230
    assert not sampler.SamplerConfig(num_steps=229).stable and sampler.SamplerConfig(num_steps=230).stable
    assert sampler.SamplerConfig().stable and sampler.SamplerConfig().stability_warning() is None  # 500
    msg = sampler.SamplerConfig(num_steps=20).stability_warning()
    assert "20 sampler steps" in msg and "19.8×" in msg and "stable from 230 steps" in msg
    # the uniform grid has a small first step only with many steps
    assert sampler.min_stable_steps(sampler.SamplerConfig(log_timesteps=False)) == 100


# ----------------------------------------------------------------------------- progress segments


@pytest.mark.parametrize("num_steps", [23, 40])  # 23: the last segment is padded; 40: exact segments
def test_progress_segments_give_the_same_samples_bit_for_bit(official_model, num_steps):
    """sample(on_step=...) runs the trajectory in PROGRESS_SEGMENTS segments and reports after
    each; the samples are identical to the single scan, with keys and with replayed noise."""
    feats = _features("trpcage")
    key = sampler.sample_keys(3, "trpcage", 2)
    calls = []
    plain = sampler.sample(official_model, feats, num_steps=num_steps, key=key)
    seg = sampler.sample(official_model, feats, num_steps=num_steps, key=key, on_step=lambda d, t: calls.append((d, t)))
    np.testing.assert_array_equal(np.asarray(seg), np.asarray(plain))
    assert calls[-1] == (num_steps, num_steps) and len(calls) <= sampler.PROGRESS_SEGMENTS
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(done)) == len(done) and len(calls) >= min(num_steps, 10)

    s = _fixture("trpcage")  # replay arrays (8 steps)
    plain = sampler.sample(official_model, feats, num_steps=8, tau=0.1, initial_noise=s["initial_noise"], eps=s["eps"])
    calls.clear()
    seg = sampler.sample(official_model, feats, num_steps=8, tau=0.1, initial_noise=s["initial_noise"], eps=s["eps"],
                         on_step=lambda d, t: calls.append(d))
    np.testing.assert_array_equal(np.asarray(seg), np.asarray(plain))
    assert calls == list(range(1, 9))

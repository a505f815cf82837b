"""simplefold.reproducible and the padding-invariant attention: the pieces that make a sample
bit-identical across chunk sizes and buckets, and the end-to-end check on four models."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from simplefold.model import layers
from simplefold.reproducible import CPU_COMPILER_OPTIONS, padding_invariant_sum, stable_jit
from simplefold.sampling import flow


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


# ----------------------------------------------------------------------------- end to end
#
# One test, four models: a sample must be the same to the bit whether it runs alone, in a chunk,
# or padded to a larger bucket. Each case runs sample indices [start, stop) of one target with at
# most ``chunk`` samples per call, optionally in a larger bucket, and the result is compared with
# the same indices of the reference run (samples 0..3 in one chunk of 4).


@dataclasses.dataclass
class _Run:
    coords: np.ndarray  # (S, atoms, 3)
    plddt: np.ndarray | None  # (S, residues), None without a pLDDT head
    plan: object = None  # the Folder's TargetPlan (Folder cases)


def _mixing_velocity():
    """A small random network that mixes atoms (attention over atom slots) and reads the features."""
    from simplefold.sampling import sampler

    rng = np.random.default_rng(5)
    params = {
        "w_in": jnp.asarray(rng.normal(size=(4, 16)) / 2, jnp.float32),
        "w_out": jnp.asarray(rng.normal(size=(16, 3)) / 4, jnp.float32),
    }

    def fn(p, y, t, feats):
        h = jnp.concatenate([y, jnp.broadcast_to(feats["ref_pos"][..., :1], y.shape[:2] + (1,))], -1) @ p["w_in"]
        h = jnp.tanh(h + t[:, None, None])
        att = jax.nn.softmax(jnp.einsum("snc,smc->snm", h, h) / 4.0, axis=-1)
        return jnp.einsum("snm,smc->snc", att, h) @ p["w_out"] - y

    return sampler.VelocityModel(fn, params)


def _sampler_runner(model, case: str, seed: int, num_steps: int):
    """Runs of ``sampler.sample`` on the batch-1 features of a parity case; a bucket pads them."""
    from conftest import parity_features

    from simplefold import features as F
    from simplefold.sampling import sampler

    feats = parity_features(case)
    keys = sampler.sample_keys(seed, case, 4)
    n, m = F.num_atoms(feats), F.num_tokens(feats)

    def run(start, stop, chunk, bucket=None):
        f = feats
        if bucket is not None:  # extra masked residues and atom slots
            # the port-only masks say which slots are bucket padding (the official layout has none)
            masks = dict(atom_slot_mask=np.ones((1, n), np.float32), token_pad_mask=np.ones((1, m), np.float32))
            f = F.pad_to_bucket({**feats, **masks}, m + bucket[0], n + bucket[1], batched=True)
            assert f["atom_slot_mask"].sum() == n and f["token_pad_mask"].sum() == m
        y = np.asarray(sampler.sample(model, f, key=keys[start:stop], chunk_size=chunk, num_steps=num_steps, tau=0.1))
        assert y.shape == (stop - start, n + (bucket[1] if bucket else 0), 3) and np.all(np.isfinite(y))
        return _Run(y[:, :n], None)

    return run


def _folder_runner(model, sequence: str, seed: int, num_steps: int):
    """Runs of a ``Folder`` (features, chunks, pLDDT); a bucket is a one-bucket ``token_buckets``."""
    from simplefold.predict.engine import Folder
    from simplefold.predict.options import FoldOptions
    from simplefold.predict.targets import Target

    def run(start, stop, chunk, bucket=None, seed=seed, model=model):
        assert start == 0  # a Folder folds samples 0..S-1
        opts = FoldOptions(num_samples=stop, seed=seed, num_steps=num_steps, plddt=True, batch_size=chunk,
                           **({"token_buckets": (bucket,)} if bucket else {}))
        res = Folder(model, opts).fold_target(Target("a", sequence))
        plddt = np.stack([s.plddt for s in res.samples]) if res.samples[0].plddt is not None else None
        return _Run(np.stack([s.structure.coords for s in res.samples]), plddt, res.plan)

    return run


def _case(name, request):
    """(runner, variants [(start, stop, chunk, bucket)], least difference between samples 0 and 1)."""
    if name == "mixing":  # attention over every slot, padding included: no bucket variant
        return _sampler_runner(_mixing_velocity(), "trpcage", 7, 3), [(2, 3, 1, None), (0, 4, 3, None)], 0.1
    if name == "official":
        runner = _sampler_runner(request.getfixturevalue("official_model"), "gb1", 3, 6)
        return runner, [(2, 3, 1, None), (0, 4, 3, None), (1, 3, 4, (40, 352))], 0.1
    if name == "tiny":
        runner = _folder_runner(request.getfixturevalue("tiny_model"), "MKTAYIAKQRQISFVKSHFSRQ", 7, 20)
        return runner, [(0, 4, 1, None), (0, 4, 1, 64), (0, 4, 1, 256), (0, 3, 3, None)], 1.0
    runner = _folder_runner(request.getfixturevalue("demo_model"), "NLYIQWLKDGGPSSGRPPPS", 11, 40)
    return runner, [(0, 4, 1, None), (0, 4, 1, 64), (0, 3, 3, 128)], 0.5


@pytest.mark.parametrize("name", ["mixing", "official", "tiny", "demo"])
def test_sample_is_bit_identical_alone_in_a_chunk_and_in_a_larger_bucket(name, request):
    """Same seed -> the same coordinates (and pLDDT) to the bit, whatever the chunk or bucket
    (why this holds on CPU: simplefold/reproducible.py), for a toy velocity, the official-code
    golden network, a tiny random model and the bundled demo model."""
    run, variants, least_difference = _case(name, request)
    ref = run(0, 4, 4)
    if ref.plan is not None:
        assert ref.plan.chunk == 4 and ref.plan.bucket_tokens == 32
    runs = {}
    for start, stop, chunk, bucket in variants:
        got = runs[start, stop, chunk, bucket] = run(start, stop, chunk, bucket)
        np.testing.assert_array_equal(got.coords, ref.coords[start:stop], err_msg=f"{name} {start}:{stop}/{chunk}")
        if ref.plddt is not None:
            np.testing.assert_array_equal(got.plddt, ref.plddt[start:stop])
        if got.plan is not None:  # the variant really ran in other chunks / buckets
            assert got.plan.chunk == chunk and got.plan.num_chunks == -(-stop // chunk)
            if bucket is not None:
                assert got.plan.bucket_tokens == bucket and got.plan.bucket_atoms > ref.plan.bucket_atoms
    assert np.abs(ref.coords[0] - ref.coords[1]).max() > least_difference  # the samples themselves differ
    if name == "demo":
        assert ref.plan.bucket_atoms == 256 and runs[0, 3, 3, 128].plan.bucket_atoms == 1024
    if name == "tiny":  # the seed and the network matter: the identity is not trivial
        from conftest import random_tiny

        from simplefold.predict.loading import LoadedModel

        assert np.abs(run(0, 4, 4, seed=8).coords - ref.coords).max() > 1.0
        other = LoadedModel(network=random_tiny(1), config=request.getfixturevalue("tiny_model").config, name="tiny1")
        assert np.abs(run(0, 4, 4, model=other).coords - ref.coords).max() > 0.1


def test_one_key_means_fold_in_of_the_sample_index():
    """A single key gives sample k the key fold_in(key, k), so it equals passing those keys."""
    from conftest import parity_features

    from simplefold.sampling import sampler

    model, feats, kw = _mixing_velocity(), parity_features("trpcage"), dict(num_steps=3, tau=0.1)
    single = np.asarray(sampler.sample(model, feats, key=jax.random.key(3), num_samples=3, **kw))
    folded = jax.vmap(lambda k: jax.random.fold_in(jax.random.key(3), k))(jnp.arange(3, dtype=jnp.uint32))
    np.testing.assert_array_equal(np.asarray(sampler.sample(model, feats, key=folded, **kw)), single)

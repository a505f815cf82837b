"""FoldingDiT / PLDDTHead internals: constant tables, blocked local attention, masks, batching, jit, dtypes."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from conftest import PARITY
from simplefold.weights.checkpoints import load_official_model
from simplefold.model import FoldingConfig, FoldingDiT, PLDDTConfig, PLDDTHead
from simplefold.model import embeddings as emb
from simplefold.model.folding import FoldingModel
from simplefold.model.layers import NEG_INF, local_attention, local_window_bias
from simplefold.model.plddt import PLDDTModel

SUMMARY = json.loads((PARITY / "folding_d64_h4.json").read_text())["summary"]


@pytest.fixture(scope="module")
def folding():
    return load_official_model(PARITY / "folding_d64_h4.ckpt", SUMMARY)


@pytest.fixture(scope="module")
def trpcage():
    return dict(np.load(PARITY / "features_trpcage.npz")), np.load(PARITY / "forward_trpcage.npz")


# ---------------------------------------------------------------- constant tables
def test_constant_tables_against_official():
    """Bit-identical to the tables the official forward builds (D = 64 fixture); every released
    width is checked in test_official_widths.py."""
    c = np.load(PARITY / "constants_d64_h4.npz")
    cfg = FoldingConfig.from_official(SUMMARY)
    np.testing.assert_array_equal(emb.rope_freqs(cfg.head_dim, 4, 100.0), c["rope_freqs_trunk_hd16"])
    np.testing.assert_array_equal(emb.rope_freqs(cfg.atom_head_dim, 4, 100.0), c["rope_freqs_atom_hd16"])
    np.testing.assert_array_equal(emb.abs_pe_omega(cfg.hidden_size), c["abs_pe_omega"])
    np.testing.assert_array_equal(emb.timestep_freqs(128, 10000.0), c["timestep_freqs"])
    np.testing.assert_array_equal(emb.fourier_freq_bands(128, 0.0, 12.0), c["fourier_freq_bands"])


# ---------------------------------------------------------------- local attention
def _official_dense_bias(n: int, nq: int = 32, nk: int = 128) -> np.ndarray:
    nt = -(-n // nq)
    allowed = np.zeros((nt * nq, nt * nq), np.float32)
    for b in range(nt):
        allowed[b * nq : (b + 1) * nq, max(0, nq * b - (nk - nq) // 2) : nq * b + (nq + nk) // 2] = 1
    return ((1 - allowed) * -1e10)[:n, :n]


def _dense_from_blocked(bias: np.ndarray, n: int, nq: int = 32, nk: int = 128) -> np.ndarray:
    out = np.full((n, n), NEG_INF, np.float32)
    for b in range(bias.shape[0]):
        for i in range(nk):
            p = nq * b - (nk - nq) // 2 + i
            if 0 <= p < n:
                out[nq * b : min(n, nq * (b + 1)), p] = bias[b, i]
    return out


def test_window_bias_reproduces_official_bias():
    official = np.load(PARITY / "forward_trpcage_intermediates.npz")["atom_local_attn_bias"]
    blocked = np.asarray(local_window_bias(official.shape[0], 32, 128))[0]
    np.testing.assert_array_equal(_dense_from_blocked(blocked, official.shape[0]), official)
    np.testing.assert_array_equal(_dense_from_blocked(np.asarray(local_window_bias(96, 32, 128))[0], 96), _official_dense_bias(96))


@pytest.mark.parametrize("n", [96, 100, 200])
def test_blocked_attention_equals_dense(n):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(kk, (2, n, 3, 8)) for kk in (k1, k2, k3))
    key_mask = np.ones((2, n), bool)
    key_mask[1, n // 3 :: 5] = False
    got = local_attention(q, k, v, local_window_bias(n, 32, 128, jnp.asarray(key_mask)), 32, 128)
    bias = _official_dense_bias(n)[None] + np.where(key_mask, 0.0, -1e10)[:, None, :]
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8) + bias[:, None]
    want = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, -1), v)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-6, rtol=1e-5)


# ---------------------------------------------------------------- batching, jit, masks
def test_batch1_features_broadcast_to_batch(folding, trpcage):
    feats, ref = trpcage
    full = folding(ref["noised_pos"], ref["t"], feats)
    one = folding(ref["noised_pos"], ref["t"], {k: v[:1] for k, v in feats.items()})
    for k in full:
        np.testing.assert_allclose(np.asarray(one[k]), np.asarray(full[k]), atol=1e-6, rtol=1e-6)


def test_jit_equals_eager(folding, trpcage):
    feats, ref = trpcage
    eager = folding.module(ref["noised_pos"], ref["t"], feats)
    jitted = folding(ref["noised_pos"], ref["t"], folding.prepare(feats))
    for k in eager:
        np.testing.assert_allclose(np.asarray(jitted[k]), np.asarray(eager[k]), atol=2e-5, rtol=1e-5)


def _bucket_pad(feats, noise, extra_atoms: int, extra_tokens: int, rng):
    """Append bucket padding after the official layout, with junk values where it must not matter."""
    B, N, M = feats["atom_to_token"].shape
    out = {}
    for k, v in feats.items():
        if v.ndim >= 2 and v.shape[1] == N and k != "token_to_rep_atom":
            pad = [(0, 0)] * v.ndim
            pad[1] = (0, extra_atoms)
            v = np.pad(v, pad)
        if k in ("token_to_rep_atom", "r_set_to_rep_atom"):
            v = np.pad(v, ((0, 0), (0, extra_tokens), (0, extra_atoms)))
        elif v.ndim >= 2 and v.shape[1] == M:
            pad = [(0, 0)] * v.ndim
            pad[1] = (0, extra_tokens)
            v = np.pad(v, pad)
            if k == "esm_s":
                v[:, M:] = rng.normal(size=v[:, M:].shape)
            if k == "residue_index":
                v[:, M:] = np.arange(M, M + extra_tokens)
        if k == "atom_to_token":
            v = np.pad(v, ((0, 0), (0, 0), (0, extra_tokens)))
        out[k] = v
    out["ref_pos"][:, N:] = rng.normal(size=(B, extra_atoms, 3))
    out["atom_slot_mask"] = np.concatenate([np.ones((B, N)), np.zeros((B, extra_atoms))], 1).astype(np.float32)
    out["token_pad_mask"] = np.concatenate([np.ones((B, M)), np.zeros((B, extra_tokens))], 1).astype(np.float32)
    noise = np.concatenate([noise, rng.normal(size=(B, extra_atoms, 3)).astype(np.float32)], 1)
    return out, noise


def test_bucket_padding_does_not_change_real_outputs(folding, trpcage):
    feats, ref = trpcage
    B, N, M = feats["atom_to_token"].shape
    base = folding(ref["noised_pos"], ref["t"], feats)
    padded, noise = _bucket_pad(feats, ref["noised_pos"], 64, 6, np.random.default_rng(0))
    out = folding(noise, ref["t"], padded)
    np.testing.assert_allclose(np.asarray(out["predict_velocity"])[:, :N], np.asarray(base["predict_velocity"]), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out["latent"])[:, :M], np.asarray(base["latent"]), atol=1e-5, rtol=1e-5)
    # the masks do the work: without them the padding leaks into the real atoms
    unmasked = folding(noise, ref["t"], {k: v for k, v in padded.items() if k not in ("atom_slot_mask", "token_pad_mask")})
    assert np.abs(np.asarray(unmasked["latent"])[:, :M] - np.asarray(base["latent"])).max() > 1e-3


def test_plddt_head_token_mask():
    head = PLDDTModel(PLDDTHead(PLDDTConfig.tiny(hidden_size=32, num_heads=2), rngs=nnx.Rngs(1)))
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(2, 10, 32)).astype(np.float32)
    pos = {"residue_index": np.arange(10)[None].repeat(2, 0), "entity_id": np.zeros((2, 10)), "asym_id": np.zeros((2, 10)),
           "sym_id": np.zeros((2, 10))}
    base = head(latent, pos)
    padded_latent = np.concatenate([latent, rng.normal(size=(2, 4, 32)).astype(np.float32)], 1)
    padded = {k: np.concatenate([v, np.zeros((2, 4))], 1) for k, v in pos.items()}
    padded["token_pad_mask"] = np.concatenate([np.ones((2, 10)), np.zeros((2, 4))], 1)
    out = head(padded_latent, padded)
    np.testing.assert_allclose(np.asarray(out["plddt_logits"])[:, :10], np.asarray(base["plddt_logits"]), atol=1e-5, rtol=1e-5)
    assert ((np.asarray(out["plddt"]) >= 0) & (np.asarray(out["plddt"]) <= 1)).all()


# ---------------------------------------------------------------- configs and dtypes
def test_tiny_embedding_model_and_bf16(trpcage):
    feats, ref = trpcage
    cfg = FoldingConfig.tiny()
    model = FoldingDiT(cfg, rngs=nnx.Rngs(0))
    n_params = sum(int(np.prod(v.get_value().shape)) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert n_params < 3_000_000
    # give the zero-initialised adaLN layers weights so that every path contributes
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        if "adaLN_modulation" in path or path[:2] == ("final_layer", "linear"):
            var.set_value(0.05 * jax.random.normal(jax.random.key(len(path)), var.get_value().shape))
    no_esm = {k: v for k, v in feats.items() if k != "esm_s"}
    out = FoldingModel(model)(ref["noised_pos"], ref["t"], no_esm)
    assert out["predict_velocity"].shape == ref["noised_pos"].shape and out["latent"].shape == (2, 20, cfg.hidden_size)
    assert np.isfinite(np.asarray(out["predict_velocity"])).all()
    bf = FoldingDiT(FoldingConfig.tiny(dtype="bfloat16"), rngs=nnx.Rngs(0))
    nnx.update(bf, nnx.state(model))
    out16 = FoldingModel(bf)(ref["noised_pos"], ref["t"], no_esm)
    v32, v16 = np.asarray(out["predict_velocity"]), np.asarray(out16["predict_velocity"])
    assert v16.dtype == np.float32
    assert np.abs(v16 - v32).max() < 0.05 * np.abs(v32).max() + 1e-3
    assert FoldingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        FoldingConfig.tiny(condition="msa")

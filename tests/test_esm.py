"""ESM2 network parity with fair-esm, SimpleFold's esm_s, conversion and the feature cache."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest

from conftest import PARITY
from torch_writer import save_torch_zip

from simplefold import esm as esm_mod
from simplefold.weights import esm as esm_weights
from simplefold import residues
from simplefold.model import esm2
from simplefold.weights.torch_reader import open_state_dict
from simplefold.utils.files import sha256_file

ESM_PT = PARITY / "esm2_t2_d64.pt"
ATOL = RTOL = 1e-5


def assert_close(actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected)
    bad = err > ATOL + RTOL * np.abs(expected)
    assert not bad.any(), f"max abs err {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"


@pytest.fixture(scope="module")
def pair():
    return dict(np.load(PARITY / "esm2_pair.npz"))


@pytest.fixture(scope="module")
def sequences():
    return json.loads((PARITY / "esm2_t2_d64.json").read_text())["batch_case"]["sequences"]


@pytest.fixture(scope="module")
def encoder():
    return esm_weights.load_official_esm2(ESM_PT)


@pytest.fixture(scope="module")
def state_dict():
    with open_state_dict(ESM_PT, prefix="model") as sd:
        return collections.OrderedDict((k, sd[k]) for k in sd)


def test_every_layer_matches_fair_esm(encoder, pair):
    reps = np.asarray(encoder(pair["esm_tokens"]))
    assert reps.shape == (2, 37, 3, 64)
    for k in range(3):
        assert_close(reps[:, :, k], pair[f"repr_{k}"])


def test_sizes_read_from_tensor_shapes(encoder):
    assert encoder.config == esm2.ESM2Config(num_layers=2, embed_dim=64, attention_heads=4, ffn_dim=256)


def test_tokens_match_official_processor(pair, sequences):
    encoded = [esm_mod.encode_sequence(s) for s in sequences]
    tokens = esm_mod.batch_tokens([t for t, _ in encoded])
    np.testing.assert_array_equal(tokens, pair["esm_tokens"])
    np.testing.assert_array_equal(residues.sequence_to_af2(sequences[1]), pair["af2_aatype"][1])


def test_esm_features_equal_fixture(encoder, pair, sequences):
    feats = esm_mod.esm_features(encoder, sequences)
    for i, length in enumerate(pair["lengths"]):
        assert feats[i].dtype == np.float32
        assert_close(feats[i], pair["esm_s"][i, :length])


def test_padding_and_batching_do_not_change_features(encoder, sequences):
    batched = esm_mod.esm_features(encoder, sequences, bucket=64)
    for i, s in enumerate(sequences):
        alone = esm_mod.esm_features(encoder, [s], bucket=8, max_batch_tokens=8)[0]
        assert_close(alone, batched[i])


def test_token_dropout_rescales_embedding_like_fair_esm(encoder, state_dict):
    # one <mask> among 5 non-padding tokens: fair-esm zeroes its row and scales by 0.88 / (1 - 1/5)
    tokens = np.array([[residues.ESM_CLS, 5, residues.ESM_MASK, 6, residues.ESM_EOS, residues.ESM_PAD]])
    layer0 = np.asarray(encoder(tokens))[0, :, 0]
    table = state_dict["encoder.sentence_encoder.embed_tokens.weight"]
    expected = table[tokens[0]] * np.float32(1 - 0.15 * 0.8) / np.float32(1 - 1 / 5)
    expected[2] = 0.0  # the <mask> row
    expected[5] = 0.0  # padding
    assert_close(layer0, expected)


def test_chains_joined_with_glycine_linker():
    tokens, keep = esm_mod.encode_sequence("AC:D")
    g = residues.ESM_INDEX["G"]
    expected = [residues.ESM_INDEX["A"], residues.ESM_INDEX["C"]] + [g] * 25 + [residues.ESM_INDEX["D"]]
    np.testing.assert_array_equal(tokens, expected)
    assert keep.sum() == 3 and not keep[2:27].any()
    # unknown letters go to X
    np.testing.assert_array_equal(esm_mod.encode_sequence("BZ")[0], [residues.ESM_INDEX["X"]] * 2)


def test_complex_features_drop_linker_rows(encoder):
    a, b = "NLYIQWLKDG", "GPSSGRPPPS"
    feats = esm_mod.esm_features(encoder, [f"{a}:{b}"])[0]
    joined = esm_mod.esm_features(encoder, [a + esm_mod.CHAIN_LINKER + b])[0]
    assert feats.shape == (20, 3, 64)
    assert_close(feats, np.concatenate([joined[:10], joined[35:]]))


def test_hub_layout_and_missing_tensor(tmp_path, state_dict, pair, encoder):
    hub = collections.OrderedDict((esm2.strip_key_prefix(k), v) for k, v in state_dict.items())
    save_torch_zip(tmp_path / "hub.pt", hub)
    reps = np.asarray(esm_weights.load_official_esm2(tmp_path / "hub.pt")(pair["esm_tokens"]))
    np.testing.assert_array_equal(reps, np.asarray(encoder(pair["esm_tokens"])))

    del hub["layers.1.fc2.bias"]
    save_torch_zip(tmp_path / "broken.pt", {"model": hub})
    with pytest.raises(esm_weights.ESMWeightsError, match=r"broken\.pt.*layers\.1\.fc2\.bias"):
        esm_weights.load_official_esm2(tmp_path / "broken.pt")


def test_not_an_esm_checkpoint():
    with pytest.raises(esm_weights.ESMWeightsError, match="folding_d64_h4.ckpt"):
        esm_weights.load_official_esm2(PARITY / "folding_d64_h4.ckpt")


def test_float16_file_converts_exactly(tmp_path, state_dict, pair):
    half = collections.OrderedDict((k, v.astype(np.float16) if "inv_freq" not in k else v) for k, v in state_dict.items())
    save_torch_zip(tmp_path / "half.pt", {"model": half})
    direct = esm_weights.load_official_esm2(tmp_path / "half.pt")
    out = esm_weights.convert_official_esm2(tmp_path / "half.pt", tmp_path / "conv")
    meta = json.loads((out / "config.json").read_text())
    assert meta["dtype"] == "float16" and meta["source_sha256"] == sha256_file(tmp_path / "half.pt")
    converted = esm_weights.load_converted_esm2(out)
    assert converted.identity == direct.identity
    np.testing.assert_array_equal(np.asarray(converted(pair["esm_tokens"])), np.asarray(direct(pair["esm_tokens"])))


def test_converted_weights_roundtrip(tmp_path, encoder, pair):
    out = esm_weights.convert_official_esm2(ESM_PT, tmp_path / "conv")
    loaded = esm_weights.load_official_esm2(out)  # a directory is accepted too
    np.testing.assert_array_equal(np.asarray(loaded(pair["esm_tokens"])), np.asarray(encoder(pair["esm_tokens"])))
    assert loaded.identity == encoder.identity == sha256_file(ESM_PT)
    shutil.rmtree(out / "params" / "layer_001")
    with pytest.raises(esm_weights.ESMWeightsError, match="layer_001"):
        esm_weights.load_converted_esm2(out)


def test_feature_cache_avoids_recomputation(tmp_path, encoder, sequences):
    calls = []

    class Counting:
        config, identity = encoder.config, encoder.identity

        def __call__(self, tokens):
            calls.append(tokens.shape)
            return encoder(tokens)

    cache = esm_mod.EmbeddingCache(tmp_path / "cache")
    first = esm_mod.esm_features(Counting(), sequences, cache=cache)
    assert len(calls) == 1 and len(list(cache.root.rglob("*.npy"))) == 2
    again = esm_mod.esm_features(Counting(), sequences[::-1], cache=cache)
    assert len(calls) == 1
    np.testing.assert_array_equal(again[1], first[0])
    # a damaged entry is recomputed (and rewritten), never returned
    cache.path(encoder.identity, sequences[0]).write_bytes(b"garbage")
    redo = esm_mod.esm_features(Counting(), sequences[:1], cache=cache)
    assert len(calls) == 2
    np.testing.assert_array_equal(redo[0], first[0])
    assert not list(cache.root.rglob(".tmp-*"))


@pytest.mark.parametrize("name", sorted(esm2.ESM2_CONFIGS))
def test_released_configs_recovered_from_shapes(name):
    config = esm2.ESM2_CONFIGS[name]
    shapes = {
        "encoder.sentence_encoder.embed_tokens.weight": (33, config.embed_dim),
        "encoder.sentence_encoder.layers.0.fc1.weight": (config.ffn_dim, config.embed_dim),
        "encoder.sentence_encoder.layers.0.self_attn.rot_emb.inv_freq": (config.head_dim // 2,),
    } | {f"encoder.sentence_encoder.layers.{i}.fc2.bias": (config.embed_dim,) for i in range(config.num_layers)}
    assert esm2.config_from_shapes(shapes) == config
    abstract = esm2.param_shapes(config)
    assert abstract["layers"]["q_proj"]["kernel"].shape == (config.num_layers, config.embed_dim, config.embed_dim)

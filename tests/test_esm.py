"""simplefold.esm: SimpleFold's esm_s exactly as the official processor builds it, and its disk cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import PARITY, assert_esm_close

from simplefold import esm as esm_mod
from simplefold import residues


@pytest.fixture(scope="module")
def sequences():
    return json.loads((PARITY / "esm2_t2_d64.json").read_text())["batch_case"]["sequences"]


def test_tokens_match_official_processor(esm_pair, sequences):
    encoded = [esm_mod.encode_sequence(s) for s in sequences]
    tokens = esm_mod.batch_tokens([t for t, _ in encoded])
    np.testing.assert_array_equal(tokens, esm_pair["esm_tokens"])
    np.testing.assert_array_equal(residues.sequence_to_af2(sequences[1]), esm_pair["af2_aatype"][1])


def test_esm_features_equal_fixture(esm_encoder, esm_pair, sequences):
    feats = esm_mod.esm_features(esm_encoder, sequences)
    for i, length in enumerate(esm_pair["lengths"]):
        assert feats[i].dtype == np.float32
        assert_esm_close(feats[i], esm_pair["esm_s"][i, :length])


def test_padding_and_batching_do_not_change_features(esm_encoder, sequences):
    batched = esm_mod.esm_features(esm_encoder, sequences, bucket=64)
    for i, s in enumerate(sequences):
        alone = esm_mod.esm_features(esm_encoder, [s], bucket=8, max_batch_tokens=8)[0]
        assert_esm_close(alone, batched[i])


def test_chains_joined_with_glycine_linker():
    tokens, keep = esm_mod.encode_sequence("AC:D")
    g = residues.ESM_INDEX["G"]
    expected = [residues.ESM_INDEX["A"], residues.ESM_INDEX["C"]] + [g] * 25 + [residues.ESM_INDEX["D"]]
    np.testing.assert_array_equal(tokens, expected)
    assert keep.sum() == 3 and not keep[2:27].any()
    # unknown letters go to X
    np.testing.assert_array_equal(esm_mod.encode_sequence("BZ")[0], [residues.ESM_INDEX["X"]] * 2)


def test_complex_features_drop_linker_rows(esm_encoder):
    a, b = "NLYIQWLKDG", "GPSSGRPPPS"
    feats = esm_mod.esm_features(esm_encoder, [f"{a}:{b}"])[0]
    joined = esm_mod.esm_features(esm_encoder, [a + esm_mod.CHAIN_LINKER + b])[0]
    assert feats.shape == (20, 3, 64)
    assert_esm_close(feats, np.concatenate([joined[:10], joined[35:]]))


def test_feature_cache_avoids_recomputation(tmp_path, esm_encoder, sequences):
    calls = []

    class Counting:
        config, identity = esm_encoder.config, esm_encoder.identity

        def __call__(self, tokens):
            calls.append(tokens.shape)
            return esm_encoder(tokens)

    cache = esm_mod.EmbeddingCache(tmp_path / "cache")
    first = esm_mod.esm_features(Counting(), sequences, cache=cache)
    assert len(calls) == 1 and len(list(cache.root.rglob("*.npy"))) == 2
    again = esm_mod.esm_features(Counting(), sequences[::-1], cache=cache)
    assert len(calls) == 1
    np.testing.assert_array_equal(again[1], first[0])
    # a damaged entry is recomputed (and rewritten), never returned
    cache.path(esm_encoder.identity, sequences[0]).write_bytes(b"garbage")
    redo = esm_mod.esm_features(Counting(), sequences[:1], cache=cache)
    assert len(calls) == 2
    np.testing.assert_array_equal(redo[0], first[0])
    assert not list(cache.root.rglob(".*.tmp"))  # no temporary file left behind

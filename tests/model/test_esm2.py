"""simplefold.model.esm2: every layer equals fair-esm's, sizes come from tensor shapes, token dropout."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_esm_close

from simplefold import residues
from simplefold.model import esm2


def test_every_layer_matches_fair_esm(esm_encoder, esm_pair):
    reps = np.asarray(esm_encoder(esm_pair["esm_tokens"]))
    assert reps.shape == (2, 37, 3, 64)
    for k in range(3):
        assert_esm_close(reps[:, :, k], esm_pair[f"repr_{k}"])


def test_sizes_read_from_tensor_shapes(esm_encoder):
    assert esm_encoder.config == esm2.ESM2Config(num_layers=2, embed_dim=64, attention_heads=4, ffn_dim=256)


def test_token_dropout_rescales_embedding_like_fair_esm(esm_encoder, esm_state_dict):
    # one <mask> among 5 non-padding tokens: fair-esm zeroes its row and scales by 0.88 / (1 - 1/5)
    tokens = np.array([[residues.ESM_CLS, 5, residues.ESM_MASK, 6, residues.ESM_EOS, residues.ESM_PAD]])
    layer0 = np.asarray(esm_encoder(tokens))[0, :, 0]
    table = esm_state_dict["encoder.sentence_encoder.embed_tokens.weight"]
    expected = table[tokens[0]] * np.float32(1 - 0.15 * 0.8) / np.float32(1 - 1 / 5)
    expected[2] = 0.0  # the <mask> row
    expected[5] = 0.0  # padding
    assert_esm_close(layer0, expected)


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


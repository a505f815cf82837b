"""simplefold.weights.esm: released fair-esm files in either key layout, float16, Orbax round trip, bad files."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest
from conftest import ESM_PT, PARITY
from simplefold.devtools.torch_writer import save_torch_zip

from simplefold.model import esm2
from simplefold.utils.files import sha256_file
from simplefold.weights import esm as esm_weights


def test_hub_layout_and_missing_tensor(tmp_path, esm_state_dict, esm_pair, esm_encoder):
    hub = collections.OrderedDict((esm2.strip_key_prefix(k), v) for k, v in esm_state_dict.items())
    save_torch_zip(tmp_path / "hub.pt", hub)
    reps = np.asarray(esm_weights.load_official_esm2(tmp_path / "hub.pt")(esm_pair["esm_tokens"]))
    np.testing.assert_array_equal(reps, np.asarray(esm_encoder(esm_pair["esm_tokens"])))

    del hub["layers.1.fc2.bias"]
    save_torch_zip(tmp_path / "broken.pt", {"model": hub})
    with pytest.raises(esm_weights.ESMWeightsError, match=r"broken\.pt.*layers\.1\.fc2\.bias"):
        esm_weights.load_official_esm2(tmp_path / "broken.pt")


def test_not_an_esm_checkpoint():
    with pytest.raises(esm_weights.ESMWeightsError, match="folding_d64_h4.ckpt"):
        esm_weights.load_official_esm2(PARITY / "folding_d64_h4.ckpt")


def test_float16_file_converts_exactly(tmp_path, esm_state_dict, esm_pair):
    half = collections.OrderedDict((k, v.astype(np.float16) if "inv_freq" not in k else v) for k, v in esm_state_dict.items())
    save_torch_zip(tmp_path / "half.pt", {"model": half})
    direct = esm_weights.load_official_esm2(tmp_path / "half.pt")
    out = esm_weights.convert_official_esm2(tmp_path / "half.pt", tmp_path / "conv")
    meta = json.loads((out / "config.json").read_text())
    assert meta["dtype"] == "float16" and meta["source_sha256"] == sha256_file(tmp_path / "half.pt")
    converted = esm_weights.load_converted_esm2(out)
    assert converted.identity == direct.identity
    np.testing.assert_array_equal(np.asarray(converted(esm_pair["esm_tokens"])), np.asarray(direct(esm_pair["esm_tokens"])))


def test_converted_weights_roundtrip(tmp_path, esm_encoder, esm_pair):
    out = esm_weights.convert_official_esm2(ESM_PT, tmp_path / "conv")
    loaded = esm_weights.load_official_esm2(out)  # a directory is accepted too
    np.testing.assert_array_equal(np.asarray(loaded(esm_pair["esm_tokens"])), np.asarray(esm_encoder(esm_pair["esm_tokens"])))
    assert loaded.identity == esm_encoder.identity == sha256_file(ESM_PT)
    shutil.rmtree(out / "params" / "layer_001")
    with pytest.raises(esm_weights.ESMWeightsError, match="layer_001"):
        esm_weights.load_converted_esm2(out)

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


def test_float16_kernels_stay_float16_and_match_float32_weights_bit_for_bit(tmp_path, esm_state_dict, esm_pair):
    """Released ESM2 files are float16: their linear kernels are kept in float16 (half the memory)
    and converted inside each product, exactly as float32 copies of the same values would give."""
    import jax
    from flax import nnx

    half = collections.OrderedDict((k, v.astype(np.float16) if "inv_freq" not in k else v) for k, v in esm_state_dict.items())
    widened = collections.OrderedDict((k, v.astype(np.float32)) for k, v in half.items())
    save_torch_zip(tmp_path / "half.pt", {"model": half})
    save_torch_zip(tmp_path / "wide.pt", {"model": widened})
    h = esm_weights.load_official_esm2(tmp_path / "half.pt")
    w = esm_weights.load_official_esm2(tmp_path / "wide.pt")
    dtypes = {}
    for path, var in nnx.to_flat_state(nnx.state(h.model, nnx.Param)):
        dtypes.setdefault(path[-1], set()).add(str(var.get_value().dtype))
    assert dtypes.pop("kernel") == {"float16"} and all(d == {"float32"} for d in dtypes.values()), dtypes
    kernel_bytes = lambda enc: sum(  # noqa: E731
        v.get_value().nbytes for p, v in nnx.to_flat_state(nnx.state(enc.model, nnx.Param)) if p[-1] == "kernel"
    )
    assert kernel_bytes(h) * 2 == kernel_bytes(w)
    out_h, out_w = (np.asarray(jax.block_until_ready(e(esm_pair["esm_tokens"]))) for e in (h, w))
    assert out_h.dtype == np.float32
    np.testing.assert_array_equal(out_h, out_w)

"""Torch-free reader of torch.save zip files: fixtures, strides/dtypes, refusal of unsafe pickles, corrupt files."""

from __future__ import annotations

import collections
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

from conftest import PARITY
from simplefold.weights.torch_reader import (
    CheckpointError,
    OpaqueObject,
    UnsafeCheckpointError,
    iter_state_dict,
    load_torch_file,
    open_state_dict,
)


# ---------------------------------------------------------------- a minimal torch-format writer
class _Global:
    """Pickled as a bare GLOBAL opcode (the referenced object never exists here)."""

    def __init__(self, qualname: str):
        self.module, self.name = qualname.rsplit(".", 1)


class _Call:
    """Pickled as ``GLOBAL args REDUCE``: what an object's ``__reduce__`` would emit."""

    def __init__(self, qualname: str, args: tuple):
        self.fn, self.args = _Global(qualname), args


class _Storage:
    def __init__(self, key: str, data: np.ndarray, storage_class: str = "FloatStorage"):
        self.key, self.data, self.storage_class = key, np.ascontiguousarray(data).reshape(-1), storage_class


def _tensor(storage: _Storage, offset: int, shape, stride) -> _Call:
    return _Call(
        "torch._utils._rebuild_tensor_v2",
        (storage, offset, tuple(shape), tuple(stride), False, _Call("collections.OrderedDict", ())),
    )


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets save() be overridden
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _Global(f"torch.{obj.storage_class}"), obj.key, "cpu", obj.data.size)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        elif isinstance(obj, _Call):
            self.save(obj.fn)
            self.save(obj.args)
            self.write(pickle.REDUCE)
        else:
            super().save(obj, save_persistent_id)


def _write(path, obj, storages=(), stem="archive"):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{stem}/data.pkl", buf.getvalue())
        z.writestr(f"{stem}/byteorder", "little")
        for s in storages:
            z.writestr(f"{stem}/data/{s.key}", s.data.astype(s.data.dtype.newbyteorder("<")).tobytes())


# ---------------------------------------------------------------- fixtures
def test_reads_folding_fixture_checkpoint():
    sd = load_torch_file(PARITY / "folding_d64_h4.ckpt")
    meta = json.loads((PARITY / "folding_d64_h4.json").read_text())
    assert isinstance(sd, collections.OrderedDict)
    assert hasattr(sd, "_metadata")  # BUILD opcode state of a state_dict
    assert len(sd) == 92 == meta["state_dict_entries"]
    assert sum(v.size for k, v in sd.items() if k != "pos_embedder.freq_bands") == meta["num_parameters"]
    for k, v in sd.items():
        assert v.dtype == np.float32 and v.flags.c_contiguous and v.flags.owndata
    consts = np.load(PARITY / "constants_d64_h4.npz")
    np.testing.assert_array_equal(sd["pos_embedder.freq_bands"], consts["fourier_freq_bands"])


def test_lazy_state_dict_matches_eager_load():
    eager = load_torch_file(PARITY / "plddt_d64_h4.ckpt")
    with open_state_dict(PARITY / "plddt_d64_h4.ckpt") as sd:
        assert list(sd) == list(eager)
        assert sd.shapes() == {k: v.shape for k, v in eager.items()}
        for k in sd:
            np.testing.assert_array_equal(sd[k], eager[k])
    names = [k for k, _ in iter_state_dict(PARITY / "plddt_d64_h4.ckpt")]
    assert names == list(eager)


def test_esm_file_config_is_opaque_and_tied_weights_are_read():
    obj = load_torch_file(PARITY / "esm2_t2_d64.pt")
    cfg = obj["cfg"]["model"]
    assert isinstance(cfg, OpaqueObject) and cfg.torch_class == "argparse.Namespace"
    assert cfg.encoder_layers == 2 and cfg["encoder_embed_dim"] == 64
    m = obj["model"]
    np.testing.assert_array_equal(m["encoder.lm_head.weight"], m["encoder.sentence_encoder.embed_tokens.weight"])
    assert not np.shares_memory(m["encoder.lm_head.weight"], m["encoder.sentence_encoder.embed_tokens.weight"])
    with open_state_dict(PARITY / "esm2_t2_d64.pt", prefix="model") as sd:
        assert sd.shapes()["encoder.sentence_encoder.embed_tokens.weight"] == (33, 64)


# ---------------------------------------------------------------- layout and dtypes
def test_offsets_strides_and_dtypes(tmp_path):
    base = np.arange(24, dtype=np.float32)
    s_f = _Storage("0", base)
    s_h = _Storage("1", np.arange(6, dtype=np.float16), "HalfStorage")
    s_l = _Storage("2", np.array([3, -1, 7], dtype=np.int64), "LongStorage")
    s_b = _Storage("3", np.array([1, 0, 1], dtype=np.bool_), "BoolStorage")
    obj = {
        "transposed": _tensor(s_f, 0, (4, 6), (1, 4)),  # a .T view of a (6, 4) tensor
        "offset_view": _tensor(s_f, 5, (2, 3), (6, 2)),
        "scalar": _tensor(s_f, 7, (), ()),
        "half": _tensor(s_h, 0, (2, 3), (3, 1)),
        "long": _tensor(s_l, 0, (3,), (1,)),
        "bool": _tensor(s_b, 0, (3,), (1,)),
        "meta": [1, "x", (2.5, None)],
    }
    _write(tmp_path / "t.pt", obj, [s_f, s_h, s_l, s_b])
    out = load_torch_file(tmp_path / "t.pt")
    np.testing.assert_array_equal(out["transposed"], base.reshape(6, 4).T)
    np.testing.assert_array_equal(out["offset_view"], np.lib.stride_tricks.as_strided(base[5:], (2, 3), (24, 8)))
    assert out["scalar"].shape == () and out["scalar"] == 7
    assert out["half"].dtype == np.float16 and out["half"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["long"].dtype == np.int64 and out["long"].tolist() == [3, -1, 7]
    assert out["bool"].dtype == np.bool_ and out["bool"].tolist() == [True, False, True]
    assert out["meta"] == [1, "x", (2.5, None)]


def test_view_beyond_storage_is_rejected(tmp_path):
    s = _Storage("0", np.zeros(4, np.float32))
    _write(tmp_path / "bad.pt", {"x": _tensor(s, 2, (3,), (1,))}, [s])
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_torch_file(tmp_path / "bad.pt")


# ---------------------------------------------------------------- unsafe and corrupt files
@pytest.mark.parametrize("qualname", ["os.system", "builtins.eval", "subprocess.call", "posix.system"])
def test_malicious_global_is_refused(tmp_path, qualname):
    marker = tmp_path / "pwned"
    s = _Storage("0", np.zeros(2, np.float32))
    obj = collections.OrderedDict(w=_tensor(s, 0, (2,), (1,)), evil=_Call(qualname, (f"touch {marker}",)))
    _write(tmp_path / "evil.ckpt", obj, [s])
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.ckpt.*{qualname}"):
        load_torch_file(tmp_path / "evil.ckpt")
    with pytest.raises(UnsafeCheckpointError):
        open_state_dict(tmp_path / "evil.ckpt")
    assert not marker.exists()


def test_reduce_payload_written_by_plain_pickle_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            import os

            return (os.system, ("true",))

    with zipfile.ZipFile(tmp_path / "p.ckpt", "w") as z:
        z.writestr("p/data.pkl", pickle.dumps({"x": Payload()}, protocol=2))
    with pytest.raises(UnsafeCheckpointError, match=r"p\.ckpt.*system"):
        load_torch_file(tmp_path / "p.ckpt")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.97])
def test_truncated_checkpoint_raises_clear_error(tmp_path, fraction):
    data = (PARITY / "folding_d64_h4.ckpt").read_bytes()
    path = tmp_path / "trunc.ckpt"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match="trunc.ckpt"):
        load_torch_file(path)


def test_corrupt_pickle_and_non_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "c.ckpt", "w") as z:
        z.writestr("c/data.pkl", b"\x80\x02}q\x00(X\x01")  # cut inside the stream
    with pytest.raises(CheckpointError, match="c.ckpt"):
        load_torch_file(tmp_path / "c.ckpt")
    (tmp_path / "legacy.pt").write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError, match="legacy"):
        load_torch_file(tmp_path / "legacy.pt")
    with pytest.raises(CheckpointError, match="missing.pt"):
        load_torch_file(tmp_path / "missing.pt")


def test_missing_storage_entry(tmp_path):
    s = _Storage("0", np.zeros(3, np.float32))
    _write(tmp_path / "m.pt", {"x": _tensor(s, 0, (3,), (1,))}, [])
    with pytest.raises(CheckpointError, match="data/0"):
        load_torch_file(tmp_path / "m.pt")

"""Write objects holding numpy arrays in PyTorch's zip checkpoint format, without torch (tests, benchmarks).

The layout is what ``torch.save`` writes (``_use_new_zipfile_serialization=True``): a zip with
``<stem>/data.pkl`` (pickle protocol 2; tensors as ``torch._utils._rebuild_tensor_v2`` calls whose
storage is a persistent id ``('storage', torch.FloatStorage, key, 'cpu', numel)``),
``<stem>/data/<key>`` raw little-endian storage bytes, ``<stem>/byteorder`` and
``<stem>/version``. The same array object used twice shares one storage (tied weights).

Leaves may be ``np.ndarray`` or :class:`LazyArray` (generated when its storage is written, so
a multi-hundred-MB file can be produced without holding it in memory). ``argparse.Namespace``
objects are pickled as themselves, as in fair-esm files.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import zipfile
from collections.abc import Callable

import numpy as np

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclasses.dataclass(frozen=True, eq=False)
class LazyArray:
    """An array produced on demand by ``make()`` when the file is written."""

    shape: tuple[int, ...]
    dtype: np.dtype
    make: Callable[[], np.ndarray]


class _Global:
    """Written as a ``GLOBAL module\\nname`` opcode (the real object never exists here)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle requires the reduce callable to be callable
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key: str, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1 :], dtype=np.int64)) for i in range(len(self.shape)))
        return (
            _Global("torch._utils", "_rebuild_tensor_v2"),
            (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict()),
        )


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets save() be overridden
    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
            return
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            a = obj.array
            numel = int(np.prod(a.shape, dtype=np.int64))
            return ("storage", _Global("torch", _STORAGE_NAMES[np.dtype(a.dtype)]), obj.key, "cpu", numel)
        return None


def save_torch_zip(path: str | os.PathLike, obj, *, stem: str | None = None) -> None:
    """Write ``obj`` (dicts / OrderedDicts / lists / tuples / scalars / Namespaces with array
    leaves) to ``path`` in torch's zip format."""
    stem = stem or os.path.splitext(os.path.basename(path))[0]
    storages: dict[int, _Storage] = {}

    def convert(x):
        if isinstance(x, (np.ndarray, LazyArray)):
            if id(x) not in storages:
                storages[id(x)] = _Storage(str(len(storages)), x)
            return _Tensor(storages[id(x)], tuple(x.shape))
        if isinstance(x, collections.OrderedDict):
            return collections.OrderedDict((k, convert(v)) for k, v in x.items())
        if isinstance(x, dict):
            return {k: convert(v) for k, v in x.items()}
        if isinstance(x, list):
            return [convert(v) for v in x]
        if isinstance(x, tuple):
            return tuple(convert(v) for v in x)
        if hasattr(x, "__dict__") and type(x).__module__ == "argparse":
            y = type(x)()
            y.__dict__.update({k: convert(v) for k, v in vars(x).items()})
            return y
        return x

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(convert(obj))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.writestr(f"{stem}/data.pkl", buf.getvalue())
        zf.writestr(f"{stem}/byteorder", "little")
        for storage in storages.values():
            a = storage.array
            data = a.make() if isinstance(a, LazyArray) else a
            data = np.ascontiguousarray(data, dtype=np.dtype(a.dtype).newbyteorder("<"))
            with zf.open(f"{stem}/data/{storage.key}", "w", force_zip64=data.nbytes > 2**31) as f:
                f.write(memoryview(data).cast("B"))
            del data
        zf.writestr(f"{stem}/version", "3\n")

"""Torch-free reader for PyTorch ``torch.save`` zip checkpoints (``.ckpt`` / ``.pt``).

The zip format written by ``torch.save`` (PyTorch >= 1.6) holds ``<stem>/data.pkl`` (a pickle
describing the object tree), one ``<stem>/data/<key>`` entry per storage, and ``<stem>/byteorder``.
Tensors appear in the pickle as calls to ``torch._utils._rebuild_tensor_v2`` whose storage
argument is a *persistent id* pointing at one of those entries.

Unpickling is RESTRICTED: only the handful of globals a tensor checkpoint needs are resolved
(see ``_ALLOWED``); ``argparse.Namespace`` (the config object inside fair-esm ``.pt`` files) is
read as an opaque :class:`OpaqueObject` and its real class is never called. Any other global
raises :class:`UnsafeCheckpointError`. Nothing from torch is imported.

Public API:

* :func:`load_torch_file` – the whole object tree, tensors as ``np.ndarray``.
* :func:`open_state_dict` – a lazy read-only mapping name -> array that reads one tensor from disk
  per access (storages are memory-mapped when stored uncompressed, as torch does), so multi-GB
  files can be converted one tensor at a time.
* :func:`iter_state_dict` – ``(name, array)`` pairs from such a mapping.
"""

from __future__ import annotations

import collections
import logging
import mmap
import os
import pickle
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "UnsafeCheckpointError",
    "OpaqueObject",
    "LazyTensor",
    "LazyStateDict",
    "load_torch_file",
    "open_state_dict",
    "iter_state_dict",
]


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupt, or does not match the expected layout."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle inside a checkpoint references a global outside the allow-list."""


def _bfloat16():
    import ml_dtypes  # shipped with jax; numpy has no bfloat16

    return np.dtype(ml_dtypes.bfloat16)


# torch storage class name -> numpy dtype factory
_STORAGE_DTYPES: dict[str, Any] = {
    "DoubleStorage": lambda: np.dtype(np.float64),
    "FloatStorage": lambda: np.dtype(np.float32),
    "HalfStorage": lambda: np.dtype(np.float16),
    "BFloat16Storage": _bfloat16,
    "LongStorage": lambda: np.dtype(np.int64),
    "IntStorage": lambda: np.dtype(np.int32),
    "ShortStorage": lambda: np.dtype(np.int16),
    "CharStorage": lambda: np.dtype(np.int8),
    "ByteStorage": lambda: np.dtype(np.uint8),
    "BoolStorage": lambda: np.dtype(np.bool_),
}


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class: carries only the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]()

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class OpaqueObject(dict):
    """Placeholder for an allowed non-tensor object (e.g. ``argparse.Namespace``).

    The real class is never instantiated. The pickled state is kept as dict items; attribute
    access is forwarded to them, so ``cfg.encoder_layers`` and ``cfg["encoder_layers"]`` both work.
    ``torch_class`` names the class that was pickled.
    """

    torch_class = "?"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, Mapping):
            self.update(state)
        else:
            self["__state__"] = state

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{self.torch_class} placeholder has no attribute {name!r}") from None

    def __repr__(self) -> str:
        return f"OpaqueObject[{self.torch_class}]({dict.__repr__(self)})"


def _opaque_class(qualname: str) -> type:
    return type("OpaqueObject", (OpaqueObject,), {"torch_class": qualname})


_OPAQUE_GLOBALS = frozenset({("argparse", "Namespace")})


class LazyTensor:
    """A tensor whose bytes have not been read yet. ``load()`` returns an owned ``np.ndarray``."""

    __slots__ = ("_reader", "key", "dtype", "offset", "shape", "stride")

    def __init__(self, reader: "_ZipReader", key: str, dtype: np.dtype, offset: int, shape, stride):
        self._reader = reader
        self.key = key
        self.dtype = dtype
        self.offset = int(offset)
        self.shape = tuple(int(s) for s in shape)
        self.stride = tuple(int(s) for s in stride)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def load(self) -> np.ndarray:
        return self._reader.tensor(self)

    def __repr__(self) -> str:
        return f"LazyTensor(shape={self.shape}, dtype={self.dtype}, storage={self.key})"


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    reader, key, dtype = storage
    return LazyTensor(reader, key, dtype, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


_ALLOWED_FUNCS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, reader: "_ZipReader"):
        super().__init__(file, encoding="utf-8")
        self._reader = reader

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED_FUNCS:
            return _ALLOWED_FUNCS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) in _OPAQUE_GLOBALS:
            return _opaque_class(f"{module}.{name}")
        raise UnsafeCheckpointError(
            f"{self._reader.path}: refusing to unpickle global '{module}.{name}' "
            "(only tensors, storages, OrderedDict and argparse.Namespace are allowed)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self._reader.path}: unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"{self._reader.path}: storage {key!r} has unknown type {storage_type!r}")
        self._reader.register_storage(str(key), storage_type.dtype, int(numel))
        return (self._reader, str(key), storage_type.dtype)


class _ZipReader:
    """Random access to the storage entries of one torch zip archive."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as e:
            raise CheckpointError(f"{self.path}: cannot open ({e.strerror})") from e
        try:
            self._zip = zipfile.ZipFile(self._file)
        except (zipfile.BadZipFile, OSError) as e:
            self._file.close()
            if _looks_like_legacy_torch(self.path):
                raise CheckpointError(
                    f"{self.path}: legacy (pre-1.6, non-zip) torch serialization is not supported; "
                    "re-save it with a recent torch.save"
                ) from e
            raise CheckpointError(f"{self.path}: not a torch zip checkpoint or truncated ({e})") from e
        names = self._zip.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            self.close()
            raise CheckpointError(f"{self.path}: expected exactly one data.pkl entry, found {len(pkl)}")
        self.pickle_name = pkl[0]
        self.prefix = pkl[0][: -len("data.pkl")]
        bo = self.prefix + "byteorder"
        self.byteorder = self._zip.read(bo).decode().strip() if bo in names else "little"
        if self.byteorder not in ("little", "big"):
            self.close()
            raise CheckpointError(f"{self.path}: bad byteorder entry {self.byteorder!r}")
        self._storages: dict[str, tuple[np.dtype, int]] = {}
        self._mmap: mmap.mmap | None = None

    def register_storage(self, key: str, dtype: np.dtype, numel: int) -> None:
        self._storages[key] = (dtype, numel)

    def read_pickle(self) -> Any:
        import io

        try:
            data = self._zip.read(self.pickle_name)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            raise CheckpointError(f"{self.path}: corrupt {self.pickle_name} ({e})") from e
        try:
            return _RestrictedUnpickler(io.BytesIO(data), self).load()
        except CheckpointError:
            raise
        except Exception as e:  # any malformed pickle stream
            raise CheckpointError(f"{self.path}: corrupt pickle {self.pickle_name} ({type(e).__name__}: {e})") from e

    def _entry_view(self, key: str) -> memoryview | bytes:
        name = f"{self.prefix}data/{key}"
        try:
            info = self._zip.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: missing storage entry {name}") from None
        if info.compress_type == zipfile.ZIP_STORED and info.flag_bits & 0x1 == 0:
            # torch stores entries uncompressed: map the bytes straight from the file
            self._file.seek(info.header_offset)
            header = self._file.read(30)
            if len(header) != 30 or header[:4] != b"PK\x03\x04":
                raise CheckpointError(f"{self.path}: bad local header for {name}")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            if start + info.file_size > os.fstat(self._file.fileno()).st_size:
                raise CheckpointError(f"{self.path}: truncated storage entry {name}")
            if self._mmap is None:
                self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            return memoryview(self._mmap)[start : start + info.file_size]
        try:
            return self._zip.read(name)
        except Exception as e:
            raise CheckpointError(f"{self.path}: cannot read storage entry {name} ({e})") from e

    def tensor(self, t: LazyTensor) -> np.ndarray:
        dtype = t.dtype
        swap = self.byteorder != sys.byteorder and dtype.itemsize > 1
        if swap and dtype.kind == "V":  # ml_dtypes.bfloat16 has no byte-swapped variant
            raise CheckpointError(f"{self.path}: big-endian bfloat16 storages are not supported")
        if t.key not in self._storages:
            raise CheckpointError(f"{self.path}: tensor references unknown storage {t.key}")
        _, numel = self._storages[t.key]
        buf = self._entry_view(t.key)
        if len(buf) < numel * dtype.itemsize:
            raise CheckpointError(
                f"{self.path}: storage {t.key} holds {len(buf)} bytes, expected {numel * dtype.itemsize}"
            )
        if any(s < 0 for s in t.stride) or any(n < 0 for n in t.shape):
            raise CheckpointError(f"{self.path}: tensor in storage {t.key} has negative size or stride")
        n = int(np.prod(t.shape, dtype=np.int64))
        if n == 0:
            return np.zeros(t.shape, dtype=dtype)
        extent = 1 + sum((d - 1) * s for d, s in zip(t.shape, t.stride))
        if t.offset < 0 or t.offset + extent > numel:
            raise CheckpointError(f"{self.path}: tensor view exceeds storage {t.key} ({numel} elements)")
        file_dtype = dtype.newbyteorder("S") if swap else dtype
        flat = np.frombuffer(buf, dtype=file_dtype, count=extent, offset=t.offset * dtype.itemsize)
        view = np.lib.stride_tricks.as_strided(
            flat, shape=t.shape, strides=tuple(s * dtype.itemsize for s in t.stride), writeable=False
        )
        # an owned, native-endian, C-contiguous copy: safe after the file is closed
        out = np.array(view, dtype=dtype, order="C", copy=True)
        if self._mmap is not None and hasattr(mmap, "MADV_DONTNEED"):
            # drop the mapped pages (they stay in the page cache) so that streaming a multi-GB
            # file one tensor at a time does not grow this process's RSS by the file size
            self._mmap.madvise(mmap.MADV_DONTNEED)
        return out

    def close(self) -> None:
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:  # a caller still holds a view; the OS frees it with the file
                pass
            self._mmap = None
        self._zip.close()
        self._file.close()


def _looks_like_legacy_torch(path: str) -> bool:
    # legacy torch files start with a pickled magic number (protocol 2: b"\x80\x02")
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"\x80\x02"
    except OSError:
        return False


def _materialise(obj: Any) -> Any:
    if isinstance(obj, LazyTensor):
        return obj.load()
    if isinstance(obj, OpaqueObject):
        for k, v in list(obj.items()):
            obj[k] = _materialise(v)
        return obj
    if isinstance(obj, collections.OrderedDict):
        out = collections.OrderedDict((k, _materialise(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):
            out._metadata = obj._metadata  # type: ignore[attr-defined]
        return out
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v) for v in obj)
    return obj


def load_torch_file(path: str | os.PathLike) -> Any:
    """Read a ``torch.save`` zip file without torch.

    Args:
      path: the ``.ckpt`` / ``.pt`` file.

    Returns:
      The pickled object tree (dict / OrderedDict / list / tuple / scalars), with every tensor
      replaced by an owned ``np.ndarray`` (bfloat16 tensors use ``ml_dtypes.bfloat16``) and every
      ``argparse.Namespace`` by an :class:`OpaqueObject`.

    Raises:
      UnsafeCheckpointError: the pickle references a global outside the allow-list.
      CheckpointError: the file is missing, truncated, corrupt or not in the zip format.
    """
    reader = _ZipReader(path)
    try:
        return _materialise(reader.read_pickle())
    finally:
        reader.close()


class LazyStateDict(Mapping):
    """Read-only mapping name -> ``np.ndarray`` that reads each tensor from disk on access.

    Use as a context manager (or call :meth:`close`). ``shapes()`` gives name -> shape without
    reading any tensor data.
    """

    def __init__(self, path: str | os.PathLike, prefix: str | None = None):
        self.path = os.fspath(path)
        self._reader = _ZipReader(path)
        try:
            obj = self._reader.read_pickle()
            if prefix is not None:
                for part in prefix.split("/"):
                    if not isinstance(obj, Mapping) or part not in obj:
                        raise CheckpointError(f"{self.path}: no entry {prefix!r} in the checkpoint")
                    obj = obj[part]
            if not isinstance(obj, Mapping):
                raise CheckpointError(f"{self.path}: top-level object is {type(obj).__name__}, not a state dict")
            self._tensors: dict[str, LazyTensor] = {}
            for k, v in obj.items():
                if not isinstance(v, LazyTensor):
                    raise CheckpointError(f"{self.path}: entry {k!r} is {type(v).__name__}, not a tensor")
                self._tensors[str(k)] = v
        except BaseException:
            self._reader.close()
            raise

    def __getitem__(self, key: str) -> np.ndarray:
        return self._tensors[key].load()

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v.shape for k, v in self._tensors.items()}

    def dtypes(self) -> dict[str, np.dtype]:
        return {k: v.dtype for k, v in self._tensors.items()}

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> "LazyStateDict":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_state_dict(path: str | os.PathLike, prefix: str | None = None) -> LazyStateDict:
    """Open a state-dict checkpoint lazily.

    Args:
      path: the ``.ckpt`` / ``.pt`` file.
      prefix: optional ``/``-separated path to the state dict inside the pickled object
        (``"model"`` for fair-esm files); default: the top-level object is the state dict.
    """
    return LazyStateDict(path, prefix)


def iter_state_dict(path: str | os.PathLike, prefix: str | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, array)`` for every tensor of a state dict, reading one tensor at a time."""
    with LazyStateDict(path, prefix) as sd:
        for k in sd:
            yield k, sd[k]

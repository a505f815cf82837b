"""Deterministic random weights in the official checkpoint layout (NumPy only).

Golden fixtures of wide models cannot be committed with their weights (one trunk block of the
3B width holds 75 M parameters), so the fixture tool and the tests both regenerate the same
weights from a seed: every tensor is drawn from its own generator, seeded by (seed, CRC32 of the
key), so that a tensor's values depend only on its name, shape and the seed — not on which other
keys the model has or in which order they are listed. Benchmarks use the same function to build
random-weight checkpoints of the released sizes.

The scales keep activations of order one through any depth (the official initialisation zeroes
the adaLN and final layers, which would make every output trivially zero):

* 2-D ``*.weight`` (``nn.Linear``): N(0, 1/fan_in);
* 1-D ``*.weight`` / ``*.scale`` (LayerNorm, RMSNorm): 1 + N(0, 0.2²);
* ``*.bias``: N(0, 0.2²);
* anything else (``esm_s_combine``, ``esm_s_proj.null_token``): N(0, 1);
* ``pos_embedder.freq_bands`` is a constant buffer and is taken from the caller;
* ``atom_pos_proj.weight``: the columns that read sin/cos(x·f_k) of the noised coordinates are
  divided by max(1, f_k), so the velocity is a smooth function of the coordinates and a
  500-step trajectory is not chaotic under float32 round-off.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

FREQ_BANDS_KEY = "pos_embedder.freq_bands"
ATOM_POS_PROJ_KEY = "atom_pos_proj.weight"


def _draw(key: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))
    return rng.standard_normal(shape, dtype=np.float32)


def random_tensor(key: str, shape: Sequence[int], seed: int) -> np.ndarray:
    """One tensor of :func:`random_state_dict` (float32, shape ``shape``), by the rules above."""
    shape = tuple(int(s) for s in shape)
    z = _draw(key, shape, seed)
    if key.endswith(".bias"):
        return z * np.float32(0.2)
    if key.endswith((".weight", ".scale")) and len(shape) == 1:
        return np.float32(1.0) + z * np.float32(0.2)
    if key.endswith(".weight") and len(shape) == 2:
        return z / np.float32(np.sqrt(shape[1]))
    return z


def random_state_dict(
    shapes: Mapping[str, Sequence[int]], *, seed: int, freq_bands: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Random float32 weights for every key of an official ``state_dict``.

    Args:
      shapes: official key -> shape (e.g. a fixture's ``state_dict_shapes``).
      seed: integer seed; the same (seed, key, shape) always gives the same tensor.
      freq_bands: (F,) float32, the Fourier buffer, required when ``shapes`` has it.
    Returns:
      key -> float32 array, in the order of ``shapes``.
    """
    out: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if key.endswith(FREQ_BANDS_KEY):
            if freq_bands is None:
                raise ValueError(f"{key} is a constant buffer: pass freq_bands")
            out[key] = np.asarray(freq_bands, np.float32).reshape(tuple(shape))
            continue
        out[key] = random_tensor(key, shape, seed)
    if ATOM_POS_PROJ_KEY in out:
        if freq_bands is None:
            raise ValueError(f"{ATOM_POS_PROJ_KEY} is scaled by the Fourier frequencies: pass freq_bands")
        f = np.asarray(freq_bands, np.float32)
        w = out[ATOM_POS_PROJ_KEY]
        # columns: [x, y, z | sin(d, k) for d in xyz, k in F | cos(d, k) ...] (coordinate-major)
        scale = np.ones(w.shape[1], np.float32)
        per = np.tile(np.maximum(np.float32(1.0), f), 3)
        scale[3 : 3 + per.size] = per
        scale[3 + per.size : 3 + 2 * per.size] = per
        out[ATOM_POS_PROJ_KEY] = (w / scale).astype(np.float32)
    return out


def state_dict_digest(state: Mapping[str, np.ndarray]) -> str:
    """sha256 over (key, shape, bytes) of every tensor, sorted by key: pins a regenerated state."""
    h = hashlib.sha256()
    for key in sorted(state):
        a = np.ascontiguousarray(state[key], np.float32)
        h.update(key.encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()

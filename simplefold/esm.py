"""ESM2 language-model features for SimpleFold: the callable encoder, tokenisation, ``esm_s`` and its disk cache.

``esm_s`` is built exactly as the official ``ProteinDataProcessor.process_esm`` does it:

1. the sequence is encoded in AlphaFold2 order (``ARNDCQEGHILKMFPSTWYV``, anything else -> ``X``);
   chains separated by ``:`` are joined with a 25-residue poly-G linker;
2. ESM tokens are ``AF2_PLUS_ONE_TO_ESM[aatype + 1]``, with ``<cls>`` prepended and ``<eos>``
   appended (then ``<pad>``);
3. all ``num_layers + 1`` representations are stacked in layer order, ``<cls>``/``<eos>`` and the
   linker positions are dropped, giving (M, num_layers + 1, dim) float32 per sequence.

Sequences are batched by padded length (a multiple of ``bucket``) so that a new length rarely
means a new compilation; padding is masked out of the attention and cannot change the result.
Features can be cached on disk (one ``.npy`` per (model identity, sequence)), so re-folding or
re-sampling a sequence never runs ESM again.

The encoder's weights are loaded by :mod:`simplefold.weights.esm` (released fair-esm files or their
converted Orbax copies).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from simplefold.residues import AF2_PLUS_ONE_TO_ESM, ESM_CLS, ESM_EOS, ESM_PAD, sequence_to_af2
from simplefold.utils.files import atomic_open, cache_dir, sha256_file

logger = logging.getLogger(__name__)

#: Poly-G linker the official processor puts between chains (``batch_encode_sequences``).
CHAIN_LINKER = "G" * 25
#: Default padded-length granularity (tokens) of batched ESM calls.
DEFAULT_BUCKET = 64
#: Default upper bound on B * T per ESM call.
DEFAULT_MAX_BATCH_TOKENS = 4096

# --------------------------------------------------------------------------------------
# The callable model
# --------------------------------------------------------------------------------------


class ESM2Encoder:
    """A loaded ESM2 network: ``encoder(tokens) -> representations``.

    Attributes:
      config: the :class:`~simplefold.model.esm2.ESM2Config`.
      identity: hex string identifying the weights (sha256 of the source ``.pt`` file), used as
        the disk-cache key; computed lazily for a ``.pt`` file.
    """

    def __init__(self, model, *, identity: str | None = None, source: str | os.PathLike | None = None):
        from flax import nnx

        self.config = model.config
        self._graphdef, self._state = nnx.split(model)
        self._identity = identity
        self._source = None if source is None else pathlib.Path(source)

    @property
    def identity(self) -> str:
        if self._identity is None:
            if self._source is None:
                raise ValueError("this ESM2 encoder has no identity (built from an in-memory model)")
            self._identity = sha256_file(self._source)
        return self._identity

    @property
    def model(self):
        """A fresh ``ESM2`` NNX module view of the weights."""
        from flax import nnx

        return nnx.merge(self._graphdef, self._state)

    def __call__(self, tokens) -> "jax.Array":  # noqa: F821
        """tokens (B, T) int ESM ids incl. ``<cls>``/``<eos>``/``<pad>`` -> (B, T, num_layers+1, dim) float32."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2:
            raise ValueError(f"ESM tokens must have shape (B, T), got {tokens.shape}")
        return _forward(self._graphdef, self._state, tokens.astype(np.int32))

    def __repr__(self) -> str:
        return f"ESM2Encoder({self.config})"


@functools.lru_cache(maxsize=None)
def _jitted_forward():
    from flax import nnx

    from simplefold.reproducible import stable_jit

    @stable_jit(static_argnums=0)
    def forward(graphdef, state, tokens):
        return nnx.merge(graphdef, state)(tokens)

    return forward


def _forward(graphdef, state, tokens):
    return _jitted_forward()(graphdef, state, tokens)


# --------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------


def encode_sequence(sequence: str) -> tuple[np.ndarray, np.ndarray]:
    """One sequence (chains separated by ``:``) -> (ESM residue tokens (L,), keep mask (L,) bool).

    ``keep`` is False on the poly-G linker positions inserted between chains.
    """
    chains = sequence.split(":")
    if any(not c for c in chains):
        raise ValueError(f"empty chain in sequence {sequence!r}")
    joined = CHAIN_LINKER.join(chains)
    keep = np.ones(len(joined), dtype=bool)
    pos = 0
    for chain in chains[:-1]:
        pos += len(chain)
        keep[pos : pos + len(CHAIN_LINKER)] = False
        pos += len(CHAIN_LINKER)
    tokens = AF2_PLUS_ONE_TO_ESM[sequence_to_af2(joined) + 1]
    return tokens.astype(np.int32), keep


def batch_tokens(residue_tokens: Sequence[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack residue-token arrays into ESM input (B, T): ``<cls>`` + residues + ``<eos>`` + ``<pad>``.

    ``length`` (T) defaults to the longest sequence + 2.
    """
    need = max(len(t) for t in residue_tokens) + 2
    length = need if length is None else length
    if length < need:
        raise ValueError(f"padded length {length} < longest sequence + 2 ({need})")
    out = np.full((len(residue_tokens), length), ESM_PAD, dtype=np.int32)
    for i, t in enumerate(residue_tokens):
        out[i, 0] = ESM_CLS
        out[i, 1 : 1 + len(t)] = t
        out[i, 1 + len(t)] = ESM_EOS
    return out


def _bucket_length(n_tokens: int, bucket: int) -> int:
    return -(-n_tokens // bucket) * bucket


# --------------------------------------------------------------------------------------
# Disk cache
# --------------------------------------------------------------------------------------


class EmbeddingCache:
    """``esm_s`` arrays on disk, one ``.npy`` per (model identity, sequence), written atomically.

    Layout: ``<root>/<identity[:16]>/<h[:2]>/<h>.npy`` with ``h = sha256(sequence)``.
    An unreadable or mis-shaped entry is treated as missing (and overwritten).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = pathlib.Path(root)

    @classmethod
    def default(cls) -> "EmbeddingCache":
        """The cache under the simplefold cache directory (``$SIMPLEFOLD_CACHE/esm_features``)."""
        return cls(cache_dir() / "esm_features")

    def path(self, identity: str, sequence: str) -> pathlib.Path:
        h = hashlib.sha256(sequence.encode()).hexdigest()
        return self.root / identity[:16] / h[:2] / f"{h}.npy"

    def get(self, identity: str, sequence: str, shape: tuple[int, ...]) -> np.ndarray | None:
        p = self.path(identity, sequence)
        if not p.is_file():
            return None
        try:
            arr = np.load(p, allow_pickle=False)
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable ESM cache entry %s (%s)", p, exc)
            return None
        if arr.shape != shape or arr.dtype != np.float32:
            logger.warning("ignoring ESM cache entry %s with shape %s, expected %s", p, arr.shape, shape)
            return None
        return arr

    def put(self, identity: str, sequence: str, array: np.ndarray) -> None:
        with atomic_open(self.path(identity, sequence), "wb") as f:
            np.save(f, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)


# --------------------------------------------------------------------------------------
# esm_s
# --------------------------------------------------------------------------------------


def esm_features(
    esm: ESM2Encoder,
    sequences: Iterable[str],
    *,
    cache: EmbeddingCache | str | os.PathLike | bool | None = None,
    bucket: int = DEFAULT_BUCKET,
    max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS,
) -> list[np.ndarray]:
    """SimpleFold's ``esm_s`` for each sequence.

    Args:
      esm: a loaded encoder (:func:`simplefold.weights.esm.load_official_esm2`).
      sequences: one-letter sequences; chains of a complex separated by ``:``. Letters outside
        the 20 standard amino acids become ``X``.
      cache: ``None``/``False``: no disk cache; ``True``: :meth:`EmbeddingCache.default`; a path or
        an :class:`EmbeddingCache`: that cache. Cached entries are keyed by ``esm.identity``.
      bucket: padded token lengths are multiples of this (fewer recompilations).
      max_batch_tokens: upper bound on B * T of one ESM call.

    Returns:
      One float32 array (M, num_layers + 1, dim) per sequence, M = residues (linkers removed).
    """
    sequences = [s.upper() for s in sequences]
    if cache is True:
        cache = EmbeddingCache.default()
    elif cache is False or cache is None:
        cache = None
    elif not isinstance(cache, EmbeddingCache):
        cache = EmbeddingCache(cache)

    n_rep, dim = esm.config.num_representations, esm.config.embed_dim
    encoded = [encode_sequence(s) for s in sequences]
    results: list[np.ndarray | None] = [None] * len(sequences)
    todo: list[int] = []
    for i, (s, (_, keep)) in enumerate(zip(sequences, encoded)):
        hit = cache.get(esm.identity, s, (int(keep.sum()), n_rep, dim)) if cache else None
        if hit is not None:
            results[i] = hit
        else:
            todo.append(i)
    if cache and len(todo) < len(sequences):
        logger.info("ESM features: %d of %d sequences from the cache", len(sequences) - len(todo), len(sequences))

    # group by bucketed length, longest first, and cut into batches of <= max_batch_tokens
    by_len: dict[int, list[int]] = {}
    for i in todo:
        by_len.setdefault(_bucket_length(len(encoded[i][0]) + 2, bucket), []).append(i)
    for length in sorted(by_len, reverse=True):
        idx = by_len[length]
        per_batch = 1 << (max(1, max_batch_tokens // length).bit_length() - 1)  # a power of two
        for start in range(0, len(idx), per_batch):
            chunk = idx[start : start + per_batch]
            # round the batch up to a power of two with dummy <cls><eos> rows: fewer shapes to compile
            rows = 1 << (len(chunk) - 1).bit_length()
            toks = [encoded[i][0] for i in chunk] + [np.zeros(0, np.int32)] * (rows - len(chunk))
            reps = np.asarray(esm(batch_tokens(toks, length)))
            for row, i in enumerate(chunk):
                tokens, keep = encoded[i]
                feats = np.ascontiguousarray(reps[row, 1 : 1 + len(tokens)][keep], dtype=np.float32)
                results[i] = feats
                if cache:
                    cache.put(esm.identity, sequences[i], feats)
    return results  # type: ignore[return-value]

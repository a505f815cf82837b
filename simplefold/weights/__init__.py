"""Weights: the registry of released files, the cache that downloads and converts them, and the loaders.

* :mod:`simplefold.weights.registry` – released files (SimpleFold sizes, pLDDT head, ESM2) and the errors.
* :mod:`simplefold.weights.download` – resumable, retried, checked HTTP download of one file.
* :mod:`simplefold.weights.cache` – download/import, convert once, verify and resolve cached weights.
* :mod:`simplefold.weights.torch_reader` – reads ``torch.save`` files without torch (restricted unpickler).
* :mod:`simplefold.weights.checkpoints` – official SimpleFold and pLDDT checkpoints -> Flax; Orbax model directories.
* :mod:`simplefold.weights.esm` – official ESM2 files -> :class:`simplefold.esm.ESM2Encoder`; their Orbax copies.
"""

"""simplefold: SimpleFold-style protein structure prediction in JAX/Flax NNX.

The public surface (imported lazily, so that ``import simplefold`` and the CLI's ``--help`` do not
pull in jax):

* ``fold(sequences, model=..., num_samples=..., seed=...) -> list[FoldResult]`` – sequences to
  structures with pLDDT (:mod:`simplefold.predict`); ``load_model(spec)`` loads ``"demo"``, a
  released name or a directory of converted weights for it.
* ``load_official_model(ckpt_path, arch)`` / ``load_official_plddt(ckpt_path, arch)`` – Apple's
  released ``.ckpt`` files as jitted Flax networks, without torch (:mod:`simplefold.weights.checkpoints`).
* ``load_official_esm2(pt_path)`` / ``esm_features(esm, sequences)`` – the ESM2 encoder and the
  ``esm_s`` features it gives (:mod:`simplefold.weights.esm`, :mod:`simplefold.esm`).
* ``read_structure`` / ``write_structure`` / ``Structure`` – PDB, mmCIF and BinaryCIF files
  (:mod:`simplefold.io.structure`); ``parse_fasta`` – FASTA inputs (:mod:`simplefold.io.fasta`).
* ``evaluate(pred, ref)`` – TM-score, GDT, lDDT and RMSD of predictions against references
  (:mod:`simplefold.evaluation.evaluate`).

Everything else is reached through its package: ``simplefold.predict``, ``simplefold.model``,
``simplefold.sampling``, ``simplefold.weights``, ``simplefold.evaluation``, ``simplefold.io``,
``simplefold.training``; the facts they share are in ``simplefold.constants``.
"""

from __future__ import annotations

from simplefold.utils.lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it
_PUBLIC = {
    "fold": "simplefold.predict",
    "FoldResult": "simplefold.predict.engine",
    "load_model": "simplefold.predict.loading",
    "load_official_model": "simplefold.weights.checkpoints",
    "load_official_plddt": "simplefold.weights.checkpoints",
    "load_official_esm2": "simplefold.weights.esm",
    "esm_features": "simplefold.esm",
    "read_structure": "simplefold.io.structure",
    "write_structure": "simplefold.io.structure",
    "Structure": "simplefold.io.structure",
    "parse_fasta": "simplefold.io.fasta",
    "evaluate": "simplefold.evaluation.evaluate",
}

__all__ = ["__version__", *_PUBLIC]

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)

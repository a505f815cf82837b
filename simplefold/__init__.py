"""simplefold: SimpleFold-style protein structure prediction in JAX/Flax NNX.

The public API is imported lazily so that ``import simplefold`` (and the CLI's ``--help``)
does not pull in jax until it is needed.

Public entry points (see each module's docstring):

* ``load_official_model(ckpt_path, arch)`` / ``load_official_plddt(ckpt_path, arch)`` – run Apple's checkpoints.
* ``load_official_esm2(pt_path)`` / ``esm_features(esm, sequences)`` – ESM2 language-model features.
* ``fold(sequences, model=..., num_samples=..., seed=...)`` – sequences to structures with pLDDT.
* ``read_structure`` / ``write_structure`` – PDB / mmCIF / BinaryCIF I/O.
* ``sampler`` – the Euler–Maruyama sampler module.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "load_official_model": "simplefold.weights.checkpoints",
    "load_official_plddt": "simplefold.weights.checkpoints",
    "load_official_esm2": "simplefold.weights.esm",
    "esm_features": "simplefold.esm",
    "fold": "simplefold.predict",
    "load_model": "simplefold.predict",
    "FoldResult": "simplefold.predict",
    "read_structure": "simplefold.io.structure",
    "write_structure": "simplefold.io.structure",
    "Structure": "simplefold.io.structure",
    "StructureError": "simplefold.io.structure",
    "read_structure_models": "simplefold.io.structure",
    "structure_from_sequence": "simplefold.io.structure",
    "parse_fasta": "simplefold.io.fasta",
}
_SUBMODULES = (
    "sampling", "io", "features", "residues", "metrics", "model", "esm",
    "analysis", "plots", "weights", "inference", "alignment",
)

__all__ = sorted(set(_LAZY) | set(_SUBMODULES) | {"__version__"})


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"simplefold.{name}")
    raise AttributeError(f"module 'simplefold' has no attribute {name!r}")

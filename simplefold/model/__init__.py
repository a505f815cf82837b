"""SimpleFold networks in Flax NNX.

* ``FoldingConfig`` / ``PLDDTConfig`` – frozen hyper-parameter configs with official size presets
  (``FoldingConfig.simplefold_100M()`` ... ``simplefold_3B()``, ``tiny()``, ``from_official``).
* ``FoldingDiT`` – the folding network: ``model(noised_pos, t, feats) -> {"predict_velocity", "latent"}``.
* ``PLDDTHead`` – the pLDDT head: ``head(latent, feats) -> {"plddt_logits", "plddt"}``.
* ``OFFICIAL_SIZES`` / ``OFFICIAL_PLDDT_SIZES`` – official checkpoint names -> config constructors.

The names are resolved lazily, so that the NumPy-only modules of this package (``config``,
``torch_tables``, ``random_init``) import without JAX — the fixture tools run them in a
PyTorch environment.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FoldingConfig": "config",
    "PLDDTConfig": "config",
    "OFFICIAL_SIZES": "config",
    "OFFICIAL_PLDDT_SIZES": "config",
    "FoldingDiT": "folding",
    "PLDDTHead": "plddt",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"simplefold.model.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'simplefold.model' has no attribute {name!r}")

"""SimpleFold networks in Flax NNX.

* ``FoldingConfig`` / ``PLDDTConfig`` – frozen hyper-parameter configs with official size presets
  (``FoldingConfig.simplefold_100M()`` ... ``simplefold_3B()``, ``tiny()``, ``from_official``).
* ``FoldingDiT`` – the folding network: ``model(noised_pos, t, feats) -> {"predict_velocity", "latent"}``.
* ``PLDDTHead`` – the pLDDT head: ``head(latent, feats) -> {"plddt_logits", "plddt"}``.
* ``OFFICIAL_SIZES`` / ``OFFICIAL_PLDDT_SIZES`` – official checkpoint names -> config constructors.

The names are imported on first use, so that the NumPy-only modules of this package (``config``,
``torch_tables``, ``random_init``) import without JAX — the fixture tools run them in a
PyTorch environment.
"""

from __future__ import annotations

from simplefold.utils.lazy import lazy_exports

# public name -> module that defines it
_PUBLIC = {
    "FoldingConfig": "simplefold.model.config",
    "PLDDTConfig": "simplefold.model.config",
    "OFFICIAL_SIZES": "simplefold.model.config",
    "OFFICIAL_PLDDT_SIZES": "simplefold.model.config",
    "FoldingDiT": "simplefold.model.folding",
    "PLDDTHead": "simplefold.model.plddt",
}

__all__ = list(_PUBLIC)

__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)

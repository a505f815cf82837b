"""SimpleFold networks in Flax NNX.

* ``FoldingConfig`` / ``PLDDTConfig`` – frozen hyper-parameter configs with official size presets
  (``FoldingConfig.simplefold_100M()`` ... ``simplefold_3B()``, ``tiny()``, ``from_official``).
* ``FoldingDiT`` – the folding network: ``model(noised_pos, t, feats) -> {"predict_velocity", "latent"}``.
* ``PLDDTHead`` – the pLDDT head: ``head(latent, feats) -> {"plddt_logits", "plddt"}``.
* ``OFFICIAL_SIZES`` / ``OFFICIAL_PLDDT_SIZES`` – official checkpoint names -> config constructors.
"""

from simplefold.model.config import OFFICIAL_PLDDT_SIZES, OFFICIAL_SIZES, FoldingConfig, PLDDTConfig
from simplefold.model.folding import FoldingDiT
from simplefold.model.plddt import PLDDTHead

__all__ = ["FoldingConfig", "PLDDTConfig", "FoldingDiT", "PLDDTHead", "OFFICIAL_SIZES", "OFFICIAL_PLDDT_SIZES"]

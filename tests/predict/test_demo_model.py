"""The bundled demo model: loads offline with its pLDDT head and folds the README example
(its samples' bit-identity across chunks and buckets: ``tests/test_reproducible.py``)."""

from __future__ import annotations

import numpy as np

from simplefold.predict import fold

TRP_CAGE = "NLYIQWLKDGGPSSGRPPPS"
STEPS = 40


def test_demo_is_bundled_with_its_plddt_head(demo_model):
    assert demo_model.config.condition == "embedding"  # needs no ESM weights
    assert demo_model.plddt_head is not None


def test_demo_folds_with_plddt(demo_model):
    (result,) = fold([("trp_cage", TRP_CAGE)], model=demo_model, num_samples=2, seed=0, num_steps=STEPS)
    for s in result.samples:
        assert s.plddt.shape == (len(TRP_CAGE),)
        assert np.all((s.plddt >= 0) & (s.plddt <= 100))
        b = s.structure.chains[0].b_factors
        np.testing.assert_allclose(b[s.structure.chains[0].atom_residue == 0], s.plddt[0], atol=1e-2)
        # every template atom placed, finite, centred (the demo is not an accurate predictor:
        # its measured accuracy is in the README; only the pipeline is checked here)
        xyz = s.structure.chains[0].coords
        assert s.structure.chains[0].atom_mask.all() and np.isfinite(xyz).all()
        np.testing.assert_allclose(xyz.mean(0), 0.0, atol=1e-3)

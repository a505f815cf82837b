"""The bundled demo model: loads offline, folds the README example, and a sample does not depend
on chunking or bucketing.

A sample's noise depends only on (seed, target, k), so a sample run alone, in a chunk of 4, or
padded to a larger bucket gets exactly the same random numbers; with the compiler options of
``simplefold.reproducible`` and the padding-invariant centring of ``simplefold.sampling.flow`` its
coordinates and pLDDT are then bit-identical too (before those, rounding differences of
differently shaped products grew to 0.028 Å over 40 steps).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from simplefold.predict import fold
from simplefold.predict.engine import Folder
from simplefold.predict.loading import load_model
from simplefold.predict.options import FoldOptions
from simplefold.predict.targets import Target

TRP_CAGE = "NLYIQWLKDGGPSSGRPPPS"
STEPS = 40


@pytest.fixture(scope="module")
def demo():
    return load_model("demo", offline=True)


def _coords(result):
    return np.stack([s.structure.coords for s in result.samples])


def test_demo_is_bundled_with_its_plddt_head(demo):
    assert demo.config.condition == "embedding"  # needs no ESM weights
    assert demo.plddt_head is not None


def test_demo_sample_identical_alone_in_chunk_and_other_bucket(demo):
    target = Target("trp_cage", TRP_CAGE)
    opts = FoldOptions(num_samples=4, seed=11, num_steps=STEPS, plddt=True, batch_size=4)
    chunk4 = Folder(demo, opts).fold_target(target)
    alone = Folder(demo, dataclasses.replace(opts, batch_size=1)).fold_target(target)
    other = Folder(demo, dataclasses.replace(opts, batch_size=1, token_buckets=(64,))).fold_target(target)
    three = Folder(demo, dataclasses.replace(opts, num_samples=3, batch_size=3, token_buckets=(128,))).fold_target(
        target
    )
    assert alone.plan.chunk == 1 and other.plan.bucket_tokens == 64 != chunk4.plan.bucket_tokens
    assert three.plan.bucket_atoms == 1024 and chunk4.plan.bucket_atoms == 256
    c = _coords(chunk4)
    p = np.stack([s.plddt for s in chunk4.samples])
    for run in (alone, other, three):
        k = len(run.samples)
        np.testing.assert_array_equal(_coords(run), c[:k])
        np.testing.assert_array_equal(np.stack([s.plddt for s in run.samples]), p[:k])
    assert np.abs(c[0] - c[1]).max() > 0.5  # samples differ


def test_demo_folds_with_plddt(demo):
    (result,) = fold([("trp_cage", TRP_CAGE)], model=demo, num_samples=2, seed=0, num_steps=STEPS)
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

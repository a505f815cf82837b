"""Shared test setup: float32 CPU JAX with a persistent compile cache, fixture paths, tiny models.

The test folders mirror the package (``tests/predict`` tests ``simplefold/predict`` ...); test files
have unique names across folders. Models shared by several folders are built here once per test
process: a tiny random folding network (with and without its pLDDT head, in memory and as a
converted directory), the official-code golden folding network and the small ESM2 encoder.
"""

from __future__ import annotations

import json
import os
import pathlib

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402  (after the JAX environment)

TESTS_DIR = pathlib.Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
FIXTURES = TESTS_DIR / "fixtures"
PARITY = FIXTURES / "parity"
PARITY_CASES = ("trpcage", "villin_x", "gb1")
#: The small fair-esm ESM2 file of the parity fixtures (2 layers, width 64).
ESM_PT = PARITY / "esm2_t2_d64.pt"


@pytest.fixture(scope="session")
def parity_dir() -> pathlib.Path:
    return PARITY


# --------------------------------------------------------------------------------------
# Tiny random folding network
# --------------------------------------------------------------------------------------


def random_tiny(seed: int = 0, **overrides):
    """``FoldingConfig.tiny(**overrides)`` with random weights, including the adaLN-Zero
    parameters that are zero at init (otherwise the velocity is exactly 0 and the network would
    not matter). Those get a small scale (0.002) so that 20 sampler steps stay in a sane
    coordinate range."""
    import jax
    from flax import nnx

    from simplefold.model import FoldingConfig, FoldingDiT

    net = FoldingDiT(FoldingConfig.tiny(**overrides), rngs=nnx.Rngs(seed))
    state = nnx.state(net, nnx.Param)
    keys = iter(jax.random.split(jax.random.key(seed + 100), 1000))
    state = jax.tree.map(lambda x: jax.random.normal(next(keys), x.shape, x.dtype) * 0.002 if not x.any() else x, state)
    nnx.update(net, state)
    return net


def tiny_plddt_head():
    """A random ``PLDDTConfig.tiny()`` head (the width of :func:`random_tiny`'s trunk)."""
    from flax import nnx

    from simplefold.model import PLDDTConfig, PLDDTHead

    return PLDDTHead(PLDDTConfig.tiny(), rngs=nnx.Rngs(1))


@pytest.fixture(scope="session")
def tiny_model():
    """:func:`random_tiny` with :func:`tiny_plddt_head` as a loaded model named ``tiny``."""
    from simplefold.predict.loading import LoadedModel

    net = random_tiny(0)
    return LoadedModel(network=net, config=net.config, name="tiny", plddt_head=tiny_plddt_head())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> pathlib.Path:
    """:func:`random_tiny` saved as converted weights, with its own head in ``plddt/``."""
    from simplefold.weights.checkpoints import save_converted

    d = tmp_path_factory.mktemp("tiny_model")
    save_converted(random_tiny(0), d)
    save_converted(tiny_plddt_head(), d / "plddt")
    return d


@pytest.fixture(scope="session")
def demo_model():
    """The bundled demo model with its pLDDT head (package data, loaded offline)."""
    from simplefold.predict.loading import load_model

    return load_model("demo", offline=True)


# --------------------------------------------------------------------------------------
# Networks of the official-code parity fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def official_model():
    """The folding network of ``folding_d64_h4.ckpt`` (random weights saved by the official code)."""
    from simplefold.model.config import FoldingConfig
    from simplefold.weights import checkpoints

    summary = json.loads((PARITY / "folding_d64_h4.json").read_text())["summary"]
    return checkpoints.load_official_model(PARITY / "folding_d64_h4.ckpt", FoldingConfig.from_official(summary))


def parity_features(case: str) -> dict:
    """Batch-1 official features of a parity case (the fixture stores two identical copies)."""
    import numpy as np

    f = np.load(PARITY / f"features_{case}.npz")
    return {k: f[k][:1] for k in f.files}


@pytest.fixture(scope="session")
def esm_encoder():
    """The ESM2 encoder of :data:`ESM_PT`."""
    from simplefold.weights.esm import load_official_esm2

    return load_official_esm2(ESM_PT)


@pytest.fixture(scope="session")
def esm_state_dict():
    """The tensors of :data:`ESM_PT` by fair-esm name."""
    import collections

    from simplefold.weights.torch_reader import open_state_dict

    with open_state_dict(ESM_PT, prefix="model") as sd:
        return collections.OrderedDict((k, sd[k]) for k in sd)


def assert_esm_close(actual, expected, atol: float = 1e-5, rtol: float = 1e-5) -> None:
    """|actual − expected| ≤ atol + rtol·|expected| everywhere (the ESM2 parity tolerance)."""
    import numpy as np

    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected)
    bad = err > atol + rtol * np.abs(expected)
    assert not bad.any(), f"max abs err {err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}"


@pytest.fixture(scope="session")
def esm_pair() -> dict:
    """fair-esm's tokens and every layer's representations for the fixture's two sequences."""
    import numpy as np

    return dict(np.load(PARITY / "esm2_pair.npz"))

"""Shared test setup: float32 CPU JAX, persistent compile cache, fixture paths."""

from __future__ import annotations

import os
import pathlib

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parent.parent / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest

TESTS_DIR = pathlib.Path(__file__).resolve().parent
FIXTURES = TESTS_DIR / "fixtures"
PARITY = FIXTURES / "parity"
PARITY_CASES = ("trpcage", "villin_x", "gb1")


@pytest.fixture(scope="session")
def parity_dir() -> pathlib.Path:
    return PARITY

"""simplefold.utils.memory: per-phase peak RSS and the phase-boundary log lines."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

from simplefold.utils.memory import PhasePeaks, current_rss

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/status is Linux only")


def test_phase_peak_sees_a_phase_allocation_and_logs_boundaries(caplog):
    peaks = PhasePeaks()
    with caplog.at_level(logging.INFO, logger="simplefold.utils.memory"):
        with peaks.phase("big"):
            a = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
            inside = current_rss()
            del a
        with peaks.phase("small"):
            pass
    # the kernel's RSS counters are batched per CPU: VmHWM may trail VmRSS by a few MiB
    assert inside >= 300 * 2**20 and peaks.peaks["big"] >= inside - 32 * 2**20
    if peaks.exact:  # the high-water mark was reset at the phase start: the small phase's peak is lower
        assert peaks.peaks["small"] < peaks.peaks["big"] - 200 * 2**20
    text = caplog.text
    assert "phase big starts: RSS" in text and "phase small starts: RSS" in text
    assert "phase big: peak RSS" in text and "RSS at its end" in text
    assert set(peaks.as_dict()["peak_rss_bytes"]) == {"big", "small"}

"""simplefold.training.eta: the ETA of a resumed run ignores compilation and counts validation pauses."""

from __future__ import annotations

import pytest

from simplefold.training.eta import WARMUP_STEPS, TrainingETA, format_seconds


def test_resume_eta_ignores_the_compiling_first_steps():
    # resumed at step 2900 of 3000: the first step compiles for 60 s, then 0.5 s per step
    eta = TrainingETA(2900, 3000)
    eta.step_done(2901, 60.0)
    assert eta.seconds_left() is None  # nothing but compilation seen yet
    for k in range(2902, 2911):
        eta.step_done(k, 0.5)
    assert eta.seconds_left() == pytest.approx(90 * 0.5)
    # tqdm's estimate (elapsed / steps done x steps left) would have said:
    naive = (60.0 + 9 * 0.5) / 10 * 90
    assert naive > 10 * eta.seconds_left()


def test_warmup_steps_are_skipped_and_window_follows_a_slower_phase():
    eta = TrainingETA(0, 1000)
    for k in range(1, WARMUP_STEPS + 1):
        eta.step_done(k, 100.0)
    eta.step_done(WARMUP_STEPS + 1, 1.0)
    assert eta.seconds_left() == pytest.approx(1000 - WARMUP_STEPS - 1)
    for k in range(WARMUP_STEPS + 2, WARMUP_STEPS + 200):
        eta.step_done(k, 2.0)  # slower now: the window forgets the 1 s step
    assert eta.seconds_left() == pytest.approx((1000 - (WARMUP_STEPS + 199)) * 2.0)


def test_validation_pauses_are_added_per_remaining_occurrence():
    eta = TrainingETA(0, 1000, pause_every=250)
    for k in range(1, 11):
        eta.step_done(k, 1.0)
    assert eta.seconds_left() == pytest.approx(990)  # pause cost unknown yet
    eta.pause_done(30.0)
    assert eta.seconds_left() == pytest.approx(990 + 4 * 30.0)  # validations at 250, 500, 750, 1000


def test_format_seconds():
    assert [format_seconds(x) for x in (None, 42.2, 185, 7620)] == ["?", "42s", "3m05s", "2h07m"]

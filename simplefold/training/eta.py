"""Time left in a training run, from step times that exclude compilation and periodic pauses.

tqdm's own estimate divides elapsed time by steps done since the bar started, so after a resume
the first step (tracing and compiling the train step: a minute or more) is counted as step time
and a run with 1 minute left shows 19. :class:`TrainingETA` ignores the first steps after
(re)start and the validation/checkpoint pauses, which it adds back as their own measured cost
per occurrence.
"""

from __future__ import annotations

import math
from collections import deque

#: Steps after a (re)start not used for the step time (compilation; the first also traces).
WARMUP_STEPS = 2
#: Recent step durations averaged (a running window, so a slower phase shows up quickly).
WINDOW = 50


class TrainingETA:
    """Seconds left = remaining steps x recent mean step time + remaining pauses x their cost.

    Args:
      start_step: the step the run (re)starts from.
      max_steps: the last step.
      pause_every: steps between periodic pauses (validation), or None.
    """

    def __init__(self, start_step: int, max_steps: int, pause_every: int | None = None):
        self.max_steps, self.pause_every = max_steps, pause_every
        self.steps: deque[float] = deque(maxlen=WINDOW)
        self.seen = 0
        self.pause_cost: float | None = None
        self.step = start_step

    def step_done(self, step: int, seconds: float) -> None:
        """Step ``step`` took ``seconds`` of train-step wall time (data + step, no pauses)."""
        self.step = step
        self.seen += 1
        if self.seen > WARMUP_STEPS:
            self.steps.append(seconds)

    def pause_done(self, seconds: float) -> None:
        """A periodic pause (validation) took ``seconds``; the latest one is the estimate."""
        self.pause_cost = seconds

    def seconds_left(self) -> float | None:
        """None until a step time is known (during compilation)."""
        if not self.steps:
            return None
        left = max(self.max_steps - self.step, 0)
        total = left * (sum(self.steps) / len(self.steps))
        if self.pause_every and self.pause_cost is not None:
            total += (self.max_steps // self.pause_every - self.step // self.pause_every) * self.pause_cost
        return total


def format_seconds(seconds: float | None) -> str:
    """``"?"``, ``"42s"``, ``"3m05s"`` or ``"2h07m"``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"

"""`train.budget_s`: a run sized to a wall-clock budget, with the config's schedule stretched onto it.

The first iterations of the run time themselves: `WARM_ITERATIONS` untimed (DataLoader workers starting,
cuDNN choosing its kernels, the allocator growing), then `PROBE_ITERATIONS` timed, or fewer when the probe
reaches `PROBE_SHARE` of the budget first. From their mean duration the run's total number of iterations is
fixed once, as many as fit in what is left of the budget, and the config's learning-rate steps, epochs of a
run of `train.epochs`, become the same fractions of that total. The budget counts training time only: the
evaluations are timed apart. Should the iterations turn out slower than the probe measured, the run stops
once it is `OVERRUN` times over the budget, before its planned end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

WARM_ITERATIONS = 5
PROBE_ITERATIONS = 20
PROBE_SHARE = 0.25
OVERRUN = 1.1


def budgeted_steps(steps: Sequence[int], epochs: int, iterations: int) -> list[int]:
    """The iterations of a run of `iterations` at which the learning rate drops: `steps` (epochs of a run
    of `epochs`) as the same fractions of it."""
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    return [round(iterations * step / epochs) for step in steps]


@dataclass
class Plan:
    """What the probe decided after `decided_at` iterations: the run's total iterations and how long one
    of the `timed_iterations` took."""

    iterations: int
    seconds_per_iteration: float
    timed_iterations: int
    decided_at: int


class TrainingBudget:
    """The decision of `train.budget_s` for a run (or a resumed part of one) whose training clock reads
    `start_s` after `start_iteration` iterations: `observe(iteration, elapsed_s)` after every iteration
    returns the `Plan` once, at the iteration where the probe ends; `exhausted(...)` says when to stop."""

    def __init__(
        self,
        seconds: float,
        start_iteration: int = 0,
        start_s: float = 0.0,
        planned_iterations: int | None = None,
        *,
        warm_iterations: int = WARM_ITERATIONS,
        probe_iterations: int = PROBE_ITERATIONS,
    ):
        if not isinstance(seconds, int | float) or not seconds > 0 or not math.isfinite(seconds):
            raise ValueError(f"train.budget_s must be a finite number > 0, got {seconds!r}")
        self.seconds = float(seconds)
        self.planned_iterations = planned_iterations
        self.warm_iterations, self.probe_iterations = warm_iterations, probe_iterations
        self._start = (start_iteration, start_s)
        self._timed_from = (start_iteration, start_s) if warm_iterations == 0 else None

    def observe(self, iteration: int, elapsed_s: float) -> Plan | None:
        """After `iteration` iterations in all, `elapsed_s` seconds of training in all: the plan if the
        probe ends here, else None."""
        if self.planned_iterations is not None:
            return None
        done = iteration - self._start[0]
        if done == self.warm_iterations:
            self._timed_from = (iteration, elapsed_s)
        timed_from = self._timed_from
        timed = iteration - timed_from[0] if timed_from is not None else 0
        if timed < self.probe_iterations and elapsed_s - self._start[1] < PROBE_SHARE * self.seconds:
            return None
        if timed == 0:  # the budget is too small even for the untimed iterations: time them all
            timed_from, timed = self._start, done
        seconds_per_iteration = max(elapsed_s - timed_from[1], 0.0) / timed
        remaining = max(self.seconds - elapsed_s, 0.0)
        more = int(remaining // seconds_per_iteration) if seconds_per_iteration > 0 else 0
        self.planned_iterations = iteration + more
        return Plan(self.planned_iterations, seconds_per_iteration, timed, iteration)

    def exhausted(self, iteration: int, elapsed_s: float) -> bool:
        """Whether the run ends after `iteration` iterations and `elapsed_s` seconds of training: its
        planned iterations are done, or it is `OVERRUN` times over the budget."""
        planned = self.planned_iterations is not None and iteration >= self.planned_iterations
        return planned or elapsed_s > OVERRUN * self.seconds

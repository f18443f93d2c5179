"""Learning-rate rules as pure functions of the 1-based iteration (BasicSR semantics, ram.md §3).

* warm-up: ``lr(t) = base·t/W`` for ``t < W`` (overrides the schedule, as BasicSR's ``update_learning_rate``);
* ``cosine`` (CosineAnnealingRestartLR): with ``x = t − 1``, the period ``i`` containing ``x`` (cumulative periods
  ``c_i``, ``x <= c_i``), ``lr = eta_min + w_i·½(base − eta_min)(1 + cos(π(x − c_{i−1})/T_i))``;
* ``multistep``: ``lr = base·gamma^#{m : m <= t − 1}``;
* ``constant``.

The trainer sets every param group's lr from these each iteration, so resuming needs only the iteration.
"""
from __future__ import annotations

import math

from anyrestore.engine.config import ScheduleConfig


def lr_at(t: int, base: float, schedule: ScheduleConfig, total_iterations: int) -> float:
    """Learning rate of iteration ``t`` (1-based) for a group whose initial lr is ``base``."""
    if t < 1:
        raise ValueError(f"iterations are 1-based, got {t}")
    if schedule.warmup > 0 and t < schedule.warmup:
        return base * t / schedule.warmup
    x = t - 1
    if schedule.type == "constant":
        return base
    if schedule.type == "multistep":
        return base * schedule.gamma ** sum(1 for m in schedule.milestones if m <= x)
    periods = schedule.periods or [total_iterations]
    weights = schedule.restart_weights or [1.0] * len(periods)
    start = 0
    for period, weight in zip(periods, weights):
        if x <= start + period:
            progress = (x - start) / period
            return schedule.eta_min + weight * 0.5 * (base - schedule.eta_min) * (1.0 + math.cos(math.pi * progress))
        start += period
    return schedule.eta_min  # past the last period (BasicSR would index out of range)

"""A fleet's budget: ``--max-dollars X`` becomes a time by which its workers stop.

At launch the hourly price of the fleet is bounded from above (``--max-price`` where
given, else the dearest price among the instance types and zones asked for, spot or
on-demand), so ``count`` instances can run ``X / (count * bound)`` hours before X is spent.
Each instance's worker gets that moment (``cheerful worker --stop-at``): it stops taking
work, lets running tasks finish or checkpoint within its grace, puts the rest back in the
queue and leaves, and the instance powers off; the bootstrap also powers it off a few
minutes later should the worker hang. Nothing is lost: more workers later resume the job.
No coordination between instances is needed, and the spend never passes X.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from cheerful.errors import ConfigError

__all__ = ["HARD_STOP_AFTER_S", "check_budget", "stop_time"]

HARD_STOP_AFTER_S = 300.0
"""How long after the stop time the bootstrap powers the instance off whatever happens."""


def check_budget(max_dollars: float | None) -> None:
    """Refuse a budget that is not a positive number of dollars."""
    if max_dollars is None:
        return
    if isinstance(max_dollars, bool) or not isinstance(max_dollars, (int, float)):
        raise ConfigError(f"max_dollars must be a number of dollars, not {max_dollars!r}")
    if not max_dollars > 0:
        raise ConfigError(f"max_dollars must be more than 0, not {max_dollars!r}")


def stop_time(
    max_dollars: float,
    count: int,
    prices: Iterable[float],
    max_price: float | None = None,
    now: float | None = None,
) -> float:
    """When ``count`` instances, each at most ``max_price`` (else the dearest of ``prices``)
    an hour, have spent ``max_dollars``: a unix time."""
    known = [p for p in prices if p]
    bound = max_price if max_price is not None else max(known, default=None)
    if not bound:
        raise ConfigError(
            "the budget needs an hourly price to bound the spend and none is known for these "
            "instance types: give --max-price too"
        )
    hours = max_dollars / (count * bound)
    return (time.time() if now is None else now) + hours * 3600

"""Cloud workers launched for one job and taken down with it: what ``cheerful run --fleet``
(and a durable plan with a fleet) holds while it waits for the job.

:class:`JobFleet` launches on :meth:`start`, says what was spent so far (asked of EC2 at
most every :data:`SPENT_EVERY_S`), and terminates every instance of the job on
:meth:`stop`, whether the job settled, failed, or its caller was interrupted.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from cheerful.errors import CheerfulError

__all__ = ["SPENT_EVERY_S", "JobFleet"]

SPENT_EVERY_S = 30.0
"""Longest time a spend figure is reused before EC2 is asked again."""


class JobFleet:
    """``count`` cloud workers for job ``job`` of the ``s3://`` backend ``backend``;
    ``options`` are those of :func:`cheerful.durable.fleet.up` (types, setup, max_dollars...)."""

    def __init__(self, backend: str, job: str, **options: Any) -> None:
        self.backend, self.job, self.options = backend, job, options
        self.launch: Any = None
        self.terminated: list[str] = []
        self._spent: tuple[float, float, int] = (0.0, 0.0, 0)  # (asked at, dollars, running)

    def start(self) -> Any:
        """Launch the workers; return the :class:`~cheerful.durable.fleet.ec2.Launch`."""
        from .ec2 import up

        self.launch = up(self.backend, job=self.job, **self.options)
        return self.launch

    def spent(self) -> tuple[float, int]:
        """Dollars spent so far on the job's instances and how many run (an EC2 error
        keeps the last figures)."""
        asked, dollars, running = self._spent
        if time.monotonic() - asked >= SPENT_EVERY_S or not asked:
            from .inventory import spent

            with contextlib.suppress(CheerfulError):  # keep the last figures
                dollars, running = spent(self.backend, self.job)
            self._spent = (time.monotonic(), dollars, running)
        return dollars, running

    def over_budget(self) -> bool:
        """True once the spend has reached ``max_dollars`` (never without one)."""
        budget = self.options.get("max_dollars")
        return budget is not None and self.spent()[0] >= budget

    def stop(self) -> list[str]:
        """Terminate every instance of the job; return one line per instance."""
        from .inventory import down

        self.terminated = down(self.backend, job=self.job)
        return self.terminated

    def __enter__(self) -> JobFleet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Ctrl-C and SIGTERM while ``cheerful run`` waits for its job (:class:`StopSignals`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["STOPPING", "StopSignals"]

STOPPING = {  # what ``cheerful run`` says on the first signal
    signal.SIGINT: "interrupted: stopping the workers (running tasks may finish first; "
    "Ctrl-C again to stop them now)",
    signal.SIGTERM: "terminated (SIGTERM): stopping the workers now (running tasks are put "
    "back in the queue)",
}


class StopSignals:
    """Ctrl-C and SIGTERM while ``cheerful run`` waits for its job.

    The first signal raises KeyboardInterrupt in the main thread (SIGTERM as Ctrl-C does;
    :attr:`first` says which came), except inside :meth:`held`, which raises it at its
    end. After :meth:`stopping` a signal raises nothing: a SIGTERM, or a second signal,
    makes the workers release their running chunks at once
    (:meth:`~cheerful.durable.fleet.LocalFleet.hurry`); a third kills them. A signal the
    caller ignores (SIG_IGN, as in a background job) stays ignored.
    """

    def __init__(self, fleet: Any) -> None:
        self.fleet, self.saved = fleet, {}
        self.first: signal.Signals | None = None
        self.count, self.holding, self.raised, self.quiet = 0, False, False, False

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig, default in _DEFAULTS.items():
                if signal.getsignal(sig) is default:
                    self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold a signal back while the block runs; raise it when the block ends."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
        if self.first is not None and not self.raised:
            self.raised = True
            raise KeyboardInterrupt

    def stopping(self) -> None:
        """The workers are being stopped: signals from now on only hurry them."""
        self.quiet = True

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.first is None:
            self.first = signal.Signals(signum)
        if self.quiet:
            if self.count > 2:
                self.fleet.kill(wait=False)  # stop() waits for them
            elif self.count == 2 or signum == signal.SIGTERM:
                self.fleet.hurry()
            return
        if self.holding or self.raised:  # raised already: the stop will see the count
            return
        self.raised = True
        raise KeyboardInterrupt


_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}

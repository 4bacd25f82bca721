"""Where workers come from: this machine (:mod:`.local`); cloud fleets come later."""

from .local import LocalFleet, worker_command

__all__ = ["LocalFleet", "worker_command"]

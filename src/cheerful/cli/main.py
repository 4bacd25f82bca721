"""The ``cheerful`` command line: parses, calls the library, prints. No logic lives here.

Every command takes ``--backend`` (default ``local``, or the ``CHEERFUL_BACKEND``
environment variable). A cheerful error (a bad envs file, an unknown job, ...) prints one
``Error: ...`` line and exits with code 2, before anything is submitted. One module per
command group: :mod:`.backend` (init), :mod:`.run` (run, submit; :mod:`.cloud` for run
--fleet), :mod:`.worker`, :mod:`.observe` (status, results, logs), :mod:`.steer` (retry,
cancel), :mod:`.fleet` (cloud workers); :mod:`.console` holds what they share.
"""

from __future__ import annotations

import click

from .console import CommandGroup

__all__ = ["COMMANDS", "main"]

COMMANDS = {
    "init": ".backend:init",
    "run": ".run:run",
    "submit": ".run:submit",
    "worker": ".worker:worker",
    "status": ".observe:status",
    "results": ".observe:results",
    "logs": ".observe:logs",
    "retry": ".steer:retry",
    "cancel": ".steer:cancel",
    "fleet": ".fleet:fleet",
    "dashboard": ".dashboard:dashboard",
}
"""Every command, by where it is defined (loaded when it is run or listed)."""


@click.group(cls=CommandGroup, lazy=COMMANDS)
@click.version_option(package_name="cheerful")
def main() -> None:
    """cheerful: cheap and cheerful massively parallel batch processing."""

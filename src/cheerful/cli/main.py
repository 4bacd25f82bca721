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

from .backend import init
from .console import CommandGroup
from .dashboard import dashboard
from .fleet import fleet
from .observe import logs, results, status
from .run import run, submit
from .steer import cancel, retry
from .worker import worker

__all__ = ["main"]


@click.group(cls=CommandGroup)
@click.version_option(package_name="cheerful")
def main() -> None:
    """cheerful: cheap and cheerful massively parallel batch processing."""


for command in (init, run, submit, worker, status, results, logs, retry, cancel, fleet, dashboard):
    main.add_command(command)

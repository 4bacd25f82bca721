"""The ``cheerful`` command line: parses, calls the library, prints. No logic lives here."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="cheerful")
def main() -> None:
    """cheerful: cheap and cheerful massively parallel batch processing."""

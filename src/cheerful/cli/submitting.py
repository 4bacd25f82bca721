"""Submitting from the command line: SCRIPT or --command, with what ``run`` and ``submit``
share (the check of a script that is not Python, the dry run, what was shipped)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .console import err, out

__all__ = ["PYTHON_SUFFIXES", "submit_from_cli"]

PYTHON_SUFFIXES = {".py", ".pyw", ""}
"""Script suffixes taken for Python (a script with another one is a program to run)."""
_RUNNERS = {".r": "Rscript", ".jl": "julia", ".sh": "bash", ".pl": "perl", ".rb": "ruby"}


def submit_from_cli(
    script: str | None, command: str | None, envs: str, backend: str, **options: Any
) -> Any:
    """Submit SCRIPT or ``--command`` as the CLI options say; None after a dry run."""
    from cheerful.durable.submit import preview, submit_command, submit_script

    if (script is None) == (command is None):
        raise click.UsageError('give either SCRIPT or --command "CMD", not both or neither')
    dry_run, output = options.pop("dry_run", False), options.pop("output", "text")
    options["files"] = tuple(options.get("files") or ())
    if script is not None:
        suffix = Path(script).suffix.lower()
        if suffix not in PYTHON_SUFFIXES:
            runner = _RUNNERS.get(suffix, "PROGRAM")
            raise click.UsageError(
                f"{script} is not a Python script: run a program once per env with "
                f'--command "{runner} {script}" (its env comes as environment variables)'
            )
        if output != "text":
            raise click.UsageError("--output is for --command jobs (a script sets `result`)")
    if dry_run:
        kind, target = ("script", script) if script is not None else ("command", command)
        keep = ("chunk_size", "files", "workdir")
        shown = preview(
            kind, target, envs, backend=backend, output=output,
            **{k: options[k] for k in keep if k in options},
        )  # fmt: skip
        out.print(str(shown))
        err.print("dry run: nothing was submitted")
        return None
    if script is not None:
        job = submit_script(script, envs, backend=backend, **options)
    else:
        job = submit_command(command, envs, backend=backend, output=output, **options)
    shipped = job.manifest.get("files")
    if shipped:
        from cheerful.durable.files import JobFiles

        err.print(f"shipped with the job: {JobFiles.from_manifest(shipped).describe()}")
    return job

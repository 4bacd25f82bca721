"""``cheerful fleet up | status | down``: cloud workers on EC2, from the command line.

Parses, calls :mod:`cheerful.durable.fleet`, prints; no logic lives here.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections import Counter
from typing import Any

import click
from rich import box
from rich.table import Table

from cheerful.durable.fleet import DEFAULT_IDLE_EXIT_S, DEFAULT_TYPES

from .console import command_line, err, out

BACKEND_HELP = "an s3:// backend URL (SQS + S3) [env CHEERFUL_BACKEND]"


def _backend(fn):
    return click.option("--backend", required=True, envvar="CHEERFUL_BACKEND", help=BACKEND_HELP)(
        fn
    )


@click.group()
def fleet() -> None:
    """Cloud workers on EC2: launch, list, terminate."""


@fleet.command()
@_backend
@click.option("--job", help="the workers serve only this job [default: every job]")
@click.option("--count", type=click.IntRange(min=1), required=True, help="instances to launch")
@click.option("--spot/--on-demand", default=True, show_default=True, help="spot or on-demand")
@click.option(
    "--type",
    "types",
    default=",".join(DEFAULT_TYPES),
    show_default=True,
    help="instance types, comma-separated: more types, deeper spot pools",
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    help="a region to launch in; repeat for several (the count is shared out) "
    "[default: the backend's]",
)
@click.option("--slots", type=click.IntRange(min=1), help="tasks at once per instance [vCPUs]")
@click.option("--max-price", type=float, help="highest spot price per instance-hour, in $")
@click.option("--image", help="an AMI id [default: current Ubuntu LTS, else Amazon Linux]")
@click.option(
    "--requirements",
    type=click.Path(exists=True, dir_okay=False),
    help="a requirements.txt the workers install next to cheerful",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0),
    default=DEFAULT_IDLE_EXIT_S,
    show_default=True,
    help="workers leave (and their instance powers off) after the queue was empty this long",
)
@click.option(
    "--setup",
    multiple=True,
    help="a shell command each instance runs once before its worker starts (repeat for "
    "several); if one fails, the instance records why and powers off",
)
@click.option(
    "--max-dollars",
    type=float,
    help="a budget: the workers stop (and their instances power off) before it is spent",
)
@click.option("--instance-profile", help="an existing IAM instance profile to use")
@click.option("--dry-run", is_flag=True, help="print the user-data and the request; launch nothing")
def up(backend: str, job: str | None, types: str, regions: tuple[str, ...], **options: Any) -> None:
    """Launch COUNT spot workers that install themselves, drain the queue and power off."""
    from cheerful.durable import fleet as api


    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        launch = api.up(
            backend,
            job=job,
            types=tuple(t.strip() for t in types.split(",")),
            regions=tuple(regions),
            **options,
        )
    if options["dry_run"]:
        out.print("# user-data\n" + launch.user_data)
        shown = copy.deepcopy(launch.requests)
        for part in shown.values():
            part["LaunchTemplateData"]["UserData"] = "(the user-data above, base64)"
        out.print("# requests, per region\n" + json.dumps(shown, indent=2))
        err.print(f"dry run: nothing launched. Estimate: {launch.estimate}")
        return
    for line in launch.created:
        err.print(line)
    err.print(f"estimate: {launch.estimate}")
    if launch.stop_at is not None:
        when = time.strftime("%H:%M:%S", time.localtime(launch.stop_at))
        err.print(f"budget ${options['max_dollars']:g}: the workers stop by {when}")
    for item in launch.instances:
        out.print(f"launched {item['id']} ({item['type']}, {item['zone']}, {item['lifecycle']})")
    for warning in caught:
        err.print(f"Warning: {warning.message}")
    err.print(
        f"{launch.granted} of {launch.requested} instance(s) granted (launch {launch.id}); "
        f"see them with: {command_line('fleet status', backend)}"
    )


@fleet.command()
@_backend
@click.option("--job", help="only this job's workers")
def status(backend: str, job: str | None) -> None:
    """List the instances cheerful launched, with price, age and tasks done."""
    from cheerful.durable import fleet as api
    from cheerful.durable.fleet.cost import money


    found = api.status(backend, job=job)
    if not found:
        err.print("no cloud workers running")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for name in ("instance", "type", "zone", "kind", "state", "age", "$/h", "tasks done", "job"):
        table.add_column(name, no_wrap=True)
    table.add_column("trouble", overflow="fold")
    for i in sorted(found, key=lambda i: (i.region, i.type, i.zone, i.id)):
        table.add_row(
            i.id,
            i.type,
            i.zone,
            i.lifecycle,
            i.state,
            _age(i.age_s),
            "-" if i.price is None else money(i.price),
            str(i.tasks_done),
            i.job or "(all)",
            i.trouble,
        )
    out.print(table)
    live = [i for i in found if i.state in ("pending", "running")]
    hourly = sum(i.price or 0.0 for i in live)
    by_type = Counter(i.type for i in live)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(by_type.items()))
    err.print(f"{len(live)} running ({kinds or 'none'}), about {money(hourly)}/h")


@fleet.command()
@_backend
@click.option("--job", help="only this job's workers")
def down(backend: str, job: str | None) -> None:
    """Terminate every instance cheerful launched for the backend (or JOB), everywhere."""
    from cheerful.durable import fleet as api


    lines = api.down(backend, job=job)
    for line in lines:
        out.print(line)
    err.print(f"{len(lines)} instance(s) terminated" if lines else "nothing to terminate")


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"

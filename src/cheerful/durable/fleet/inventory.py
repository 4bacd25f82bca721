"""What cheerful launched for a backend, found again from any machine: :func:`status`,
:func:`down` and :func:`spent`.

The launch records (``fleet/launches/*.json``) say which regions were used; in each, the
instances are found by their ``cheerful:backend`` (and ``cheerful:job``) tags, so an
instance is found even if its record lags. Tasks done come from the heartbeats of the
workers on each instance (``nodes/<instance>-<pid>.json``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cheerful.errors import ConfigError, FleetError, ObjectNotFound

from .. import layout
from ..aws import aws_errors, error_code
from ..backends import S3Location, open_backend
from .cost import dollars
from .ec2 import backend_tag, ec2_client, location

__all__ = ["LIVE_STATES", "Instance", "boot_troubles", "down", "job_troubles", "spent", "status"]

LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")
"""Instance states that may still bill (or soon stop billing)."""


@dataclass(frozen=True)
class Instance:
    """One instance cheerful launched, as :func:`status` sees it."""

    id: str
    region: str
    type: str
    zone: str
    lifecycle: str
    state: str
    launched: float
    price: float | None
    job: str | None
    tasks_done: int
    trouble: str = ""
    """What its bootstrap gave up on (e.g. "setup failed: apt-get ... (exit code 100)")."""

    @property
    def age_s(self) -> float:
        """Seconds since launch."""
        return max(0.0, time.time() - self.launched)


def status(backend: str, *, job: str | None = None) -> list[Instance]:
    """The instances cheerful launched for ``backend`` (and ``job``) that are not gone:
    in every region it launched in, with their type, zone, state, price and tasks done."""
    where = location(backend)
    with open_backend(where.url) as opened:
        records = _launches(opened.store, job)
        found = _describe(where, records, job)
        ids = [row["InstanceId"] for _, row in found]
        beats, troubles = _heartbeats(opened.store, ids), boot_troubles(opened.store, ids)
        prices = {item["id"]: item.get("price") for _, item in _launched(records)}
        return [_instance(row, region, prices, beats, troubles) for region, row in found]


def down(backend: str, *, job: str | None = None) -> list[str]:
    """Terminate every instance cheerful launched for ``backend`` (only ``job``'s if
    given), in every region used, and delete their launch templates; return one line per
    instance terminated."""
    where = location(backend)
    with open_backend(where.url) as opened:
        records = _launches(opened.store, job)
    lines = []
    for region, rows in _by_region(_describe(where, records, job)).items():
        ec2 = ec2_client(where, region)
        ids = [row["InstanceId"] for row in rows if row["State"]["Name"] != "shutting-down"]
        if ids:
            with aws_errors(FleetError, "terminate instances", f"{region} {ids[:3]}"):
                ec2.terminate_instances(InstanceIds=ids)
        lines += [f"terminated {r['InstanceId']} ({r['InstanceType']}, {_zone(r)})" for r in rows]
    for record in records:
        for region, part in record.get("regions", {}).items():
            _delete_template(ec2_client(where, region), part.get("launch_template"))
    return lines


def spent(backend: str, job: str) -> tuple[float, int]:
    """Dollars spent so far on ``job``'s instances (instance-seconds x the price at launch)
    and how many of them are still running."""
    where = location(backend)
    with open_backend(where.url) as opened:
        records = _launches(opened.store, job)
        if not records:
            return 0.0, 0
        live = {row["InstanceId"]: row for _, row in _describe(where, records, job)}
        launched = [(record["created"], item) for record, item in _launched(records)]
        beats = _heartbeats(opened.store, [item["id"] for _, item in launched])
        total, running = 0.0, 0
        for created, item in launched:
            row = live.get(item["id"])
            if row is not None and row["State"]["Name"] in ("pending", "running"):
                running += 1
                end = time.time()
            else:  # gone: it ran until its worker's last heartbeat
                end = max(created, float(beats.get(item["id"], {}).get("updated", created)))
            total += dollars(end - created, item.get("price"))
        return total, running


def _launches(store, job: str | None) -> list[dict]:
    records = []
    for key in store.list(layout.launches_prefix()):
        try:
            record = json.loads(store.get(key))
        except (ObjectNotFound, ValueError):
            continue
        if job is None or record.get("job") == job:
            records.append(record)
    return records


def _launched(records: list[dict]) -> list[tuple[dict, dict]]:
    """Each instance the launch ``records`` name, with its record."""
    return [
        (record, item)
        for record in records
        for part in record.get("regions", {}).values()
        for item in part.get("instances", [])
    ]


def _describe(where: S3Location, records: list[dict], job: str | None) -> list[tuple[str, dict]]:
    regions = sorted({r for record in records for r in record.get("regions", {})})
    filters = [
        {"Name": "tag:cheerful:backend", "Values": [backend_tag(where)]},
        {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
    ]
    if job is not None:
        filters.append({"Name": "tag:cheerful:job", "Values": [job]})
    found = []
    for region in regions:
        with aws_errors(FleetError, "describe instances", f"cheerful's in {region}"):
            pages = (
                ec2_client(where, region)
                .get_paginator("describe_instances")
                .paginate(Filters=filters)
            )
            found += [
                (region, row)
                for page in pages
                for reservation in page["Reservations"]
                for row in reservation["Instances"]
            ]
    return found


def _by_region(found: list[tuple[str, dict]]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for region, row in found:
        grouped.setdefault(region, []).append(row)
    return grouped


def _instance(
    row: dict,
    region: str,
    prices: dict[str, float | None],
    beats: dict[str, dict],
    troubles: dict[str, str],
) -> Instance:
    tags = {t["Key"]: t["Value"] for t in row.get("Tags", [])}
    node = beats.get(row["InstanceId"], {})
    job = tags.get("cheerful:job")
    return Instance(
        id=row["InstanceId"],
        region=region,
        type=row["InstanceType"],
        zone=_zone(row),
        lifecycle=row.get("InstanceLifecycle", "on-demand"),
        state=row["State"]["Name"],
        launched=row["LaunchTime"].timestamp(),
        price=prices.get(row["InstanceId"]),
        job=None if job in (None, "*") else job,
        tasks_done=int(node.get("done", 0)),
        trouble=troubles.get(row["InstanceId"], ""),
    )


def _zone(row: dict) -> str:
    return row.get("Placement", {}).get("AvailabilityZone", "")


def _heartbeats(store, instance_ids: Iterable[str]) -> dict[str, dict]:
    """The newest heartbeat of a worker on each instance (workers are ``<node>-<pid>``)."""
    wanted, best = set(instance_ids), {}
    for key in store.list(layout.nodes_prefix()):
        try:
            node = layout.node_of_key(key).rsplit("-", 1)[0]
        except ConfigError:
            continue
        if node not in wanted:
            continue
        try:
            beat = json.loads(store.get(key))
        except (ObjectNotFound, ValueError):
            continue
        if beat.get("updated", 0) >= best.get(node, {}).get("updated", 0):
            best[node] = beat
    return best


def boot_troubles(store: Any, instance_ids: Iterable[str]) -> dict[str, str]:
    """What the bootstrap of each instance gave up on, in words (none: not there)."""
    found = {}
    for node in instance_ids:
        try:
            record = json.loads(store.get(layout.boot_record(node)))
        except (ObjectNotFound, ValueError, ConfigError):
            continue
        command, code = record.get("command", ""), record.get("exit_code")
        found[node] = f"{record.get('state', 'failed')}: {command} (exit code {code})"
    return found


def job_troubles(backend: str, job: str) -> list[str]:
    """What went wrong with ``job``'s cloud workers, in lines: instances whose setup (or
    bootstrap) failed, and a budget that ran out before the job was finished."""
    where = location(backend)
    with open_backend(where.url) as opened:
        records = _launches(opened.store, job)
        ids = [item["id"] for _, item in _launched(records)]
        lines = [
            f"instance {node}: {why}" for node, why in boot_troubles(opened.store, ids).items()
        ]
    for record in records:
        stop_at, budget = record.get("stop_at"), record.get("max_dollars")
        if stop_at and budget and stop_at <= time.time():
            lines.append(
                f"launch {record['id']} stopped on its budget of ${budget:g}: more workers "
                "later resume the job (cheerful fleet up --job ...)"
            )
    return lines


def _delete_template(ec2, template_id: str | None) -> None:
    if not template_id:
        return
    try:
        ec2.delete_launch_template(LaunchTemplateId=template_id)
    except Exception as exc:  # already gone: nothing to do
        if "NotFound" not in error_code(exc):
            with aws_errors(FleetError, "delete a launch template", template_id):
                raise

"""The JSON the page is sent, and nothing more: every field is picked by name.

Heartbeats, views and failures are read attribute by attribute and key by key (never
passed on whole), so a field added to a heartbeat later does not reach the page unless it
is added here. No credentials, no task environments, no inputs: a job is its counts, a
node its machine and its work, a failure its exception and its log's address.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LOGS_LINKED",
    "TASKS_SHOWN",
    "dead_row",
    "failure_row",
    "fleet_view",
    "instance_row",
    "job_detail",
    "job_row",
    "node_row",
]

LOGS_LINKED = 10
"""A failure links the logs of at most its last this many attempts."""
TASKS_SHOWN = 20
"""A dead chunk lists at most this many of its task numbers."""


def job_row(view: Any, spent: tuple[float, int] | None = None) -> dict[str, Any]:
    """One job in the jobs list: its counts, state, pace and (cloud) dollars."""
    s = view.status
    return {
        "id": view.id,
        "name": view.name or view.label,
        "kind": view.kind,
        "created": view.created,
        "state": s.state,
        "total": s.total,
        "done": s.done,
        "failed": s.failed,
        "dead": s.dead,
        "running": s.running,
        "queued": s.queued,
        "dropped": s.dropped,
        "cancelled": s.cancelled,
        "settled": s.settled,
        "incomplete": s.incomplete,
        "workers": s.workers,
        "exact": view.exact,
        "rate": view.rate,
        "eta": view.eta,
        "dollars": None if spent is None else spent[0],
        "instances": None if spent is None else spent[1],
    }


def job_detail(
    view: Any,
    nodes: list[Any],
    problems: Any,
    spent: tuple[float, int] | None,
    now: float,
) -> dict[str, Any]:
    """One job's page: its row, throughput samples, nodes, failures, dead chunks and
    which actions make sense."""
    row = job_row(view, spent)
    s = view.status
    return {
        **row,
        "samples": [[t, n] for t, n in view.samples],
        "nodes": [node_row(n, now, job=view.id) for n in nodes],
        "failures": [failure_row(f, view.id) for f in problems.failures],
        "failed_chunks": problems.failed_chunks,
        "dead_chunks": [dead_row(d) for d in problems.dead],
        "problems_read": problems.read_at,
        "can_retry": bool(s.failed or s.dead),
        "can_cancel": not s.settled and not s.cancelled,
    }


def node_row(node: Any, now: float, job: str | None = None) -> dict[str, Any]:
    """One node: what machine, what state, what it runs, how busy it is; with ``job``,
    its counters of that job."""
    beat = node.beat
    usage = _dict(beat.get("usage"))
    instance = _dict(beat.get("instance"))
    chunks = [c for c in beat.get("running") or [] if isinstance(c, dict)]
    counters = _dict(_dict(beat.get("jobs")).get(job)) if job is not None else {}
    updated = _number(beat.get("updated"))
    return {
        "worker": node.worker,
        "state": node.state,
        "lost": node.lost,
        "seen": None if updated is None else max(0.0, now - updated),
        "host": str(beat.get("host", "")),
        "instance": {k: str(instance[k]) for k in ("id", "type", "zone", "lifecycle") if k in instance},
        "slots": _number(beat.get("slots")),
        "busy": _number(beat.get("busy")),
        "done": _number(beat.get("done")),
        "failed": _number(beat.get("failed")),
        "running": [_chunk_row(c) for c in chunks if job is None or c.get("job") == job],
        "job": {k: _number(counters.get(k)) for k in ("chunks", "done", "failed", "running")}
        if job is not None
        else None,
        "cpu": _number(usage.get("cpu")),
        "load": _number(usage.get("load")),
        "cores": _number(usage.get("cores")),
        "memory_total": _number(usage.get("memory_total")),
        "memory_available": _number(usage.get("memory_available")),
        "notice": None if beat.get("notice") is None else str(beat.get("notice")),
        "started": _number(beat.get("started")),
    }


def failure_row(failure: Any, job: str) -> dict[str, Any]:
    """One failed task: its exception, traceback and the addresses of its attempts' logs."""
    attempts = max(1, int(failure.attempts or 1))
    first = max(1, attempts - LOGS_LINKED + 1)
    return {
        "task": failure.index,
        "type": failure.type_name,
        "message": failure.message,
        "traceback": failure.traceback,
        "attempts": attempts,
        "logs": [
            {"attempt": a, "url": f"/api/jobs/{job}/logs/{failure.index}?attempt={a}"}
            for a in range(first, attempts + 1)
        ],
    }


def dead_row(dead: Any) -> dict[str, Any]:
    """One dead-lettered chunk: its tasks, why it died, how often it was received."""
    indices = list(dead.indices)
    return {
        "chunk": dead.chunk,
        "tasks": len(indices),
        "first_tasks": indices[:TASKS_SHOWN],
        "reason": dead.reason,
        "receives": dead.receives,
    }


def instance_row(instance: Any) -> dict[str, Any]:
    """One cloud instance: where, what, its state, price and trouble."""
    return {
        name: getattr(instance, name)
        for name in (
            "id", "region", "type", "zone", "lifecycle", "state", "launched", "price",
            "job", "tasks_done", "trouble",
        )
    }  # fmt: skip


def fleet_view(fleet: Any) -> dict[str, Any] | None:
    """The fleet: its instances, dollars per job, when EC2 was asked, what failed."""
    if fleet is None:
        return None
    spent = {job: {"dollars": d, "running": r} for job, (d, r) in fleet.spent.items()}
    return {
        "instances": [instance_row(i) for i in fleet.instances],
        "spent": spent,
        "dollars": sum(d for d, _ in fleet.spent.values()),
        "asked": fleet.asked,
        "error": fleet.error,
    }


def _chunk_row(chunk: dict[str, Any]) -> dict[str, Any]:
    tasks = chunk.get("tasks") or []
    return {
        "job": str(chunk.get("job", "")),
        "chunk": _number(chunk.get("chunk")),
        "tasks": [t for t in tasks if isinstance(t, int)][:TASKS_SHOWN],
        "task_count": _number(chunk.get("task_count")),
        "since": _number(chunk.get("since")),
        "attempt": _number(chunk.get("attempt")),
        "task_progress": _share(chunk.get("task_progress")),
    }


def _share(value: Any) -> float:
    """A share of one task (0.0 to 1.0) from a heartbeat; 0.0 when it is not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return 0.0


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | int | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if ok else None

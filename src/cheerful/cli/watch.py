"""``cheerful status --watch``: a live view of the backend's jobs and nodes in the terminal.

Refreshed every few seconds from the store (:class:`~cheerful.durable.overview.Overview`:
O(nodes) requests a refresh); Ctrl-C leaves. Without a job: every job (progress, rate,
time left, dollars on a cloud backend) and the nodes. With one: its progress bar, the
nodes that work on it, its latest failures.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .console import out

__all__ = ["watch"]

COST_EVERY_S = 30.0
"""How often the dollars of cloud workers are asked of EC2."""


def watch(backend: Any, job_id: str | None, every: float) -> None:
    """Show the live view until Ctrl-C."""
    from cheerful.durable.overview import Overview
    from cheerful.errors import BackendError

    overview, costs = Overview(backend), _Costs(backend.url)
    with Live(console=out.console, auto_refresh=False, screen=False) as live:
        try:
            while True:
                try:
                    overview.refresh()
                    view = _render(overview, job_id, costs)
                except BackendError as exc:  # a throttled or unreachable store: ask again
                    view = Group(_render(overview, job_id, costs), _trouble(exc))
                live.update(view, refresh=True)
                time.sleep(every)
        except KeyboardInterrupt:
            return


def _trouble(exc: Exception) -> Text:
    """The line that says the last refresh failed (the view shows the one before)."""
    return Text(f"{datetime.now():%H:%M:%S} reading the backend failed, trying again: {exc}",
                style="yellow")  # fmt: skip


class _Costs:
    """Dollars spent per job on cloud workers, asked at most every :data:`COST_EVERY_S`."""

    def __init__(self, url: str) -> None:
        self.url, self.known, self.asked = url, {}, {}

    def of(self, job: str) -> str:
        if not self.url.startswith("s3://"):
            return "-"
        if time.monotonic() - self.asked.get(job, -COST_EVERY_S) >= COST_EVERY_S:
            self.asked[job] = time.monotonic()
            from cheerful.durable.fleet import spent
            from cheerful.errors import CheerfulError

            try:
                self.known[job] = spent(self.url, job)[0]
            except CheerfulError:
                self.known.setdefault(job, None)
        dollars = self.known.get(job)
        return "-" if dollars is None else f"${dollars:.2f}"


def _render(overview: Any, job_id: str | None, costs: _Costs) -> Group:
    stamp = Text(f"{datetime.now():%H:%M:%S}  (Ctrl-C to leave)", style="dim")
    if job_id is not None and job_id in overview.views:
        return Group(stamp, *_one_job(overview, overview.views[job_id]))
    return Group(stamp, _jobs_table(overview, costs), _nodes_table(overview.nodes))


def _jobs_table(overview: Any, costs: _Costs) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="jobs", title_justify="left")
    for name in ("id", "name", "created", "done", "failed", "dead", "running", "rate", "ETA", "$"):
        table.add_column(name, no_wrap=True, justify="left" if name in ("id", "name") else "right")
    views = sorted(overview.views.values(), key=lambda v: v.created)
    for v in views:
        s = v.status
        table.add_row(
            v.id,
            v.name or v.label,
            datetime.fromtimestamp(v.created).strftime("%m-%d %H:%M"),
            f"{s.done}/{s.total}",
            str(s.failed),
            str(s.dead),
            str(s.running),
            "-" if v.rate is None else f"{v.rate:.1f}/s",
            _duration(v.eta),
            costs.of(v.id),
        )
    return table


def _nodes_table(nodes: list[Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="nodes", title_justify="left")
    for name in ("node", "state", "where", "busy", "running", "done", "failed", "cpu", "memory", "seen"):
        table.add_column(name, no_wrap=True)
    for n in nodes:
        b, usage = n.beat, n.beat.get("usage") or {}
        where = (b.get("instance") or {}).get("type") or b.get("host", "")
        chunks = ", ".join(_running(c) for c in b.get("running") or [])
        table.add_row(
            n.worker,
            Text(n.state, style="red" if n.state == "lost" else ""),
            where,
            f"{b.get('busy', 0)}/{b.get('slots', 0)}",
            chunks or "-",
            str(b.get("done", 0)),
            str(b.get("failed", 0)),
            "-" if usage.get("cpu") is None else f"{usage['cpu']:.0f}%",
            _memory(usage),
            f"{n.age:.0f}s ago",
        )
    return table


def _one_job(overview: Any, view: Any) -> list[Any]:
    s = view.status
    finished = s.done + s.failed + s.dead
    head = Text(
        f"{view.id} ({view.kind} {view.label}): {s.state}; {finished}/{s.total}, {s.failed} "
        f"failed, {s.dead} dead, {s.running} running"
        + ("" if view.exact else " (estimates)")
        + ("" if view.rate is None else f"; {view.rate:.1f} tasks/s, {_duration(view.eta)} left")
    )
    parts: list[Any] = [head, ProgressBar(total=max(1, s.total), completed=finished, width=60)]
    parts.append(_nodes_table(overview.job_nodes(view.id)))
    if s.failed or s.dead:
        table = Table(box=box.SIMPLE_HEAD, title="latest failures", title_justify="left")
        for name in ("task", "exception", "message", "attempts"):
            table.add_column(name)
        for f in overview.failures(view.id, limit=10):
            first = f.message.strip().splitlines()[0] if f.message.strip() else ""
            table.add_row(str(f.index), f.type_name.rsplit(".", 1)[-1], first, str(f.attempts))
        parts.append(table)
    return parts


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _memory(usage: dict) -> str:
    total, free = usage.get("memory_total"), usage.get("memory_available")
    if not total or free is None:
        return "-"
    return f"{100 * (total - free) / total:.0f}%"


def _running(chunk: dict) -> str:
    """A running chunk as the table shows it, with how far its task says it is."""
    share = chunk.get("task_progress")
    said = f" {share:.0%}" if isinstance(share, float) and share > 0 else ""
    return f"{chunk['job'][:16]}#{chunk['chunk']}{said}"

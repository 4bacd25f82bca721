"""A worker's heartbeat, ``nodes/<worker>.json``: one small object that says what the
machine is and what it is doing, rewritten every :data:`NODE_EVERY_S` seconds
(:data:`REMOTE_NODE_EVERY_S` on S3, where every write is a paid request).

It holds: the host, the pid, the EC2 instance (id, type, zone, spot or on-demand) when the
worker watches an instance's metadata, the slots and how many are busy, the chunks running
(job, chunk, its first tasks, since when, the attempt), the tasks done and failed per job,
the machine's CPU and memory use, the last spot notice, and the state: "running" (chunks
held), "idle", "leaving" (stopping: a stop, a spot notice, a budget), then at exit
"stopped" or "interrupted". ``cheerful status --watch`` and ``cheerful dashboard`` read it;
a heartbeat older than :data:`LOST_AFTER_S` is a lost node's.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

__all__ = [
    "LOST_AFTER_S",
    "NODE_EVERY_S",
    "REMOTE_NODE_EVERY_S",
    "TASKS_SHOWN",
    "Usage",
    "heartbeat",
]

NODE_EVERY_S = 5.0
"""Seconds between two heartbeats of a worker."""
REMOTE_NODE_EVERY_S = 15.0
"""The same on a remote store (S3): a heartbeat every 5 s would cost about a tenth of a
small spot instance's price in requests."""
LOST_AFTER_S = 30.0
"""A node whose heartbeat is older than this is taken for lost (killed, cut off)."""
TASKS_SHOWN = 20
"""How many task numbers of a running chunk the heartbeat lists (it stays small)."""


class Usage:
    """The machine's CPU use since the last reading, and its memory (Linux ``/proc``;
    elsewhere what ``os`` tells)."""

    def __init__(self) -> None:
        self._last = _cpu_times()

    def read(self) -> dict[str, Any]:
        """``cpu`` (percent of all cores, since the last reading), ``load`` (1 minute),
        ``cores``, ``memory_total`` and ``memory_available`` (bytes), ``worker_rss``."""
        now = _cpu_times()
        cpu = None
        if now is not None and self._last is not None:
            busy, total = now[0] - self._last[0], now[1] - self._last[1]
            cpu = round(100.0 * busy / total, 1) if total > 0 else 0.0
        self._last = now
        memory = _meminfo()
        return {
            "cpu": cpu,
            "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "cores": os.cpu_count(),
            "memory_total": memory.get("MemTotal"),
            "memory_available": memory.get("MemAvailable"),
            "worker_rss": _rss(),
        }


def heartbeat(
    *,
    worker: str,
    state: str,
    slots: int,
    busy: int,
    started: float,
    chunks: list[dict[str, Any]],
    jobs: dict[str, dict[str, int]],
    usage: dict[str, Any],
    instance: dict[str, str],
    notice: str | None,
    every: float = NODE_EVERY_S,
) -> dict[str, Any]:
    """The heartbeat object (see the module docstring)."""
    totals = {k: sum(c.get(k, 0) for c in jobs.values()) for k in ("chunks", "done", "failed")}
    return {
        "worker": worker,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "instance": instance,
        "slots": slots,
        "busy": busy,
        "state": state,
        "running": chunks,
        "jobs": jobs,
        **totals,
        "usage": usage,
        "notice": notice,
        "started": started,
        "updated": time.time(),
        "every": every,
    }


def _cpu_times() -> tuple[float, float] | None:
    try:
        with open("/proc/stat") as file:
            fields = [float(x) for x in file.readline().split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    total = sum(fields)
    return total - idle, total


def _meminfo() -> dict[str, int]:
    found = {}
    try:
        with open("/proc/meminfo") as file:
            for line in file:
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    found[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None

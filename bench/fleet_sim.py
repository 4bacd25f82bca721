"""The fleet at scale, in simulation: cheerful's SQS + S3 protocol with 100 to 10,000 workers.

    python bench/fleet_sim.py                                   # the default grid, ~2-3 minutes
    python bench/fleet_sim.py --instances 1000 --chunk-sizes 1,auto --seed 7 --json sim.json
    python bench/fleet_sim.py --interrupts 0.10 --vanish 0.3 --replace
    python bench/fleet_sim.py --costs-only                      # only the read-cost table
    python bench/fleet_sim.py --before                          # as before commit 169b3e8

We cannot launch 10,000 instances here, so this is a discrete-event simulation (stdlib
only: ``heapq`` and ``random``; deterministic for a ``--seed``) of what the code does. Every
timing constant of the protocol is imported from cheerful itself (see ``PROTOCOL`` below);
the request sequences are those of ``worker/loop.py`` (via ``worker/state.py``,
``worker/jobs.py``, ``worker/storing.py``), ``queues/sqs.py``, ``stores/s3.py``,
``counts.py``, ``waiting.py``, ``stores/many.py`` and ``overview.py`` as they stand.
``--before`` simulates the protocol as it was before the fixes of commit 169b3e8 (``BEFORE``
below); it draws the same random numbers as the simulation did then, so it reproduces the
tables of the first version of docs/scale.md (commit 9f7ca3a) exactly.

What is simulated, per instance (``cheerful fleet`` / ``cheerful run --fleet``: 2-vCPU spot
instances, ``cheerful worker --job ID --idle-exit 120 --grace 30``, 2 slots, one `worker`):

- launch after the submit (``cheerful run --fleet`` submits, then launches), boot, install,
  worker start (bundle GETs, boot log PUT, first manifest + code GETs, counters GET);
- receives of up to ``slots + prefetch - held`` messages (prefetch = slots on a remote
  queue, taken only once this worker's chunks run under ``PREFETCH_UNDER_S`` on a moving
  average; a refill waits until half the reserve is gone), at most 10 a call, long-polled
  ``REMOTE_POLL_S`` while no slot is busy; while some slot is busy, a receive that finds
  nothing makes the next wait ``QUIET_S``, doubling to ``LONGEST_QUIET_S`` (reset when a
  chunk settles); the extra short sweep a partial receive makes; per delivery the
  manifest/cancelled checks
  (``CANCEL_CHECK_S``; a missing key costs HEAD + LIST for the instance role's 403), and on
  a redelivery the result HEAD (and summary rewrite when stored);
- chunks run task after task in one slot; when one ends: its logs (tasks that print), the
  write-once record and its summary (two PUTs on ``results/<ss>/``, ``ss`` from
  ``layout.shard``), the counters (every ``REMOTE_STATUS_EVERY_S`` at most, every
  ``STATUS_REFRESH_S`` while running), deletes batched within ``DELETE_BATCH_S`` (10 a call);
- one batched visibility extend per ``visibility / 3`` while holding messages, SQS's 12 h
  cap (``MAX_VISIBILITY_S``; extends are clamped, so a chunk held longer is delivered again);
- node heartbeats every ``REMOTE_NODE_EVERY_S``; an idle ``--job`` worker checks after
  ``SETTLE_CHECK_S``, then twice as long each time up to ``LONGEST_SETTLE_CHECK_S``, times
  its own jitter (0.5-1.5; reset when a chunk settles), at the end of a long poll:
  ``queue.counts`` and, once nothing is in flight, ``counts.settled``: the retries listing
  and the ``jobs/J/settled`` mark; without the mark the whole count (HEADs, the dead-letter
  count and the LIST of every ``results/`` key: two keys per chunk, 1,000 a page), and the
  mark written when it says settled. It leaves when settled, or as idle after
  ``--idle-exit`` idle with nothing in flight (or a check that failed);
- spot interruptions (Poisson per instance; ``--vanish`` of them without a usable notice):
  on a notice (seen up to ``SPOT_POLL_S`` late) the worker releases what has not started,
  gives running chunks ``min(grace, INTERRUPTION_GRACE_S)``, then releases them and exits;
  a vanished instance's messages come back when their visibility (last extend + 30 s) ends;
- a reader: ``job.wait()`` as ``cheerful run --fleet`` runs it (``status()`` reads the
  manifest, the retries, the dead-letter count, the cancelled and submitted markers, every
  worker's counters (one LIST, then ``IN_FLIGHT`` GETs at once), and every
  ``REMOTE_EXACT_EVERY_S`` (S3's) the results listing; a failing store is borne ``WAIT_FAILING_S``), and
  ``cheerful status --watch`` (``Overview.refresh`` every 5 s: every node's heartbeat,
  ``IN_FLIGHT`` GETs at once; a job's exact status every 30 s, every
  ``COUNTED_OUT_EXACT_S`` once the heartbeats count every task); when ``wait()`` returns,
  the fleet is terminated, as ``run_on_fleet`` does;
- AWS: request latencies drawn from ``LATENCY``; S3's per-prefix limits (3,500 PUT and
  5,500 GET/HEAD/LIST requests per second; a key's prefix is its parent path, so
  ``jobs/J/results/<ss>/`` is 256 prefixes and a LIST counts on the prefix it lists) as a
  503 SlowDown with probability ``1 - limit / offered`` (offered: the trailing second's
  requests) and botocore's standard retry mode (6 attempts,
  ``rand() * min(2 ** (attempt - 1), 20)`` s backoff, a 500-token retry quota per client:
  5 a retry, 1 back per clean success); SQS's 120,000 in-flight messages per queue
  (OverLimit on receive); 10 messages per call.

What is simulated in aggregate (a per-request event would be too slow at 10,000 workers):
requests that repeat on a timer while a worker is in a state (heartbeats, extends, idle
long polls, counters refreshes) are rates that a worker adds and removes when its state
changes (the busy receives that back off and the settle checks are events); a sequential
run of requests by one client (a LIST of 200 pages, 10,000 counter GETs, 32 at a time) is
one step whose requests are spread evenly over its duration, whose 503 odds are its
prefix's load when it starts. Loads are counted in 1-second bins per S3 prefix and per SQS
action: peaks are 1-second peaks.

Not simulated (see docs/scale.md): S3's partition splitting (each prefix is taken to have
its own 3,500/5,500 from the start; the report adds the bucket-wide sums, to compare with
one partition's limits), SQS's approximate counts and sampling (counts are exact here, a
receive returns what is visible), rebalance notices, spot capacity and quotas, failing
tasks and retries, network partitions, the client's CPU.
"""

from __future__ import annotations

import argparse
import heapq
import inspect
import json
import math
import random
import sys
import time
from array import array
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from cheerful.cli.cloud import SLOTS_GUESS  # noqa: E402
from cheerful.durable import layout  # noqa: E402
from cheerful.durable.backends import MAX_RECEIVES  # noqa: E402
from cheerful.durable.fleet import DEFAULT_IDLE_EXIT_S  # noqa: E402
from cheerful.durable.job import Job  # noqa: E402
from cheerful.durable.overview import COUNTED_OUT_EXACT_S  # noqa: E402
from cheerful.durable.overview import EXACT_EVERY_S as OVERVIEW_EXACT_EVERY_S  # noqa: E402
from cheerful.durable.queues.base import BATCH_SIZE, MAX_VISIBILITY_S  # noqa: E402
from cheerful.durable.stores.many import IN_FLIGHT  # noqa: E402
from cheerful.durable.submit import (  # noqa: E402
    AUTO_CHUNKS_REMOTE,
    MAX_AUTO_CHUNK,
    auto_chunk_size,
)
from cheerful.durable.waiting import LONGEST_POLL_S, WAIT_FAILING_S  # noqa: E402
from cheerful.durable.waiting import (  # noqa: E402 - wait() on S3, as simulated here
    REMOTE_EXACT_EVERY_S as WAIT_EXACT_EVERY_S,
)
from cheerful.durable.worker.events import Config  # noqa: E402
from cheerful.durable.worker.jobs import (  # noqa: E402
    CANCEL_CHECK_S,
    REMOTE_STATUS_EVERY_S,
    STATUS_REFRESH_S,
)
from cheerful.durable.worker.loop import (  # noqa: E402
    DELETE_BATCH_S,
    LONGEST_QUIET_S,
    POLL_S,
    QUIET_S,
    REMOTE_POLL_S,
    WAIT_S,
)
from cheerful.durable.worker.node import NODE_EVERY_S, REMOTE_NODE_EVERY_S  # noqa: E402
from cheerful.durable.worker.run import run_worker  # noqa: E402
from cheerful.durable.worker.spot import SPOT_POLL_S  # noqa: E402
from cheerful.durable.worker.state import (  # noqa: E402
    INTERRUPTION_GRACE_S,
    LONGEST_SETTLE_CHECK_S,
    PREFETCH_UNDER_S,
    SETTLE_CHECK_S,
)

_worker_defaults = inspect.signature(run_worker).parameters
VISIBILITY_S = float(_worker_defaults["visibility"].default)  # run_worker's default: 30 s
GRACE_S = 30.0  # fleet/userdata.py BootSpec.grace (what `cheerful fleet` gives --grace)
HEARTBEAT_S = Config(1, visibility=VISIBILITY_S).heartbeat  # visibility / 3
WAIT_POLL_S = float(inspect.signature(Job.wait).parameters["poll"].default)  # 0.5 s
WAIT_FAILING_PAUSE_S = min(LONGEST_POLL_S, WAIT_POLL_S * 4)  # waiting.wait_for: after a failure
WATCH_EVERY_S = 5.0  # cli/observe.py: `cheerful status --watch --every` default
JITTER = (0.5, 1.5)  # worker/run.py: Config.jitter = random.uniform(0.5, 1.5)
PROTOCOL = {
    "visibility_s": VISIBILITY_S,
    "heartbeat_s": HEARTBEAT_S,
    "grace_s": GRACE_S,
    "interruption_grace_s": INTERRUPTION_GRACE_S,
    "poll_s": POLL_S,
    "remote_poll_s": REMOTE_POLL_S,
    "busy_wait_s": WAIT_S,
    "quiet_s": QUIET_S,
    "longest_quiet_s": LONGEST_QUIET_S,
    "delete_batch_s": DELETE_BATCH_S,
    "node_every_s": NODE_EVERY_S,
    "remote_node_every_s": REMOTE_NODE_EVERY_S,
    "status_every_s": REMOTE_STATUS_EVERY_S,
    "status_refresh_s": STATUS_REFRESH_S,
    "cancel_check_s": CANCEL_CHECK_S,
    "settle_check_s": SETTLE_CHECK_S,
    "longest_settle_check_s": LONGEST_SETTLE_CHECK_S,
    "settle_jitter": JITTER,
    "prefetch_under_s": PREFETCH_UNDER_S,
    "spot_poll_s": SPOT_POLL_S,
    "idle_exit_s": DEFAULT_IDLE_EXIT_S,
    "max_receives": MAX_RECEIVES,
    "batch_size": BATCH_SIZE,
    "max_visibility_s": MAX_VISIBILITY_S,
    "wait_poll_s": WAIT_POLL_S,
    "wait_exact_every_s": WAIT_EXACT_EVERY_S,
    "wait_longest_poll_s": LONGEST_POLL_S,
    "wait_failing_s": WAIT_FAILING_S,
    "overview_exact_every_s": OVERVIEW_EXACT_EVERY_S,
    "overview_counted_out_exact_s": COUNTED_OUT_EXACT_S,
    "watch_every_s": WATCH_EVERY_S,
    "readers_in_flight": IN_FLIGHT,
    "fleet_slots_guess": SLOTS_GUESS,
}
# --before: the protocol as it was at 9f7ca3a, before the fixes of 169b3e8 (the values the
# code had then, written out: some of the names above now mean something else, such as
# POLL_S, which is now the local queue's).
BEFORE = {
    "node_every_s": 5.0,  # worker/node.py NODE_EVERY_S, on every store
    "idle_poll_s": 1.0,  # worker/loop.py POLL_S, on every queue
    "busy_poll_s": 0.2,  # worker/loop.py WAIT_S: a receive each busy turn (reserve not full)
    "settle_check_s": 2.0,  # worker/state.py SETTLE_CHECK_S: no back-off, no jitter, no mark
    "prefetch": "slots, always",
    "readers_in_flight": 1,  # one get after another
    "wait_failing_s": 0.0,  # wait() raised the first StoreError
    "auto_chunk": f"min({MAX_AUTO_CHUNK}, ceil(tasks / {AUTO_CHUNKS_REMOTE}))",
}


def auto_chunk_before(tasks: int) -> int:
    """``auto_chunk_size(tasks, remote=True)`` as it was at 9f7ca3a (no cap of 100, no
    slots)."""
    return max(1, min(MAX_AUTO_CHUNK, math.ceil(tasks / AUTO_CHUNKS_REMOTE)))


# AWS limits (S3 per prefix, SQS per standard queue) and botocore (cheerful's aws.py:
# retries={"mode": "standard", "max_attempts": 6}).
S3_PUT_LIMIT = 3500.0
S3_GET_LIMIT = 5500.0  # GET and HEAD; LIST is counted here too (an assumption)
SQS_INFLIGHT_LIMIT = 120_000
MAX_ATTEMPTS = 6
RETRY_QUOTA, RETRY_COST, NO_RETRY_INCREMENT, MAX_BACKOFF_S = 500, 5, 1, 20.0
LIST_PAGE = 1000  # keys per ListObjectsV2 page
SPOT_NOTICE_S = 120.0
POWEROFF_S = 10.0  # the bootstrap uploads its log and powers off after the worker exits
TERMINATE_S = 5.0  # `cheerful run --fleet` terminates the instances once wait() returns

# Prices: the ones bench/aws_requests.py uses (us-east-1 list prices), and c6i.large spot.
SQS_PER_REQUEST = 0.40 / 1e6
S3_PUT_CLASS = 0.005 / 1000  # PUT, COPY, POST, LIST
S3_GET_CLASS = 0.0004 / 1000  # GET, HEAD
SPOT_PRICE = 0.035  # $/h, c6i.large spot (2 vCPU)

LATENCY = {  # seconds, uniform (low, high)
    "PUT": (0.030, 0.060),
    "GET": (0.015, 0.030),
    "HEAD": (0.015, 0.030),
    "LIST": (0.050, 0.150),  # one page of up to 1,000 keys
    "SQS": (0.010, 0.020),  # receive (with messages), delete, change visibility, attributes
    "SEND": (0.015, 0.030),  # SendMessageBatch of 10
    "503": (0.005, 0.015),
}
MEAN = {k: (a + b) / 2 for k, (a, b) in LATENCY.items()}
BOOT_S = (60.0, 90.0)  # launch to user-data running
INSTALL_S = (20.0, 40.0)  # uv, Python, boto3, the wheel, requirements
LAUNCH_S = (2.0, 5.0)  # CreateFleet (instant) answers

J = "jobs/J/"  # the job's prefix in the simulated bucket (names only; no real key)
VISIBLE, INFLIGHT, DELETED, DEAD = 0, 1, 2, 3


@dataclass
class Scenario:
    instances: int
    chunk_size: int
    auto: bool = False
    tasks: int = 100_000
    task_s: float = 30.0
    jitter: float = 0.10  # each task takes task_s * U(1 - jitter, 1 + jitter)
    slots: int = 2
    interrupts: float = 0.05  # per instance-hour
    vanish: float = 0.10  # fraction of interruptions without a usable notice
    replace: bool = False  # `cheerful fleet` is one `instant` CreateFleet: no replacements
    print_fraction: float = 0.0  # tasks that print (each stores a log)
    price: float = SPOT_PRICE
    readers: bool = True
    horizon_h: float = 72.0
    before: bool = False  # the protocol before 169b3e8's fixes (--before)

    @property
    def chunks(self) -> int:
        return math.ceil(self.tasks / self.chunk_size)


# --- loads: requests per second per S3 prefix and per SQS action --------------------------


class Channel:
    """Requests to one S3 prefix of one limit class (PUT; GET/HEAD/LIST), or one SQS action:
    1-second bins of attempts (discrete hits + rates integrated), the current rate of the
    timers and sequential steps in progress; the load S3 compares with its limit is the
    trailing second of those bins. Unsharded prefixes also keep who made each second's
    requests (to name the cause of a limit hit)."""

    __slots__ = (
        "name",
        "kind",
        "limit",
        "dense",
        "bins",
        "rate",
        "t_last",
        "ends",
        "attempts",
        "rejected",
        "by",
        "hits_by",
        "spans",
        "label",
    )

    def __init__(self, name: str, kind: str, limit: float | None, dense: bool) -> None:
        self.name, self.kind, self.limit, self.dense = name, kind, limit, dense
        self.bins = array("d") if dense else {}
        self.rate, self.t_last, self.ends = 0.0, 0.0, []
        self.attempts, self.rejected = 0.0, 0
        self.by: Counter = Counter()
        self.hits_by: dict[tuple[int, str], float] = {}
        self.spans: list[tuple[float, float, float, str]] = []
        self.label = "timers"  # who makes the requests of rates without an end

    def _add(self, s: int, x: float) -> None:
        if self.dense:
            bins = self.bins
            if s >= len(bins):
                bins.extend([0.0] * (s - len(bins) + 4096))
            bins[s] += x
        else:
            self.bins[s] = self.bins.get(s, 0.0) + x

    def _integrate(self, t: float) -> None:
        t0, r = self.t_last, self.rate
        if t <= t0:
            return
        self.t_last = t
        if r > 1e-9:
            self._spread(t0, t, r)

    def _spread(self, t0: float, t: float, r: float) -> None:
        """Add ``r`` requests a second over [t0, t) to the bins."""
        self.attempts += r * (t - t0)
        s0, s1 = int(t0), int(t)
        if s0 == s1:
            self._add(s0, r * (t - t0))
            return
        self._add(s0, r * (s0 + 1 - t0))
        if self.dense:
            bins = self.bins
            if s1 >= len(bins):
                bins.extend([0.0] * (s1 - len(bins) + 4096))
            for s in range(s0 + 1, s1):
                bins[s] += r
        else:
            for s in range(s0 + 1, s1):
                self._add(s, r)
        if t > s1:
            self._add(s1, r * (t - s1))

    def advance(self, t: float) -> None:
        ends = self.ends
        while ends and ends[0][0] <= t:
            end, r = heapq.heappop(ends)
            self._integrate(end)
            self.rate -= r
        self._integrate(t)
        if self.rate < 1e-9:
            self.rate = 0.0

    def add_rate(self, t: float, r: float, until: float | None = None, by: str = "") -> None:
        """``r`` more requests a second from ``t`` (until ``until``). A ``t`` before the time
        integrated so far (steps planned ahead of the clock) is filled in directly."""
        self.advance(t)
        if t < self.t_last:
            self._spread(t, self.t_last if until is None else min(until, self.t_last), r)
            if until is not None and until <= self.t_last:
                if by:
                    self.by[by] += r * (until - t)
                    if self.dense:
                        self.spans.append((t, until, r, by))
                return
        self.rate += r
        if until is not None:
            heapq.heappush(self.ends, (until, r))
            if by:
                self.by[by] += r * (until - t)
                if self.dense:
                    self.spans.append((t, until, r, by))
        elif by:
            self.label = by

    def hit(self, t: float, n: float = 1.0, by: str = "") -> None:
        s = int(t)
        self._add(s, n)
        self.attempts += n
        if by:
            self.by[by] += n
            if self.dense:
                key = (s, by)
                self.hits_by[key] = self.hits_by.get(key, 0.0) + n

    def load(self, t: float) -> float:
        """Requests in the second before ``t`` (the bins, integrated up to ``t``)."""
        self.advance(t)
        s = int(t)
        bins = self.bins
        if self.dense:
            now = bins[s] if s < len(bins) else 0.0
            before = bins[s - 1] if 0 < s <= len(bins) else 0.0
        else:
            now, before = bins.get(s, 0.0), bins.get(s - 1, 0.0)
        return now + before * (1.0 - (t - s))

    def culprits(self, s: int) -> Counter:
        """Who made the requests of second ``s`` (unsharded prefixes)."""
        found: Counter = Counter()
        for (sec, by), n in self.hits_by.items():
            if sec == s:
                found[by] += n
        for t0, t1, r, by in self.spans:
            overlap = min(t1, s + 1) - max(t0, s)
            if overlap > 0:
                found[by] += r * overlap
        total = self.bins[s] if self.dense and s < len(self.bins) else 0.0
        rest = total - sum(found.values())
        if rest > 0.5:
            found[self.label] += rest
        return found

    def series(self, end: float) -> list[float]:
        self.advance(end)
        n = int(end) + 1
        if self.dense:
            return list(self.bins[:n]) + [0.0] * max(0, n - len(self.bins))
        out = [0.0] * n
        for s, x in self.bins.items():
            if s < n:
                out[s] += x
        return out

    def peak(self, end: float) -> tuple[float, int]:
        self.advance(end)
        if self.dense:
            top = max(self.bins[: int(end) + 1], default=0.0)
            return top, (self.bins.index(top) if top else -1)
        if not self.bins:
            return 0.0, -1
        s = max(self.bins, key=self.bins.get)
        return self.bins[s], s

    def first_over(self, end: float) -> int | None:
        if self.limit is None:
            return None
        self.advance(end)
        if self.dense:
            for s, x in enumerate(self.bins[: int(end) + 1]):
                if x > self.limit:
                    return s
            return None
        over = [s for s, x in self.bins.items() if x > self.limit]
        return min(over) if over else None


class Client:
    """One boto3 client's botocore retry quota (a worker's S3 client, a reader's)."""

    __slots__ = ("quota",)

    def __init__(self) -> None:
        self.quota = float(RETRY_QUOTA)


class Worker:
    __slots__ = (
        "id",
        "launch",
        "start",
        "end",
        "hard_end",
        "alive",
        "started",
        "noticed",
        "leaving",
        "held",
        "ready",
        "running",
        "loop_free",
        "waiter",
        "wpos",
        "wrate",
        "arate",
        "idle_since",
        "deletes",
        "delete_due",
        "snext",
        "spending",
        "touched",
        "first",
        "spec_until",
        "cancel_until",
        "s3",
        "extending",
        "refreshing",
        "reason",
        "busy_s",
        "settle_due",
        "jitter",
        "settle_wait",
        "next_check",
        "turn0",
        "check_epoch",
        "check_set",
        "poll_epoch",
        "next_poll",
        "quiet",
        "chunk_s",
    )

    def __init__(self, wid: int, launch: float) -> None:
        self.id, self.launch = wid, launch
        self.start = self.end = self.hard_end = math.inf
        self.alive, self.started, self.noticed = True, False, False
        self.leaving: str | None = None
        self.held: dict[
            int, list
        ] = {}  # chunk -> [receipt, received, started, run_start, epoch, recording, seconds]
        self.ready: deque[int] = deque()  # held, not started
        self.running = 0
        self.loop_free = 0.0
        self.waiter, self.wpos, self.wrate, self.arate = 0, -1, 0.0, 0.0
        self.idle_since: float | None = None
        self.deletes: list[int] = []
        self.delete_due = False
        self.snext, self.spending = 0.0, -1.0
        self.touched, self.first = False, True
        self.spec_until = self.cancel_until = 0.0
        self.s3 = Client()
        self.extending = self.refreshing = False
        self.reason = ""
        self.busy_s = 0.0
        self.settle_due = False
        self.jitter = 1.0  # Config.jitter: its factor on the waits between settle checks
        self.settle_wait = SETTLE_CHECK_S  # WorkerState._settle_wait
        self.next_check = 0.0  # WorkerState._next_settle_check
        self.turn0 = 0.0  # when its current run of idle long polls began
        self.check_epoch = self.poll_epoch = 0  # the pending check / busy poll event
        self.check_set = False  # a check event is pending
        self.next_poll = 0.0  # a busy worker's next receive after empty ones
        self.quiet = QUIET_S  # Loop.quiet_s
        self.chunk_s: float | None = None  # WorkerState._chunk_s: its chunks' moving average


# --- the simulation ------------------------------------------------------------------------


class Sim:
    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc = sc
        self.rng = random.Random(seed)
        self.heap: list = []
        self.seq = 0
        self.now = 0.0
        self.channels: dict[tuple[str, str], Channel] = {}
        self.ops: Counter = Counter()  # S3 GET/HEAD/LIST attempts (PUTs: channel attempts)
        self.workers: list[Worker] = []
        self.waiters: list[Worker] = []
        n = sc.chunks
        self.C = n
        self.size = [min(sc.chunk_size, sc.tasks - c * sc.chunk_size) for c in range(n)]
        self.shard = [layout.shard(c) for c in range(n)]
        self.state = bytearray(n)  # VISIBLE...
        self.receipt = [0] * n
        self.recv_at = [0.0] * n
        self.holder: list[Worker | None] = [None] * n
        self.count = [0] * n
        self.recorded = bytearray(n)
        self.writer = [-1] * n  # the worker whose record was stored first
        self.records = 0
        self.visible: deque[int] = deque()
        self.in_flight = 0
        self.max_in_flight = 0
        self.drained_at: float | None = None
        self.limits: list[tuple[float, str]] = []  # (time, what) of live-detected limits
        self.cap_redeliveries = 0
        self.overlimit_receives = 0
        self.dead_tasks = 0
        self.lost_tasks = 0
        self.dup_tasks = 0  # tasks whose whole chunk completed again after a record existed
        self.rerun_tasks = 0  # tasks completed inside a chunk that was cut short (run again)
        self.cut_chunks = 0
        self.task_seconds = 0.0
        self.notices = self.vanished = self.launched = 0
        self.exits: Counter = Counter()
        self.first_start: float | None = None
        self.last_record = 0.0
        self.wait_returned: float | None = None
        self.reader_errors: list[tuple[float, str]] = []
        self.wait_calls: list[tuple[float, float, int]] = []  # (start, seconds, requests)
        self.watch_calls: list[tuple[float, float, int]] = []
        self.settle_checks = 0
        self.settle_failures = 0
        self.horizon = sc.horizon_h * 3600.0
        self.status_files = 0  # jobs/J/status/<worker>.json written so far
        self.node_files = 0  # nodes/<worker>.json written so far
        self.submit_s = 0.0
        self.launch_t = 0.0
        self.done = False
        self.alive_count = 0  # instances not gone
        self.serving = 0  # workers started and not gone
        self.running_total = 0  # chunks running fleet-wide
        self.dead_chunk_count = 0
        self.before = sc.before
        # A second stream for what the code added since (jitter, loop phases), so that
        # --before draws the same numbers as the simulation of 9f7ca3a did.
        self.jrng = random.Random(seed * 7919 + 17)
        self.cap = sc.slots * 2  # slots + prefetch (prefetch = slots on a remote queue)
        self.refill = max(1, self.cap // 2)  # Loop._refill_at: config.prefetch is slots
        self.chunk_mean_s = sc.chunk_size * sc.task_s
        self.node_every = BEFORE["node_every_s"] if self.before else REMOTE_NODE_EVERY_S
        idle_poll = BEFORE["idle_poll_s"] if self.before else REMOTE_POLL_S
        self.idle_rate = 1.0 / (idle_poll + MEAN["SQS"])  # idle long polls
        self.idle_turn = idle_poll + MEAN["SQS"]  # an idle loop turn (ticks between polls)
        # --before: short polls each busy turn, counts() every 2 s while idle
        self.busy_wait = BEFORE["busy_poll_s"]
        self.busy_rate = 1.0 / (self.busy_wait + MEAN["SQS"])
        self.old_settle_s = BEFORE["settle_check_s"]
        self.fail_sleep = BEFORE["idle_poll_s"] if self.before else POLL_S  # after a failed receive
        self.attr_rate = 2.0 / (self.old_settle_s + 2 * MEAN["SQS"])
        self.par = 1 if self.before else IN_FLIGHT  # readers' gets under way at once
        self.mark_at: float | None = None  # when jobs/J/settled was first written
        self.idle_checks = 0  # CheckIdle: counts() (and settled() when nothing is out)
        self.full_checks = 0  # settle checks that listed the results (no mark yet)
        self.wait_borne = 0  # wait() polls that failed and were borne (WAIT_FAILING_S)

    # Plumbing.

    def push(self, t: float, fn, a=None, b=None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, fn, a, b))

    def u(self, kind: str) -> float:
        lo, hi = LATENCY[kind]
        return lo + (hi - lo) * self.rng.random()

    def ch(self, prefix: str, kind: str) -> Channel:
        key = (prefix, kind)
        c = self.channels.get(key)
        if c is None:
            sharded = prefix.count("/") > 3  # jobs/J/results/<ss>/, jobs/J/logs/<ss>/
            limit = (
                None
                if kind.startswith("sqs")
                else (S3_PUT_LIMIT if kind == "PUT" else S3_GET_LIMIT)
            )
            c = self.channels[key] = Channel(prefix, kind, limit, dense=not sharded)
        return c

    def sqs(self, t: float, op: str, n: float = 1.0, by: str = "") -> float:
        self.ch("queue", "sqs:" + op).hit(t, n, by)
        return self.u("SQS")

    def s3(self, cl: Client, t: float, prefix: str, op: str, by: str) -> tuple[float, bool]:
        """One S3 request at ``t``: the time it ends and whether it succeeded (botocore's
        standard retries on 503 SlowDown included)."""
        c = self.ch(prefix, "PUT" if op == "PUT" else "GET")
        rng, attempt, retried = self.rng, 1, False
        while True:
            load = c.load(t) + 1.0
            c.hit(t, 1.0, by)
            if op != "PUT":
                self.ops[op] += 1
            if load > c.limit and rng.random() < 1.0 - c.limit / load:
                c.rejected += 1
                if attempt >= MAX_ATTEMPTS or cl.quota < RETRY_COST:
                    return t + self.u("503"), False
                cl.quota -= RETRY_COST
                retried = True
                t += self.u("503") + rng.random() * min(2.0 ** (attempt - 1), MAX_BACKOFF_S)
                attempt += 1
                continue
            cl.quota = min(RETRY_QUOTA, cl.quota + (RETRY_COST if retried else NO_RETRY_INCREMENT))
            return t + self.u(op), True

    def s3_steps(
        self, cl: Client, t: float, prefix: str, op: str, n: int, by: str, par: int = 1
    ) -> tuple[float, bool, int]:
        """``n`` sequential requests by one client (LIST pages, counter GETs), ``par`` of
        them under way at once (``stores/many.get_many``): the time they end, whether all
        succeeded, attempts made. Their load is spread over their span."""
        if n <= 0:
            return t, True, 0
        par = max(1, min(par, n))
        c = self.ch(prefix, "PUT" if op == "PUT" else "GET")
        mean = MEAN[op]
        own = par / mean
        load = c.load(t) + own
        p = 0.0 if load <= c.limit else 1.0 - c.limit / load
        rng = self.rng
        if p == 0.0:
            lo, hi = LATENCY[op]
            sd = (hi - lo) / math.sqrt(12.0) * math.sqrt(n)
            span = max(n * lo, n * mean + rng.gauss(0.0, sd))
            attempts, ok, done = n, True, n
            cl.quota = min(RETRY_QUOTA, cl.quota + n * NO_RETRY_INCREMENT)
        else:
            span, attempts, ok, done = 0.0, 0, True, 0
            for _ in range(n):
                attempt, retried = 1, False
                while True:
                    attempts += 1
                    if rng.random() < p:
                        if attempt >= MAX_ATTEMPTS or cl.quota < RETRY_COST:
                            span += self.u("503")
                            ok = False
                            break
                        cl.quota -= RETRY_COST
                        retried = True
                        span += self.u("503") + rng.random() * min(
                            2.0 ** (attempt - 1), MAX_BACKOFF_S
                        )
                        attempt += 1
                        continue
                    span += self.u(op)
                    cl.quota = min(
                        RETRY_QUOTA, cl.quota + (RETRY_COST if retried else NO_RETRY_INCREMENT)
                    )
                    done += 1
                    break
                if not ok:
                    break
            c.rejected += attempts - done
        if par > 1:  # par streams: each makes a par-th of the requests
            span /= par
        span = max(span, 1e-3)
        c.add_rate(t, attempts / span, until=t + span, by=by)
        if op != "PUT":
            self.ops[op] += attempts
        return t + span, ok, attempts

    def steps(self, cl: Client, t: float, plan: list[tuple], by: str) -> tuple[float, bool, int]:
        """A plan of sequential requests ``(prefix or "queue", op, n[, in flight])``: when
        it ends, whether it all succeeded (the first failure stops it, as an exception
        would), and how many requests it made."""
        total = 0
        for prefix, op, n, *rest in plan:
            if prefix == "queue":
                for _ in range(n):
                    t += self.sqs(t, op, 1.0, by)
                total += n
                continue
            if n == 1:
                t, ok = self.s3(cl, t, prefix, op, by)
                total += 1
            else:
                t, ok, made = self.s3_steps(cl, t, prefix, op, n, by, rest[0] if rest else 1)
                total += made
            if not ok:
                return t, False, total
        return t, True, total

    def chunk_seconds(self, c: int) -> float:
        k, s, j = self.size[c], self.sc.task_s, self.sc.jitter
        rng = self.rng
        if k <= 8:
            return sum(s * (1.0 - j + 2.0 * j * rng.random()) for _ in range(k))
        return max(k * s * (1 - j), rng.gauss(k * s, s * 2 * j / math.sqrt(12.0) * math.sqrt(k)))

    # Periodic loads of a worker's state.

    def set_extending(self, t: float, w: Worker) -> None:
        want = bool(w.held) and w.alive
        if want != w.extending:
            w.extending = want
            self.ch("queue", "sqs:extend").add_rate(t, (1.0 if want else -1.0) / HEARTBEAT_S)

    def set_refreshing(self, t: float, w: Worker) -> None:
        # Counters are rewritten every STATUS_REFRESH_S while tasks run, when no chunk ended
        # sooner (a chunk's end writes them anyway).
        want = w.alive and w.running > 0 and self.chunk_mean_s / self.sc.slots > STATUS_REFRESH_S
        if want != w.refreshing:
            w.refreshing = want
            self.ch(J + "status/", "PUT").add_rate(
                t, (1.0 if want else -1.0) / STATUS_REFRESH_S, by="counters"
            )

    def become_waiter(self, t: float, w: Worker) -> None:
        kind = 2 if w.running else 1
        if w.waiter == kind:
            return
        if w.waiter:
            self.leave_waiter(t, w)
        w.waiter = kind
        if self.before:
            w.wrate = self.busy_rate if kind == 2 else self.idle_rate
            self.ch("queue", "sqs:receive").add_rate(t, w.wrate)
            if kind == 1:  # idle, nothing held: counts() every 2 s (--job)
                w.arate = self.attr_rate
                self.ch("queue", "sqs:attributes").add_rate(t, w.arate)
                if not w.held:
                    if w.idle_since is None:
                        w.idle_since = t
                    if self.drained_at is not None:
                        self.schedule_settle(t + self.rng.random() * self.old_settle_s, w)
        elif kind == 2:  # busy, the queue had nothing: receives back off (Loop.quiet_*)
            self.sqs(t, "receive", by="receive")  # the receive that found nothing
            w.quiet = QUIET_S
            self.schedule_poll(t, w)
        else:  # idle: long polls of REMOTE_POLL_S, settle checks between (CheckIdle)
            w.wrate = self.idle_rate
            self.ch("queue", "sqs:receive").add_rate(t, w.wrate)
            if not w.held:
                if w.idle_since is None:
                    w.idle_since = t
                w.turn0 = t
                self.schedule_check(w)
        w.wpos = len(self.waiters)
        self.waiters.append(w)

    def leave_waiter(self, t: float, w: Worker) -> None:
        if not w.waiter:
            return
        w.check_epoch += 1  # its pending check or busy receive is off
        w.check_set = False
        w.poll_epoch += 1
        if w.wrate:
            self.ch("queue", "sqs:receive").add_rate(t, -w.wrate)
        if w.arate:
            self.ch("queue", "sqs:attributes").add_rate(t, -w.arate)
        w.waiter, w.wrate, w.arate = 0, 0.0, 0.0
        last = self.waiters.pop()
        if last is not w:
            self.waiters[w.wpos] = last
            last.wpos = w.wpos
        w.wpos = -1

    def schedule_poll(self, t: float, w: Worker) -> None:
        """A busy worker whose receive found nothing asks again after ``quiet`` (1 s,
        doubling to LONGEST_QUIET_S), at the end of a loop turn (WAIT_S)."""
        w.poll_epoch += 1
        w.next_poll = t + w.quiet + self.jrng.random() * WAIT_S
        w.quiet = min(LONGEST_QUIET_S, 2.0 * w.quiet)
        self.push(w.next_poll, self.on_busy_poll, w, w.poll_epoch)

    def on_busy_poll(self, t: float, w: Worker, epoch: int) -> None:
        if epoch != w.poll_epoch or w.waiter != 2 or not w.alive:
            return
        t = max(t, w.loop_free)
        if self.visible:
            self.leave_waiter(t, w)
            want = self.cap_of(w) - len(w.held)
            if want > 0:
                self.take(t, w, want)
            return
        dt = self.sqs(t, "receive", by="receive")
        self.schedule_poll(t + dt, w)

    def cap_of(self, w: Worker) -> int:
        """``slots + prefetch``: WorkerState.wants takes the reserve only while this
        worker's chunks run under PREFETCH_UNDER_S (none before one has run)."""
        if self.before:
            return self.cap
        quick = w.chunk_s is not None and w.chunk_s < PREFETCH_UNDER_S
        return self.sc.slots * 2 if quick else self.sc.slots

    # The queue.

    def make_visible(self, t: float, chunks: list[int]) -> None:
        for c in chunks:
            if self.state[c] == INFLIGHT:
                self.state[c] = VISIBLE
                self.in_flight -= 1
                self.holder[c] = None
                self.visible.append(c)
        self.offer(t)

    def offer(self, t: float) -> None:
        """Messages became visible: workers long-polling (or short-polling, busy) get them."""
        rng = self.rng
        while self.visible and self.waiters:
            if self.before:
                w = self.waiters[int(rng.random() * len(self.waiters))]
                at = t + (0.0 if w.waiter == 1 else rng.random() * self.busy_wait)
            else:  # the first receive to come gets it: a long poll now, a busy one later
                w, at = None, math.inf
                for _ in range(min(16, len(self.waiters))):
                    x = self.waiters[int(rng.random() * len(self.waiters))]
                    when = t if x.waiter == 1 else max(t, x.next_poll)
                    if when < at:
                        w, at = x, when
            self.leave_waiter(t, w)
            want = self.cap_of(w) - len(w.held)
            if want > 0:
                self.take(max(at, w.loop_free), w, want)

    def try_receive(self, t: float, w: Worker) -> None:
        if not w.alive or w.leaving or w.waiter or not w.started:
            return
        want = self.cap_of(w) - len(w.held)
        if want <= 0 or (w.ready and want < self.refill):
            return
        t = max(t, w.loop_free)
        if self.in_flight >= SQS_INFLIGHT_LIMIT:
            self.overlimit_receives += 1
            if not any(what.startswith("SQS in-flight") for _, what in self.limits):
                self.limits.append(
                    (t, f"SQS in-flight limit {SQS_INFLIGHT_LIMIT:,} (OverLimit on receive)")
                )
            w.loop_free = t + self.sqs(t, "receive", by="receive") + self.fail_sleep
            self.push(w.loop_free, self.on_retry_receive, w)
            return
        if self.visible:
            self.take(t, w, want)
        else:
            self.become_waiter(t, w)

    def on_retry_receive(self, t: float, w: Worker, _=None) -> None:
        self.try_receive(t, w)

    def take(self, t: float, w: Worker, want: int) -> None:
        n = min(want, BATCH_SIZE, len(self.visible))
        got = []
        for _ in range(n):
            c = self.visible.popleft()
            self.count[c] += 1
            if self.count[c] > MAX_RECEIVES:  # SQS's redrive moves it to the dead letters
                self.state[c] = DEAD
                self.dead_tasks += self.size[c]
                self.dead_chunk_count += 1
                if not self.dead_chunk_count - 1:
                    self.limits.append(
                        (t, f"SQS maxReceiveCount {MAX_RECEIVES}: a chunk is dead-lettered")
                    )
                continue
            self.state[c] = INFLIGHT
            self.receipt[c] += 1
            self.recv_at[c] = t
            self.holder[c] = w
            self.in_flight += 1
            w.held[c] = [self.receipt[c], t, False, 0.0, 0, False, 0.0]
            got.append(c)
            cap_at = t + MAX_VISIBILITY_S - 2.0  # extends are clamped to 12 h from the receive
            if cap_at < self.horizon:
                self.push(cap_at, self.on_cap, c, self.receipt[c])
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if len(got) < n:
            self.check_drained(t)
        dt = self.sqs(t, "receive", by="receive")
        if 0 < n < want:  # Queue.receive sweeps once more for the rest (finds none)
            dt += self.sqs(t + dt, "receive", by="receive")
        w.loop_free = t + dt
        self.set_extending(t, w)
        self.push(t + dt, self.on_received, w, got)

    def check_drained(self, t: float) -> None:
        if self.drained_at is None and not self.visible and self.in_flight == 0:
            self.drained_at = t
            if not self.before:  # idle workers find out at their next check
                return
            for w in self.workers:
                if w.alive and w.started and not w.held and not w.leaving:
                    self.schedule_settle(t + self.rng.random() * self.old_settle_s, w)

    # Events of a worker.

    def launch(self, t: float) -> None:
        w = Worker(len(self.workers), t)
        self.workers.append(w)
        self.launched += 1
        self.alive_count += 1
        boot = t + self.u_range(BOOT_S) + self.u_range(INSTALL_S)
        self.push(boot, self.on_boot, w)
        rate = self.sc.interrupts / 3600.0
        if rate > 0:
            at = t + self.rng.expovariate(rate)
            if at < self.horizon:
                if self.rng.random() < self.sc.vanish:
                    self.push(at, self.on_vanish, w, "vanished")
                else:
                    self.push(at + self.rng.random() * SPOT_POLL_S, self.on_notice, w, at)
                    self.push(at + SPOT_NOTICE_S, self.on_vanish, w, "terminated")

    def u_range(self, r: tuple[float, float]) -> float:
        return r[0] + (r[1] - r[0]) * self.rng.random()

    def on_boot(self, t: float, w: Worker, _=None) -> None:
        if not w.alive:
            return
        if self.done:
            w.end = min(w.end, t)
            return
        t, _ok = self.s3(w.s3, t - 1.0, "fleet/bundles/", "GET", "boot")
        t, _ok = self.s3(w.s3, t, "fleet/bundles/", "GET", "boot")
        t, _ok = self.s3(w.s3, t, "fleet/boot/", "PUT", "boot")
        w.started, w.start, w.loop_free = True, t, t
        if not self.before:
            w.jitter = JITTER[0] + (JITTER[1] - JITTER[0]) * self.jrng.random()
            w.next_check = t  # WorkerState starts with a check due
        self.serving += 1
        self.node_files += 1
        self.ch("nodes/", "PUT").add_rate(t, 1.0 / self.node_every, by="heartbeat")
        if w.noticed:
            self.exit(t, w, "spot interruption")
            return
        self.try_receive(t, w)

    def on_received(self, t: float, w: Worker, got: list[int]) -> None:
        if not w.alive:
            return
        mine = [c for c in got if c in w.held and w.held[c][0] == self.receipt[c]]
        if w.leaving:  # received as the stop came: released
            self.release(t, w, mine)
            self.after_change(t, w)
            return
        t = max(t, w.loop_free)
        cl = w.s3
        for c in mine:
            ok = True
            if w.first:
                t, ok = self.s3(cl, t, J, "GET", "delivery")  # manifest
                if ok:
                    t, ok = self.s3(cl, t, J, "GET", "delivery")  # code.pkl
                w.first = not ok
                w.spec_until = t + CANCEL_CHECK_S
            elif t >= w.spec_until:
                t, ok = self.s3(cl, t, J, "HEAD", "delivery")
                w.spec_until = t + CANCEL_CHECK_S
            if ok and t >= w.cancel_until:  # missing: 403 for the role, then one LIST
                t, ok = self.s3(cl, t, J, "HEAD", "delivery")
                if ok:
                    t, ok = self.s3(cl, t, J, "LIST", "delivery")
                w.cancel_until = t + CANCEL_CHECK_S
            if ok and self.count[c] > 1:  # a redelivery: is its result stored?
                prefix = f"{J}results/{self.shard[c]}/"
                t, ok = self.s3(cl, t, prefix, "HEAD", "delivery")
                if ok and self.recorded[c]:
                    t, ok = self.s3(cl, t, prefix, "GET", "delivery")
                    if ok:
                        t, ok = self.s3(cl, t, prefix, "PUT", "delivery")  # the summary
                    if ok:
                        del w.held[c]
                        t += self.sqs(t, "delete", by="delete")
                        self.delete_message(t, c)
                        continue
                elif ok:
                    t, ok = self.s3(cl, t, prefix, "LIST", "delivery")
            if not ok:  # the lookup failed: released, it comes back
                self.release(t, w, [c])
                continue
            w.ready.append(c)
            w.idle_since = None
        w.loop_free = t
        self.dispatch(t, w)
        self.after_change(t, w)
        self.try_receive(t, w)

    def dispatch(self, t: float, w: Worker) -> None:
        while w.ready and w.running < self.sc.slots and not w.leaving:
            c = w.ready.popleft()
            h = w.held.get(c)
            if h is None:
                continue
            h[2], h[3] = True, t
            h[4] += 1
            w.running += 1
            self.running_total += 1
            if self.first_start is None:
                self.first_start = t
            h[6] = self.chunk_seconds(c)
            self.push(t + h[6], self.on_finish, w, (c, h[4]))
            if not w.touched:  # Counters._of: the old counters, missing (403 + LIST)
                w.touched = True
                self.status_files += 1
                t2, ok = self.s3(w.s3, w.loop_free, J + "status/", "GET", "counters")
                if ok:
                    t2, ok = self.s3(w.s3, t2, J + "status/", "LIST", "counters")
                w.loop_free = max(w.loop_free, t2)
        self.set_refreshing(t, w)
        if w.waiter == 1 and w.running:
            self.become_waiter(t, w)

    def on_finish(self, t: float, w: Worker, arg) -> None:
        c, epoch = arg
        if not w.alive:
            return
        h = w.held.get(c)
        if h is None or h[4] != epoch or not h[2] or h[5]:
            return
        if t < w.loop_free:  # the loop is busy: it sees the slot's end later
            self.push(w.loop_free, self.on_finish, w, arg)
            return
        w.running -= 1
        self.running_total -= 1
        h[5] = True  # recording
        w.busy_s += t - h[3]
        self.task_seconds += t - h[3]
        self.dispatch(t, w)  # the freed slot takes the next chunk first (state._progress)
        self.write_record(t, w, c, 1.0)

    def write_record(self, t: float, w: Worker, c: int, pause: float) -> None:
        cl = w.s3
        t = max(t, w.loop_free)
        k = self.size[c]
        ok = True
        if self.sc.print_fraction > 0:
            for task in range(c * self.sc.chunk_size, c * self.sc.chunk_size + k):
                if self.rng.random() < self.sc.print_fraction:
                    t, ok = self.s3(cl, t, f"{J}logs/{layout.shard(task)}/", "PUT", "logs")
        prefix = f"{J}results/{self.shard[c]}/"
        t, ok = self.s3(cl, t, prefix, "PUT", "record")  # put_if_absent
        if ok:
            if self.recorded[c]:  # 412: another stored it (or this one, before a failure)
                t, ok = self.s3(cl, t, prefix, "GET", "record")
                if ok:
                    t, ok = self.s3(cl, t, prefix, "PUT", "record")  # the summary
                if ok and self.writer[c] != w.id:
                    self.dup_tasks += k
            else:
                self.recorded[c] = 1
                self.writer[c] = w.id
                self.records += 1
                self.last_record = t
                t, ok = self.s3(cl, t, prefix, "PUT", "record")  # the summary
        w.loop_free = t
        if not ok:  # ChunkWriter keeps it and tries again, 1 s doubling to 30 s
            self.push(t + pause, self.on_record_retry, w, (c, min(30.0, pause * 2)))
            return
        self.counters_changed(t, w)
        if not self.before:  # WorkerState.settled: the chunks' pace, settle checks soon
            took = t - w.held[c][3]
            w.chunk_s = took if w.chunk_s is None else 0.7 * w.chunk_s + 0.3 * took
            w.settle_wait = SETTLE_CHECK_S
        w.deletes.append(c)
        if len(w.deletes) >= BATCH_SIZE:
            self.flush_deletes(t, w)
        elif not w.delete_due:
            w.delete_due = True
            self.push(t + min(DELETE_BATCH_S, VISIBILITY_S / 4), self.on_delete_flush, w)
        del w.held[c]
        self.after_change(t, w)
        if w.leaving:
            if not w.held:
                self.exit(t, w, w.leaving)
            return
        if w.waiter == 2 and not self.before:  # a slot is free: ask for work now
            self.leave_waiter(t, w)
        self.try_receive(t, w)

    def on_record_retry(self, t: float, w: Worker, arg) -> None:
        c, pause = arg
        if w.alive and c in w.held:
            self.write_record(t, w, c, pause)

    def counters_changed(self, t: float, w: Worker) -> None:
        """Counters.flush after a record: now if due, else at the next due time."""
        if w.spending >= t:
            return
        status = self.ch(J + "status/", "PUT")
        if t >= w.snext:
            status.hit(t, 1.0, "counters")
            w.snext = t + REMOTE_STATUS_EVERY_S
        else:
            status.hit(w.snext, 1.0, "counters")
            w.spending = w.snext
            w.snext += REMOTE_STATUS_EVERY_S

    def on_delete_flush(self, t: float, w: Worker, _=None) -> None:
        w.delete_due = False
        if w.alive:
            self.flush_deletes(max(t, w.loop_free), w)

    def flush_deletes(self, t: float, w: Worker) -> None:
        receipts, w.deletes = w.deletes, []
        for _ in range(0, len(receipts), BATCH_SIZE):
            t += self.sqs(t, "delete", by="delete")
        w.loop_free = max(w.loop_free, t)
        for c in receipts:
            self.delete_message(t, c)

    def delete_message(self, t: float, c: int) -> None:
        # SQS cannot tell a stale receipt: a worker's delete removes the message even if
        # another worker received it again since (queues/sqs.py).
        if self.state[c] in (INFLIGHT, VISIBLE):
            if not self.recorded[c]:
                self.lost_tasks += self.size[c]
            if self.state[c] == INFLIGHT:
                self.in_flight -= 1
            else:
                self.visible.remove(c)
            self.state[c] = DELETED
            self.holder[c] = None
        self.check_drained(t)

    def release(self, t: float, w: Worker, chunks: list[int]) -> None:
        mine = [c for c in chunks if c in w.held]
        for c in mine:
            h = w.held.pop(c)
            if c in w.ready:
                w.ready.remove(c)
            if h[2] and not h[5]:
                self.cut(t, c, h)
        if not mine:
            return
        for _ in range(0, len(mine), BATCH_SIZE):
            t += self.sqs(t, "release", by="release")
        self.make_visible(t, [c for c in mine if self.holder[c] is w])

    def cut(self, t: float, c: int, h: list) -> None:
        """A running chunk is given up: its finished tasks run again elsewhere."""
        elapsed = max(0.0, t - h[3])
        self.cut_chunks += 1
        self.task_seconds += elapsed
        k = self.size[c]
        self.rerun_tasks += min(k - 1, int(elapsed * k / h[6])) if h[6] > 0 else 0

    def after_change(self, t: float, w: Worker) -> None:
        self.set_extending(t, w)
        self.set_refreshing(t, w)
        if w.waiter == 2 and not w.running:
            self.become_waiter(t, w)  # now idle: long polls, counts() every 2 s
        if w.waiter == 1 and not w.held:
            if w.idle_since is None:
                w.idle_since = t
            if self.before:
                if self.drained_at is not None:
                    self.schedule_settle(t + self.rng.random() * self.old_settle_s, w)
            elif not w.check_set:
                w.turn0 = t
                self.schedule_check(w)

    # Leaving.

    def schedule_settle(self, t: float, w: Worker) -> None:
        if not w.settle_due:
            w.settle_due = True
            self.push(t, self.on_settle, w)

    def on_settle(self, t: float, w: Worker, _=None) -> None:
        w.settle_due = False
        if not w.alive or w.leaving or w.held or not w.started:
            return
        t = max(t, w.loop_free)
        self.settle_checks += 1
        pages = max(1, math.ceil(2 * self.records / LIST_PAGE))
        plan = [("queue", "attributes", 2)]  # counts(): nothing pending now
        if t >= w.spec_until:
            plan.append((J, "HEAD", 1))  # JobCache.spec: the manifest is still there
        plan += [
            (J, "HEAD", 1),  # submitted
            (J + "retries/", "LIST", 1),  # read_rounds: no round ...
            (J, "HEAD", 1),  # ... so Store.list checks the key itself: 403 ...
            (J, "LIST", 1),  # ... and lists it (the role's ListBucket is the prefix's)
            ("queue", "attributes", 1),  # dead_chunks: the dead-letter queue's count
            (J + "results/", "LIST", pages),  # list_results
        ]
        # The attributes calls are already in the idle worker's timer rate: not twice.
        t_end, ok, _n = self.steps(w.s3, t, [p for p in plan if p[0] != "queue"], "settle")
        t_end += 3 * MEAN["SQS"]
        w.loop_free = t_end
        if ok and self.records + self.dead_chunks() >= self.C:
            self.exit(t_end, w, "job settled")
            return
        self.settle_failures += not ok
        if w.idle_since is not None and t_end - w.idle_since >= DEFAULT_IDLE_EXIT_S:
            self.exit(t_end, w, "idle")
            return
        self.schedule_settle(t_end + self.old_settle_s, w)

    def dead_chunks(self) -> int:
        return self.dead_chunk_count

    def schedule_check(self, w: Worker) -> None:
        """The next CheckIdle of an idle ``--job`` worker (WorkerState._maybe_exit): once
        its settle wait is over, or it has been idle ``--idle-exit``, at the end of a long
        poll (the loop ticks between receives)."""
        due = w.next_check
        if w.idle_since is not None:
            due = min(due, w.idle_since + DEFAULT_IDLE_EXIT_S)
        turns = max(1, math.ceil((due - w.turn0) / self.idle_turn - 1e-9))
        w.check_epoch += 1
        w.check_set = True
        self.push(w.turn0 + turns * self.idle_turn, self.on_check, w, w.check_epoch)

    def on_check(self, t: float, w: Worker, epoch: int) -> None:
        """Loop._check_idle: counts(); when nothing is out, counts.settled(); then
        WorkerState.idle_checked (the next wait doubles, times the worker's jitter)."""
        if epoch != w.check_epoch or not w.alive or w.leaving or w.held or not w.started:
            return
        if w.waiter != 1:
            return
        w.check_set = False
        t = max(t, w.loop_free)
        self.idle_checks += 1
        if w.deletes:
            self.flush_deletes(t, w)
            t = max(t, w.loop_free)
        t += self.sqs(t, "attributes", by="settle")  # counts(): the job's queue ...
        t += self.sqs(t, "attributes", by="settle")  # ... and its dead letters
        pending = bool(self.visible) or self.in_flight > 0
        settled, ok = False, True
        if not pending:
            settled, ok, t = self.settled_check(t, w)
        w.loop_free = w.turn0 = t
        w.next_check = t + w.settle_wait * w.jitter
        w.settle_wait = min(LONGEST_SETTLE_CHECK_S, 2.0 * w.settle_wait)
        if settled:
            self.exit(t, w, "job settled")
            return
        if not ok:  # cannot tell: as if nothing were left
            self.settle_failures += 1
            pending = False
        if w.idle_since is not None and t - w.idle_since >= DEFAULT_IDLE_EXIT_S:
            if not pending:
                self.exit(t, w, "idle")
                return
            w.idle_since = t  # wait one more idle period: they may come back
        self.schedule_check(w)

    def settled_check(self, t: float, w: Worker) -> tuple[bool, bool, float]:
        """counts.settled by a worker (the instance role: a missing key is a 403, then a
        LIST): the retry rounds and the ``settled`` mark; without the mark, the whole
        count, and the mark written when it says settled. (settled, ok, when it ends)."""
        self.settle_checks += 1
        plan: list[tuple] = []
        if t >= w.spec_until:
            plan.append((J, "HEAD", 1))  # JobCache.spec: the manifest is still there
            w.spec_until = t + CANCEL_CHECK_S
        rounds = [
            (J + "retries/", "LIST", 1),  # no round ...
            (J, "HEAD", 1),  # ... so Store.list checks the key itself: 403 ...
            (J, "LIST", 1),  # ... and lists it
        ]
        plan += rounds
        plan.append((J, "GET", 1))  # jobs/J/settled
        mark = self.mark_at is not None and self.mark_at <= t
        if not mark:
            self.full_checks += 1
            pages = max(1, math.ceil(2 * self.records / LIST_PAGE))
            plan += [
                (J, "LIST", 1),  # the mark is missing: 403, and the listing that tells
                (J, "HEAD", 1),  # submitted
                *rounds,  # read_plan
                ("queue", "attributes", 1),  # dead_chunks: the dead-letter queue's count
                (J + "results/", "LIST", pages),  # list_results
            ]
        t, ok, _n = self.steps(w.s3, t, plan, "settle")
        if not ok or mark:
            return ok, ok, t
        if self.records + self.dead_chunks() < self.C:
            return False, True, t
        t, ok = self.s3(w.s3, t, J, "PUT", "settle")  # the first to find it writes the mark
        if ok and (self.mark_at is None or t < self.mark_at):
            self.mark_at = t
        return ok, ok, t

    def on_notice(self, t: float, w: Worker, at: float) -> None:
        if not w.alive:
            return
        self.notices += 1
        w.noticed = True
        w.hard_end = at + SPOT_NOTICE_S
        if not w.started:
            return
        t = max(t, w.loop_free)
        w.leaving = "spot interruption"
        self.leave_waiter(t, w)
        waiting = [c for c, h in w.held.items() if not h[2]]
        if waiting:
            self.release(t, w, waiting)
        if not w.held:
            self.exit(t, w, "spot interruption")
            return
        self.push(t + min(GRACE_S, INTERRUPTION_GRACE_S), self.on_deadline, w)

    def on_deadline(self, t: float, w: Worker, _=None) -> None:
        if not w.alive:
            return
        t = max(t, w.loop_free)
        for c, h in list(w.held.items()):  # Kill(leaving): the cut-short log is kept
            if h[2] and not h[5]:
                t, _ok = self.s3(
                    w.s3, t, f"{J}logs/{layout.shard(c * self.sc.chunk_size)}/", "PUT", "logs"
                )
        self.exit(t, w, "spot interruption")

    def exit(self, t: float, w: Worker, reason: str) -> None:
        if not w.alive:
            return
        self.leave_waiter(t, w)
        if w.deletes:
            self.flush_deletes(t, w)
        if w.held:
            t_rel = t
            self.release(t_rel, w, list(w.held))
        if w.touched:
            self.ch(J + "status/", "PUT").hit(t, 1.0, "counters")
        self.ch("nodes/", "PUT").hit(t, 1.0, "heartbeat")
        self.ch("fleet/boot/", "PUT").hit(t + 1.0, 1.0, "boot")
        self.ch("nodes/", "PUT").add_rate(t, -1.0 / self.node_every)
        w.alive = False
        self.alive_count -= 1
        self.serving -= 1
        self.running_total -= w.running
        w.running = 0
        self.set_extending(t, w)
        self.set_refreshing(t, w)
        w.reason = reason
        self.exits[reason] += 1
        w.end = min(t + POWEROFF_S, w.hard_end)
        if self.sc.replace and reason == "spot interruption" and not self.done:
            self.launch(t + self.u_range((5.0, 30.0)))

    def on_vanish(self, t: float, w: Worker, how: str) -> None:
        if not w.alive:
            return
        if how == "vanished":
            self.vanished += 1
        w.alive = False
        self.alive_count -= 1
        w.end = t
        w.reason = "vanished" if how == "vanished" else "terminated"
        self.exits[w.reason] += 1
        if not w.started:
            if self.sc.replace and not self.done:
                self.launch(t + self.u_range((5.0, 30.0)))
            return
        self.leave_waiter(t, w)
        self.serving -= 1
        self.ch("nodes/", "PUT").add_rate(t, -1.0 / self.node_every)
        self.running_total -= w.running
        w.running = 0
        self.set_extending(t, w)
        self.set_refreshing(t, w)
        last_extend = w.start + HEARTBEAT_S * math.floor((t - w.start) / HEARTBEAT_S)
        for c, h in w.held.items():
            if h[2] and not h[5]:
                self.cut(t, c, h)
            if self.state[c] == INFLIGHT and self.holder[c] is w and self.receipt[c] == h[0]:
                self.push(max(h[1], last_extend) + VISIBILITY_S, self.on_visible, c, h[0])
        w.held.clear()
        # Records stored, messages not deleted yet (the delete batch): they come back when
        # their visibility ends, and the next worker finds them stored.
        for c in w.deletes:
            if self.state[c] == INFLIGHT and self.holder[c] is w:
                at = max(self.recv_at[c], last_extend) + VISIBILITY_S
                self.push(at, self.on_visible, c, self.receipt[c])
        w.deletes = []
        if self.sc.replace and not self.done:
            self.launch(t + self.u_range((5.0, 30.0)))

    def on_visible(self, t: float, c: int, receipt: int) -> None:
        if self.state[c] == INFLIGHT and self.receipt[c] == receipt:
            self.make_visible(t, [c])

    def on_cap(self, t: float, c: int, receipt: int) -> None:
        if self.state[c] == INFLIGHT and self.receipt[c] == receipt:
            self.cap_redeliveries += 1
            if not any(what.startswith("SQS 12 h") for _, what in self.limits):
                self.limits.append((t, "SQS 12 h visibility cap: a held chunk is delivered again"))
            self.make_visible(t, [c])  # its holder runs on; the first record wins

    # Readers.

    def status_plan(self, exact: bool) -> list[tuple]:
        """``Job.status()``'s requests now (the user's credentials: a missing key is a 404)."""
        w = self.status_files
        plan = [
            (J, "GET", 1),  # _refresh: the manifest
            (J + "retries/", "LIST", 1),  # read_plan: no rounds ...
            (J, "HEAD", 1),  # ... so the key itself (404)
            ("queue", "attributes", 1),  # dead_chunks
            (J, "HEAD", 1),  # cancelled (404)
            (J, "HEAD", 1),  # submitted
            (J + "status/", "LIST", max(1, math.ceil(w / LIST_PAGE))),  # read_reports ...
            (J + "status/", "GET", w, self.par),  # ... a GET per worker that ever served it
        ]
        if exact:
            plan.append((J + "results/", "LIST", max(1, math.ceil(2 * self.records / LIST_PAGE))))
        return plan

    def start_readers(self, t: float) -> None:
        self.wait_state = {
            "exact_at": 0.0,
            "last": None,
            "pause": WAIT_POLL_S,
            "cl": Client(),
            "failing": None,
        }
        self.push(t, self.on_wait)
        self.watch_state = {"exact_at": 0.0, "settled": False, "cl": Client(), "attached": False}
        self.push(t, self.on_watch)

    def on_wait(self, t: float, _a=None, _b=None) -> None:
        """One turn of ``Job.wait``: ``status(exact)``, whose results listing (when exact)
        comes last and is read when the requests before it are done (on_wait_listing)."""
        if self.done:
            return
        st = self.wait_state
        running = self.running_total > 0
        exact = t >= st["exact_at"] or st["last"] is None
        if exact:
            st["exact_at"] = t + WAIT_EXACT_EVERY_S
        exact = exact or not running
        plan = self.status_plan(exact)
        listing = plan.pop() if exact else None
        t1, ok, n = self.steps(st["cl"], t, plan, "wait")
        if ok and listing is not None:
            self.push(t1, self.on_wait_listing, t, n)
            return
        self.wait_turn(t, t1, ok, n, settled=False)

    def on_wait_listing(self, t: float, began: float, made: int) -> None:
        if self.done:
            return
        pages = max(1, math.ceil(2 * self.records / LIST_PAGE))
        settled = self.records + self.dead_chunks() >= self.C  # the keys the listing finds
        t_end, ok, n = self.s3_steps(
            self.wait_state["cl"], t, J + "results/", "LIST", pages, "wait"
        )
        self.wait_turn(began, t_end, ok, made + n, settled=ok and settled)

    def wait_turn(self, t: float, t_end: float, ok: bool, n: int, settled: bool) -> None:
        st = self.wait_state
        self.wait_calls.append((t, t_end - t, n))
        if not ok and not self.before:  # waiting._Troubles: borne for WAIT_FAILING_S
            if st["failing"] is None:
                st["failing"] = t_end
            if t_end - st["failing"] <= WAIT_FAILING_S:
                self.wait_borne += 1
                self.push(t_end + WAIT_FAILING_PAUSE_S, self.on_wait)
                return
        if not ok:
            self.reader_errors.append((t_end, "wait() raised StoreError (SlowDown after retries)"))
            st["last"], st["failing"] = None, None
            self.push(t_end + WATCH_EVERY_S, self.on_wait)  # as if the user ran it again
            return
        st["failing"] = None
        if settled:
            self.wait_returned = t_end
            self.push(t_end + TERMINATE_S, self.on_finish_run)  # TerminateInstances
            return
        changed = st["last"] != self.records
        st["pause"] = WAIT_POLL_S if changed else min(LONGEST_POLL_S, st["pause"] * 1.5)
        st["last"] = self.records
        self.push(t_end + st["pause"], self.on_wait)

    def on_finish_run(self, t: float, _a=None, _b=None) -> None:
        self.finish(t)

    def on_watch(self, t: float, _a=None, _b=None) -> None:
        if self.done:
            return
        st = self.watch_state
        nodes = self.node_files
        plan = [
            ("nodes/", "LIST", max(1, math.ceil(nodes / LIST_PAGE))),
            ("nodes/", "GET", nodes, self.par),
            ("jobs/", "LIST", 1),
        ]
        if not st["attached"]:
            plan.append((J, "GET", 1))
            st["attached"] = True
        live = self.serving > 0
        # Once the estimates (the heartbeats' counts, up to node_every old) count every
        # task, the exact counts are read every COUNTED_OUT_EXACT_S, not every 30 s.
        counted_out = (
            not self.before
            and self.records + self.dead_chunks() >= self.C
            and t >= self.last_record + self.node_every / 2
            and t >= st["exact_at"] - OVERVIEW_EXACT_EVERY_S + COUNTED_OUT_EXACT_S
        )
        if st["settled"]:
            plan += [(J + "retries/", "LIST", 1), (J, "HEAD", 1)]
        elif not live or t >= st["exact_at"] or counted_out:
            plan += self.status_plan(True)
            st["exact_at"] = t + OVERVIEW_EXACT_EVERY_S
        t_end, ok, n = self.steps(st["cl"], t, plan, "watch")
        self.watch_calls.append((t, t_end - t, n))
        if not ok:
            self.reader_errors.append((t_end, "status --watch raised StoreError"))
        self.push(t_end + WATCH_EVERY_S, self.on_watch)

    def finish(self, t: float) -> None:
        """wait() returned and `cheerful run --fleet` terminated the job's instances (at
        ``t``); the workers did what they do until then."""
        self.done = True
        for w in self.workers:
            if w.alive:
                w.alive = False
                self.alive_count -= 1
                w.reason = w.reason or "terminated by run"
                self.exits["terminated after wait()"] += 1
                w.end = min(w.end, t)
            elif w.end == math.inf:
                w.end = min(w.end, t)

    # Running.

    def run(self) -> dict:
        sc = self.sc
        t = 0.0
        # Submit: code, items, manifest, then every chunk message (10 per SendMessageBatch,
        # one after another), then the `submitted` marker; all visible when it ends.
        for _ in range(3):
            t, _ok = self.s3(Client(), t, J, "PUT", "submit")
        batches = math.ceil(self.C / BATCH_SIZE)
        span = batches * MEAN["SEND"]
        self.ch("queue", "sqs:send").add_rate(t, batches / span, until=t + span)
        t += span
        t, _ok = self.s3(Client(), t, J, "PUT", "submit")
        self.submit_s = t
        self.visible.extend(range(self.C))
        t += self.u_range(LAUNCH_S)
        self.launch_t = t
        for _ in range(sc.instances):
            self.launch(t)
        if sc.readers:
            self.start_readers(t)
        heap = self.heap
        while heap:
            t, _s, fn, a, b = heapq.heappop(heap)
            if t > self.horizon:
                break
            self.now = t
            fn(t, a, b)
            if self.done:
                break
            if self.alive_count == 0 and not sc.replace:
                if not sc.readers and self.drained_at is not None:
                    break
                if self.records + self.dead_chunks() < self.C:
                    break  # every instance is gone and none comes back: unfinished
        end = self.now  # the last event: instances are billed and loads counted up to here
        makespan = end
        if self.wait_returned is not None:
            makespan = self.wait_returned  # what the user sees
        elif not sc.readers and self.drained_at is not None:
            end = makespan = max((w.end for w in self.workers if w.end < math.inf), default=end)
        return self.report(end, makespan)

    def report(self, end: float, makespan: float) -> dict:
        sc = self.sc
        finished = self.records + self.dead_chunks() >= self.C
        billed = 0.0
        for w in self.workers:
            stop = w.end if w.end < math.inf else end
            billed += max(60.0, stop - w.launch)
        dollars_instances = billed / 3600.0 * sc.price
        # Loads.
        sqs_channels = [c for (p, k), c in self.channels.items() if k.startswith("sqs")]
        length = int(end) + 1
        queue_series = [0.0] * length
        for c in sqs_channels:
            for s, x in enumerate(c.series(end)):
                queue_series[s] += x
        sqs_total = sum(queue_series)
        by_action = {c.kind[4:]: round(c.attempts) for c in sqs_channels}
        s3 = [c for (p, k), c in self.channels.items() if not k.startswith("sqs")]
        prefixes = []
        for c in s3:
            top, at = c.peak(end)
            prefixes.append(
                {
                    "prefix": c.name,
                    "kind": c.kind,
                    "peak": round(top, 1),
                    "peak_at": at,
                    "mean": round(c.attempts / max(1.0, end), 2),
                    "total": round(c.attempts),
                    "rejected": c.rejected,
                    "first_over": c.first_over(end),
                    "by": dict(c.by.most_common(3)),
                }
            )
        prefixes.sort(key=lambda p: -p["peak"])
        busiest = {k: next((p for p in prefixes if p["kind"] == k), None) for k in ("PUT", "GET")}
        put_requests = sum(c.attempts for c in s3 if c.kind == "PUT") + self.ops["LIST"]
        get_requests = self.ops["GET"] + self.ops["HEAD"]
        dollars_requests = (
            put_requests * S3_PUT_CLASS + get_requests * S3_GET_CLASS + sqs_total * SQS_PER_REQUEST
        )
        # Limits: live ones (SQS) and every S3 prefix whose offered load passed its limit.
        limits = list(self.limits)
        for c in s3:
            s = c.first_over(end)
            if s is None:
                continue
            who = c.culprits(s) if c.dense else Counter({"record": 1})
            culprit = ", ".join(f"{k} {v:,.0f}/s" for k, v in who.most_common(2))
            for p in prefixes:
                if p["prefix"] == c.name and p["kind"] == c.kind:
                    p["first_over_by"] = dict(who.most_common())
                    p["first_over_culprit"] = culprit
        for p in prefixes:
            if p["first_over"] is not None:
                culprit = p.get("first_over_culprit", "?")
                limit = S3_PUT_LIMIT if p["kind"] == "PUT" else S3_GET_LIMIT
                limits.append(
                    (
                        float(p["first_over"]),
                        f"S3 {p['kind']} {limit:,.0f}/s on {p['prefix']} ({culprit})",
                    )
                )
        limits.sort()
        bucket = {}
        for kind, limit in (("PUT", S3_PUT_LIMIT), ("GET", S3_GET_LIMIT)):
            total = [0.0] * length
            for c in s3:
                if c.kind == kind:
                    for s, x in enumerate(c.series(end)):
                        total[s] += x
            bucket[kind] = {
                "peak": round(max(total, default=0.0), 1),
                "over_one_partition": sum(1 for x in total if x > limit),
            }
        missing = sum(
            self.size[c] for c in range(self.C) if not self.recorded[c] and self.state[c] != DEAD
        )
        slot_s = billed * sc.slots  # slot-seconds paid for, boot included
        wait_s = [d for _, d, _ in self.wait_calls]
        watch_s = [d for _, d, _ in self.watch_calls]
        return {
            "scenario": asdict(sc),
            "chunks": self.C,
            "finished": finished,
            "submit_s": round(self.submit_s, 1),
            "first_task_s": None if self.first_start is None else round(self.first_start, 1),
            "last_record_s": round(self.last_record, 1),
            "drained_s": None if self.drained_at is None else round(self.drained_at, 1),
            "wait_returned_s": None if self.wait_returned is None else round(self.wait_returned, 1),
            "makespan_s": round(makespan, 1),
            "end_s": round(end, 1),
            "instance_hours": round(billed / 3600.0, 2),
            "dollars_instances": round(dollars_instances, 2),
            "dollars_requests": round(dollars_requests, 4),
            "dollars": round(dollars_instances + dollars_requests, 2),
            "slot_utilisation": round(self.task_seconds / slot_s, 3) if slot_s else 0.0,
            "sqs": {
                "peak": round(max(queue_series, default=0.0), 1),
                "mean": round(sqs_total / max(1.0, end), 1),
                "total": round(sqs_total),
                "by_action": by_action,
                "max_in_flight": self.max_in_flight,
                "overlimit_receives": self.overlimit_receives,
            },
            "s3": {
                "put_class": round(put_requests),
                "get_class": round(get_requests),
                "rejected_503": sum(c.rejected for c in s3),
                "busiest": busiest,
                "bucket": bucket,
                "prefixes": prefixes[:12],
            },
            "limits": [{"at_s": round(a, 1), "what": what} for a, what in limits],
            "first_limit": None
            if not limits
            else {"at_s": round(limits[0][0], 1), "what": limits[0][1]},
            "tasks_lost": self.lost_tasks,
            "tasks_dead": self.dead_tasks,
            "tasks_missing": missing,
            "tasks_completed_twice": self.dup_tasks,
            "tasks_rerun_after_cut": self.rerun_tasks,
            "chunks_cut": self.cut_chunks,
            "cap_redeliveries": self.cap_redeliveries,
            "in_flight_at_end": self.in_flight,
            "instances_launched": self.launched,
            "notices": self.notices,
            "vanished": self.vanished,
            "exits": dict(self.exits),
            "settle_checks": self.settle_checks,
            "settle_checks_failed": self.settle_failures,
            "idle_checks": self.idle_checks,
            "settle_checks_listing": self.settle_checks if self.before else self.full_checks,
            "settled_mark_s": None if self.mark_at is None else round(self.mark_at, 1),
            "wait_failures_borne": self.wait_borne,
            "reader_errors": [
                {"at_s": round(a, 1), "what": what} for a, what in self.reader_errors[:5]
            ],
            "reader_error_count": len(self.reader_errors),
            "wait_call_s": {
                "count": len(wait_s),
                "max": round(max(wait_s, default=0), 1),
                "mean": round(sum(wait_s) / len(wait_s), 2) if wait_s else 0,
            },
            "watch_refresh_s": {
                "count": len(watch_s),
                "max": round(max(watch_s, default=0), 1),
                "mean": round(sum(watch_s) / len(watch_s), 2) if watch_s else 0,
            },
        }


# --- analytic read costs (the same request plans, mean latencies) ------------------------


def plan_seconds(plan: list[tuple]) -> tuple[int, float]:
    n = sum(item[2] for item in plan)
    s = sum(
        k * MEAN["SQS" if p == "queue" else op] / (rest[0] if rest else 1)
        for p, op, k, *rest in plan
    )
    return n, s


def read_costs(chunks: int, nodes: int, before: bool = False) -> dict:
    """Requests and seconds of each reader call for a job of ``chunks`` chunks served by
    ``nodes`` workers (each left a counters file and a heartbeat); gets ``IN_FLIGHT`` at
    once (``stores/many.get_many``), one after another with ``before``."""
    par = 1 if before else IN_FLIGHT
    pages = max(1, math.ceil(2 * chunks / LIST_PAGE))
    base = [
        (J, "GET", 1),
        (J + "retries/", "LIST", 1),
        (J, "HEAD", 1),
        ("queue", "attributes", 1),
        (J, "HEAD", 2),
        (J + "status/", "LIST", max(1, math.ceil(nodes / LIST_PAGE))),
        (J + "status/", "GET", nodes, par),
    ]
    exact = base + [(J + "results/", "LIST", pages)]
    rounds = [(J + "retries/", "LIST", 1), (J, "HEAD", 1), (J, "LIST", 1)]
    if before:
        settle = [
            ("queue", "attributes", 3),
            (J, "HEAD", 3),
            (J + "retries/", "LIST", 1),
            (J, "LIST", 1),
            (J + "results/", "LIST", pages),
        ]
        marked = settle
    else:  # counts(), the manifest, the rounds, the mark; without it the whole count
        marked = [("queue", "attributes", 2), (J, "HEAD", 1), *rounds, (J, "GET", 1)]
        settle = marked + [
            (J, "LIST", 1),
            (J, "HEAD", 1),
            *rounds,
            ("queue", "attributes", 1),
            (J + "results/", "LIST", pages),
            (J, "PUT", 1),
        ]
    refresh = [
        ("nodes/", "LIST", max(1, math.ceil(nodes / LIST_PAGE))),
        ("nodes/", "GET", nodes, par),
        ("jobs/", "LIST", 1),
    ]
    results = [
        (J + "results/", "LIST", pages),
        (J, "GET", 1),
        ("queue", "attributes", 1),
        (J, "HEAD", 1),
        (J + "results/", "GET", chunks, par),
    ]
    out = {}
    for name, plan in (
        ("status_exact", exact),
        ("status_estimate", base),
        ("settle_check", settle),
        ("settle_check_marked", marked),
        ("overview_refresh", refresh),
        ("results", results),
    ):
        n, s = plan_seconds(plan)
        out[name] = {"requests": n, "seconds": round(s, 2)}
    s3_marked = sum(k for p, _, k, *_ in marked if p != "queue")
    if before:  # every idle worker every 2 s, all at once when the job drains
        herd = nodes * (pages + 5)
        out["settle_herd"] = {
            "requests": herd,
            "list_pages": nodes * pages,
            "seconds_at_limit": round(nodes * (pages + 4) / S3_GET_LIMIT, 1),
            "offered_per_s": round(nodes / plan_seconds(settle)[1] * (pages + 4)),
        }
    else:  # the workers at the longest wait: one check each per 30-90 s, with the mark
        out["settle_herd"] = {
            "requests": nodes * s3_marked,
            "list_pages": pages,
            "seconds_at_limit": round(nodes * s3_marked / S3_GET_LIMIT, 1),
            "offered_per_s": round(nodes * s3_marked / LONGEST_SETTLE_CHECK_S),
        }
    return out


# --- the report ----------------------------------------------------------------------------


def hms(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def short_limit(r: dict) -> str:
    first = r["first_limit"]
    if first is None:
        return "none"
    what = first["what"].replace("jobs/J/", "J/")
    return f"{what} at {hms(first['at_s'])}"


def render(results: list[dict], costs: list[dict], args) -> str:
    out = []
    if results:
        out += result_tables(
            results, f"{args.tasks:,} tasks of {args.task_seconds:g} s", args.interrupts
        )
    if costs:
        rows = []
        for c in costs:
            k = c["costs"]
            herd = k["settle_herd"]
            marked = k["settle_check_marked"]
            settle = f"{k['settle_check']['requests']:,} / {k['settle_check']['seconds']:,.1f}"
            if not args.before:
                settle = f"{marked['requests']:,} / {marked['seconds']:,.2f} ({settle})"
            rows.append(
                [
                    f"{c['chunks']:,}",
                    f"{c['nodes']:,}",
                    f"{k['status_exact']['requests']:,} / {k['status_exact']['seconds']:,.1f}",
                    f"{k['status_estimate']['requests']:,} / {k['status_estimate']['seconds']:,.1f}",
                    settle,
                    f"{herd['requests' if not args.before else 'list_pages']:,} / "
                    f"{herd['offered_per_s']:,} / {herd['seconds_at_limit']:,.0f}",
                    f"{k['overview_refresh']['requests']:,} / {k['overview_refresh']['seconds']:,.1f}",
                    f"{k['results']['requests']:,} / {k['results']['seconds']:,.0f}",
                ]
            )
        how = "requests one after another" if args.before else f"gets {IN_FLIGHT} at once"
        out.append(f"\n### What reading costs (requests / seconds, one client, {how})\n")
        if args.before:
            settle_head = "settle check (1 worker)"
            herd_head = "settle herd: LIST pages / offered per s / s at 5,500/s"
        else:
            settle_head = "settle check (1 worker): with the mark (without)"
            herd_head = (
                "N marked checks: S3 requests / per s over "
                f"{LONGEST_SETTLE_CHECK_S:g} s / s at 5,500/s"
            )
        out.append(
            table(
                rows,
                [
                    "chunks",
                    "nodes",
                    "status() exact",
                    "status() estimate (wait poll)",
                    settle_head,
                    herd_head,
                    "status --watch refresh",
                    "results()",
                ],
            )
        )
    return "\n".join(out)


def result_tables(results: list[dict], job: str, interrupts: float) -> list[str]:
    out = []

    def size(r: dict) -> str:
        auto = " (auto)" if r["scenario"]["auto"] else ""
        return f"{r['scenario']['chunk_size']:,}{auto}"

    rows = []
    for r in results:
        sc = r["scenario"]
        done = "" if r["finished"] else " (unfinished)"
        rows.append(
            [
                f"{sc['instances']:,}",
                size(r),
                f"{r['chunks']:,}",
                hms(r["submit_s"]),
                hms(r["makespan_s"]) + done,
                f"{r['instance_hours']:,.1f}",
                f"{r['slot_utilisation']:.0%}",
                f"${r['dollars_instances']:,.2f}",
                f"${r['dollars_requests']:,.2f}",
                f"${r['dollars']:,.2f}",
            ]
        )
    out.append(
        f"### Makespan and dollars: {job}, {interrupts:.0%} of instances interrupted per hour\n"
    )
    out.append(
        table(
            rows,
            [
                "instances",
                "chunk size",
                "chunks",
                "submit",
                "makespan (wait() returns)",
                "instance-h",
                "slots busy",
                "$ instances",
                "$ requests",
                "$ total",
            ],
        )
    )
    rows = []
    for r in results:
        sc, s3 = r["scenario"], r["s3"]
        put, get = s3["busiest"]["PUT"], s3["busiest"]["GET"]
        rows.append(
            [
                f"{sc['instances']:,}",
                size(r),
                f"{r['sqs']['peak']:,.0f} / {r['sqs']['mean']:,.0f}",
                f"{r['sqs']['max_in_flight']:,}",
                f"{put['prefix'].replace('jobs/J/', 'J/')} {put['peak']:,.0f} / {put['mean']:,.1f}"
                if put
                else "-",
                f"{get['prefix'].replace('jobs/J/', 'J/')} {get['peak']:,.0f} / {get['mean']:,.1f}"
                if get
                else "-",
                f"{s3['bucket']['PUT']['peak']:,.0f} / {s3['bucket']['GET']['peak']:,.0f}",
                f"{s3['rejected_503']:,}",
                short_limit(r),
            ]
        )
    out.append(
        "\n### Requests per second (peak 1-s / mean over the makespan) and the first limit hit\n"
    )
    out.append(
        table(
            rows,
            [
                "instances",
                "chunk size",
                "SQS req/s",
                "max in flight",
                "busiest S3 PUT prefix",
                "busiest S3 GET prefix",
                "whole bucket PUT / GET",
                "503s",
                "first limit hit",
            ],
        )
    )
    lines = []
    for r in results:
        sc = r["scenario"]
        hit = (
            "; ".join(f"{hms(x['at_s'])} {x['what'].replace('jobs/J/', 'J/')}" for x in r["limits"])
            or "none"
        )
        lines.append(f"- {sc['instances']:,} instances, chunk size {size(r)}: {hit}")
    out.append("\nEvery limit hit (time from the submit):\n")
    out.append("\n".join(lines))
    rows = []
    for r in results:
        sc = r["scenario"]
        rows.append(
            [
                f"{sc['instances']:,}",
                size(r),
                f"{r['tasks_lost']:,}",
                f"{r['tasks_dead']:,}",
                f"{r['tasks_missing']:,}",
                f"{r['tasks_completed_twice']:,}",
                f"{r['tasks_rerun_after_cut']:,}",
                f"{r['cap_redeliveries']:,}",
                f"{r['notices']:,} / {r['vanished']:,}",
                f"{r['instances_launched']:,}",
                f"{r['wait_call_s']['max']:,.1f}",
                f"{r['watch_refresh_s']['max']:,.1f}",
                f"{r['reader_error_count']}",
            ]
        )
    out.append("\n### Correctness and the readers\n")
    out.append(
        table(
            rows,
            [
                "instances",
                "chunk size",
                "tasks lost",
                "tasks dead-lettered",
                "tasks unfinished",
                "tasks completed twice",
                "tasks re-run after a cut",
                "12 h redeliveries",
                "notices / vanished",
                "launched",
                "longest wait() poll (s)",
                "longest watch refresh (s)",
                "reader errors",
            ],
        )
    )
    rows = []
    for r in results:
        sc = r["scenario"]
        drained = r["drained_s"]
        after = "-"
        if drained is not None and r["wait_returned_s"] is not None:
            after = f"{max(0.0, r['wait_returned_s'] - drained):,.0f}"
        exits = r["exits"]
        rows.append(
            [
                f"{sc['instances']:,}",
                size(r),
                hms(drained),
                hms(r.get("settled_mark_s")),
                after,
                f"{r['settle_checks_listing']:,} / {r['settle_checks']:,}",
                f"{r['settle_checks_failed']:,}",
                f"{exits.get('job settled', 0):,} / {exits.get('idle', 0):,} / "
                f"{exits.get('terminated after wait()', 0):,}",
                f"{r['wait_failures_borne']:,}",
            ]
        )
    out.append("\n### Settling: the end of the job\n")
    out.append(
        table(
            rows,
            [
                "instances",
                "chunk size",
                "last message deleted",
                "settled mark written",
                "wait() returns after (s)",
                "settle checks listing results / all",
                "failed checks",
                "workers leaving: settled / idle / terminated",
                "wait() failures borne",
            ],
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", default="100,1000,10000", help="comma-separated fleet sizes")
    parser.add_argument(
        "--chunk-sizes", default="1,10,100,auto", help="comma-separated; 'auto' = auto_chunk_size"
    )
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--task-seconds", type=float, default=30.0)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument(
        "--interrupts", type=float, default=0.05, help="spot interruptions per instance-hour"
    )
    parser.add_argument(
        "--vanish", type=float, default=0.10, help="fraction of interruptions without notice"
    )
    parser.add_argument(
        "--replace", action="store_true", help="replace interrupted instances (cheerful does not)"
    )
    parser.add_argument(
        "--print-fraction", type=float, default=0.0, help="tasks that print (a log PUT each)"
    )
    parser.add_argument("--price", type=float, default=SPOT_PRICE, help="$ per instance-hour")
    parser.add_argument("--no-readers", action="store_true", help="no wait() and no status --watch")
    parser.add_argument("--horizon-hours", type=float, default=72.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--auto-slots",
        type=int,
        default=SLOTS_GUESS,
        help="slots per instance `cheerful run --fleet N` assumes for the automatic chunk "
        "size (its --slots; SLOTS_GUESS without it)",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="the protocol before the fixes of commit 169b3e8 (as simulated at 9f7ca3a)",
    )
    parser.add_argument("--costs-only", action="store_true", help="only the read-cost table")
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    if not args.costs_only:
        for i, n in enumerate(int(x) for x in args.instances.split(",")):
            for j, spec in enumerate(args.chunk_sizes.split(",")):
                auto = spec.strip() == "auto"
                if not auto:
                    size = int(spec)
                elif args.before:
                    size = auto_chunk_before(args.tasks)
                else:  # cli/cloud.fleet_chunk_size: two chunks at least per slot
                    size = auto_chunk_size(args.tasks, remote=True, slots=n * args.auto_slots)
                sc = Scenario(
                    n,
                    size,
                    auto,
                    args.tasks,
                    args.task_seconds,
                    slots=args.slots,
                    interrupts=args.interrupts,
                    vanish=args.vanish,
                    replace=args.replace,
                    print_fraction=args.print_fraction,
                    price=args.price,
                    readers=not args.no_readers,
                    horizon_h=args.horizon_hours,
                    before=args.before,
                )
                t0 = time.perf_counter()
                result = Sim(sc, args.seed * 1000 + i * 10 + j).run()
                result["wall_s"] = round(time.perf_counter() - t0, 1)
                results.append(result)
                print(
                    f"  simulated {n:,} instances, chunk size {size:,}: {hms(result['makespan_s'])} "
                    f"in {result['wall_s']} s",
                    file=sys.stderr,
                    flush=True,
                )
    costs = [
        {"chunks": c, "nodes": n, "costs": read_costs(c, n, args.before)}
        for c in (100, 10_000, 100_000, 1_000_000)
        for n in (100, 1_000, 10_000)
    ]
    print(render(results, costs, args))
    wall = time.perf_counter() - started
    print(
        f"\n{len(results)} simulations{' (--before)' if args.before else ''}, seed {args.seed}, "
        f"{wall:.0f} s of wall time "
        f"(python {sys.version.split()[0]})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": " ".join(sys.argv),
                    "seed": args.seed,
                    "wall_s": round(wall, 1),
                    "protocol": PROTOCOL,
                    "before": BEFORE if args.before else None,
                    "latency_s": LATENCY,
                    "results": results,
                    "read_costs": costs,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()

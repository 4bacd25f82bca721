"""The frames between the caller and a host's agent, over ssh's standard input and output.

A frame is a :mod:`multiprocessing.connection` message (a 4-byte big-endian size, or -1
and an 8-byte size, then the bytes); its first byte says what it is.

Caller to agent:

- ``H`` hello: a pickled :class:`Hello`; the first frame.
- ``W`` work: a pickled header as a local worker takes it (``work_id, fn_key, fn_bytes,
  seed, levels, indices, buffer sizes``; ``fn_bytes`` empty when the host has the function
  already), then one frame with the chunk's pickle and one per out-of-band buffer.
- ``P`` ping: nothing; the agent stops after ``Hello.silence`` seconds without a frame.
- ``A`` abandon: stop the running chunks now and forget the queued ones.
- ``Q`` quit: stop every worker (running chunks too) and end; EOF follows.

Agent to caller:

- ``R`` ready: a pickled dict (``python``, ``cores``, ``pid``, ``hostname``).
- ``S`` setup failed: pickled ``(command, exit code, output)``; the agent stops.
- ``D`` done: the work id (8 bytes), then the chunk's packed result as its worker made it.
- ``C`` crashed: pickled ``(work_id, index, reason, exitcode, signal)``.
- ``G`` progress: an 8-byte float, how much of the host's running tasks is done, summed
  (what they report with ``cf.task_progress``); sent when it changes, at most every second.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["ID", "SHARE", "SIZE", "Hello"]

SIZE = struct.Struct(">i")  # a frame's size, as multiprocessing writes it
ID = struct.Struct(">q")
HELLO, WORK, PING, ABANDON, QUIT = b"H", b"W", b"P", b"A", b"Q"
READY, SETUP_FAILED, DONE, CRASHED, PROGRESS = b"R", b"S", b"D", b"C", b"G"
SHARE = struct.Struct(">d")


@dataclass(frozen=True)
class Hello:
    """What the caller tells a new agent."""

    host: str  # the host as the caller named it: CHEERFUL_HOST for its tasks
    workers: int
    setup: tuple[str, ...]
    silence: float  # seconds without any frame after which the caller is taken for gone
    live_output: bool = False  # tasks print live (CHEERFUL_OUTPUT=live in the caller)

"""progress=: events to a callable, a rich bar, one summary line when not a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import cheerful as cf
from cheerful.progress_rich import RichBar


def fail_on_two(x):
    if x == 2:
        raise ValueError(x)
    return x


class Recorder:
    """A progress handler that keeps every event (and accepts any new field)."""

    def __init__(self):
        self.events = []

    def __call__(self, *, event, done, total, **kwargs):
        self.events.append({"event": event, "done": done, "total": total, **kwargs})


@pytest.mark.parametrize("chunk_size", [1, None])
def test_a_callable_receives_start_advance_finish(two, chunk_size):
    rec = Recorder()
    assert cf.map(abs, range(10), plan=two, chunk_size=chunk_size, progress=rec) == list(range(10))
    kinds = [e["event"] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    assert set(kinds[1:-1]) == {"advance"}
    assert rec.events[0]["done"] == 0
    dones = [e["done"] for e in rec.events]
    assert dones == sorted(dones) and dones[-1] == 10
    assert all(e["total"] == 10 for e in rec.events)


def test_failures_are_counted(two):
    rec = Recorder()
    cf.map(fail_on_two, range(5), plan=two, errors="return", progress=rec)
    assert rec.events[-1]["failed"] == 1 and rec.events[-1]["done"] == 5


def test_finish_is_sent_when_a_task_raises(two):
    rec = Recorder()
    with pytest.raises(ValueError):
        cf.map(fail_on_two, range(5), plan=two, progress=rec)
    assert rec.events[-1]["event"] == "finish"


def test_imap_and_starmap_report_too(two):
    rec = Recorder()
    assert len(list(cf.imap(abs, range(6), plan=two, progress=rec))) == 6
    assert rec.events[-1] == {**rec.events[-1], "event": "finish", "done": 6, "total": 6}
    rec = Recorder()
    cf.starmap(pow, [(2, 3)] * 4, plan=two, progress=rec)
    assert rec.events[-1]["done"] == 4


def test_not_a_terminal_gives_one_summary_line(two, capfd, monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    cf.map(abs, range(10), plan=two, progress=True)
    out, err = capfd.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "10/10" in lines[0]
    assert "\x1b" not in err and "\r" not in err


def test_no_progress_prints_nothing(two, capfd):
    cf.map(abs, range(10), plan=two)
    assert capfd.readouterr() == ("", "")


def test_rich_live_bar_renders_to_a_terminal():
    buffer = io.StringIO()
    bar = RichBar(console=Console(file=buffer, force_terminal=True, width=100))
    assert bar.live
    bar(event="start", done=0, total=10, failed=0, description="cf.map")
    for done in range(1, 11):
        bar(event="advance", done=done, total=10, failed=0, elapsed=done / 10, description="cf.map")
    bar(event="finish", done=10, total=10, failed=0, elapsed=1.0, description="cf.map", extra=1)
    assert "10/10" in buffer.getvalue()


def test_rich_summary_line_when_not_a_terminal():
    buffer = io.StringIO()
    bar = RichBar(console=Console(file=buffer, force_terminal=False))
    bar(event="start", done=0, total=3, description="cf.map")
    bar(event="advance", done=3, total=3, failed=1, description="cf.map")
    bar(event="finish", done=3, total=3, failed=1, elapsed=0.5, description="cf.map")
    assert buffer.getvalue().count("\n") == 1
    assert "3/3" in buffer.getvalue() and "1 failed" in buffer.getvalue()

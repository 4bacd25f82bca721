"""cf.map, cf.starmap and cf.imap on the default and chosen plans."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import cheerful as cf
from cheerful.driven.chunking import MAX_STREAM_CHUNK


def square(x):
    return x * x


def pid(_):
    return os.getpid()


class RebuildFails:
    """Pickles fine, but cannot be rebuilt on the other side."""

    def __reduce__(self):
        return (_refuse, ())


def _refuse():
    raise RuntimeError("refusing to be rebuilt")


def touch_then_square(args):
    marker_dir, x = args
    with open(os.path.join(marker_dir, f"ran-{x}"), "w"):
        pass
    return x * x


@pytest.mark.parametrize("chunk_size", [1, 7, 1000, None])
def test_default_plan_keeps_input_order(chunk_size):
    assert cf.map(square, range(100), chunk_size=chunk_size) == [x * x for x in range(100)]


def test_a_generator_is_a_valid_input(two):
    assert cf.map(square, (x for x in range(25)), plan=two) == [x * x for x in range(25)]
    assert cf.starmap(pow, ([x, 2] for x in range(5)), plan=two) == [0, 1, 4, 9, 16]
    assert sorted(cf.imap(square, iter(range(5)), plan=two)) == [(i, i * i) for i in range(5)]


def test_empty_inputs_give_nothing(two):
    assert cf.map(square, [], plan=two) == []
    assert cf.starmap(pow, iter([]), plan=two) == []
    assert list(cf.imap(square, [], plan=two)) == []


def test_stopping_imap_early_leaves_the_plan_usable(two):
    for index, _ in cf.imap(square, range(200), plan=two, chunk_size=1):
        assert 0 <= index < 200
        break
    assert cf.map(square, range(20), plan=two) == [x * x for x in range(20)]


def test_the_default_plan_is_processes_on_all_cores():
    assert cf.plan().levels == (cf.processes(),)
    assert os.getpid() not in cf.map(pid, range(4))


def test_with_plan_sets_the_plan_for_the_block_only():
    with cf.plan(cf.sequential()) as chosen:
        assert chosen.levels == (cf.sequential(),)
        assert set(cf.map(pid, range(4))) == {os.getpid()}
    assert cf.plan().levels == (cf.processes(),)


def test_bare_plan_holds_until_changed(restore_plan):
    cf.plan(cf.sequential())
    assert set(cf.map(pid, range(3))) == {os.getpid()}
    assert set(cf.map(pid, range(3))) == {os.getpid()}
    assert cf.plan().levels == (cf.sequential(),)


def test_the_plan_argument_overrides_the_plan_in_force(two):
    with cf.plan(cf.sequential()):
        assert os.getpid() not in cf.map(pid, range(4), plan=two)


def test_unpicklable_input_fails_before_any_task_runs(tmp_path):
    items = [(str(tmp_path), x) for x in range(10)]
    items[7] = threading.Lock()
    with pytest.raises(cf.SerializationError) as info:
        cf.map(touch_then_square, items, chunk_size=1)
    assert "task 7" in str(info.value) and "lock" in str(info.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_unpicklable_closure_variable_is_named(tmp_path):
    guard = threading.Lock()

    def locked_square(x):
        with guard:
            return touch_then_square((str(tmp_path), x))

    with pytest.raises(cf.SerializationError, match="guard") as info:
        cf.map(locked_square, range(5))
    assert "lock" in str(info.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_unpicklable_result_fails_only_its_task(two):
    got = cf.map(lambda x: threading.Lock() if x == 2 else x, range(5), plan=two, errors="return")
    assert got[:2] + got[3:] == [0, 1, 3, 4]
    assert isinstance(got[2], cf.Failure) and got[2].index == 2
    assert isinstance(got[2].exception, cf.SerializationError)
    assert "task 2" in str(got[2].exception)


def test_unpicklable_result_raises_for_its_task(two):
    with pytest.raises(cf.SerializationError, match="task 1"):
        cf.map(lambda x: threading.Lock() if x == 1 else x, range(3), plan=two, chunk_size=1)


def test_an_input_that_cannot_be_rebuilt_fails_only_its_task(two):
    got = cf.map(abs, [1, -2, RebuildFails(), 4], plan=two, chunk_size=1, errors="return")
    assert got[:2] + got[3:] == [1, 2, 4]
    assert isinstance(got[2], cf.Failure) and got[2].index == 2
    assert isinstance(got[2].exception, cf.CheerfulError)
    assert cf.map(abs, [-1], plan=two) == [1]


def test_an_input_that_cannot_be_rebuilt_names_the_cause(two):
    got = cf.map(abs, [1, RebuildFails()], plan=two, chunk_size=1, errors="return")
    assert isinstance(got[1].exception, cf.SerializationError)
    assert "refusing to be rebuilt" in str(got[1].exception)


NOTEBOOK_LIKE = """
    import cheerful as cf

    OFFSET = 100

    def shifted(x):
        return x + OFFSET

    def make_scaler(k):
        return lambda x: k * x

    print(cf.map(shifted, range(5)))
    print(cf.map(make_scaler(3), range(5), chunk_size=2))
    print(cf.map(lambda x: shifted(x) - 100, range(3), plan=cf.processes(2)))
"""

SPAWNING = """
    import cheerful as cf

    def shifted(x):
        return x + 100

    if __name__ == "__main__":
        print(cf.map(shifted, range(3), plan=cf.processes(2, start_method="spawn")))
"""


def run_script(tmp_path, source: str) -> list[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_functions_defined_in_a_scripts_main_run(tmp_path):
    assert run_script(tmp_path, NOTEBOOK_LIKE) == [
        "[100, 101, 102, 103, 104]",
        "[0, 3, 6, 9, 12]",
        "[0, 1, 2]",
    ]


def test_main_functions_run_on_spawned_workers(tmp_path):
    assert run_script(tmp_path, SPAWNING) == ["[100, 101, 102]"]


def counted(read: list[int]):
    """An endless generator that notes how many items were taken from it."""
    for i in itertools.count():
        read[0] = i + 1
        yield i


def test_imap_reads_an_endless_generator_only_as_workers_need_it(two):
    read, got = [0], []
    for index, value in cf.imap(square, counted(read), plan=two, chunk_size=3):
        assert value == index * index
        got.append(index)
        # a chunk per worker in flight, and per worker one whose results are being handed
        assert read[0] <= len(got) + 3 * (2 + 2)
        if len(got) == 60:
            break
    assert len(set(got)) == 60 and max(got) < read[0]  # each once, each read from it


def test_imap_of_a_generator_cuts_its_own_chunks_in_bounded_memory(two):
    read = [0]
    for seen, _ in enumerate(cf.imap(square, counted(read), plan=two), start=1):
        # per worker: a chunk in flight, and one whose results are being handed back
        assert read[0] <= seen + 2 * 2 * MAX_STREAM_CHUNK
        if seen == 2 * MAX_STREAM_CHUNK:
            break


def test_imap_names_an_input_of_a_generator_that_cannot_travel(two):
    def inputs():
        yield from range(5)
        yield threading.Lock()
        yield from range(6, 100)

    with pytest.raises(cf.SerializationError, match="task 5"):
        for _ in cf.imap(square, inputs(), plan=two, chunk_size=2):
            pass
    assert cf.map(square, range(4), plan=two) == [0, 1, 4, 9]  # the plan goes on


def first_is_slow_and_all_say_so(x):
    if x == 0:
        time.sleep(0.5)
    print(f"task {x}")
    return x


def test_ordered_imap_holds_what_comes_back_early_until_its_turn(two, capfd):
    got = []
    for value in cf.imap(first_is_slow_and_all_say_so, range(12), plan=two, chunk_size=1,
                         ordered=True):  # fmt: skip
        got.append(value)
        assert capfd.readouterr().out == f"task {value}\n"  # its output, just before it
    assert got == list(range(12))


def test_a_crash_in_a_generator_read_in_one_go_reruns_only_its_own_range(two):
    def exits_at_33(x):
        if x == 33:
            os._exit(5)
        return x

    got = dict(cf.imap(exits_at_33, iter(range(300)), plan=two, errors="return", chunk_size=20))
    assert sorted(got) == list(range(300))
    assert isinstance(got.pop(33), cf.Failure) and all(got[i] == i for i in got)

"""Task errors come back as their own type; the hierarchy; bad arguments."""

from __future__ import annotations

import concurrent.futures
import signal
import threading

import pytest

import cheerful as cf
import cheerful.errors


class CustomError(Exception):
    """Importable in the caller, so it comes back as itself."""


class TwoArgsError(Exception):
    """Pickles, but cannot be rebuilt: ``__init__`` wants two arguments, args holds one."""

    def __init__(self, first, second):
        super().__init__(first)
        self.second = second


class HoldsLockError(Exception):
    """Cannot be pickled at all: it keeps a lock."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


def raise_on_three(args):
    x, kind = args
    if x == 3:
        raise kind(f"bad input {x}")
    return x


def raise_unrebuildable(x):
    if x == 3:
        raise TwoArgsError("first", "second")
    return x


def raise_unpicklable(x):
    if x == 3:
        raise HoldsLockError("with a lock")
    return x


@pytest.mark.parametrize("kind", [ValueError, CustomError, KeyError])
def test_a_task_error_rises_as_its_own_type(two, kind):
    with pytest.raises(kind) as info:
        cf.map(raise_on_three, [(x, kind) for x in range(6)], plan=two)
    assert type(info.value) is kind
    assert "bad input 3" in str(info.value)
    assert "raise_on_three" in str(info.value.__cause__)
    assert any("task 3" in note for note in info.value.__notes__)


def test_a_class_defined_in_a_test_function_still_comes_back(two):
    class LocalError(Exception):
        pass

    def fail(x):
        raise LocalError(f"local {x}")

    with pytest.raises(Exception, match="local 0") as info:
        cf.map(fail, [0], plan=two)
    if isinstance(info.value, cf.TaskError):  # allowed: it could not be rebuilt here
        assert "LocalError" in info.value.type_name
    else:  # cloudpickle brings the class back by value: the same class
        assert type(info.value) is LocalError


@pytest.mark.parametrize(
    ("fn", "name"),
    [(raise_unrebuildable, "TwoArgsError"), (raise_unpicklable, "HoldsLockError")],
)
def test_an_exception_that_cannot_travel_becomes_a_task_error(two, fn, name):
    with pytest.raises(cf.TaskError) as info:
        cf.map(fn, range(6), plan=two)
    err = info.value
    assert err.index == 3
    assert name in err.type_name
    assert name in err.remote_traceback and fn.__name__ in err.remote_traceback
    assert "task 3" in str(err)


def test_errors_return_keeps_results_and_failures(two):
    got = cf.map(raise_on_three, [(x, ValueError) for x in range(6)], plan=two, errors="return")
    assert got[:3] + got[4:] == [0, 1, 2, 4, 5]
    failure = got[3]
    assert isinstance(failure, cf.Failure)
    assert (failure.index, type(failure.exception)) == (3, ValueError)
    assert "raise_on_three" in failure.traceback and "bad input 3" in failure.traceback


def test_errors_return_with_an_unrebuildable_exception(two):
    got = cf.map(raise_unrebuildable, range(5), plan=two, errors="return")
    assert isinstance(got[3], cf.Failure) and isinstance(got[3].exception, cf.TaskError)
    assert got[4] == 4


def test_imap_raises_the_task_error(two):
    with pytest.raises(ValueError, match="bad input 3"):
        for _ in cf.imap(raise_on_three, [(x, ValueError) for x in range(6)], plan=two):
            pass


def test_the_plan_is_usable_after_an_error(two):
    with pytest.raises(ValueError):
        cf.map(raise_on_three, [(x, ValueError) for x in range(50)], plan=two, chunk_size=1)
    assert cf.map(abs, range(-5, 0), plan=two) == [5, 4, 3, 2, 1]


def interrupt_at_one(x):
    if x == 1:
        raise KeyboardInterrupt  # what Ctrl-C does while task 1 runs in the caller
    return x


@pytest.mark.skipif(
    signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
    reason="Ctrl-C does not raise KeyboardInterrupt here",
)
@pytest.mark.parametrize("errors", ["raise", "return"])
def test_ctrl_c_stops_a_sequential_run_at_once(errors):
    ran = []

    def task(x):
        ran.append(x)
        return interrupt_at_one(x)

    with pytest.raises(KeyboardInterrupt):
        cf.map(task, range(6), plan=cf.sequential(), errors=errors)
    assert ran == [0, 1]


def test_keyboard_interrupt_raised_by_a_worker_task_is_its_failure(two):
    got = cf.map(interrupt_at_one, range(4), plan=two, errors="return")
    assert isinstance(got[1].exception, KeyboardInterrupt)
    assert got[:1] + got[2:] == [0, 2, 3]


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        (cf.ConfigError, (cf.CheerfulError, ValueError)),
        (cf.SerializationError, (cf.CheerfulError, TypeError)),
        (cf.TaskError, (cf.CheerfulError,)),
        (cf.WorkerCrashed, (cf.TaskError, cf.CheerfulError)),
        (cf.TaskTimeout, (cf.TaskError, TimeoutError)),
        (cf.BrokenPlan, (cf.CheerfulError, concurrent.futures.BrokenExecutor)),
        (cf.HostUnreachable, (cf.BrokenPlan,)),
        (cf.JobNotFound, (cf.JobError, KeyError)),
        (cf.JobFailed, (cf.JobError,)),
        (cf.QueueError, (cf.BackendError,)),
        (cf.ObjectNotFound, (cf.StoreError, KeyError)),
        (cf.StoreError, (cf.BackendError,)),
        (cf.BackendError, (cf.CheerfulError,)),
        (cf.JobError, (cf.CheerfulError,)),
    ],
)
def test_one_hierarchy(child, parents):
    for parent in parents:
        assert issubclass(child, parent)
    assert issubclass(child, cf.CheerfulError)


def test_every_error_class_is_a_cheerful_error():
    for name in cheerful.errors.__all__:
        if name == "JobInterrupted":  # Ctrl-C: no `except Exception` may swallow it
            assert issubclass(cf.JobInterrupted, KeyboardInterrupt)
            assert not issubclass(cf.JobInterrupted, Exception)
            continue
        assert issubclass(getattr(cheerful.errors, name), cf.CheerfulError), name


def test_worker_crashed_keeps_its_fields():
    err = cf.WorkerCrashed("task 4 crashed", index=4, exitcode=-9, signal="SIGKILL")
    assert (err.index, err.exitcode, err.signal, err.type_name) == (
        4,
        -9,
        "SIGKILL",
        "WorkerCrashed",
    )


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: cf.map(42, [1]), "function"),
        (lambda: cf.map(abs, [1], chunk_size=0), "chunk_size"),
        (lambda: cf.map(abs, [1], chunk_size=2.5), "chunk_size"),
        (lambda: cf.map(abs, [1], seed=-1), "seed"),
        (lambda: cf.map(abs, [1], seed="x"), "seed"),
        (lambda: cf.map(abs, [1], errors="x"), "errors"),
        (lambda: cf.map(abs, [1], plan=42), "plan"),
        (lambda: cf.map(abs, "abc"), "string"),
        (lambda: cf.map(abs, 42), "iterable"),
        (lambda: cf.starmap(pow, [(1, 2)], chunk_size=0), "chunk_size"),
        (lambda: cf.imap(abs, [1], errors="x"), "errors"),
        (lambda: cf.imap(abs, [1], plan="processes"), "plan"),
        (lambda: cf.plan(42), "plan"),
        (lambda: cf.plan(cf.processes), "plan"),
        (lambda: cf.map(abs, [1], plan=cf.sequential), "plan"),
        (lambda: cf.processes(0), "workers"),
        (lambda: cf.processes(start_method="thread"), "start_method"),
        (lambda: cf.Executor(plan=42), "plan"),
        (lambda: cf.Executor(seed=-1), "seed"),
        (lambda: cf.Executor(seed="x"), "seed"),
        (lambda: cf.starmap(pow, "ab"), "string"),
        (lambda: cf.starmap(pow, 42), "iterable"),
        (lambda: cf.starmap(pow, [1, 2]), "tuple of arguments"),
    ],
)
def test_bad_arguments_raise_config_error(call, words):
    with pytest.raises(cf.ConfigError, match=words):
        call()

"""Supervised worker processes: a worker's death or a hang costs one task, never the pool."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from radroute.errors import DecoderCrashedError, DecoderTimeoutError, RadrouteError
from radroute.io.isolated import IsolatedPool, IsolatedTaskError, PoolClosedError, signal_name


class Panic(BaseException):
    """Like pyo3's PanicException: a BaseException, not an Exception."""


def work(item):
    """What a task does, by name: crash, hang, raise, or return a value."""
    kind, value = item
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if kind == "abort":
        os.abort()
    if kind == "exit":
        os._exit(3)
    if kind == "hang":
        time.sleep(60)
    if kind == "raise":
        raise ValueError(f"bad {value}")
    if kind == "panic":
        raise Panic("rust panicked")
    if kind == "unpicklable":
        class Local(Exception):
            pass
        raise Local("local class")
    if kind == "allocate":
        return len(bytearray(value))
    if kind == "pid":
        return os.getpid()
    return value * 2


@pytest.fixture()
def pool():
    with IsolatedPool(workers=2, timeout=20) as p:
        yield p


def test_values_come_back_in_input_order(pool):
    items = [("ok", i) for i in range(50)]
    assert list(pool.imap(work, items, prefetch=3)) == [2 * i for i in range(50)]
    assert pool.submit(work, ("ok", 21)).result() == 42


def test_every_crash_costs_only_its_own_item(pool):
    items = []
    for i in range(30):
        items.append(("ok", i))
        if i % 5 == 4:
            items.append((("segv", "abort", "exit")[i % 3], None))
    out = list(pool.imap(work, items, return_exceptions=True, path_of=lambda it: f"file{it[1]}.dcm"))
    crashed = [o for o in out if isinstance(o, Exception)]
    assert len(crashed) == 6 and all(isinstance(o, DecoderCrashedError) for o in crashed)
    assert [o for o in out if not isinstance(o, Exception)] == [2 * i for i in range(30)]
    assert {o.code for o in crashed} == {"decoder_crashed"}
    messages = " ".join(o.message for o in crashed)
    assert "SIGSEGV" in messages and "SIGABRT" in messages and "exit status 3" in messages
    assert pool.crashes == 6
    assert pool.submit(work, ("ok", 1)).result() == 2  # the pool still works afterwards


def test_a_dead_worker_is_replaced(pool):
    before = pool.submit(work, ("pid", None)).result()
    with pytest.raises(DecoderCrashedError) as info:
        pool.submit_task(work, (("abort", None),), path="x.dcm").result()
    assert info.value.path == "x.dcm" and info.value.to_dict()["type"] == "decoder_crashed"
    pids = {pool.submit(work, ("pid", None)).result() for _ in range(6)}
    assert pids and len(pool.pids) <= 2
    assert before in pids or len(pids) <= 2


def test_a_hang_times_out_and_the_next_task_runs():
    with IsolatedPool(workers=1, timeout=0.5) as p:
        with pytest.raises(DecoderTimeoutError) as info:
            p.submit_task(work, (("hang", None),), path="slow.dcm").result(timeout=10)
        assert info.value.code == "decoder_timeout" and info.value.path == "slow.dcm"
        assert p.submit(work, ("ok", 5)).result(timeout=10) == 10
        assert p.timeouts == 1


def test_exceptions_come_back_typed(pool):
    with pytest.raises(ValueError, match="bad 3"):
        pool.submit(work, ("raise", 3)).result()
    assert isinstance(pool.submit(work, ("panic", None)).exception(), Panic)
    err = pool.submit(work, ("unpicklable", None)).exception()
    assert isinstance(err, IsolatedTaskError) and err.type_name == "Local" and "local class" in str(err)


def test_many_threads_may_submit(pool):
    results: list[int] = []
    lock = threading.Lock()

    def client(base: int) -> None:
        for i in range(10):
            value = pool.submit(work, ("ok", base + i)).result()
            with lock:
                results.append(value)

    threads = [threading.Thread(target=client, args=(100 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(2 * (100 * k + i) for k in range(4) for i in range(10))


def test_memory_headroom_turns_a_huge_allocation_into_memory_error():
    with IsolatedPool(workers=1, memory_headroom=256 * 2**20) as p:
        assert isinstance(p.submit(work, ("allocate", 3 * 2**30)).exception(), MemoryError)
        assert p.submit(work, ("allocate", 2**20)).result() == 2**20


def test_closed_pool_refuses_and_fails_what_is_left():
    p = IsolatedPool(workers=1)
    slow = p.submit(work, ("hang", None))
    queued = p.submit(work, ("ok", 1))
    time.sleep(0.2)
    p.close()
    assert isinstance(slow.exception(timeout=10), PoolClosedError)
    assert isinstance(queued.exception(timeout=10), PoolClosedError)
    with pytest.raises(PoolClosedError):
        p.submit(work, ("ok", 1))
    assert p.pids == []


def test_signal_names():
    assert signal_name(-11) == "SIGSEGV" and signal_name(-6) == "SIGABRT"
    assert signal_name(3) == "exit status 3"
    assert issubclass(DecoderCrashedError, RadrouteError)

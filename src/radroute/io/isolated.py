"""Run untrusted work (native decoders, transcoders) in supervised worker processes.

A native library that meets a malformed file may abort or segfault the process it runs in;
Python cannot catch that. An :class:`IsolatedPool` keeps ``workers`` persistent forked processes,
runs one task at a time in each, and turns a worker's death (a signal, ``os._exit``) or a task
that runs past its timeout into a typed error for *that task only*: the worker is replaced and
every later task, crash or not, is isolated the same way.

>>> pool = IsolatedPool(workers=2, timeout=30)
>>> pool.submit(decode, "a.dcm").result()          # the value, or the exception the task raised
>>> for value in pool.imap(decode, paths, return_exceptions=True):   # in input order, bounded
...     ...
>>> pool.close()

Exceptions raised by the task come back as they were (``BaseException`` subclasses too, e.g. a
Rust ``PanicException``; one that cannot be pickled comes back as :class:`IsolatedTaskError`
with its type name and message). A dead worker gives :class:`~radroute.errors.DecoderCrashedError`
(``decoder_crashed``), a timeout :class:`~radroute.errors.DecoderTimeoutError`
(``decoder_timeout``). The pool is thread-safe: any thread may submit.
"""
from __future__ import annotations

import faulthandler
import itertools
import multiprocessing
import os
import pickle
import resource
import signal
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from radroute.errors import DecoderCrashedError, DecoderTimeoutError, RadrouteError

#: a worker's own address-space limit is its size at start plus this headroom (``None``: no limit)
DEFAULT_MEMORY_HEADROOM: int | None = None


class IsolatedTaskError(Exception):
    """A task raised an exception that could not be sent back as it was (not picklable)."""

    def __init__(self, type_name: str, message: str):
        super().__init__(f"{type_name}: {message}")
        self.type_name, self.message = type_name, message

    def __reduce__(self):
        return IsolatedTaskError, (self.type_name, self.message)


class PoolClosedError(RuntimeError):
    """The pool was closed before the task ran."""


def signal_name(exitcode: int | None) -> str:
    """``SIGSEGV`` for a worker killed by signal 11, ``exit status 3`` for ``os._exit(3)``."""
    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


# ---- the worker process -------------------------------------------------------------------------
def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (the class is importable), else an :class:`IsolatedTaskError`."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return IsolatedTaskError(type(exc).__name__, " ".join(str(exc).split())[:500])


def _limit_memory(headroom: int | None) -> None:
    if headroom is None:
        return
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + headroom, resource.RLIM_INFINITY))
    except (OSError, ValueError):  # not Linux, or a hard limit already lower: keep what there is
        pass


def _worker_main(conn: Connection, memory_headroom: int | None) -> None:
    """Run tasks from ``conn`` one at a time until told to stop (``None``) or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    faulthandler.disable()  # the parent reports the signal; no C-level dump per crash
    _limit_memory(memory_headroom)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        task_id, fn, args, kwargs = message
        try:
            reply = (task_id, True, fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every failure is the task's result
            reply = (task_id, False, _sendable(exc))
        try:
            conn.send(reply)
        except Exception as exc:  # noqa: BLE001 - an unpicklable value
            conn.send((task_id, False, IsolatedTaskError(type(exc).__name__, str(exc))))
        del reply, message


# ---- the parent side ---------------------------------------------------------------------------
@dataclass
class _Task:
    id: int
    fn: Callable
    args: tuple
    kwargs: dict
    future: Future
    path: str | None
    timeout: float | None
    deadline: float | None = None


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: _Task | None = None
    tasks_done: int = 0
    started: float = field(default_factory=time.monotonic)


class IsolatedPool:
    """A persistent pool of ``workers`` supervised processes (see the module docstring).

    ``timeout``: default seconds a task may run before its worker is killed (``None``: no limit;
    each submit may override it). ``start_method``: ``fork`` (default where available: workers
    start in milliseconds and inherit what the parent imported), ``forkserver`` or ``spawn``.
    ``memory_headroom``: bytes of address space a worker may add to what it inherited (a decoder
    asking for more gets ``MemoryError``), ``None`` for no limit. ``max_tasks_per_worker``
    recycles a worker after that many tasks (``None``: never).
    """

    def __init__(self, workers: int = 1, *, timeout: float | None = None,
                 start_method: str | None = None, memory_headroom: int | None = DEFAULT_MEMORY_HEADROOM,
                 max_tasks_per_worker: int | None = None, name: str = "radroute-isolated"):
        if workers < 1:
            raise ValueError("an IsolatedPool needs at least one worker")
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("fork" if "fork" in methods else "spawn")
        self._ctx = multiprocessing.get_context(method)
        self.size = workers
        self.timeout = timeout
        self.memory_headroom = memory_headroom
        self.max_tasks_per_worker = max_tasks_per_worker
        self.name = name
        self.crashes = 0  #: tasks that ended with their worker's death
        self.timeouts = 0  #: tasks killed for running too long
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._pending: deque[_Task] = deque()
        self._workers: list[_Worker | None] = [None] * workers
        self._closed = False
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._thread = threading.Thread(target=self._supervise, name=name, daemon=True)
        self._thread.start()

    # ---- public API ----------------------------------------------------------------------------
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` in a worker; a :class:`~concurrent.futures.Future`."""
        return self.submit_task(fn, args, kwargs)

    def submit_task(self, fn: Callable, args: tuple = (), kwargs: dict | None = None, *,
                    path: str | os.PathLike | None = None, timeout: float | None | str = "default") -> Future:
        """:meth:`submit` with options: ``path`` names the input in a crash/timeout error;
        ``timeout`` overrides the pool's (``None``: no limit)."""
        future: Future = Future()
        task = _Task(next(self._ids), fn, tuple(args), dict(kwargs or {}), future,
                     os.fspath(path) if path is not None else None,
                     self.timeout if timeout == "default" else timeout)  # type: ignore[arg-type]
        with self._lock:
            if self._closed:
                raise PoolClosedError("the pool is closed")
            self._pending.append(task)
        self._wake()
        return future

    def imap(self, fn: Callable, items: Iterable[Any], *, prefetch: int | None = None,
             path_of: Callable[[Any], Any] | None = None, return_exceptions: bool = False,
             timeout: float | None | str = "default") -> Iterator[Any]:
        """``fn(item)`` for each item, lazily, in input order, at most ``prefetch`` in flight
        (default: twice the workers). With ``return_exceptions`` a failed item yields its
        exception instead of raising it. ``path_of(item)`` names the item in crash errors."""
        limit = max(1, prefetch or 2 * self.size)
        in_flight: deque[Future] = deque()
        source = iter(items)
        try:
            for item in source:
                path = path_of(item) if path_of is not None else None
                in_flight.append(self.submit_task(fn, (item,), path=path, timeout=timeout))
                while len(in_flight) >= limit:
                    yield self._outcome(in_flight.popleft(), return_exceptions)
            while in_flight:
                yield self._outcome(in_flight.popleft(), return_exceptions)
        finally:
            for future in in_flight:
                future.cancel()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers (tasks not yet started fail with :class:`PoolClosedError`)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._wake()
        self._thread.join(timeout)

    def __enter__(self) -> "IsolatedPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and monitoring)."""
        return [w.process.pid for w in self._workers if w is not None and w.process.is_alive()]

    # ---- internals -----------------------------------------------------------------------------
    @staticmethod
    def _outcome(future: Future, return_exceptions: bool) -> Any:
        exc = future.exception()
        if exc is None:
            return future.result()
        if return_exceptions:
            return exc
        raise exc

    def _wake(self) -> None:
        try:
            self._wake_w.send_bytes(b"!")
        except OSError:
            pass

    def _start_worker(self, slot: int) -> _Worker:
        parent, child = self._ctx.Pipe()
        with warnings.catch_warnings():  # fork from a threaded parent: workers only run tasks
            warnings.simplefilter("ignore", DeprecationWarning)
            process = self._ctx.Process(target=_worker_main, args=(child, self.memory_headroom),
                                        name=f"{self.name}-{slot}", daemon=True)
            process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers[slot] = worker
        return worker

    def _stop_worker(self, slot: int, kill: bool = False) -> None:
        worker = self._workers[slot]
        self._workers[slot] = None
        if worker is None:
            return
        if kill and worker.process.is_alive():
            worker.process.kill()
        else:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        worker.process.join(1.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(1.0)
        worker.conn.close()

    def _fail(self, task: _Task, exc: BaseException) -> None:
        if not task.future.done():
            task.future.set_exception(exc)

    def _dispatch(self) -> None:
        """Give pending tasks to idle workers (starting workers as needed)."""
        for slot in range(self.size):
            with self._lock:
                while self._pending and self._pending[0].future.cancelled():
                    self._pending.popleft()
                if not self._pending:
                    return
                worker = self._workers[slot]
                if worker is not None and worker.task is not None:
                    continue
                task = self._pending.popleft()
            if not task.future.set_running_or_notify_cancel():
                continue
            worker = worker or self._start_worker(slot)
            try:
                worker.conn.send((task.id, task.fn, task.args, task.kwargs))
            except (OSError, ValueError):  # the idle worker had died: a new one takes the task
                self._stop_worker(slot, kill=True)
                worker = self._start_worker(slot)
                try:
                    worker.conn.send((task.id, task.fn, task.args, task.kwargs))
                except Exception as exc:  # noqa: BLE001 - the task's arguments cannot be sent
                    self._fail(task, exc)
                    continue
            except Exception as exc:  # noqa: BLE001 - unpicklable arguments: the task's error
                self._fail(task, exc)
                continue
            worker.task = task
            task.deadline = time.monotonic() + task.timeout if task.timeout else None

    def _on_reply(self, slot: int) -> None:
        worker = self._workers[slot]
        try:
            task_id, ok, value = worker.conn.recv()
        except (EOFError, OSError):
            self._on_death(slot)
            return
        except Exception as exc:  # noqa: BLE001 - a reply that cannot be unpickled here
            task_id, ok, value = (worker.task.id if worker.task else -1), False, IsolatedTaskError(
                type(exc).__name__, str(exc))
        task, worker.task = worker.task, None
        if task is not None and task.id == task_id and not task.future.done():
            if ok:
                task.future.set_result(value)
            else:
                task.future.set_exception(value)
        worker.tasks_done += 1
        if self.max_tasks_per_worker and worker.tasks_done >= self.max_tasks_per_worker:
            self._stop_worker(slot)

    def _on_death(self, slot: int) -> None:
        worker = self._workers[slot]
        worker.process.join(1.0)
        task = worker.task
        self._stop_worker(slot, kill=True)
        if task is not None:
            self.crashes += 1
            how = signal_name(worker.process.exitcode)
            self._fail(task, DecoderCrashedError(
                f"the decoding process died ({how}) while reading this input; the input was "
                "isolated and the run goes on", task.path))

    def _on_timeout(self, slot: int) -> None:
        task = self._workers[slot].task
        self._stop_worker(slot, kill=True)
        self.timeouts += 1
        self._fail(task, DecoderTimeoutError(
            f"decoding took longer than {task.timeout:g} s; the decoding process was stopped", task.path))

    def _supervise(self) -> None:
        try:
            while True:
                with self._lock:
                    closed = self._closed
                if closed:
                    break
                self._dispatch()
                busy = {w.conn: i for i, w in enumerate(self._workers) if w is not None and w.task}
                sentinels = {w.process.sentinel: i for i, w in enumerate(self._workers) if w is not None}
                deadlines = [w.task.deadline for w in self._workers
                             if w is not None and w.task is not None and w.task.deadline]
                wait_for = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                ready = wait([self._wake_r, *busy, *sentinels], timeout=wait_for)
                if self._wake_r in ready:
                    while self._wake_r.poll():
                        self._wake_r.recv_bytes()
                for conn, slot in busy.items():
                    if conn in ready and self._workers[slot] is not None:
                        self._on_reply(slot)
                for sentinel, slot in sentinels.items():
                    worker = self._workers[slot]
                    if sentinel in ready and worker is not None and not worker.process.is_alive():
                        if worker.task is not None and worker.conn.poll():
                            self._on_reply(slot)  # the reply arrived before the exit
                            worker = self._workers[slot]
                        if worker is not None:
                            self._on_death(slot)
                now = time.monotonic()
                for slot, worker in enumerate(self._workers):
                    if worker is not None and worker.task is not None and worker.task.deadline \
                            and worker.task.deadline <= now:
                        self._on_timeout(slot)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for slot in range(self.size):
            worker = self._workers[slot]
            if worker is not None and worker.task is not None:
                self._fail(worker.task, PoolClosedError("the pool was closed while the task ran"))
            self._stop_worker(slot, kill=worker is not None and worker.task is not None)
        with self._lock:
            pending, self._pending = list(self._pending), deque()
        for task in pending:
            self._fail(task, PoolClosedError("the pool was closed before the task ran"))
        self._wake_r.close()
        self._wake_w.close()


def is_isolation_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the worker died or was stopped (not an error the task raised)."""
    return isinstance(exc, RadrouteError) and exc.code in ("decoder_crashed", "decoder_timeout")


__all__ = ["IsolatedPool", "IsolatedTaskError", "PoolClosedError", "is_isolation_error", "signal_name"]

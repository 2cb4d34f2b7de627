"""Rendering a Model's own chat template — text a Model author wrote — off the event loop, within
a time and a size limit.

The Jinja sandbox stops a template from reaching Python's internals but not from looping for
minutes or building a gigabyte string. So a template renders in one of a few worker threads; the
event loop only awaits the answer. The output is read piece by piece and cut off past
`max_chars`; operations that make a huge value in a single step (`'x' * n`, `'%9999999s'`, big
integer powers, filters such as `center(n)`) are refused past a bound; and a render still running
at its deadline gets an exception raised inside its worker thread, which ends any template — its
code is Python, interrupted at the next bytecode. The request gets PROMPT_FORMAT_FAILED.
"""

from __future__ import annotations

import asyncio
import ctypes
import queue
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_ARGUMENT = 100_000  # largest number a template may pass to a filter or method, or build by a power
_WIDE_FORMAT = re.compile(r"%[-+ #0]*\d{6,}|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")


class TemplateLimitExceeded(TemplateError):
    """The template ran past its time or size limit."""


class _Interrupted(BaseException):
    """Raised inside a worker thread whose render ran past its deadline."""


class GuardedEnvironment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any):
        super().__init__(**options)
        for name in ("center", "indent", "truncate", "wordwrap", "format"):
            self.filters[name] = _bounded(self.filters[name])

    def call_binop(self, context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for size, times in ((left, right), (right, left)):
                if isinstance(times, int) and hasattr(size, "__len__") and len(size) * times > MAX_ARGUMENT * 10:
                    raise TemplateLimitExceeded("the template repeats a value too many times")
        elif operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise TemplateLimitExceeded("the template raises to too large a power")
        elif operator == "%" and isinstance(left, str) and _WIDE_FORMAT.search(left):
            raise TemplateLimitExceeded("the template formats with too large a width")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        _check_arguments(args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        # `'{:9999999}'.format(x)`: Jinja hands templates its own str.format; check the string first.
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and getattr(value, "__name__", "") in ("format", "format_map") \
                and _WIDE_FORMAT.search(owner):
            raise TemplateLimitExceeded("the template formats with too large a width")
        return super().wrap_str_format(value)


def _check_arguments(args: tuple, kwargs: dict) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_ARGUMENT:
            raise TemplateLimitExceeded(f"the template passes a number larger than {MAX_ARGUMENT}")


def _bounded(filter_function: Callable) -> Callable:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments(args[1:], kwargs)
        if filter_function.__name__ == "do_format" and isinstance(args[0], str) and _WIDE_FORMAT.search(args[0]):
            raise TemplateLimitExceeded("the template formats with too large a width")
        return filter_function(*args, **kwargs)

    for attribute in ("jinja_pass_arg",):  # keep Jinja's markers (pass_environment, pass_eval_context)
        if hasattr(filter_function, attribute):
            setattr(guarded, attribute, getattr(filter_function, attribute))
    guarded.__name__ = filter_function.__name__
    return guarded


def _raise_exception(message: str):
    raise TemplateError(message)


@lru_cache(maxsize=64)
def compiled(source: str):
    env = GuardedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(source)


def render_bounded(source: str, context: dict[str, Any], max_chars: int) -> str:
    """Renders in the calling thread, stopping once the output passes `max_chars`."""
    pieces, size = [], 0
    for piece in compiled(source).generate(**context):
        size += len(piece)
        if size > max_chars:
            raise too_long(max_chars)
        pieces.append(piece)
    return "".join(pieces)


def too_long(max_chars: int) -> TemplateLimitExceeded:
    return TemplateLimitExceeded(f"the template's output passed {max_chars} characters")


# The worker threads -------------------------------------------------------------------------------

_PENDING, _RUNNING, _INTERRUPTED, _DONE = range(4)


@dataclass(eq=False)
class _Job:
    work: Callable[[], str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    lock: threading.Lock = field(default_factory=threading.Lock)
    state: int = _PENDING
    thread_id: int = 0


def _set_async_exc(thread_id: int, exc_type: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc_type) if exc_type else None)


class TemplateRunner:
    """A few daemon threads rendering templates; one per process, like asyncio's default executor."""

    def __init__(self, threads: int = 2):
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"chat-template-{i}", daemon=True)
                         for i in range(threads)]
        for thread in self._threads:
            thread.start()

    async def render(self, source: str, context: dict[str, Any], *, timeout_s: float, max_chars: int) -> str:
        loop = asyncio.get_running_loop()
        job = _Job(lambda: render_bounded(source, context, max_chars), loop, loop.create_future())
        self._jobs.put(job)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(job.future)
        except TimeoutError:
            self._abandon(job)
            raise TemplateLimitExceeded(f"the template took longer than {timeout_s:g}s to render") from None
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def _abandon(self, job: _Job) -> None:
        with job.lock:
            if job.state == _RUNNING:
                _set_async_exc(job.thread_id, _Interrupted)
                job.state = _INTERRUPTED
            elif job.state == _PENDING:
                job.state = _DONE  # a worker that picks it up skips it

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                with job.lock:
                    if job.state != _PENDING:
                        continue
                    job.state, job.thread_id = _RUNNING, threading.get_ident()
                try:
                    outcome: tuple[bool, Any] = (True, job.work())
                except _Interrupted:
                    outcome = (False, None)
                except BaseException as exc:  # a template error: the caller reports it
                    outcome = (False, exc)
                self._finish(job)
                if outcome[1] is not None or outcome[0]:
                    job.loop.call_soon_threadsafe(_resolve, job.future, outcome)
            except _Interrupted:  # arrived after the render ended, before _finish: nothing to undo
                self._finish(job)

    @staticmethod
    def _finish(job: _Job) -> None:
        with job.lock:
            if job.state == _INTERRUPTED:
                _set_async_exc(threading.get_ident(), None)  # not yet raised: cancel it
            job.state = _DONE


def _resolve(future: asyncio.Future, outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 1.0
    max_chars: int = 1_000_000


_runner: TemplateRunner | None = None
_runner_lock = threading.Lock()


def runner() -> TemplateRunner:
    global _runner
    with _runner_lock:
        if _runner is None:
            _runner = TemplateRunner()
        return _runner

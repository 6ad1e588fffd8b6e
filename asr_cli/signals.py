"""Ctrl-C and SIGTERM that are never lost.

Python runs a signal handler at the next bytecode boundary, which may be inside a finaliser or an at-fork
callback (numba's, llvmlite's, logging's); an exception raised there is printed as "Exception ignored" and
the work goes on. So the handlers installed here record the signal before raising, and long loops call
`raise_if_stopped()`, which raises again for a signal whose first exception was swallowed. Ctrl-C raises
KeyboardInterrupt, SIGTERM `Terminated`; the CLI turns them into exit codes 130 and 143.

The record is the process's own (signals are delivered to the process): one flag, set only by the handler.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C (temporary outputs are removed on the way), reported with its own code."""


_received: list[int] = []  # the signals this process was asked to stop by, in order


def _handle(signum, frame) -> None:
    _received.append(signum)
    _raise(signum)


def _raise(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def install() -> None:
    """Handle SIGINT and SIGTERM as described above (the CLI does, at start). A stop swallowed by a finaliser
    is not reported as "Exception ignored" with a traceback: it is raised again, and said once, by the CLI."""
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)
    default_hook = sys.unraisablehook

    def quiet_about_stops(unraisable) -> None:
        if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
            default_hook(unraisable)

    sys.unraisablehook = quiet_about_stops


def raise_if_stopped() -> None:
    """Raise the stop a signal asked for, if one arrived (its first exception may have been swallowed)."""
    if _received:
        _raise(_received[-1])


def forget_inherited_stops() -> None:
    """For a forked worker: the record came with the fork (a parent stopped while it forked), but the parent
    decides what its workers do, so the worker starts with none of its own."""
    _received.clear()


def stop_requested() -> int | None:
    """The last stop signal received, or None."""
    return _received[-1] if _received else None


@contextlib.contextmanager
def deferred_stops():
    """Hold Ctrl-C and SIGTERM back while native code runs that must not be interrupted half-way (they are
    raised again, through the handlers there were, when the block ends): a signal whose handler raises inside a
    C extension's import fails it (onnxruntime: "ImportError: initialization failed") or crashes the process.
    The handlers only record meanwhile: blocking the signal would not do, since any other thread of the process
    (torch's, tqdm's) can take a process's signal. Python runs handlers in the main thread only, so elsewhere
    this holds nothing back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum, frame) -> None:
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[-1])


def stops_deferred(function):
    """`function` run under `deferred_stops`: for code that hands numba's typed dictionaries between Python and
    compiled code. Boxing one runs Python code, and a KeyboardInterrupt raised there, half-way through, crashes
    the process (a segmentation fault, seen when Ctrl-C landed in the beam search); held back, it is raised when
    the call is done."""

    @functools.wraps(function)
    def deferring(*args, **kwargs):
        with deferred_stops():
            return function(*args, **kwargs)

    return deferring

"""Interrupting hooks: Python's side of alive_worker/_interrupts.c, which explains the mechanism.

The watchdog thread in C trips the entry that :func:`install` sets in Python's
table of signal handlers; Python then runs :func:`interrupted` on the worker's
thread between two bytecodes, and it raises :class:`hooks.Interrupted` in
whatever runs.  The kernel-level handler stays C's, never Python's.

Threads that hooks start block every signal: PostgreSQL's handlers write the
worker's globals and must run on its thread, and a signal the kernel gives to
another thread would neither interrupt the worker's system call nor be seen
where it matters.  threading and _thread start threads through
_thread.start_new_thread, which is replaced by one that blocks every signal
around the start, so that the new thread inherits that mask from its first
instruction.  Threads that C extensions start with pthread_create are not
covered.
"""

from __future__ import annotations

import _thread
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from alive_worker._native import lib
from alive_worker.hooks import Interrupted

_NONE = int(lib.AW_CAUSE_NONE)
MESSAGES = {
    int(lib.AW_CAUSE_CANCEL): "canceling alive_worker.hook due to user request",
    int(lib.AW_CAUSE_TIMEOUT): "canceling alive_worker.hook due to statement timeout",
    int(lib.AW_CAUSE_STOP): "canceling alive_worker.hook: the worker received SIGTERM",
    int(lib.AW_CAUSE_POSTMASTER_DEATH): "canceling alive_worker.hook: the postmaster died",
}

_installed = False
_start_new_thread = _thread.start_new_thread
_EVERY_SIGNAL = signal.valid_signals()


def interrupted(signum: int, frame: FrameType | None) -> None:
    """The entry the watchdog trips: raises in the hook, or ends the worker past the grace."""
    cause = int(lib.aw_interrupt_check())
    if cause != _NONE:
        raise Interrupted(MESSAGES.get(cause, "canceling alive_worker.hook"))


def _start_thread_with_signals_blocked(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
) -> int:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _EVERY_SIGNAL)
    try:
        if kwargs is None:
            return _start_new_thread(function, args)
        return _start_new_thread(function, args, kwargs)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def install() -> None:
    """Once, on the worker's thread, before the first hook is imported."""
    global _installed
    if _installed:
        return
    _thread.start_new_thread = _start_thread_with_signals_blocked
    _thread.start_new = _start_thread_with_signals_blocked
    # threading keeps its own reference, taken when it was imported.
    threading._start_new_thread = _start_thread_with_signals_blocked  # type: ignore[attr-defined]

    kick = int(lib.aw_interrupt_signal())
    # Blocked until C has put its own handler in place of the one that
    # signal.signal() installs: Python's C handler must never run.
    signal.pthread_sigmask(signal.SIG_BLOCK, {kick})
    signal.signal(kick, interrupted)
    if lib.aw_hook_interrupts_start() != lib.AW_OK:
        from alive_worker.spi import _raise_last_error

        _raise_last_error()
    _installed = True

"""Entry points the C shim calls through cffi.

Nothing may escape from here into C: every exception is recorded with the
bridge (SQLSTATE, message, traceback) and the shim raises it as a PostgreSQL
ERROR once Python has returned.
"""

from __future__ import annotations

from alive_worker import errors, settings, spi
from alive_worker._native import ffi, lib
from alive_worker.heartbeat import Heartbeat
from alive_worker.spi import SPIError

# typing is not imported at run time (see spi.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_OK = int(lib.AW_OK)

_heartbeat: Heartbeat | None = None


def _record(exc: BaseException, doing: str) -> int:
    # Imported only then: a worker whose ticks go well never needs it.
    import traceback

    trace = "".join(traceback.format_exception(exc)).rstrip()
    if isinstance(exc, SPIError):
        # The hook host's failures carry the hook's own traceback: the
        # worker's frames that relayed it say nothing more.
        relayed = getattr(exc, "from_hook_host", False)
        context = "\n".join(part for part in (exc.context, None if relayed else trace) if part)
        lib.aw_record_error(
            exc.sqlstate.encode(),
            exc.message.encode(errors="replace"),
            exc.detail.encode(errors="replace") if exc.detail else ffi.NULL,
            exc.hint.encode(errors="replace") if exc.hint else ffi.NULL,
            context.encode(errors="replace"),
        )
    else:
        message = f"alive_worker {doing} failed: {type(exc).__name__}: {exc}"
        lib.aw_record_error(
            errors.ExternalRoutineException.sqlstate.encode(),
            message.encode(errors="replace"),
            ffi.NULL,
            ffi.NULL,
            trace.encode(errors="replace"),
        )
    return int(lib.AW_ERROR)


def _text(pointer: Any) -> str:
    return "" if pointer == ffi.NULL else str(ffi.string(pointer).decode(errors="replace"))


def _receive_settings(given: Any) -> None:
    """Takes the shim's snapshot of the settings (aw_settings), when it is a new one."""
    current = settings._snapshot
    if current is not None and current.generation == given.generation:
        return
    settings.receive(
        settings.Snapshot(
            generation=int(given.generation),
            settings=settings.Settings(
                database=_text(given.database),
                role=_text(given.role),
                schema=_text(given.schema),
                table=_text(given.table),
                message=_text(given.message),
                interval_ms=int(given.interval_ms),
                hook=_text(given.hook),
                retention_s=int(given.retention_s),
            ),
            probe_role=_text(given.probe_role),
            hook_memory_limit_kb=int(given.hook_memory_limit_kb),
        )
    )


@ffi.def_extern()
def aw_python_start(given_settings: Any) -> int:
    """Takes the settings, readies plpy and the hook host; called outside any transaction.

    Logging is routed to the server log at the worker's first record
    (alive_worker.pglog), not here: a worker that logs nothing never imports it.
    """
    try:
        _receive_settings(given_settings)
        from alive_worker import _plpython

        _plpython.install()
        # Not under the first tick's timeout: the host's start.
        from alive_worker.heartbeat import start_hook_host_early

        start_hook_host_early()
        return int(lib.AW_OK)
    except BaseException as exc:
        return _record(exc, "start")


@ffi.def_extern()
def aw_python_tick(tick: Any) -> int:
    """Runs one tick inside the shim's transaction: what it needs is in tick (aw_tick), and what
    it hands back goes there too."""
    global _heartbeat
    spi._tick = tick
    try:
        given = tick.settings
        _receive_settings(given)
        # Tested here: the usual tick has neither, and skips the call.
        if spi._tick_plans or spi._dropped:
            spi.begin_tick()
        if _heartbeat is None:
            # Reads the catalogs, so it waits for the first transaction.
            _heartbeat = Heartbeat()
        _heartbeat.tick(
            int(tick.heartbeat_number),
            int(given.generation),
            tick.previous_committed != 0,
            last_before_shutdown=tick.last_before_shutdown != 0,
        )
        return _OK
    except BaseException as exc:
        return _record(exc, "tick")


@ffi.def_extern()
def aw_python_hook() -> int:
    """Runs alive_worker.hook for the heartbeat just written, in the shim's subtransaction."""
    try:
        assert _heartbeat is not None
        _heartbeat.run_hook()
        return _OK
    except BaseException as exc:
        return _record(exc, "hook")

"""The worker's side of the hook host (alive_worker/_host.py explains the host).

:class:`HookHost` starts the host the first time a tick runs the hook, sends
it each tick, answers its statements through the worker's own
:mod:`alive_worker.spi` (the guarded bridge, in the tick's subtransaction,
as the worker's role) and writes what it logs to the server log.  The
worker never blocks on the host: it waits in poll() for at most
:data:`WAIT_MS` at a time and between waits asks the bridge whether SIGTERM,
the tick timeout, a cancel request or the postmaster's death says stop
(aw_hook_wait_cause).  Then it ends the host's process group, SIGTERM then
SIGKILL after :data:`GRACE_S`, and every other process the hook started
(the worker adopts them: alive_worker/_hook_host.c), and raises
QueryCanceled in the tick.

Any end of the host (a signal, an exit, its memory limit, a closed
connection) is described, logged and raised as the hook's failure; the next
host starts after a backoff that doubles from :data:`FIRST_BACKOFF_S` to
:data:`MAX_BACKOFF_S` while hosts keep ending, and the heartbeats go on.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alive_worker import _wire, errors, pglog, settings, spi
from alive_worker._native import lib
from alive_worker.hooks import Tick

log = pglog.getLogger(__name__)

WAIT_MS = 10
GRACE_S = 0.05
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 30.0
# How long the tick timeout and a cancel leave a starting host (the hook's
# import included) alone: past that, a start that hangs is ended like a hook.
STARTING_LIMIT_S = 10.0
HOST_SCRIPT = Path(__file__).with_name("_host.py")
# _host.EXIT_MEMORY_LIMIT: the host ends itself after a MemoryError.
EXIT_MEMORY_LIMIT = 75
# What the worker does for one statement of a hook is bounded, with a clear
# error (54000) naming the bound, checked before the work is done: the rows
# the executor returns (it stops one past), their text (what one message can
# carry), and the parameters (PostgreSQL's own limit for a statement's).
MAX_ROWS = 100_000
MAX_RESULT_BYTES = _wire.MAX_MESSAGE
MAX_PARAMETERS = 65_535
# Kept plans live in the worker's memory until freed: a hook may hold this many.
MAX_KEPT_PLANS = 1_000

_NONE = int(lib.AW_CAUSE_NONE)
CAUSES = {
    int(lib.AW_CAUSE_CANCEL): "canceling alive_worker.hook due to user request",
    # PostgreSQL's words, which tick_timeout.c keeps when it explains the timeout.
    int(lib.AW_CAUSE_TIMEOUT): "canceling statement due to statement timeout",
    int(lib.AW_CAUSE_STOP): "canceling alive_worker.hook: the worker received SIGTERM",
    int(lib.AW_CAUSE_POSTMASTER_DEATH): "canceling alive_worker.hook: the postmaster died",
}


class HostEnded(errors.SPIError):
    """The hook host ended in the middle of a tick: the hook's failure, named with the cause."""

    sqlstate = errors.ExternalRoutineException.sqlstate


def python_executable() -> str:
    """The interpreter the worker embeds, as a program.

    The environment's python3 if it has one, else the base installation's of
    the same version: the host is then given the worker's whole sys.path.
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = (
        Path(sys.executable) if sys.executable else None,
        Path(getattr(sys, "_base_executable", "") or "/nonexistent"),
        Path(sys.base_exec_prefix, "bin", version),
        Path(sys.base_exec_prefix, "bin", "python3"),
    )
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise errors.ExternalRoutineException(
        f"alive_worker cannot start the hook host: no {version} in {sys.base_exec_prefix}/bin"
    )


def describe_status(status: int, memory_limit: int) -> str:
    """What ended the host, from waitpid's status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {number} ({name})"
    code = os.WEXITSTATUS(status)
    if code == EXIT_MEMORY_LIMIT:
        return f"reached alive_worker.hook_memory_limit ({memory_limit // (1024 * 1024)} MB) and exited"
    return f"exited with code {code}"


class HookHost:
    """One hook host process at a time, for one alive_worker.hook."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.process: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.reader = _wire.Reader()
        self.plans: dict[int, spi.Plan] = {}
        self.next_plan = 1
        self.ends = 0
        self.backoff_s = 0.0
        self.not_before = 0.0
        self.last_end = ""  # what the last end of a host was logged as
        self.memory_limit = 0
        # Between Popen and the host's first message: its start is not the hook's
        # fault, so the tick timeout or a cancel then leave it starting.
        self.starting = False
        self.started_at = 0.0

    # ---- the host's life ----

    def start(self) -> None:
        # In its base unit, kB, in the shim's snapshot of the settings.
        self.memory_limit = settings.snapshot().hook_memory_limit_kb * 1024
        started = time.monotonic()
        # Before the host exists: every process it starts, in whatever session,
        # stays the worker's descendant (alive_worker/_hook_host.c).
        if lib.aw_hook_host_adopt() != 0:
            log.warning(
                "alive_worker cannot adopt the hook host's orphans (PR_SET_CHILD_SUBREAPER): a daemon the hook "
                "starts in a session of its own may outlive the hook host"
            )
        worker_end, host_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [python_executable(), "-I", str(HOST_SCRIPT), str(host_end.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(host_end.fileno(),),
                close_fds=True,
                cwd="/",
                start_new_session=True,
                restore_signals=True,
            )
        finally:
            host_end.close()
        worker_end.setblocking(False)
        self.sock = worker_end
        self.reader = _wire.Reader()
        self._send(
            {
                "op": "init",
                "path": list(sys.path),
                "hook": self.spec,
                "memory_limit": self.memory_limit,
                "debug": pglog.debug_enabled(),
            }
        )
        self.started_at = started
        self.starting = True

    def _wait_until_ready(self) -> None:
        """Waits for the host's first message; a timeout or cancel meanwhile leaves it starting."""
        while self.starting:
            message = self._receive()
            if message.get("op") == "call":
                # The hook's module runs statements as it is imported.
                self._answer(message)
            elif message.get("op") == "ready":
                self.starting = False
                assert self.process is not None
                log.debug(
                    "alive_worker hook host (PID %d) started in %.1f ms",
                    self.process.pid,
                    (time.monotonic() - self.started_at) * 1000,
                )
            else:
                self._handle_aside(message)

    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def stop(self, exiting: bool = False) -> str:
        """Ends the host's process group (SIGTERM, then SIGKILL after the grace) and every process the
        hook started; what ended the host."""
        process = self.process
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.process = None
        self.starting = False
        # Not freed here, in a tick that may be failing: dropped, spi frees
        # them at the next tick.
        self.plans.clear()
        if process is None:
            return "was not running"
        status = self._reap(process, GRACE_S if exiting else 0)
        if status is None:
            self._signal_group(process.pid, signal.SIGTERM)
            status = self._reap(process, GRACE_S)
        if status is None:
            self._signal_group(process.pid, signal.SIGKILL)
            status = self._reap(process, None)
        # Children the hook forked, still in the group, and every other
        # descendant: daemons in sessions of their own included.
        self._signal_group(process.pid, signal.SIGKILL)
        lib.aw_hook_host_end_descendants()
        if status is None:
            return "ended"
        return describe_status(status, self.memory_limit)

    @staticmethod
    def _signal_group(pid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)

    @staticmethod
    def _reap(process: subprocess.Popen[bytes], timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(process.pid, os.WNOHANG if timeout is not None else 0)
            except ChildProcessError:
                return None
            if pid != 0:
                process.returncode = 0  # reaped here: Popen must not wait again
                return status
            if deadline is None or time.monotonic() >= deadline:
                return None
            time.sleep(0.002)

    def _ended(self, what: str, traceback: str | None = None, exiting: bool = False) -> HostEnded:
        """Stops what is left of the host (given the grace to exit first if it said it would), logs and
        counts its end; the error for the tick."""
        pid = self.pid()
        how = self.stop(exiting=exiting)
        self._count_end()
        message = f"alive_worker: the hook host {what}; the hook host {how}"
        self.last_end = message.removeprefix("alive_worker: ")
        detail = f"The hook host had PID {pid}; it is started again in {self.backoff_s:.1f} s; the heartbeats go on."
        return HostEnded(message, detail=detail, context=traceback)

    def _count_end(self) -> None:
        self.ends += 1
        self.backoff_s = FIRST_BACKOFF_S if self.backoff_s == 0 else min(self.backoff_s * 2, MAX_BACKOFF_S)
        self.not_before = time.monotonic() + self.backoff_s

    # ---- a tick ----

    def run(self, tick: Tick) -> None:
        """Runs the hook for ``tick`` in the host, answering its statements until it is done."""
        self._reap_orphans()
        if self.process is None:
            remaining = self.not_before - time.monotonic()
            if remaining > 0:
                # The hook did not run: a failure of the hook, never a tick that
                # passes for its check (hook_failure = fail_tick), never silence.
                raise HostEnded(
                    f"alive_worker: the hook did not run: the hook host is started again in {remaining:.1f} s"
                    f" after its last end ({self.last_end})"
                )
            self.start()
        self._wait_until_ready()
        self._send(
            {"op": "tick", "number": tick.number, "message": tick.message, "settings": list(tick.settings)}
        )
        while True:
            message = self._receive()
            op = message.get("op")
            if op == "call":
                self._answer(message)
            elif op == "done":
                self.backoff_s = 0.0
                return
            elif op == "failed":
                self._raise_failure(message)
            else:
                self._handle_aside(message)

    def _reap_orphans(self) -> None:
        """Reaps the hook's processes that ended after the worker adopted them; the host is left to stop()."""
        host = self.pid()
        while True:
            try:
                ended = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if ended is None or ended.si_pid == host:
                return
            with contextlib.suppress(ChildProcessError):
                os.waitpid(ended.si_pid, os.WNOHANG)

    def _raise_failure(self, message: _wire.Message) -> None:
        if message.get("memory_limit"):
            # Named whatever its exit says: it is on its way out, but may not be there yet.
            limit_mb = self.memory_limit // (1024 * 1024)
            raise self._ended(
                f"reached alive_worker.hook_memory_limit ({limit_mb} MB): MemoryError in the hook",
                message.get("traceback"),
                exiting=True,
            )
        trace = message.get("traceback")
        if "sqlstate" in message:
            context = "\n".join(part for part in (message.get("context"), trace) if part)
            error = errors.from_sqlstate(
                message["sqlstate"],
                message.get("message") or "",
                detail=message.get("detail"),
                hint=message.get("hint"),
                context=context or None,
            )
        else:
            error = errors.ExternalRoutineException(
                f"alive_worker hook failed: {message.get('type')}: {message.get('message')}", context=trace
            )
        error.from_hook_host = True  # type: ignore[attr-defined]
        raise error

    def _handle_aside(self, message: _wire.Message) -> None:
        try:
            self._handle_aside_fields(message)
        except (TypeError, ValueError, OverflowError) as error:
            raise self._ended(
                f"sent a message the worker refuses ({type(error).__name__}: {error})"
            ) from None

    def _handle_aside_fields(self, message: _wire.Message) -> None:
        op = message.get("op")
        if op == "log":
            thread = message.get("thread")
            text = str(message.get("message"))
            if thread:
                text = f"alive_worker, thread {thread}{pglog.hook_context}: {text}"
            level = int(message.get("level", pglog.INFO))
            lib.aw_log(pglog.server_level(level), text.encode(errors="replace"))
        elif op == "drop":
            # Dropping the worker's Plan frees it at the next tick (spi.begin_tick).
            self.plans.pop(int(message.get("plan", 0)), None)
        else:
            raise ValueError(f"unexpected op {op!r}")

    def _answer(self, message: _wire.Message) -> None:
        try:
            result = self._dispatch(str(message.get("function")), list(message.get("args") or []))
            reply: _wire.Message = {"op": "reply", "result": result}
            frame = _wire.encode(reply)
        except errors.SPIError as error:
            frame = _wire.encode({"op": "reply", "error": error_message(error)})
        except _wire.MessageTooLarge as error:
            too_large = errors.ProgramLimitExceeded(
                f"alive_worker: the result of the hook's statement is too large to send to the hook host ({error})",
                hint="Fetch fewer rows at a time (LIMIT, a cursor of your own, or an aggregate).",
            )
            frame = _wire.encode({"op": "reply", "error": error_message(too_large)})
        except Exception as error:
            frame = _wire.encode(
                {"op": "reply", "error": {"type": type(error).__name__, "message": str(error)}}
            )
        self._send_frame(frame)

    def _dispatch(self, function: str, args: list[Any]) -> Any:
        if function == "execute":
            query, values = args
            check_parameters(len(values))
            return spi.execute(query, *values, max_rows=MAX_ROWS, max_bytes=MAX_RESULT_BYTES)
        if function == "prepare":
            query, argtypes, keep, owner = args
            check_parameters(len(argtypes))
            if keep and sum(plan.keep for plan in self.plans.values()) >= MAX_KEPT_PLANS:
                raise errors.ProgramLimitExceeded(
                    f"alive_worker: the hook holds {MAX_KEPT_PLANS} plans kept with keep=True, the limit",
                    hint="Free the plans it no longer needs (plan.free()), or prepare once and keep the plan.",
                )
            access = None if owner is None else spi.TableAccess(*owner)
            number = self.next_plan
            self.next_plan += 1
            # The hook's SQL on a table it names: never with more than the worker's rights.
            self.plans[number] = spi.prepare(
                query, argtypes, keep=bool(keep), as_owner_of=access, for_hook=True
            )
            return number
        if function in ("plan_execute", "plan_execute_text", "plan_free"):
            found = self.plans.get(int(args[0]))
            if found is None:
                raise errors.InvalidSqlStatementName("alive_worker plan was freed and cannot be executed")
            plan = found
            if function == "plan_execute":
                return plan.execute(*args[1], max_rows=MAX_ROWS, max_bytes=MAX_RESULT_BYTES)
            if function == "plan_execute_text":
                plan.execute_text(args[1])
                return None
            del self.plans[int(args[0])]
            plan.free()
            return None
        if function == "last_rowcount":
            return spi.last_rowcount()
        if function == "quote_ident":
            return spi.quote_ident(args[0])
        if function == "current_role":
            return spi.current_role()
        if function == "setting":
            return spi.setting(args[0])
        if function == "live_plans":
            return spi.live_plans()
        if function == "subtransaction_begin":
            spi._check(lib.aw_subtransaction_begin())
            return None
        if function == "subtransaction_end":
            if args[0]:
                spi._check(lib.aw_subtransaction_end(1))
            else:
                lib.aw_subtransaction_end(0)
            return None
        raise errors.FeatureNotSupported(f"alive_worker hook host asked for unknown function {function!r}")

    # ---- waiting, never blocked ----

    def _check_cause(self) -> None:
        cause = int(lib.aw_hook_wait_cause())
        if cause != _NONE:
            message = CAUSES.get(cause, "canceling alive_worker.hook")
            if (
                self.starting
                and cause in (int(lib.AW_CAUSE_TIMEOUT), int(lib.AW_CAUSE_CANCEL))
                and time.monotonic() - self.started_at < STARTING_LIMIT_S
            ):
                # A short tick timeout must not end every host before it is up.
                raise errors.QueryCanceled(
                    f"{message}; the hook host is still starting",
                    hint="The hook runs from the next tick on; the host takes about 0.1 s to start and import it.",
                )
            pid = self.pid()
            how = self.stop()
            # Started again after the backoff, as after any end: a hook that
            # keeps outlasting the tick timeout must not restart a host every tick.
            self._count_end()
            if cause == int(lib.AW_CAUSE_STOP):
                # The shim reports the tick that SIGTERM ends in words of its own.
                lib.aw_log(int(lib.AW_LOG_LOG), f"{message}; the hook host (PID {pid}) {how}".encode())
            self.last_end = f"{message}; the hook host {how}"
            raise errors.QueryCanceled(self.last_end, detail=f"The hook host had PID {pid}.")

    def _wait(self, events: int) -> None:
        assert self.sock is not None
        poller = select.poll()
        poller.register(self.sock.fileno(), events)
        while True:
            self._check_cause()
            if poller.poll(WAIT_MS):
                return
            # By its pid, not only by the end of its connection, which a
            # process the hook started may still hold.
            if self._host_exited():
                raise self._ended("ended")

    def _host_exited(self) -> bool:
        if self.process is None:
            return False
        try:
            ended = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return ended is not None

    def _receive(self) -> _wire.Message:
        while True:
            if self.sock is None:
                raise self._ended("is gone")
            try:
                message = self.reader.next()
                if message is not None and not isinstance(message.get("op"), str):
                    raise ValueError("a message without an op")
            except Exception as error:  # any message the worker cannot read (RecursionError too)
                raise self._ended(
                    f"sent a message the worker refuses ({type(error).__name__}: {error})"
                ) from None
            if message is not None:
                return message
            self._wait(select.POLLIN)
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                raise self._ended("closed its connection")
            self.reader.feed(data)

    def _send(self, message: _wire.Message) -> None:
        self._send_frame(_wire.encode(message))

    def _send_frame(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            if self.sock is None:
                raise self._ended("is gone")
            self._wait(select.POLLOUT)
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                raise self._ended("closed its connection") from None
            view = view[sent:]


def check_parameters(count: int) -> None:
    if count > MAX_PARAMETERS:
        raise errors.ProgramLimitExceeded(
            f"alive_worker: the hook's statement has {count} parameters, over the limit of {MAX_PARAMETERS}",
            hint="Pass many values as one array parameter ($1::int[]).",
        )


def error_message(error: errors.SPIError) -> _wire.Message:
    return {
        "sqlstate": error.sqlstate,
        "message": error.message,
        "detail": error.detail,
        "hint": error.hint,
        "context": error.context,
    }
